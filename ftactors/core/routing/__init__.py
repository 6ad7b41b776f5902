"""The parts of the group router (``ftactors.core.router.RouterCore`` is their façade).

Each keeps one kind of state and is pure like the rest of the core:

* ``intake.Intake``: per-source admission by sequence and ``ack_below``, held calls,
  waiting callers, the reply cache, fencing of deposed calling primaries;
* ``log.OrderLog``: retained requests, the announced order, the primary's digests, trimming;
* ``links.LinkTracker``: each replica's link (what waits on it, in flight, acknowledged,
  last heard), failure suspicion, pings, replicas joining or spawning, divergences;
* ``recovery.Recovery``: the survivors' state reports and the ranking of the new view;
* ``outbox.Outbox``: the Delivers built from the links, with batching, piggybacking and
  null messages.
"""

from ftactors.core.routing.intake import Intake
from ftactors.core.routing.links import Link, LinkTracker
from ftactors.core.routing.log import OrderLog
from ftactors.core.routing.outbox import Outbox
from ftactors.core.routing.recovery import Recovery

__all__ = ["Intake", "Link", "LinkTracker", "OrderLog", "Outbox", "Recovery"]

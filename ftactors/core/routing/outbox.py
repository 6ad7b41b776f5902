"""The router's outbox: the Delivers that go out on the links now.

For each member with room (``primary_inflight_max`` / ``backup_inflight_max``
Delivers in flight) it builds one Deliver from what waits on the link:
up to ``batch_max`` requests (to backups in batches, after
``relay_delay_ticks``, unless a message goes anyway), every waiting
announcement (piggybacked, claims 42-45; alone in a null message after
``null_message_ticks``, claim 46), the view, checkpoint or join to carry, a
snapshot request for the primary, the router's word to a new primary to give up the
order it took over (``give_up_from``), an empty poll of an idle primary while
callers wait, and one of a primary silent on a Deliver for ``busy_poll_ticks``
(a long call runs: it answers with the replies finished before it).

A transcript::

    outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=0, callers_wait=True)
    # [("g-r0", Deliver(requests=(c#1,), ...))]: g-r1's copy waits relay_delay_ticks
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from ftactors.core.config import CoreConfig
from ftactors.core.messages import Deliver
from ftactors.core.routing.links import Link, LinkTracker


class Outbox:
    """Builds the Delivers of each step and counts what they carry.

    Args:
        config: protocol settings (batching, delays, inflight bounds).
        counts: the router's counters (``delivers``, ``copies``, ``polls``, ``null_messages``,
            ``announcements_in_null``, ``announcements_piggybacked``; ``busy_polls``, a subset of
            ``polls``, once used).
    """

    def __init__(self, config: CoreConfig, counts: Dict[str, int]) -> None:
        self.config = config
        self.counts = counts

    def sends(self, tracker: LinkTracker, members: List[str], view: int, now: int,
              callers_wait: bool, urgent: bool = False) -> List[Tuple[str, Deliver]]:
        """The (replica, Deliver) pairs to send now, primary (``members[0]``) first.

        Args:
            tracker: the members' links (updated: what is sent leaves them).
            members: the view's members in rank order.
            view: the current view number.
            now: the current tick.
            callers_wait: whether some caller waits for a reply (an idle primary is polled).
            urgent: replies wait for a backup's acknowledgement (``replies_wait_for_backup``): the
                backups' request copies and announcements go now, without waiting for a batch
                (``relay_delay_ticks``) or a ride (``null_message_ticks``).

        Returns:
            One Deliver at most per member with room for one.
        """
        out = []
        primary = members[0] if members else None
        for name in members:
            link = tracker.links[name]
            limit = self.config.primary_inflight_max if name == primary else self.config.backup_inflight_max
            busy = name == primary and self._busy(link, now, callers_wait)
            if busy and link.inflight >= limit:  # no room but the busy poll's: it carries nothing else
                msg: Optional[Deliver] = Deliver(view=view, busy_poll=True)
                self.counts["polls"] += 1
            elif link.inflight >= limit + (1 if name == primary and link.suspended else 0):  # see _build
                continue
            else:
                msg = self._build(link, name == primary, view, now, callers_wait, urgent, busy)
            if msg is not None:
                if busy and msg.requests == () and msg.is_null:
                    if not msg.busy_poll:  # its answer says it answers the poll (row 81)
                        msg = dataclasses.replace(msg, busy_poll=True)
                    link.busy_poll_out = True  # what waits at the primary comes back on it (ReplicaHost)
                    self.counts["busy_polls"] = self.counts.get("busy_polls", 0) + 1
                if not link.inflight:
                    link.out_since = now
                link.inflight += 1
                link.last_sent = now
                self.counts["delivers"] += 1
                out.append((name, msg))
        return out

    def _busy(self, link: Link, now: int, callers_wait: bool) -> bool:
        """Whether the primary's ``link`` is due a busy poll: callers wait, it has left a Deliver
        unanswered ``busy_poll_ticks`` (a long call runs; the replies of the calls it finished
        before wait for an answer) and no busy poll is out (``Link.busy_poll_out``, cleared by the
        poll's own answer, ``Delivered.busy_poll``: docs/faults.md, row 81). A primary holding
        suspended calls keeps a Deliver already (it answers it when a step resumes); a view or a
        checkpoint to carry goes first (the poll names the view)."""
        return callers_wait and link.out_since is not None and not link.busy_poll_out and \
            not link.suspended and link.new_view is None and link.checkpoint is None and \
            now - link.out_since >= self.config.busy_poll_ticks

    def _build(self, link: Link, is_primary: bool, view: int, now: int, callers_wait: bool,
               urgent: bool = False, busy: bool = False) -> Optional[Deliver]:
        """The Deliver for ``link`` now, or None if nothing needs to go (``urgent``: see ``sends``;
        ``busy``: a busy poll is due, see ``_busy``)."""
        cfg = self.config
        anns = link.announcements if not is_primary or link.new_view else []
        copies = link.reply_copies  # only backups' links get them queued (and a promoted one's leftovers)
        taken = link.oneway_taken if not is_primary else []  # they ride; never a reason to send
        due_null = bool(anns or (copies and not is_primary)) and link.anns_since is not None and \
            (now - link.anns_since >= cfg.null_message_ticks or urgent)
        going_anyway = due_null or link.new_view is not None or link.checkpoint is not None or urgent
        if not is_primary and not going_anyway and len(link.requests) < cfg.batch_max and \
                link.reqs_since is not None and now - link.reqs_since < cfg.relay_delay_ticks:
            # relay to backups in batches, off the caller's critical path; nothing else is due (no
            # view, checkpoint or null message, and a backup gets no poll, snapshot request or give-up)
            return None
        reqs = link.requests[: cfg.batch_max]
        wanted = link.snapshot_wanted and is_primary
        give_up = link.give_up_from if is_primary else 0
        # the primary may hold work that became possible later (a resource freed, a sequence
        # gap timed out): when callers wait and the link is idle, an empty Deliver collects it
        # a primary holding suspended messages (async methods waiting for a nested reply or a
        # timer) keeps one Deliver: it returns with the replies of the steps that resume them
        poll = is_primary and link.inflight == 0 and (link.suspended > 0 or callers_wait and
                                                      now - link.last_sent >= cfg.heartbeat_ticks)
        poll = poll or busy  # a primary silent on a Deliver busy_poll_ticks: collect what it finished
        if not (reqs or link.new_view or link.checkpoint or wanted or due_null or poll or give_up):
            return None
        if poll and not (reqs or link.new_view or link.checkpoint or wanted):
            self.counts["polls"] += 1
        msg = Deliver(view=view, requests=tuple(reqs), announcements=tuple(anns), reply_copies=tuple(copies),
                      new_view=link.new_view, checkpoint=link.checkpoint, snapshot_wanted=wanted, join=link.join,
                      give_up_from=give_up, oneway_taken=tuple(taken))
        del link.requests[: len(reqs)]
        link.reqs_since = now if link.requests else None
        if not is_primary:
            self.counts["copies"] += len(reqs)
        if msg.is_null:
            self.counts["null_messages"] += 1
            self.counts["announcements_in_null"] += len(anns)
        else:
            self.counts["announcements_piggybacked"] += len(anns)
        if copies:
            key = "reply_copies_in_null" if msg.is_null else "reply_copies_piggybacked"
            self.counts[key] = self.counts.get(key, 0) + len(copies)
        if anns:
            link.announcements = []
        if copies:
            link.reply_copies = []
        if taken:
            self.counts["oneway_taken_relayed"] = self.counts.get("oneway_taken_relayed", 0) + len(taken)
            link.oneway_taken = []
        if not link.announcements and not link.reply_copies:
            link.anns_since = None
        link.new_view, link.checkpoint, link.join = None, None, False
        if wanted:
            link.snapshot_wanted = False
        link.give_up_from = 0
        return msg

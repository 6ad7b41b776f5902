"""The router host, written once: a :class:`~ftactors.core.RouterCore` and what a host does around it.

The Ray router actor (``runtime/router_actor.py``) and the simulator (``testing/cluster.py``) both
run this class; each supplies its I/O through :class:`RouterIO`. The host owns everything that is
not transport: the core, the waiters for callers' replies, the per-replica link numbers of the
Delivers and the incarnation ``epoch`` they carry, view-change bookkeeping, failure handling and
failover timing, carrying out ``core.ready()`` in its fixed order, the rebuild of a restarted router
(:func:`ftactors.host.rebuild.rebuilt_view`) and saving the core's counters on the replicas so that a
restarted router goes on from them. It is callback style, with no asyncio, threads or clock of its
own, so a deterministic event queue drives it as well as an asyncio loop (TigerBeetle's
``replica.zig`` takes its message bus, storage and time as parameters; ``vopr.zig`` runs the same
replica; raft's ``node.go`` is a loop around ``RawNode``).

Host loop (what a driver calls)::

    host = RouterHost(group, config, io, epoch, members)   # or members=None, then host.rebuild(reports)
    host.submit(request, copy, waiter)   # a caller's request: a cached reply, or the waiter is answered later
    host.fetch_begins(msg_id); host.fetched(request, copy, waiter) / host.fetch_failed(msg_id)
                                         # the same, for a request whose argument by reference the
                                         # driver fetches first (its source's later calls wait for it)
    host.on_delivered(answer)            # io.deliver's answer        } each input asks io.kick() for a
    host.on_failure(rid)                 # a call to rid failed        } host.process() soon
    host.on_pong(rid, counts) / host.on_state_report(report) / host.on_spawned(rid) / host.on_spawn_failed(rid)
    host.on_link_up(rid) / on_link_unreachable(rid, why) / on_link_heard(rid) / on_link_answer(rid) /
        on_link_delivered(rid, answer) / on_link_parked(rid) / on_parked_fetched(rid, ticket, answer) /
        on_parked_lost(rid, ticket) / on_link_closed(rid, why)   # the direct data plane (``host.links`` decides)
    host.tick()                          # once per tick: core.tick, the counters' save timer, the links'
                                         # heartbeats and suspicions, the warm spares' pings, process()
    host.process()                       # carry out core.ready(): sends, released, failed, pings, queries,
                                         # spawns (once no recovery runs: a ready warm spare, ``spares``,
                                         # joins instead of a new process), new spares, retired

Warm spares (:mod:`ftactors.host.spares`) go through the same ``io.spawn`` / ``on_spawned`` /
``on_spawn_failed`` / ``ping`` / ``on_pong`` / ``on_failure`` / ``retire`` as members: the host tells
them apart by id, and a spare's death or silence never reaches the core.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple

from ftactors.core import (
    Abandoned,
    CoreConfig,
    Deliver,
    Delivered,
    GroupOverloadedError,
    LocalProtocolError,
    MsgId,
    Phase,
    Reply,
    Request,
    RouterCore,
    StateReport,
)
from ftactors.host.links import Links, LinkSettings, Parked
from ftactors.host.rebuild import RebuiltView, rebuilt_view
from ftactors.host.spares import SpareSettings, Spares

log = logging.getLogger("ftactors")

#: What a replica tells a restarted router: ``(view, members, role, the router's counters it kept)``.
ViewInfo = Tuple[int, Tuple[str, ...], str, Dict[str, int]]

#: Callers waiting for one request's reply at most (a caller's retries of one call each wait).
WAITERS_PER_CALL_MAX = 1_024
#: Replicas one router incarnation numbers Delivers for at most (members, joiners and retired ones).
LINKS_MAX = 10_000
#: Replicas waiting to be spawned at most (the core asks for a few at a time).
SPAWN_QUEUE_MAX = 1_024


#: counters that change while a group is idle (the core's pings): saved with the others, never alone
LIVENESS_COUNTS: Dict[str, int] = {"heartbeats": 0}

class RouterIO(Protocol):
    """The I/O a :class:`RouterHost` needs; the Ray router actor and the simulator implement it.

    Every call returns at once. What comes back later is fed to the host by its driver, through the
    host method each call names (a failure of any call to a replica: :meth:`RouterHost.on_failure`).
    """

    def ticks(self) -> int:
        """Now, in ticks (the core's clock)."""
        ...

    def wall_s(self) -> float:
        """Now, in seconds since the epoch (for ``last_failover_s``)."""
        ...

    def deliver(self, rid: str, msg: Deliver, epoch: str, seq: int) -> None:
        """Send Deliver ``msg`` to replica ``rid``: the data plane, router -> replica.

        Args:
            rid: the replica.
            msg: the Deliver.
            epoch: this router incarnation (sorts later for a later incarnation).
            seq: its number on the link to ``rid`` (from 1, one by one): the replica applies
                Delivers of one epoch in this order whatever order they arrive in.

        The replica's answer (a ``Delivered``) goes to :meth:`RouterHost.on_delivered`; if it
        cannot be delivered (the replica died), :meth:`RouterHost.on_failure`.
        """
        ...

    def ping(self, rid: str) -> None:
        """Ping ``rid``; the answer goes to :meth:`RouterHost.on_pong` (a dead replica: ``on_failure``)."""
        ...

    def save_counts(self, rid: str, counts: Dict[str, int]) -> None:
        """Leave the router's counters with ``rid``, which keeps the highest of each for a restarted
        router (a ping in Ray; nothing comes back that the host needs)."""
        ...

    def query(self, rid: str, epoch: str) -> None:
        """Ask ``rid`` for its state report on behalf of incarnation ``epoch``; the answer goes to
        :meth:`RouterHost.on_state_report` (no answer: ``on_failure``)."""
        ...

    def spawn(self, rid: str) -> None:
        """Start a new replica ``rid``; then :meth:`RouterHost.on_spawned` or ``on_spawn_failed``."""
        ...

    def retire(self, rid: str) -> None:
        """Stop replica ``rid``: it left the view (it may linger for a while: it is fenced)."""
        ...

    def answer(self, reply: Reply, waiters: Sequence[Any]) -> None:
        """``reply`` is released (exactly once): answer its ``waiters`` (maybe none)."""
        ...

    def fail(self, msg_id: MsgId, reason: str, waiters: Sequence[Any]) -> None:
        """Request ``msg_id`` failed for good (the group is lost): fail its ``waiters``."""
        ...

    def fence(self, msg_id: MsgId, waiters: Sequence[Any]) -> None:
        """Nested request ``msg_id`` came from a deposed primary of its calling group, which this router
        learnt only after admitting it (``RouterReady.fenced``): fail its ``waiters`` with
        ``StaleViewError``, as a fenced ``submit`` raises it."""
        ...

    def kick(self) -> None:
        """Call :meth:`RouterHost.process` soon (after the current input; several kicks, one call)."""
        ...

    def heartbeat(self, rid: str) -> None:
        """Send a heartbeat on ``rid``'s direct link; its answer goes to :meth:`RouterHost.on_link_heard`
        (only called for a link the driver reported up)."""
        ...

    def close_link(self, rid: str) -> None:
        """Close ``rid``'s direct link (suspected, or retired and drained); only called for a link the
        driver reported with ``want_link``."""
        ...


class RouterHost:
    """One router incarnation of a group: the core, its callers and its replicas' links.

    Args:
        group: the group.
        config: the protocol settings.
        io: the transport, clock and timers.
        epoch: names this incarnation on its Delivers; a later incarnation's sorts later.
        members: the first view's members, or None for a restarted router (call :meth:`rebuild`).
        counts_every_ticks: how often the core's counters are saved on the members when they changed.
        link_settings: the direct links' heartbeats (:class:`ftactors.host.links.LinkSettings`).
        spare_settings: the warm spares the router keeps (:class:`ftactors.host.spares.SpareSettings`;
            None: none).

    Raises:
        ValueError: ``counts_every_ticks`` is not positive.
    """

    def __init__(self, group: str, config: CoreConfig, io: RouterIO, epoch: str,
                 members: Optional[Tuple[str, ...]] = None, counts_every_ticks: int = 100,
                 link_settings: Optional[LinkSettings] = None,
                 spare_settings: Optional[SpareSettings] = None) -> None:
        if counts_every_ticks < 1:
            raise ValueError(f"counts_every_ticks must be >= 1, got {counts_every_ticks!r}")
        self.group = group
        self.config = config
        self.io = io
        self.epoch = epoch
        self.counts_every_ticks = counts_every_ticks
        self.core: Optional[RouterCore] = None if members is None else RouterCore(group, config, members)
        self.waiters: Dict[MsgId, List[Any]] = {}
        self.link_seq: Dict[str, int] = {}  # Delivers this incarnation sent to each replica
        self.closed = False
        self.last_failover_s: Optional[float] = None  # wall clock, when the primary was seen failing
        self.last_recovery_ms: Optional[float] = None  # failure seen -> new view installed
        self.saved_counts: Dict[str, int] = {}  # what the members were last sent (they keep it for a restart)
        self._recovery_t0: Optional[float] = None
        self._logged_view = 0 if self.core is None else self.core.view
        self._spawn_queue: List[str] = []  # asked for by the core, started once no recovery runs
        self._next_save_tick = 0
        #: the direct data plane's decisions (link states, heartbeats, suspicion, parked answers)
        self.links = Links(link_settings or LinkSettings())
        #: warm spare replicas: started, not members; a replacement takes one instead of a new process
        self.spares = Spares(spare_settings or SpareSettings())
        self._last_tick: Optional[int] = None

    @property
    def waiters_max(self) -> int:
        """Requests with waiting callers at most (the core refuses more than ``inflight_max``)."""
        return self.config.inflight_max + self.config.reply_cache_max

    # ------------------------------------------------------------ inputs

    def fetch_begins(self, msg_id: MsgId) -> None:
        """A caller's request reached the router with its argument by reference, which the driver
        fetches (and puts again, owned by the router) before it calls :meth:`fetched`, or
        :meth:`fetch_failed`: until then the later calls of its source wait for it, past
        ``sequence_gap_ticks`` (``RouterCore.expect_soon``; docs/faults.md, row 27).

        Args:
            msg_id: the request.
        """
        self._core().expect_soon(msg_id)

    def fetched(self, req: Request, copy: bool = False, waiter: Any = None) -> Optional[Reply]:
        """The argument of a request announced by :meth:`fetch_begins` is the router's now: submit it
        (as :meth:`submit`); its source's later calls no longer wait for it, submitted or refused.

        Args:
            req: the request, its payload owned by the router.
            copy: as :meth:`submit`.
            waiter: as :meth:`submit`.

        Returns:
            The reply if it is known already (a duplicate), else None.

        Raises:
            GroupOverloadedError, RemoteProtocolError: as :meth:`submit`.
        """
        try:
            return self.submit(req, copy, waiter)
        finally:
            self._core().forget_coming(req.msg_id)

    def fetch_failed(self, msg_id: MsgId) -> None:
        """The argument of a request announced by :meth:`fetch_begins` could not be fetched (its
        owner died): it is never submitted, and its source's later calls wait the gap only.

        Args:
            msg_id: the request.
        """
        self._core().forget_coming(msg_id)

    def abandon(self, msg_id: MsgId, waiter: Any = None) -> Abandoned:
        """A caller cancelled ``msg_id`` (``RouterCore.abandon``). Given up (the router had not taken it):
        its later calls go on at the next tick rather than after ``sequence_gap_ticks``; it never runs.
        Taken (``RUNS``): it runs, and ``waiter`` waits for its reply as a caller's does (answered through
        ``io.answer`` once it is released, or ``io.fail``), so that the caller learns it ran and settles it
        then (docs/faults.md row 82).

        Args:
            msg_id: the call.
            waiter: told when the call ran (only for ``RUNS``; not kept past ``waiters_max`` waiting calls,
                then the answer is ``UNKNOWN``).

        Returns:
            The core's answer (:class:`~ftactors.core.Abandoned`).
        """
        outcome = self._core().abandon(msg_id)
        if outcome is Abandoned.RUNS and waiter is not None:
            waiting = self.waiters.get(msg_id)
            if waiting is None:
                if len(self.waiters) >= self.waiters_max:
                    outcome = Abandoned.UNKNOWN
                else:
                    waiting = self.waiters[msg_id] = []
            if waiting is not None and waiter not in waiting:
                if len(waiting) < WAITERS_PER_CALL_MAX:
                    waiting.append(waiter)
                else:
                    outcome = Abandoned.UNKNOWN
        self.io.kick()
        return outcome

    def submit(self, req: Request, copy: bool = False, waiter: Any = None) -> Optional[Reply]:
        """A caller's request (or a backup's fetch of a nested reply copy, ``copy=True``).

        Args:
            req: the request.
            copy: a calling group's backup fetches its reply copy.
            waiter: answered through ``io.answer`` once the reply is released (ignored for a
                request that wants no reply, or when the reply is returned at once).

        Returns:
            The reply if it is known already (a duplicate), else None.

        Raises:
            GroupOverloadedError: too many requests wait (the core's or the host's bound).
            RemoteProtocolError: the core refused the request (a fenced sender, a stale view...).
        """
        core = self._core()
        cached = core.submit(req, copy)
        if cached is not None:
            return cached
        if req.wants_reply and waiter is not None:
            waiting = self.waiters.get(req.msg_id)
            if waiting is None:
                if len(self.waiters) >= self.waiters_max:
                    raise GroupOverloadedError(f"{self.group}: {len(self.waiters)} requests wait for replies")
                waiting = self.waiters[req.msg_id] = []
            if waiter not in waiting:
                assert len(waiting) < WAITERS_PER_CALL_MAX, f"{req.msg_id}: over {WAITERS_PER_CALL_MAX} waiters"
                waiting.append(waiter)
        self.io.kick()
        return None

    def on_delivered(self, answer: Delivered) -> None:
        """A replica answered a Deliver (``io.deliver``) by a Ray call: to the core, after any answer
        of that replica parked on its direct link before it (``Links.on_ray_answer``: a Ray-call answer
        taken ahead of a parked one was released out of order, docs/faults.md rows 46 and 47, seeds
        10435 and 100001)."""
        for a in self.links.on_ray_answer(answer.replica, answer):
            self._to_core(a)

    def _to_core(self, answer: Delivered) -> None:
        """Hand an answer to the core, in its turn."""
        self._core().on_delivered(answer)
        self.io.kick()

    def on_pong(self, rid: str) -> None:
        """``rid`` answered a ping (``io.ping``)."""
        if self.spares.heard(rid, self.io.ticks()):
            return
        self._core().on_pong(rid)

    def on_state_report(self, report: StateReport) -> None:
        """A replica answered a state query (``io.query``)."""
        self._core().on_state_report(report)
        self.io.kick()

    def on_failure(self, rid: str) -> None:
        """A call to ``rid`` failed: it died (Ray's ActorDiedError) or did not answer."""
        if self.spares.failed(rid, self.io.ticks()):  # the group is not touched; another starts later
            log.info("[%s] spare replica %s failed", self.group, rid)
            self.io.retire(rid)
            self.io.kick()
            return
        core = self._core()
        if rid in core.links or rid in core.joining:
            log.info("[%s] replica %s failed", self.group, rid)
        was_primary = rid == core.primary
        core.on_failure(rid)
        if was_primary:
            self.last_failover_s = self.io.wall_s()
            self._recovery_t0 = self.last_failover_s
        self.io.kick()

    # ------------------------------------------------------------ direct links

    def on_link_up(self, rid: str) -> None:
        """The direct link to ``rid`` (asked for by ``links.want_link``) is open."""
        self.links.on_up(rid, self.io.ticks())

    def on_link_unreachable(self, rid: str, why: str) -> bool:
        """No direct link to ``rid`` could be opened: its Delivers take Ray calls (not a failure).

        Returns:
            True the first time (warn once).
        """
        return self.links.on_unreachable(rid, why)

    def on_link_heard(self, rid: str) -> None:
        """A frame came on ``rid``'s link (a heartbeat's answer): it is alive, for the core too."""
        self.links.on_heard(rid, self.io.ticks())
        if self.core is not None:
            self.core.on_pong(rid)

    def on_link_answer(self, rid: str, heard: bool = True) -> None:
        """A Deliver sent on ``rid``'s link was answered (``heard``) or its wait ended (call before
        ``on_delivered``); a retiring link with nothing pending is closed."""
        if self.links.on_answer(rid, self.io.ticks(), heard):
            self.io.close_link(rid)

    def on_link_parked(self, rid: str) -> Tuple[Parked, int]:
        """``rid`` parked an answer on its link (call before ``on_link_answer``).

        Returns:
            (FETCH, ticket): fetch it with a Ray call, then :meth:`on_parked_fetched` or
            :meth:`on_parked_lost` with the ticket; or (DROP, 0).
        """
        return self.links.on_parked(rid)

    def on_link_delivered(self, rid: str, answer: Delivered) -> None:
        """A Delivered came on ``rid``'s link: to the core, after any parked answer that came before it."""
        for a in self.links.on_wire_answer(rid, answer):
            self._to_core(a)

    def on_parked_fetched(self, rid: str, ticket: int, answer: Delivered) -> None:
        """The parked answer ``ticket`` of ``rid`` was fetched: it, and what waited for it, go to the core."""
        for a in self.links.on_fetched(rid, ticket, answer):
            self._to_core(a)

    def on_parked_lost(self, rid: str, ticket: int) -> None:
        """Fetching the parked answer ``ticket`` of ``rid`` failed: it and what came after it are dropped."""
        self.links.on_fetch_lost(rid, ticket)

    def on_link_closed(self, rid: str, why: str) -> None:
        """``rid``'s direct link closed: an open link's close is a suspicion at once."""
        if self.links.on_closed(rid, why):
            log.info("[%s] replica %s suspected: its link closed (%s)", self.group, rid, why)
            if self.core is not None and not self.closed:
                self.on_failure(rid)

    def on_spawned(self, rid: str) -> bool:
        """Replica ``rid`` (``io.spawn``) started and is ready to join.

        Returns:
            False if the core refused it (it is a member already).
        """
        self.io.kick()
        if self.spares.started(rid, self.io.ticks()):
            log.debug("[%s] spare replica %s ready", self.group, rid)
            return True
        try:
            self._core().replica_started(rid)
        except LocalProtocolError as exc:
            log.debug("[%s] spawned replica %s refused: %s", self.group, rid, exc)
            return False
        return True

    def on_spawn_failed(self, rid: str) -> None:
        """Replica ``rid`` (``io.spawn``) could not be started: the core asks for another (a spare:
        the pool starts another after its respawn delay)."""
        if self.spares.start_failed(rid, self.io.ticks()):
            self.io.kick()
            return
        self._core().spawn_failed(rid)
        self.io.kick()

    def close(self, reason: str) -> None:
        """Shut down: fail every waiting caller with ``reason``; process nothing any more."""
        self.closed = True
        waiters, self.waiters = self.waiters, {}
        for mid, waiting in waiters.items():
            self.io.fail(mid, reason, waiting)

    def end(self, held: Iterable[str] = (), named: Iterable[str] = ()) -> List[str]:
        """The group is collected with its router (docs/faults.md row 86): which replicas to stop.
        From here on the host processes nothing (no replica starts any more).

        Args:
            held: the replicas the driver holds a way to stop (Ray: a handle), first in the answer.
            named: the group's replicas the control plane lists by name (Ray: its named actors):
                those being created, or left by an earlier incarnation, that this one never heard of.

        Returns:
            Every replica to stop, once each: ``held``, then the members, those joining, those asked for
            (spawning, or queued until a recovery ends), the warm spares (starting or ready), then
            ``named``. The driver stops each it can reach (Ray: by handle, else by name).
        """
        self.closed = True
        out: Dict[str, None] = dict.fromkeys(held)
        core = self.core
        if core is not None:
            out.update(dict.fromkeys(core.members))
            out.update(dict.fromkeys(sorted(core.joining)))
            out.update(dict.fromkeys(sorted(core.spawning)))
        out.update(dict.fromkeys(self._spawn_queue))
        out.update(dict.fromkeys(sorted(self.spares.starting)))
        out.update(dict.fromkeys(self.spares.ready))
        out.update(dict.fromkeys(sorted(named)))
        return list(out)

    # ------------------------------------------------------------ restart

    def rebuild(self, reports: Mapping[str, ViewInfo], known: Iterable[str] = ()) -> RebuiltView:
        """Take over the group after a restart, from what its replicas reported.

        Args:
            reports: ``replica id -> (view, members, role, counters)`` from every replica that answered.
            known: every replica id heard of (answered or not), for the spawn numbering.

        Returns:
            The view taken over (the same choice the simulator's router makes). Its ``orphans``, the
            replicas heard of outside it, are retired (``io.retire``): a member stopped while the
            router restarted would otherwise linger, a replica of no view, once it continues.

        Raises:
            LookupError: no live replica answered (the group is lost).
        """
        assert self.core is None, "rebuild of a router that runs"
        rebuilt = rebuilt_view({rid: r[:3] for rid, r in reports.items()}, known=known)
        core = self.core = RouterCore.rebuilt(self.group, self.config, rebuilt.members, rebuilt.view,
                                              rebuilt.next_replica_index, self.io.ticks())
        # the counters go on from the highest the replicas kept for the router before the restart
        for counts in (r[3] for r in reports.values() if len(r) > 3 and r[3]):
            for k, n in counts.items():
                self.saved_counts[k] = max(self.saved_counts.get(k, 0), n)
        for k, n in self.saved_counts.items():
            core.counts[k] = core.counts.get(k, 0) + n
        self._logged_view = rebuilt.view
        log.info("[%s] router restarted: rebuilt view %d from %s", self.group, rebuilt.view, rebuilt.members)
        for rid in rebuilt.orphans:
            log.info("[%s] router restarted: retiring %s, outside view %d", self.group, rid, rebuilt.view)
            self.io.retire(rid)
        return rebuilt

    # ------------------------------------------------------------ driving

    def tick(self) -> None:
        """One tick passed: advance the core's clock, save the counters when due, then process."""
        core = self.core
        if core is None or self.closed:
            return
        now = self.io.ticks()
        if self._last_tick is not None and now - self._last_tick > self.config.heartbeat_ticks:
            self.spares.excuse(now - self._last_tick)  # as the core's tracker: the router did not run
        self._last_tick = now
        core.tick(now)
        if now >= self._next_save_tick:
            self._next_save_tick = now + self.counts_every_ticks
            self.save_counts()
        self.tick_links(now)
        self.tick_spares(now)
        self.process()

    def tick_spares(self, now: int) -> None:
        """The spares' pings; a spare silent ``timeout_ticks`` is stopped (another starts later)."""
        acts = self.spares.tick(now)
        for rid in acts.pings:
            self.io.ping(rid)
        for rid in acts.lost:
            log.info("[%s] spare replica %s silent; stopped", self.group, rid)
            self.io.retire(rid)

    def tick_links(self, now: int) -> None:
        """The links' heartbeats; a replica that missed ``heartbeat_misses_max`` of them is suspected
        (a hung or partitioned one: no close comes) and failed."""
        acts = self.links.tick(now)
        for rid in acts.heartbeats:
            self.io.heartbeat(rid)
        for rid in acts.close:
            self.io.close_link(rid)
        for rid in acts.suspects:
            log.info("[%s] replica %s suspected: missed %d heartbeats on its link", self.group, rid,
                     self.links.settings.heartbeat_misses_max)
            self.on_failure(rid)

    def save_counts(self) -> None:
        """Send the core's counters to the members if they changed: a restarted router goes on from them.
        A change of ``heartbeats`` alone (an idle group's pings) is not worth a Ray call to every member."""
        core = self._core()
        if core.counts == self.saved_counts or \
                {**core.counts, **LIVENESS_COUNTS} == {**self.saved_counts, **LIVENESS_COUNTS}:
            return
        self.saved_counts = dict(core.counts)
        for rid in core.members:
            self.io.save_counts(rid, dict(core.counts))

    def process(self) -> None:
        """Carry out everything the core asks for, in its order (raft's ``Ready``)."""
        core = self.core
        if core is None or self.closed:
            return
        self._note_view(core)
        r = core.ready()
        io = self.io
        for rid, msg in r.sends:
            seq = self.link_seq[rid] = self.link_seq.get(rid, 0) + 1
            io.deliver(rid, msg, self.epoch, seq)
        assert len(self.link_seq) <= LINKS_MAX, f"{self.group}: Delivers numbered for over {LINKS_MAX} replicas"
        for rep in r.released:
            io.answer(rep, self.waiters.pop(rep.msg_id, ()))
        for mid, reason in r.failed:
            io.fail(mid, reason, self.waiters.pop(mid, ()))
        for mid in r.fenced:
            io.fence(mid, self.waiters.pop(mid, ()))
        for rid in r.pings:  # a link's heartbeat costs microseconds, a Ray call about a millisecond
            if self.links.is_up(rid):
                io.heartbeat(rid)  # its answer: on_link_heard, which tells the core
            else:
                io.ping(rid)
        for rid in r.queries:
            io.query(rid, self.epoch)
        self._spawn_queue.extend(r.spawns)
        assert len(self._spawn_queue) <= SPAWN_QUEUE_MAX, f"{self.group}: over {SPAWN_QUEUE_MAX} spawns wait"
        if self._spawn_queue and core.phase != Phase.RECOVERING:
            # a replica starts once the recovery is over: starting one is slow (Ray takes 50-150 ms
            # of the creating thread) and would hold up the state queries and the new primary
            spawns, self._spawn_queue = self._spawn_queue, []
            for rid in spawns:
                spare = self.spares.take(io.ticks()) if rid in core.spawning else None
                if spare is None:
                    io.spawn(rid)
                    continue
                # no process starts during the failover: the spare joins by state transfer
                log.info("[%s] spare replica %s replaces a member (view %d)", self.group, spare, core.view)
                core.adopt_spare(rid, spare)
                io.kick()
        self._start_spares(core)
        for rid in r.retired:
            log.debug("[%s] replica %s left the view (view %d)", self.group, rid, core.view)
            if self.links.retire(rid):  # else it retires until its pending answers came
                io.close_link(rid)
            io.retire(rid)

    def _start_spares(self, core: RouterCore) -> None:
        """Start the spares the pool lacks, once the group is quiet: no recovery, join or spawn runs
        (a process starting competes for the CPU with the failover and the state transfer)."""
        if not self.spares.settings.spares:  # no pool (the default): nothing to start, no clock read
            return
        if core.phase != Phase.NORMAL or core.joining or core.spawning or self._spawn_queue:
            return
        for _ in range(self.spares.missing(self.io.ticks())):
            rid = core.new_replica_id()
            self.spares.starts(rid)
            self.io.spawn(rid)

    def _note_view(self, core: RouterCore) -> None:
        """Recovery timing, one log line per view change, and the counters saved at once after one
        (a failover must survive a router restart right after it)."""
        recovered = ""
        if self._recovery_t0 is not None and core.phase == Phase.NORMAL:
            self.last_recovery_ms = 1000 * (self.io.wall_s() - self._recovery_t0)
            recovered = f" (recovered in {self.last_recovery_ms:.0f} ms)"
            self._recovery_t0 = None
        if core.view != self._logged_view:
            self._logged_view = core.view
            members = list(core.members)
            log.info("[%s] view %d: primary %s, backups %s%s", self.group, core.view,
                     members[0] if members else None, members[1:], recovered)
            self.save_counts()

    def _core(self) -> RouterCore:
        core = self.core
        assert core is not None, f"{self.group}: the router host has no core yet (rebuild first)"
        return core

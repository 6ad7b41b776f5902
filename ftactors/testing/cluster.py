"""The deterministic fault simulator: one seed decides the whole run.

``Simulator(options).run()`` builds the groups (one, or a frontend calling a
backend), lets clients issue their scripts through lossy, duplicating,
reordering links, injects crashes, pauses and router restarts during the
*safety phase*, then stops faults for the *liveness phase* in which every
request must complete within ``options.liveness_bound_ticks`` (I6). Invariants
are checked after every step (:mod:`ftactors.testing.invariants`).

Links, as Ray provides them:

* client <-> router and group <-> group (nested calls): random delay, loss,
  duplication, hence reordering; senders retransmit with the same MsgId;
* router <-> replica: FIFO per (router incarnation, replica), reliable while
  both live; a call to a dead replica fails (``on_failure``) after a small
  delay; a paused replica is only found out by missing pongs.
* with the direct data plane (``SimOptions.direct``): the router's link to each replica,
  FIFO both ways, run by the host's link decisions (:mod:`ftactors.host.links`): it opens on
  the first Deliver (or falls back to Ray calls, ``p_unreachable``); a crashed replica's link
  closes within ``LINK_CLOSE_TICKS_MAX`` (Ray's death notice takes longer:
  ``RAY_NOTICE_TICKS``); a paused or partitioned replica (``p_partition``: its traffic is held,
  no close comes) is found by missed heartbeats; an answer may be parked (``p_parked``) and
  fetched with a Ray call; a Deliver holding an object reference takes a Ray call. Invariant
  I11 bounds how long a member whose link is up stays in the view once it went silent.

The cores never see the random generator: all randomness is here.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ftactors.core import (
    Abandoned,
    CancelRenotices,
    ClientCore,
    Deliver,
    Delivered,
    GroupOverloadedError,
    MsgId,
    NewView,
    Outcome,
    Phase,
    RemoteProtocolError,
    ReplicaCore,
    Reply,
    Request,
    Role,
    StateReport,
    nested_source,
)
from ftactors.spec import GroupSpec
from ftactors.testing import invariants
from ftactors.host.links import LinkState
from ftactors.host.replica import OrphanWatch
from ftactors.host.router import RouterHost
from ftactors.testing.events import (
    AbandonArrives,
    ArgumentFetched,
    CancelCall,
    CancelNotice,
    ClientIssue,
    ClientRetry,
    Endpoint,
    Event,
    FailureNotice,
    FetchParked,
    HistoryOp,
    LinkClosed,
    LinkOpened,
    ParkedAnswer,
    NestedRetry,
    NoticeAnswered,
    OnewayCrash,
    Pong,
    PullArrives,
    RenoticeDue,
    ReplyArrives,
    RequestArrives,
    RouterRestart,
    SpawnReady,
    StopReplica,
    TimerFires,
    ToReplica,
    ToRouter,
    ToRouterMsg,
    WakeReplica,
)
from ftactors.testing.hosts import (
    ClientHost,
    InvariantViolation,
    ObjectStore,
    OwnerDiedError,
    ReplicaHost,
    ScriptOp,
    SimRouter,
)
from ftactors.testing.models import GATHER_TASKS_MAX, MODELS, ByRef, Frontend, Model
from ftactors.testing.options import SimOptions

#: What a router reads (a starved router reads them once it runs again): callers' calls, fetched
#: arguments, backups' pulls, replicas' answers, Ray's death notices, spawns and its links' events
ROUTER_BOUND = (RequestArrives, ArgumentFetched, PullArrives, ToRouter, FailureNotice, SpawnReady, LinkOpened,
                LinkClosed, AbandonArrives)

#: a cancelled call is settled at once (its ``ack_below`` passes it), as the runtime's caller did before
#: docs/faults.md row 72 (its sweep settled a cancelled result): True replays that, to show the row's failure
SETTLE_CANCELLED = False
#: a cancelled call whose notice got no settling answer (lost with its router, "unknown", or a waiter that
#: died with its router) is noticed again (``core.CancelRenotices``, as ``runtime/api.py:_Caller.renotice``;
#: docs/faults.md row 88): False replays the caller of before, whose call stayed unsettled for good
RENOTICE_CANCELLED = True
#: the re-notices' timing (simulator ticks) and bound: ``renotice_ticks`` after an answer "unknown" or a
#: failed notice (its router down when it arrived, or dead while the notice waited for the call to run, as
#: Ray's call fails with its actor), ``answer_wait_ticks`` after a notice with no answer (a backstop: every
#: notice gets one); each re-notice reaches the router a tick later
RENOTICE_TICKS = 10
RENOTICE_ANSWER_WAIT_TICKS = 200
RENOTICES_MAX = 16
#: bound on simultaneously scheduled events
EVENTS_MAX = 200_000
#: resources requests may need (resource scheduling)
RESOURCES = ("disk", "net")
#: the longest the simulator waits for quiescence after the last operation
QUIESCE_TICKS_MAX = 400
#: direct data plane: a crashed replica's link closes within this many ticks (the OS closes its socket)
LINK_CLOSE_TICKS_MAX = 2
#: direct data plane: Ray's death notice (a failed call to a dead replica) takes this long, slower
#: than the link's close
RAY_NOTICE_TICKS = (4, 10)
#: a group's end (``SimOptions.group_end``): Ray stops a replica its router ended within this many ticks
#: (``ray.kill``), and starts one asked for before within ``SPAWN_TICKS_MAX`` (``Simulator._spawn``)
KILL_TICKS_MAX = 3
SPAWN_TICKS_MAX = 6
#: a router restarting answers its name lookups "unreachable" (None) this often (the control plane busy)
P_LOOKUP_UNREACHABLE = 0.3
#: the most ticks waited for a replacement to be asked for before a group is ended with it spawning
END_SPAWN_WAIT_TICKS_MAX = 120
#: a spawned replica's orphan watch counts from its start (docs/faults.md row 89); False replays the Ray
#: replica before the row (it counted only from the router's first call), to show the row's failure
SPAWNED_WATCH_FROM_START = True


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did, for the swarm summary.

    Args:
        seed: the seed.
        ticks: simulated ticks.
        ops: client operations completed.
        counts: simulator counters (faults, retries...).
    """

    seed: int
    ticks: int
    ops: int
    counts: Dict[str, int]


class Simulator:
    """A whole replicated system under one seed.

    Args:
        options: the run's options (see :func:`ftactors.testing.options.draw_options`).

    Example:
        >>> from ftactors.testing import Simulator, draw_options
        >>> Simulator(draw_options(7)).run().ops > 0
        True
    """

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        #: the draws of ``p_router_crash_paused`` (its own stream: the other draws keep their values)
        self.paused_rng = random.Random(f"paused-run-{options.seed}")
        #: the draws of ``p_router_crash_failover`` (its own stream), and the groups whose primary crashed
        #: and whose failover is not over yet, with the crashed primary (``crash_router_after_failover``)
        self.dblfault_rng = random.Random(f"dblfault-run-{options.seed}")
        self.failing_over: Dict[str, str] = {}
        # gathered sub-tasks: which operations gather, the tasks' interleaving and their values, each
        # on streams of their own, so that the seeds drawn before them keep every choice
        self.gather_rng = random.Random(f"gather-ops-{options.seed}")
        self.tasks_rng = random.Random(f"tasks-{options.seed}")
        self.fetch_rng = random.Random(f"fetch-ops-{options.seed}")  # how long each router fetch takes
        # one-way nested calls: which frontend calls make theirs one-way, and the crashes of their
        # primary while one is on its way, each on a stream of its own (the other draws keep their values)
        self.oneway_ops_rng = random.Random(f"oneway-ops-{options.seed}")
        self.oneway_rng = random.Random(f"oneway-run-{options.seed}")
        # ray.cancel (``p_cancel``): which calls, when, and their notices' delays, on a stream of its own;
        # the calls cancelled, and those a router reported given up: (group, router incarnation, tick)
        self.cancel_rng = random.Random(f"cancel-run-{options.seed}")
        self.cancelled: Set[MsgId] = set()
        self.abandoned: Dict[MsgId, Tuple[str, int, int]] = {}
        # the router's answers "ran" to the notices of calls it had taken (row 82): their delays on a stream of
        # their own (the cancels keep their draws), and the tick each caller settled its call on one
        self.notice_rng = random.Random(f"cancel-notice-{options.seed}")
        self.settled_ran: Dict[MsgId, int] = {}
        # the notices sent again (row 88): per client, the calls whose notice got no settling answer, the tick
        # of its next scheduled look (``RenoticeDue``), and each cancelled call's group (no draws: the
        # re-notices are deterministic from the ticks)
        self.renotices: Dict[str, CancelRenotices] = {}
        self.renotice_at: Dict[str, int] = {}
        self.cancel_group: Dict[MsgId, str] = {}
        # a group's end (``group_end``, rows 86 and 89): its draws (lookups, kills, the fault before) on a
        # stream of their own; the groups ended (their routers gone for good) with the tick, and the
        # incarnation that ended (a replica it asked for still starts: Ray creates it)
        self.collect_rng = random.Random(f"collect-run-{options.seed}")
        self.gone: Dict[str, int] = {}
        self.ended_incarnation: Dict[str, int] = {}
        self.now = 0
        self.queue: List[Tuple[int, int, Event]] = []
        self._seq = itertools.count()
        self.fifo: Dict[Tuple[Any, ...], int] = {}
        self.counts: Tally = Tally()
        self.groups: Dict[str, GroupSpec] = {}
        self.models: Dict[str, Model] = {}  # what each group's replicas run (the simulator's own)
        self.routers: Dict[str, SimRouter] = {}
        self.replicas: Dict[str, Dict[str, ReplicaHost]] = {}
        self.next_index: Dict[str, int] = {}
        self.clients: Dict[str, ClientHost] = {}
        self.history: List[HistoryOp] = []
        self.last_issue = 0  # when a client last issued a call
        self.nested_seen: Dict[Any, Any] = {}
        # nested calls whose reply was gone at the callee and whose caller's method got the error
        # instead (ReplicaCore.suspended_reply_gone): the replay of the caller's order raises it too
        self.nested_gone: Dict[Any, Any] = {}
        self.nested_senders: Dict[Any, str] = {}  # nested request -> the replica that sent it first
        self.faults_on = options.faults
        self.replaced: Set[str] = set()  # groups whose backup replace_backup killed
        self.store = ObjectStore()
        self.results_in_flight: set = set()  # results on their way to Ray callers (client_fifo)
        self.needs_resources: set = set()  # client calls that need a resource (at most one per operation)
        self.checker = invariants.Checker(self)
        self.count("direct_runs", int(options.direct))
        self.count("spare_runs", int(options.spares > 0))
        self._build()

    # ----------------------------------------------------------------- setup

    def _build(self) -> None:
        opts = self.options
        cfg = opts.core_config()
        backend = MODELS[opts.model]()
        self._add_group(GroupSpec("store", cfg, opts.scheduling), backend)
        if opts.nested:
            self._add_group(GroupSpec("front", cfg, opts.scheduling), Frontend("store", backend))
        for i in range(opts.clients):
            script = deque(self._draw_op() for _ in range(opts.ops_per_client))
            self.clients[f"c{i}"] = ClientHost(ClientCore(f"c{i}", cfg.carried_announcements_max), script,
                                               window=opts.window)
            self.schedule(self.rng.randint(1, 5), ClientIssue(f"c{i}"))

    def _add_group(self, spec: GroupSpec, model: Model) -> None:
        members = tuple(f"{spec.group}-r{i}" for i in range(self.options.replicas))
        self.groups[spec.group] = spec
        self.models[spec.group] = model
        self.routers[spec.group] = SimRouter(self, spec.group, spec.config, members)
        self.next_index[spec.group] = len(members)
        view = NewView(1, members)
        self.replicas[spec.group] = {
            m: ReplicaHost(self, spec.group, ReplicaCore(spec.group, m, spec.config, spec.scheduling, view), model,
                           orphan=self._orphan_watch(started=True))
            for m in members
        }

    def _orphan_watch(self, started: bool) -> Optional[OrphanWatch]:
        """A new replica's orphan rule (None where the seed does not run it).

        Args:
            started: it counts from now (a first replica; any replica since row 89), else from the
                router's first call (``SPAWNED_WATCH_FROM_START`` False, a spawned replica).

        Returns:
            The watch, or None.
        """
        if not self.options.orphan_timeout_ticks:
            return None
        return OrphanWatch(self.options.orphan_timeout_ticks, self.now if started else None)

    def _draw_op(self) -> ScriptOp:
        """A random operation: a model's method, perhaps wrapped (long, reading now()/random(),
        raising, poisoned), perhaps one-way, perhaps with its arguments passed by reference."""
        opts, rng = self.options, self.rng
        group = "front" if opts.nested and rng.random() < 0.75 else "store"
        method, args = self.models[group].random_op(rng)
        if method == "fwd" and opts.p_oneway_nested and self.oneway_ops_rng.random() < opts.p_oneway_nested:
            method = "fwd1"  # its nested call one-way
        if opts.p_long and rng.random() < opts.p_long:
            method, args = "slow", (rng.randint(2, opts.long_ticks_max), method, args)
        if opts.p_ring or opts.p_timer:
            method, args = self._draw_async_op(group, method, args)
        if opts.p_gather and self.gather_rng.random() < opts.p_gather:
            method, args = "gathered", (self.gather_rng.randint(2, GATHER_TASKS_MAX), method, args)
        if opts.p_stamped and rng.random() < opts.p_stamped:
            method, args = "stamped", (method, args)
        r = rng.random()
        if r < opts.p_raising:
            method, args = "raising", (method, args)
        elif r < opts.p_raising + opts.p_poison:
            method, args = "poison", (rng.choice(("exit", "interrupt")), method, args)
        oneway = bool(opts.p_oneway) and rng.random() < opts.p_oneway
        byref = bool(opts.p_byref) and rng.random() < opts.p_byref
        return ScriptOp(group, method, tuple(args), oneway=oneway, byref=byref)

    def _draw_async_op(self, group: str, method: str, args: Tuple[Any, ...]) -> Tuple[str, Tuple[Any, ...]]:
        """With async steps: perhaps a re-entrant ring instead of a frontend operation (front ->
        store -> front), perhaps a sleep first (in a ring, in the store's part, so the store's call
        sleeps while the front's waits on it)."""
        opts, rng = self.options, self.rng
        ring = group == "front" and rng.random() < opts.p_ring
        nap = rng.random() < opts.p_timer
        ticks = rng.randint(1, opts.nap_ticks_max)
        if ring:
            inner, inner_args = self.models["store"].random_op(rng)
            if nap:
                inner, inner_args = "nap", (ticks, inner, inner_args)
            self.count("rings_drawn")
            return "ring", (rng.randint(1, 99), inner, inner_args)
        return ("nap", (ticks, method, args)) if nap else (method, args)

    # ------------------------------------------------------------ scheduling

    def schedule(self, delay: int, event: Event) -> None:
        """Fire ``event`` ``delay`` ticks from now (at least 1)."""
        assert len(self.queue) < EVENTS_MAX, f"more than {EVENTS_MAX} events scheduled"
        heapq.heappush(self.queue, (self.now + max(1, delay), next(self._seq), event))

    def count(self, what: str, n: int = 1) -> None:
        """Add to a simulator counter."""
        self.counts[what] += n

    def _lossy(self, event: Event) -> None:
        """Send on a client or group<->group link: delay, maybe drop, maybe duplicate."""
        opts = self.options
        if opts.client_fifo and isinstance(event, ReplyArrives) and event.to.is_client:
            self.schedule(self.rng.randint(1, opts.delay_max), event)  # a Ray result: delayed, never lost
            self.results_in_flight.add(event.reply.msg_id)  # ...and never retried (see _resubmit)
            return
        if self.faults_on and self.rng.random() < opts.p_drop:
            self.count("dropped")
            return
        self.schedule(self.rng.randint(1, opts.delay_max), event)
        if self.faults_on and self.rng.random() < opts.p_dup:
            self.count("duplicated")
            self.schedule(self.rng.randint(1, opts.delay_max), event)

    def _fifo(self, key: Tuple[Any, ...], event: Event, held_until: int = 0, overtake: int = 0) -> None:
        """Send on a FIFO link: random delay, never overtaking an earlier message by more than
        ``overtake`` ticks (``held_until``: a partition holds it until then)."""
        last = self.fifo.get(key, 0)
        at = max(self.now + self.rng.randint(1, self.options.link_delay_max), last - overtake, held_until)
        self.fifo[key] = max(at, last)
        self.count("caller_overtakes", int(at < last))
        assert len(self.queue) < EVENTS_MAX
        heapq.heappush(self.queue, (at, next(self._seq), event))

    # ------------------------------------------------------------ host API

    def to_router(self, group: str, incarnation: int, replica: str, msg: ToRouterMsg, wire: bool = False) -> None:
        """A replica answers its router (dropped if that incarnation is dead); ``wire``: on the direct
        link, where an answer may be parked (``p_parked``: the router fetches it with a Ray call)."""
        if incarnation != self.routers[group].incarnation:
            return
        if wire and isinstance(msg, Delivered) and self.options.p_parked and self.rng.random() < self.options.p_parked:
            msg = ParkedAnswer(msg)
            self.count("parked")
        key = ("wire-up" if wire else "up", group, incarnation, replica)
        self._fifo(key, ToRouter(group, incarnation, replica, msg, wire), self._held_until(group, replica))

    def send_reply(self, who: Any, reply: Reply) -> None:
        """A router answers a client or a calling replica (a lossy link), or the notice of a cancelled call
        it had taken (a :class:`CancelNotice`: the answer "ran" of ``_AsyncRouter.abandon``)."""
        if isinstance(who, CancelNotice):
            self._notice_ran(who.msg_id)
            return
        self._lossy(ReplyArrives(who, reply))

    def send_nested(self, host: ReplicaHost, req: Request, pull: bool) -> None:
        """A replica sends a nested request (primary) or pulls its reply copy (backup)."""
        self.count("nested_pulls" if pull else "nested_sends")
        if not pull:
            self.nested_senders.setdefault(req.msg_id, host.rid)
        event = PullArrives(req.group, req, host.endpoint) if pull else RequestArrives(req.group, req, host.endpoint)
        self._lossy(event)

    def send_oneway(self, host: ReplicaHost, req: Request, resend: bool = False) -> None:
        """A primary sends a one-way nested call (``resend``: a promoted primary sends again one its
        dead primary may have lost) and retransmits it until the callee's router took it. With
        ``p_oneway_nested_crash`` the primary may crash while it is on its way (``OnewayCrash``)."""
        self.count("oneway_nested_sent", int(not resend))
        self.send_nested(host, req, pull=False)
        self.schedule_nested_retry(host, req.msg_id)
        p = self.options.p_oneway_nested_crash
        if p and self.faults_on and not resend and self.oneway_rng.random() < p:
            delay = self.oneway_rng.randint(1, max(1, self.options.link_delay_max))
            self.schedule(delay, OnewayCrash(host.group, host.rid, req.msg_id))

    def _on_OnewayCrash(self, ev: OnewayCrash) -> None:
        """The primary that sent the one-way call ``ev.msg_id`` crashes, if the call is still on its way
        (its callee's router has not taken it), its calling message finished and its group is stable."""
        host = self.replicas[ev.group].get(ev.replica)
        if host is None or not host.alive or host.core.role != Role.PRIMARY or \
                ev.msg_id not in host.core.oneway_out:
            self.count("oneway_nested_crash_missed")
            return
        ex = host.core.executing
        if ex is not None and nested_source(ev.group, ex.request.msg_id) == ev.msg_id.source:
            self.count("oneway_nested_crash_missed")  # its method still runs (a long one)
            return
        if self.crash_replica(ev.group, ev.replica):
            self.count("oneway_nested_crashes")
        else:
            self.count("oneway_nested_crash_missed")

    def schedule_nested_retry(self, host: ReplicaHost, msg_id: Any) -> None:
        """Arm the retransmission timer of a nested request."""
        self.schedule(self.options.retry_ticks, NestedRetry(host.group, host.rid, msg_id))

    def schedule_timer(self, host: ReplicaHost, msg_id: Any, timer: Any, ticks: int) -> None:
        """Arm a replica's timer: an async method sleeps ``ticks`` ticks."""
        self.schedule(ticks, TimerFires(host.group, host.rid, msg_id, timer))

    def record_nested(self, reply: Reply) -> None:
        """A replica consumed a nested reply; all copies of one must agree (I3)."""
        answer = (reply.position, reply.outcome.value)
        gone = self.nested_gone.get(reply.msg_id)
        if gone is not None:  # the copy of the error a new primary's method got (note_nested_gone)
            if answer != (0, gone):
                raise InvariantViolation(f"I3: nested {reply.msg_id} answered {answer}, after its caller's "
                                         f"primary resumed it on {gone}")
            return
        seen = self.nested_seen.setdefault((reply.group, reply.msg_id), answer)
        if seen != answer:
            raise InvariantViolation(f"I3: nested {reply.msg_id} answered differently: {seen} vs {answer}")

    def sent_before_by_another(self, msg_id: Any, rid: str) -> bool:
        """Whether nested request ``msg_id`` was first sent by a replica other than ``rid``: an earlier
        primary ran the step that makes it (unannounced, docs/faults.md row 55, or replayed since), so
        its callee may have run it and forgotten it before ``rid`` sent it again. A call ``rid`` sent
        first whose reply reads gone is a callee that forgot it while its reply was on its way (I6).

        Args:
            msg_id: the nested request.
            rid: the replica that met its reply read gone.

        Returns:
            True if another replica sent it first.
        """
        first = self.nested_senders.get(msg_id)
        return first is not None and first != rid

    def note_nested_gone(self, msg_id: Any, raised: Any) -> None:
        """A primary resumes a call on the error of its nested call ``msg_id``, whose reply its callee
        forgot (``ReplicaCore.suspended_reply_gone``): the replay answers that call with ``raised``.
        (The dead primary may have consumed the real reply: its resume step was never announced.)
        """
        self.count("nested_replies_gone")
        self.nested_gone[msg_id] = raised

    def on_executed(self, host: ReplicaHost, entry: Any) -> None:
        """A replica executed a message: incremental checks (I1, I3, I4)."""
        self.checker.on_executed(host, entry)

    def protocol_error(self, host: ReplicaHost, exc: Exception) -> None:
        """A replica rejected a Deliver as malformed: fine for a zombie, a bug for a member."""
        self.count("protocol_errors")
        router = self.routers[host.group].core
        if router is not None and host.rid in router.members and host.core.role != Role.FENCED:
            raise InvariantViolation(f"protocol: member {host.rid} rejected a Deliver: {exc}")

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, ev: Event) -> None:
        if isinstance(ev, ROUTER_BOUND) or (isinstance(ev, FetchParked) and ev.back):
            router = self.routers[ev.group]
            if router.starved_until >= self.now:
                router.unread.append(ev)  # its process gets no CPU: it reads this once it runs again
                return
        handler = getattr(self, "_on_" + type(ev).__name__)
        handler(ev)

    def _wake_routers(self) -> None:
        """Routers whose starvation ended: the router's timer runs first (a tick after a long gap),
        then it reads what reached it meanwhile, in arrival order (docs/faults.md, row 40)."""
        for group, router in self.routers.items():
            if router.starved_until and router.starved_until < self.now:
                router.starved_until, router.woke_at = 0, self.now
                self._flush(group)
                unread, router.unread = router.unread, []
                for ev in unread:
                    self._dispatch(ev)

    def starve_router(self, group: str, ticks: Optional[int] = None) -> bool:
        """Give the router of ``group`` no CPU for ``ticks`` (random if None): it neither ticks nor reads.

        Returns:
            True if the router was starved (not while it is down, rebuilding or starved already, nor,
            unless ``starve_unstable``, while its group is not stable: one fault at a time).
        """
        router = self.routers[group]
        if router.core is None or router.starved_until:
            return False
        if not self.options.starve_unstable and not self.stable(group):
            return False  # one fault at a time: not while a failover or a join is under way
        router.starved_until = self.now + (ticks or self.rng.randint(1, self.options.router_starve_max))
        self.count("router_starvations")
        return True

    def _on_ClientIssue(self, ev: ClientIssue) -> None:
        client = self.clients[ev.client]
        while (req := client.next_request(self.now, self._hints(), self.store)) is not None:
            self.last_issue = self.now
            self.count("calls")
            self.count("oneway_calls", int(client.outstanding[req.msg_id][1].oneway))
            self.count("byref_args", int(not isinstance(req.payload, tuple)))
            if req.resources:
                self.needs_resources.add(req.msg_id)  # a scheduler may pass over it (I10)
            self._send_request(client, req)
            self.schedule(self.options.retry_ticks, ClientRetry(client.name, req.msg_id))
            if self.options.p_cancel and not client.outstanding[req.msg_id][1].oneway and \
                    self.cancel_rng.random() < self.options.p_cancel:
                self.count("cancels_drawn")
                self.schedule(self.cancel_rng.randint(0, self.options.cancel_ticks_max),
                              CancelCall(client.name, req.msg_id))
        self._maybe_exit(client)

    def _on_CancelCall(self, ev: CancelCall) -> None:
        """A client cancels a call whose result it has not got (``ray.cancel``): it gives the call up (no
        retry; Ray resubmits no cancelled call to a restarted router), and its process sends the router the
        notice (``runtime/api.py:cancel``), a Ray call of its own that may overtake the call or come after the
        router took it. Copies of the call already on their way still arrive (a retry of Ray's racing the
        cancel). Its ``ack_below`` passes it only if the router gives it up (:meth:`_on_AbandonArrives`;
        ``SETTLE_CANCELLED``: at once, as the runtime did before docs/faults.md row 72)."""
        client = self.clients[ev.client]
        entry = client.outstanding.pop(ev.msg_id, None)
        if entry is None:
            self.count("cancels_too_late")  # its result came first: Ray's cancel does nothing
            return
        self.count("cancels")
        self.cancelled.add(ev.msg_id)
        if SETTLE_CANCELLED:
            client.core.on_settled(ev.msg_id.seq)
        self.schedule(self.cancel_rng.randint(0, self.options.delay_max), AbandonArrives(entry[0].group, ev.msg_id))
        self.schedule(self.cancel_rng.randint(1, 4), ClientIssue(client.name))  # its window has room again
        self.cancel_group[ev.msg_id] = entry[0].group
        if RENOTICE_CANCELLED and not SETTLE_CANCELLED:
            renotices = self.renotices.get(client.name)
            if renotices is None:
                renotices = self.renotices[client.name] = CancelRenotices(
                    RENOTICE_TICKS, RENOTICE_ANSWER_WAIT_TICKS, RENOTICES_MAX)
            renotices.cancelled(ev.msg_id.seq, self.now)
            self._schedule_renotice(client.name)

    def _schedule_renotice(self, client: str) -> None:
        """Schedule the client's next look for notices to send again (one at a time, the earliest due)."""
        due = self.renotices[client].next_due()
        if due is None:
            return
        at = self.renotice_at.get(client)
        if at is not None and self.now < at <= due:
            return  # an earlier look is scheduled: it schedules the next
        self.renotice_at[client] = due
        self.schedule(max(1, due - self.now), RenoticeDue(client))

    def _on_RenoticeDue(self, ev: RenoticeDue) -> None:
        """A client sends again the notices of its cancelled calls that got no settling answer in time
        (``CancelRenotices.due``; ``runtime/api.py:_Caller.renotice``, docs/faults.md row 88); a process gone
        sends none."""
        if self.renotice_at.get(ev.client) != self.now:
            return  # superseded by an earlier look
        del self.renotice_at[ev.client]
        renotices = self.renotices[ev.client]
        if self.clients[ev.client].exited:
            self.renotices[ev.client] = CancelRenotices(RENOTICE_TICKS, RENOTICE_ANSWER_WAIT_TICKS, RENOTICES_MAX)
            return
        due = renotices.due(self.now)
        if due.dropped:
            self.count("cancels_left_unsettled", len(due.dropped))
        for seq in due.send:
            self.count("cancel_renotices")
            mid = MsgId(ev.client, seq)
            self.schedule(1, AbandonArrives(self.cancel_group[mid], mid, again=True))
        self._schedule_renotice(ev.client)

    def _cancel_answered(self, msg_id: MsgId, settled: bool) -> None:
        """The answer to a notice of cancelled call ``msg_id`` reaches its caller's re-notices (row 88)."""
        renotices = self.renotices.get(msg_id.source)
        if renotices is not None:
            renotices.answered(msg_id.seq, settled, self.now)
            if not settled:
                self._schedule_renotice(msg_id.source)

    def renotices_pending(self) -> bool:
        """True while a live client may still send again the notice of a cancelled call (row 88)."""
        return any(len(r) for name, r in self.renotices.items() if not self.clients[name].exited)

    def _on_AbandonArrives(self, ev: AbandonArrives) -> None:
        """The notice of a cancelled call reaches the router: ``RouterHost.abandon``, as ``_AsyncRouter.abandon``
        calls it. A router down drops it (its caller learns that it failed and sends it again, as on "unknown": row 88). A call the router had taken
        runs: the notice waits for its reply (a :class:`CancelNotice` waiter, which dies with this router
        incarnation, as the Ray call fails with its actor), and the caller settles the call once told it ran
        (:meth:`_on_NoticeAnswered`; docs/faults.md row 82)."""
        router = self.routers[ev.group]
        host = router.host
        again = "renotice_" if ev.again else ""  # a notice sent again (row 88) is counted apart
        if host is None or host.core is None:
            self.count(f"cancel_{again}notices_lost")
            self._cancel_answered(ev.msg_id, False)  # the caller learns it failed (row 88)
            return
        outcome = host.abandon(ev.msg_id, CancelNotice(ev.msg_id))
        if outcome is Abandoned.GIVEN_UP:
            self.count(f"cancels_{again}abandoned")
            self.abandoned.setdefault(ev.msg_id, (ev.group, router.incarnation, self.now))
            self.clients[ev.msg_id.source].core.on_settled(ev.msg_id.seq)  # never runs: settled (``_given_up``)
            self._cancel_answered(ev.msg_id, True)
            return
        self.count(f"cancels_{again}taken")
        if outcome is Abandoned.RAN:
            self._notice_ran(ev.msg_id)
        elif outcome is Abandoned.RUNS:
            self.count(f"cancel_{again}notices_waiting")
        else:  # "unknown": the caller keeps it unsettled and notices it again (row 88)
            self._cancel_answered(ev.msg_id, False)

    def _notice_ran(self, msg_id: MsgId) -> None:
        """The router answers the notice of cancelled call ``msg_id``: it ran. The answer reaches the caller's
        process a link delay later (a Ray call's result: not lost once sent)."""
        self.schedule(self.notice_rng.randint(0, self.options.delay_max), NoticeAnswered(msg_id))

    def _on_NoticeAnswered(self, ev: NoticeAnswered) -> None:
        """The caller's process learns that its cancelled call ran and settles it (``_given_up``): its
        ``ack_below`` may pass it now (I12: only once it ran)."""
        self.checker.on_cancel_settled(ev.msg_id)
        self.count("cancels_settled_ran")
        self.settled_ran.setdefault(ev.msg_id, self.now)
        self.clients[ev.msg_id.source].core.on_settled(ev.msg_id.seq)
        self._cancel_answered(ev.msg_id, True)

    def _maybe_exit(self, client: ClientHost) -> None:
        """A client whose script is done may exit (``p_owner_exit``): the objects it owned are lost,
        and a replica that has not yet executed one of its calls by reference cannot fetch it."""
        if client.done and not client.exited and self.options.p_owner_exit and \
                self.rng.random() < self.options.p_owner_exit:
            client.exited = True
            self.count("owner_exits")
            self.count("objects_lost", self.store.owner_exited(client.name))

    def _hints(self) -> Dict[str, Any]:
        """Random scheduling hints of a request: priority, deadline, resources."""
        rng = self.rng
        resources = tuple(r for r in RESOURCES if rng.random() < 0.3)
        deadline = self.now + rng.randint(0, 60) if rng.random() < 0.7 else None
        return {"priority": rng.randint(0, 3), "deadline_tick": deadline, "resources": resources}

    def _on_ClientRetry(self, ev: ClientRetry) -> None:
        client = self.clients[ev.client]
        req = client.pending(ev.msg_id)
        if req is None:
            return
        self.count("client_retries")
        self._send_request(client, req)
        self.schedule(self.options.retry_ticks, ev)

    def _send_request(self, client: ClientHost, req: Request) -> None:
        """A client sends a call: on the lossy link, or (``client_fifo``) on a Ray caller's link to the
        router: FIFO per client and router incarnation, no loss or duplicate while that router lives."""
        sender = Endpoint("", client.name)
        if not self.options.client_fifo:
            self._lossy(RequestArrives(req.group, req, sender))
            return
        inc = self.routers[req.group].incarnation
        self._fifo(("client", client.name, req.group, inc), RequestArrives(req.group, req, sender, inc),
                   overtake=self.options.caller_overtake_ticks)

    def _resubmit(self, group: str) -> None:
        """A router restarted: Ray resubmits every unacknowledged call of a caller to it, in the caller's
        order (``client_fifo``; the lossy clients' retry timers do it by themselves)."""
        if not self.options.client_fifo:
            return
        for client in self.clients.values():
            for req, _ in list(client.outstanding.values()):
                # a call whose result is on its way completed for Ray: it is not retried
                if req.group == group and req.msg_id not in self.results_in_flight:
                    self.count("client_resubmits")
                    self._send_request(client, req)

    def _on_RequestArrives(self, ev: RequestArrives) -> None:
        router = self.routers[ev.group]
        host = router.host
        if host is None or host.core is None or (ev.incarnation and ev.incarnation != router.incarnation):
            self.count("lost_to_dead_router")
            return
        req = ev.request
        if isinstance(req.payload, ByRef) and req.payload.owner != router.owner:
            # the router fetches the caller's object and puts it again (``_RouterLoop.areply``): the
            # source's later calls wait for it meanwhile (``RouterHost.fetch_begins``)
            host.fetch_begins(req.msg_id)
            fetched = ArgumentFetched(ev.group, req, ev.sender, router.incarnation)
            if self.options.fetch_ticks_max:
                self.count("byref_fetches_delayed")
                self.schedule(self.fetch_rng.randint(1, self.options.fetch_ticks_max), fetched)
            else:
                self._on_ArgumentFetched(fetched)
            return
        self._submit(host, req, ev.sender, host.submit)

    def _on_ArgumentFetched(self, ev: ArgumentFetched) -> None:
        """The router's fetch of a call's argument is over: it owns the argument and submits the call
        (``RouterHost.fetched``), or the caller's object was gone (``RouterHost.fetch_failed``: Ray
        fails that invoke; its caller exited)."""
        router = self.routers[ev.group]
        host = router.host
        if host is None or host.core is None or ev.incarnation != router.incarnation:
            self.count("fetches_lost_with_router")
            return
        try:
            req = self._own_argument(router, ev.request)
        except OwnerDiedError:  # a retransmission of a caller that exited: Ray fails its invoke
            self.count("arguments_lost_at_router")
            host.fetch_failed(ev.request.msg_id)
            return
        self._submit(host, req, ev.sender, host.fetched)

    def _submit(self, host: RouterHost, req: Request, sender: Endpoint,
                submit: Callable[..., Optional[Reply]]) -> None:
        """Hand a caller's request to the router host (``submit`` or ``fetched``); answer a duplicate."""
        try:
            cached = submit(req, waiter=sender)
        except (RemoteProtocolError, GroupOverloadedError) as exc:
            self.count("fenced_submits")  # a fenced (deposed) nested sender, or overload
            bound = "pending_max" if "pending_max" in str(exc) else "inflight_max"
            self.count(f"full:{bound}", int(isinstance(exc, GroupOverloadedError)))
            return
        if cached is not None:
            self._lossy(ReplyArrives(sender, cached))

    def _own_argument(self, router: SimRouter, req: Request) -> Request:
        """``_RouterLoop._own_argument``: an argument passed by reference is put again by the router, which
        owns it from then on (lost when this incarnation dies, not when the caller exits).

        Raises:
            OwnerDiedError: the caller's object is gone (it exited).
        """
        if not isinstance(req.payload, ByRef) or req.payload.owner == router.owner:
            return req
        self.count("byref_owned_by_router")
        owned = self.store.put(router.owner, self.store.get(req.payload))
        return replace(req, payload=replace(owned, fallback=req.payload))

    def _on_PullArrives(self, ev: PullArrives) -> None:
        """A backup fetches a nested reply copy, as the Ray host does: ``submit(req, copy=True)``;
        an error is raised to the fetching backup's method (a failed nested reply)."""
        host = self.routers[ev.group].host
        if host is None or host.core is None:
            self.count("lost_to_dead_router")
            return
        mid = ev.request.msg_id
        try:
            cached = host.submit(ev.request, copy=True, waiter=ev.sender)
        except GroupOverloadedError:
            self.count("fenced_submits")
            return
        except RemoteProtocolError as exc:  # StaleViewError, AcknowledgedDuplicateError...
            self.count("refused_pulls")
            self._lossy(ReplyArrives(ev.sender, Reply(mid, ev.group, 0, 0, Outcome(False, exc))))
            return
        if cached is not None:
            self._lossy(ReplyArrives(ev.sender, cached))

    def _on_ReplyArrives(self, ev: ReplyArrives) -> None:
        if ev.to.is_client:
            self.results_in_flight.discard(ev.reply.msg_id)
            client = self.clients[ev.to.name]
            op = client.on_reply(ev.reply, self.now)
            if op is not None:
                self.history.append(op)
                self.checker.on_client_reply(op)
                self.schedule(self.rng.randint(1, 4), ClientIssue(client.name))
                self.count("oneway_acks", int(op.oneway))
            return
        host = self.replicas[ev.to.group].get(ev.to.name)
        if host is not None and host.alive:
            host.on_nested_reply(ev.reply)

    def _on_TimerFires(self, ev: TimerFires) -> None:
        host = self.replicas[ev.group].get(ev.replica)
        if host is not None and host.alive:
            host.timer_fired(ev.msg_id, ev.timer)

    def _on_NestedRetry(self, ev: NestedRetry) -> None:
        host = self.replicas[ev.group].get(ev.replica)
        if host is not None and host.alive:
            host.retry_nested(ev.msg_id)

    def _on_ToReplica(self, ev: ToReplica) -> None:
        host = self.replicas[ev.group][ev.replica]
        host.in_transit -= 1
        router = self.routers[ev.group]
        if ev.incarnation != router.incarnation and \
                (not isinstance(ev.msg, Deliver) or self.rng.random() < 0.5):
            return  # the sending router died: its unsent traffic is lost (a Deliver it sent may still run)
        if ev.wire and ev.incarnation == router.incarnation and ev.replica in router.closed_links:
            self.count("link_dropped_on_closed_link")
            return
        if not host.alive:
            if not ev.wire:  # on the link, its close tells the router
                self.schedule(self._notice_ticks(), FailureNotice(ev.group, ev.incarnation, ev.replica))
            return
        host.receive(ev.incarnation, ev.msg, ev.seq, ev.wire)

    def _on_ToRouter(self, ev: ToRouter) -> None:
        router = self.routers[ev.group]
        host = router.host
        if host is None or host.core is None or ev.incarnation != router.incarnation:
            return
        msg = ev.msg
        if ev.wire:
            if ev.replica in router.closed_links:
                self.count("link_dropped_on_closed_link")
            else:
                router.on_wire(ev.replica, msg)
            return
        if isinstance(msg, Delivered):
            host.on_delivered(msg)
        elif isinstance(msg, Pong):
            host.on_pong(ev.replica)
        elif isinstance(msg, StateReport):
            host.on_state_report(msg)

    def _on_FailureNotice(self, ev: FailureNotice) -> None:
        router = self.routers[ev.group]
        if router.core is not None and router.host is not None and ev.incarnation == router.incarnation:
            router.host.on_failure(ev.replica)

    def _on_LinkOpened(self, ev: LinkOpened) -> None:
        """The router's link to a replica opened, or not (a port closed between the nodes, ``p_unreachable``;
        a dead, paused or partitioned replica does not finish the handshake): then Ray calls carry its
        Delivers."""
        router = self.routers[ev.group]
        host = router.host
        if host is None or host.core is None or ev.incarnation != router.incarnation:
            return
        rep = self.replicas[ev.group].get(ev.replica)
        if rep is None or rep.silent_since is not None or \
                (self.options.p_unreachable and self.rng.random() < self.options.p_unreachable):
            host.on_link_unreachable(ev.replica, "unreachable")
            return
        host.on_link_up(ev.replica)

    def _on_LinkClosed(self, ev: LinkClosed) -> None:
        router = self.routers[ev.group]
        if router.host is not None and router.core is not None and ev.incarnation == router.incarnation:
            self.count("link_closes")
            router.host.on_link_closed(ev.replica, "the replica's process is gone")

    def _on_FetchParked(self, ev: FetchParked) -> None:
        """The Ray call fetching a parked answer: it fails on a dead replica (Ray's death notice), waits
        on a silent one, else its result travels back."""
        router = self.routers[ev.group]
        if ev.incarnation != router.incarnation or router.host is None or router.core is None:
            return
        if ev.back and ev.lost:  # Ray's ActorDiedError
            router.host.on_parked_lost(ev.replica, ev.ticket)
            router.host.on_failure(ev.replica)
            return
        if ev.back:
            router.host.on_parked_fetched(ev.replica, ev.ticket, ev.delivered)
            return
        rep = self.replicas[ev.group].get(ev.replica)
        if rep is None or not rep.alive:
            self.schedule(self._notice_ticks(), replace(ev, back=True, lost=True))
        elif rep.silent_since is not None:
            self.schedule(1, ev)
        else:
            self.schedule(self.rng.randint(1, self.options.link_delay_max), replace(ev, back=True))

    def _on_SpawnReady(self, ev: SpawnReady) -> None:
        router = self.routers[ev.group]
        spec = self.groups[ev.group]
        if self.ended_incarnation.get(ev.group) == ev.incarnation:
            # asked for by a router that ended since: Ray creates the detached actor all the same, which
            # nobody calls; the router's end listed no such name (its creation was under way)
            core = ReplicaCore(ev.group, ev.replica, spec.config, spec.scheduling, initial_view=None)
            self.replicas[ev.group][ev.replica] = ReplicaHost(self, ev.group, core, self.models[ev.group],
                                                              orphan=self._orphan_watch(SPAWNED_WATCH_FROM_START),
                                                              born=self.now)
            self.count("spawned_after_end")
            return
        if router.host is None or router.core is None or ev.incarnation != router.incarnation:
            return
        core = ReplicaCore(ev.group, ev.replica, spec.config, spec.scheduling, initial_view=None)
        core.set_unavailable(self._unavailable())
        self.replicas[ev.group][ev.replica] = ReplicaHost(self, ev.group, core, self.models[ev.group],
                                                          orphan=self._orphan_watch(SPAWNED_WATCH_FROM_START),
                                                          born=self.now)
        self.count("spawned")
        if not router.host.on_spawned(ev.replica):
            self.count("spawn_refused")

    def _on_StopReplica(self, ev: StopReplica) -> None:
        host = self.replicas[ev.group].get(ev.replica)
        if host is not None and host.alive:
            host.alive = False
            self._go_silent(host)
            self.count("stopped")
            self._link_gone(ev.group, ev.replica)

    def _on_WakeReplica(self, ev: WakeReplica) -> None:
        host = self.replicas[ev.group][ev.replica]
        if host.alive and host.paused:
            host.wake()

    def _on_RouterRestart(self, ev: RouterRestart) -> None:
        router = self.routers[ev.group]
        if router.incarnation != ev.incarnation or router.core is not None:
            return
        self._rebuild(ev.group)
        self._resubmit(ev.group)

    # ------------------------------------------------------------ routers

    def _flush(self, group: str) -> None:
        """One tick of the router host: the core's clock, its timers, then ``RouterCore.ready``."""
        router = self.routers[group]
        if router.host is not None and router.starved_until < self.now:
            router.host.tick()

    def _to_replica(self, group: str, rid: str, msg: Any, seq: int = 0, wire: bool = False) -> None:
        """Router -> replica (``seq``: the Deliver's number on the link); a dead replica: FailureNotice
        (``wire``: on the direct link, FIFO; a dead replica's link close tells the router instead)."""
        router = self.routers[group]
        host = self.replicas[group].get(rid)
        if host is None or not host.alive:
            if not wire:
                self.schedule(self._notice_ticks(), FailureNotice(group, router.incarnation, rid))
            return
        host.in_transit += 1
        held = host.partitioned_until
        if wire:
            self._fifo(("wire-down", group, router.incarnation, rid),
                       ToReplica(group, router.incarnation, rid, msg, seq, wire=True), held)
            return
        if not isinstance(msg, Deliver):
            self._fifo(("down", group, router.incarnation, rid), ToReplica(group, router.incarnation, rid, msg), held)
            return
        event = ToReplica(group, router.incarnation, rid, msg, seq)
        if self.rng.random() < self.options.p_reorder:  # Ray runs this call before an earlier one
            self.count("delivers_reordered")
            at = self.now + self.rng.randint(1, 2 * self.options.link_delay_max)
            self.schedule(max(at, held) - self.now, event)
        else:
            self._fifo(("down", group, router.incarnation, rid), event, held)

    def _go_silent(self, host: ReplicaHost) -> None:
        """``host`` crashed, paused or was cut off now: note whether its router's link to it was up (I11)."""
        host.silent_since = self.now
        router = self.routers[host.group]
        up = self.options.direct and router.host is not None and router.host.links.state(host.rid) == LinkState.UP
        host.silent_link_up = router.incarnation if up else 0

    def _notice_ticks(self) -> int:
        """How long Ray's death notice takes (slower than a direct link's close)."""
        if self.options.direct:
            return self.rng.randint(*RAY_NOTICE_TICKS)
        return self.rng.randint(1, 3)

    def _held_until(self, group: str, rid: str) -> int:
        host = self.replicas[group].get(rid)
        return 0 if host is None else host.partitioned_until

    def _open_link(self, router: SimRouter, rid: str) -> None:
        """The router opens its direct link to ``rid`` (up or unreachable a little later)."""
        self.schedule(self.rng.randint(1, self.options.link_delay_max), LinkOpened(router.group, router.incarnation, rid))

    def _fetch_parked(self, router: SimRouter, rid: str, delivered: Delivered, ticket: int) -> None:
        """The router fetches a parked answer with a Ray call."""
        self.schedule(self.rng.randint(1, self.options.link_delay_max),
                      FetchParked(router.group, router.incarnation, rid, delivered, ticket))

    def _link_gone(self, group: str, rid: str) -> None:
        """A replica's process is gone: the OS closes its direct link (if the router holds one)."""
        router = self.routers[group]
        host = router.host
        if not self.options.direct or host is None:
            return
        if host.links.state(rid) in (LinkState.CONNECTING, LinkState.UP, LinkState.RETIRING):
            self.schedule(self.rng.randint(1, LINK_CLOSE_TICKS_MAX), LinkClosed(group, router.incarnation, rid))

    def _spawn(self, router: SimRouter, rid: str) -> None:
        """Start replica ``rid`` for ``router``'s current incarnation (ready a few ticks later)."""
        index = int(rid.rsplit("-r", 1)[1])
        self.next_index[router.group] = max(self.next_index[router.group], index + 1)
        self.schedule(self.rng.randint(1, SPAWN_TICKS_MAX), SpawnReady(router.group, router.incarnation, rid))

    def _alive_replica(self, group: str, rid: str) -> bool:
        """Whether replica ``rid`` of ``group`` exists and runs (paused or not).

        Args:
            group: the group.
            rid: the replica.

        Returns:
            True if its host is alive.
        """
        host = self.replicas[group].get(rid)
        return host is not None and host.alive

    def _retire(self, group: str, rid: str) -> None:
        """Ray stops a removed replica, sometimes late: meanwhile it is a zombie to fence."""
        if self.rng.random() < 0.5:
            self.schedule(self.rng.randint(1, 30), StopReplica(group, rid))

    def _rebuild(self, group: str) -> None:
        """Restart a crashed router from the replicas alive in the highest view they report."""
        router = self.routers[group]
        reports = {}
        known = [f"{group}-r{self.next_index[group] - 1}"]
        for h in self.replicas[group].values():  # the Ray router asks each replica's view_info
            if h.alive and h.paused:  # stopped: no answer (Ray's call times out), but Ray lists its name
                known.append(h.rid)
            elif h.alive:
                h.turns.adopt(router.epoch)
                reports[h.rid] = (h.core.view, tuple(h.core.members), h.core.role.value, dict(h.router_counts))
        host = router.new_host(None)
        rebuilt = host.rebuild(reports, known=known)  # it retires the orphans (``_retire``)
        router.host = host
        self.count("rebuild_orphans", len([rid for rid in rebuilt.orphans if self._alive_replica(group, rid)]))
        router.released = set()
        self.count("router_rebuilds")

    # ------------------------------------------------------------ faults

    def _unavailable(self) -> frozenset:
        return getattr(self, "_resources_down", frozenset())

    def _inject_faults(self) -> None:
        opts, rng = self.options, self.rng
        if opts.p_resources and rng.random() < opts.p_resources:
            self._set_resources(frozenset(r for r in RESOURCES if rng.random() < 0.5))
        if not self.faults_on:
            return
        for group in self.groups:
            r = rng.random()
            if r < opts.p_crash:
                self.crash_replica(group)
            elif r < opts.p_crash + opts.p_pause:
                self.pause_replica(group)
            elif r < opts.p_crash + opts.p_pause + opts.p_router_crash:
                self.crash_router(group)
            elif r < opts.p_crash + opts.p_pause + opts.p_router_crash + opts.p_partition:
                self.partition_replica(group)
            elif r < opts.p_crash + opts.p_pause + opts.p_router_crash + opts.p_partition + opts.p_router_starve:
                self.starve_router(group)
            if opts.p_router_crash_paused and self.paused_rng.random() < opts.p_router_crash_paused:
                self.crash_router_while_paused(group)
            if group in self.failing_over and not self._failover_open(group):
                del self.failing_over[group]  # the failover is over: no router crash drawn for it
            if group in self.failing_over and self.dblfault_rng.random() < opts.p_router_crash_failover:
                self.crash_router_after_failover(group)

    def _set_resources(self, down: frozenset) -> None:
        self._resources_down = down
        for hosts in self.replicas.values():
            for h in hosts.values():
                h.core.set_unavailable(down)

    def stable(self, group: str, paused_backup: bool = False) -> bool:
        """A new fault may hit ``group``: one fault at a time, each repaired before the next.

        Args:
            group: the group.
            paused_backup: require instead that exactly one backup is paused (still a member, in the
                view) and the group otherwise stable (``crash_router_while_paused``).

        The router is up and in its normal phase, no replica is joining, the primary has executed
        every position the router holds an announcement of (a new primary replayed the order it
        took over: until then an acknowledged request may be held by the router alone, the
        backups' copies lagging), and every member is alive, awake, not cut off, in the router's view
        and recently heard from (on its direct link too). With ``replies_wait_for_backup``, a backup also
        executed every reply the router released while the group had no backup (``released_alone_upto``).
        """
        router = self.routers[group]
        core = router.core
        if core is None or core.phase != Phase.NORMAL or core.joining or core.spawning or router.starved_until:
            return False
        if len(core.members) < 2:
            return False
        if core.log.order and self.replicas[group][core.members[0]].core.executed_upto < max(core.log.order):
            return False  # a new primary still replays the order it took over: the failover is not over
        if core.config.replies_wait_for_backup and \
                core.released_alone_upto > max(core.links[m].acked for m in core.members[1:]):
            return False  # replies released while the group had no backup: none holds them yet (row 65)
        fresh = self.options.heartbeat_ticks + 2 * self.options.link_delay_max + 1
        link_fresh = self.options.link_heartbeat_ticks + 2 * self.options.link_delay_max + 1
        paused = [m for m in core.members if self.replicas[group][m].paused]
        if paused_backup and (len(paused) != 1 or paused[0] == core.members[0]):
            return False
        for m in core.members:
            h = self.replicas[group][m]
            if paused_backup and m in paused:
                if not h.alive or h.core.view != core.view or 0 < self.now <= h.partitioned_until:
                    return False
                continue  # the one paused backup: its link and pings may be going unanswered
            if not h.alive or h.paused or h.core.view != core.view or 0 < self.now <= h.partitioned_until:
                return False
            link = router.host.links.links.get(m) if router.host is not None else None
            if link is not None and link.state == LinkState.UP and \
                    (link.misses or self.now - link.last_heard > link_fresh):
                return False  # its link's heartbeats are going unanswered: it may be about to be suspected
            if self.now - core.links[m].last_heard > fresh:
                return False  # the router may be about to suspect it (e.g. it just woke up)
        return True

    def crash_replica(self, group: str, rid: Optional[str] = None) -> bool:
        """Crash a member or a warm spare of ``group`` (random if ``rid`` is None), if the group is stable.

        Returns:
            True if a replica crashed.
        """
        if not self.stable(group):
            return False
        core = self.routers[group].core
        assert core is not None
        router = self.routers[group].host
        spares = list(router.spares.ready) if router is not None else []
        # a warm spare may crash too (none unless ``spares``: the same draw as without them)
        host = self.replicas[group][rid or self.rng.choice(core.members + spares)]
        host.alive = False
        if self.options.p_router_crash_failover and host.rid == core.members[0]:
            self.failing_over[group] = host.rid
        self._go_silent(host)
        self.count("crashes")
        if host.in_transit or host.inbox or host.driver is not None or host.standby is not None:
            self.schedule(self._notice_ticks(), FailureNotice(group, self.routers[group].incarnation, host.rid))
        self._link_gone(group, host.rid)
        return True

    def _replace_a_backup(self) -> None:
        """``replace_backup``: kill the last backup of each group once, as soon as the group is
        stable; the router replaces it by state transfer (a fault-free run otherwise, I5)."""
        for group, router in self.routers.items():
            core = router.core
            if group in self.replaced or core is None or len(core.members) < 2:
                continue
            if self.crash_replica(group, core.members[-1]):
                self.replaced.add(group)
                self.count("backups_replaced")

    def pause_replica(self, group: str, rid: Optional[str] = None, ticks: Optional[int] = None) -> bool:
        """Pause a member of ``group`` for ``ticks`` (random if None), if the group is stable.

        Returns:
            True if a replica was paused.
        """
        if not self.stable(group):
            return False
        core = self.routers[group].core
        assert core is not None
        host = self.replicas[group][rid or self.rng.choice(core.members)]
        host.paused = True
        self._go_silent(host)
        self.count("pauses")
        self.schedule(ticks or self.rng.randint(1, self.options.pause_max), WakeReplica(group, host.rid))
        return True

    def partition_replica(self, group: str, rid: Optional[str] = None, ticks: Optional[int] = None) -> bool:
        """Cut a member of ``group`` off its router for ``ticks`` (random if None), if the group is stable:
        their traffic both ways is held until then and no link closes (only missed heartbeats tell).

        Returns:
            True if a replica was cut off.
        """
        if not self.stable(group):
            return False
        core = self.routers[group].core
        assert core is not None
        host = self.replicas[group][rid or self.rng.choice(core.members)]
        host.partitioned_until = self.now + (ticks or self.rng.randint(1, self.options.pause_max))
        self._go_silent(host)
        self.count("partitions")
        return True

    def crash_router_while_paused(self, group: str) -> bool:
        """Crash the router of ``group`` while one of its backups is paused and the group is otherwise
        stable (``p_router_crash_paused``: a second fault before the first is repaired, row 34).

        Returns:
            True if the router crashed.
        """
        if not self.stable(group, paused_backup=True):
            return False
        self.count("router_crashes_paused")
        return self._crash_router(group, self.paused_rng)

    def _failover_open(self, group: str) -> bool:
        """Whether the failover after the crash of ``group``'s primary (``failing_over``) is not over: the
        router (up) has not yet removed the dead primary, is recovering, or the new primary has not yet
        executed every position the router holds an announcement of (it still replays the order it took
        over). A router that is down keeps it open (its rebuild is part of the failover)."""
        dead = self.failing_over.get(group)
        router = self.routers[group]
        core = router.core
        if dead is None:
            return False
        if core is None or router.host is None:
            return True
        replaying = bool(core.log.order) and bool(core.members) and \
            self.replicas[group][core.members[0]].core.executed_upto < max(core.log.order)
        return core.phase != Phase.NORMAL or dead in core.members or replaying

    def crash_router_after_failover(self, group: str) -> bool:
        """Crash the router of ``group`` after its primary crashed, before the failover is over
        (``_failover_open``): a second fault before the first is repaired, which ``stable`` never
        allows; drawn only with ``replies_wait_for_backup`` (``p_router_crash_failover``, docs/faults.md
        row 65), once per failover.

        Args:
            group: the group.

        Returns:
            True if the router crashed.
        """
        router = self.routers[group]
        if router.core is None or router.host is None or not self._failover_open(group):
            return False
        del self.failing_over[group]
        self.count("router_crashes_failover")
        return self._crash_router(group, self.dblfault_rng)

    def crash_router(self, group: str) -> bool:
        """Crash the router of ``group`` (it restarts and rebuilds), if the group is stable.

        Returns:
            True if the router crashed.
        """
        if not self.stable(group):
            return False
        return self._crash_router(group, self.rng)

    def _crash_router(self, group: str, rng: random.Random) -> bool:
        router = self.routers[group]
        router.fold_link_counts()
        if router.host is not None:  # the notices of cancelled calls waiting there fail (row 88)
            for waiting in list(router.host.waiters.values()):
                for waiter in waiting:
                    if isinstance(waiter, CancelNotice):
                        self._cancel_answered(waiter.msg_id, False)
        router.host = None  # its waiters, link numbers and spawns in progress die with it
        self.count("objects_lost", self.store.owner_exited(router.owner))  # those it owned, too
        router.incarnation += 1  # Delivers the dead one sent may still arrive: the replicas' turns drop them
        self.count("router_crashes")
        self.schedule(rng.randint(1, 8), RouterRestart(group, router.incarnation))
        return True

    def add_operation(self, client: str, group: str, method: str, args: Tuple[Any, ...], oneway: bool = False,
                      byref: bool = False) -> None:
        """Append an operation to a client's script (and wake the client).

        Args:
            client: the client.
            group: the group to call.
            method: the method.
            args: its arguments.
            oneway: a one-way call (the client does not await it).
            byref: pass the arguments by reference (through the object store).
        """
        host = self.clients[client]
        host.script.append(ScriptOp(group, method, tuple(args), oneway=oneway, byref=byref))
        self.schedule(1, ClientIssue(client))

    def run_until(self, predicate: Callable[[], bool], max_steps: int = 1000) -> int:
        """Step until ``predicate()`` holds (checked before each step), for scenario tests that read
        like transcripts ("run until c1 has its reply") instead of counting ticks.

        Args:
            predicate: the condition to reach.
            max_steps: the most steps to take.

        Returns:
            The steps taken.

        Raises:
            AssertionError: not reached within ``max_steps``.
            InvariantViolation: an invariant broke on the way.
        """
        for taken in range(max_steps + 1):
            if predicate():
                return taken
            if taken < max_steps:
                self.step()
        raise AssertionError(f"not reached in {max_steps} steps (tick {self.now}): {self._group_summary()}")

    def _stop_faults(self) -> None:
        """Start the liveness phase: no more faults; paused replicas wake; resources return."""
        self.faults_on = False
        for hosts in self.replicas.values():
            for h in hosts.values():
                if h.alive and h.paused:
                    h.wake()
                h.partitioned_until = min(h.partitioned_until, self.now)
        if getattr(self, "_resources_down", None):
            self._set_resources(frozenset())

    # ------------------------------------------------------------ the loop

    def step(self) -> None:
        """Advance one tick: events, faults, hosts, routers, then invariants."""
        self.now += 1
        self._wake_routers()
        while self.queue and self.queue[0][0] <= self.now:
            self._dispatch(heapq.heappop(self.queue)[2])
        if self.faults_on:
            self._inject_faults()
            if self.now >= self.options.safety_ticks:
                self._stop_faults()
        elif self.options.replace_backup and self.now >= self.options.safety_ticks // 2:
            self._replace_a_backup()
        for group, hosts in self.replicas.items():
            for host in list(hosts.values()):
                if host.alive and not host.paused:
                    host.core.tick(self.now)
                    host.run()
            self._flush(group)
        for hosts in self.replicas.values():
            for h in hosts.values():
                if h.silent_since is not None and h.alive and not h.paused and h.partitioned_until <= self.now:
                    h.silent_since = None  # a partition healed
        if self.options.orphan_timeout_ticks:
            self._orphan_checks()
        self._check_links()
        self.checker.after_step()

    # ------------------------------------------------------------ a group's end

    def router_exists(self, group: str) -> Optional[bool]:
        """The control plane's answer to a replica's orphan watch: does ``group``'s router exist (Ray: its
        name resolves)? A router restarting does (its name stays), though the control plane may not answer
        (None, ``P_LOOKUP_UNREACHABLE``); one gone for good still resolves ``stale_lookup_ticks``.

        Args:
            group: the group.

        Returns:
            True, False, or None (no answer).
        """
        if group in self.gone:
            return self.now - self.gone[group] < self.options.stale_lookup_ticks
        if self.routers[group].host is None and self.collect_rng.random() < P_LOOKUP_UNREACHABLE:
            return None
        return True

    def _orphan_checks(self) -> None:
        """Each running replica's orphan watch (Ray: a thread): a replica its router left unheard for
        ``orphan_timeout_ticks`` asks whether the router exists, and exits if not (I14 judges it)."""
        for group, hosts in self.replicas.items():
            for host in list(hosts.values()):
                watch = host.orphan
                if watch is None or not host.alive or host.paused or not watch.due(self.now):
                    continue
                if watch.decide(self.now, self.router_exists(group)):
                    host.alive = False
                    self._go_silent(host)
                    self._link_gone(group, host.rid)
                    self.count("orphan_exits")
                    self.checker.on_orphan_exit(host)
                else:
                    self.count("orphan_lookups")

    def _router_gone(self, group: str) -> None:
        """``group``'s router is gone for good (collected, or destroyed unannounced): no restart."""
        router = self.routers[group]
        router.fold_link_counts()
        router.host = None
        self.ended_incarnation[group] = router.incarnation
        router.incarnation += 1  # what the ended incarnation sent is dropped, as for a crash
        self.gone[group] = self.now

    def end_groups(self) -> None:
        """Every call answered, the groups end (``SimOptions.group_end``): "collect", Ray collects each
        router with the group's last handle and the router host's end (``RouterHost.end``) names every
        replica to stop, which Ray stops by handle or name (a replica still being created has no name yet:
        it starts, and only its orphan watch stops it); "gone", each router vanishes unannounced and the
        replicas' orphan rule alone stops them. Half the time a member crashes first and the group ends
        once its replacement (or a warm spare) is asked for. Then I13: every replica stops in time.

        Raises:
            InvariantViolation: a replica outlived its group's end past the bound (I13) or exited by the
                orphan rule while its router existed (I14).
        """
        rng, opts = self.collect_rng, self.options
        if opts.replicas >= 2 and rng.random() < 0.5:
            group = rng.choice(sorted(self.groups))
            if self.crash_replica(group):
                router = self.routers[group]

                def spawning() -> bool:
                    host = router.host
                    return host is None or host.core is None or bool(host.core.spawning or host.spares.starting)

                for _ in range(END_SPAWN_WAIT_TICKS_MAX):
                    if spawning():
                        break
                    self.step()
                for _ in range(rng.randint(0, 2 * SPAWN_TICKS_MAX)):  # still spawning, or up and joining
                    self.step()
                self.count("ended_while_spawning", int(spawning()))
        for group in sorted(self.groups):  # "front" before "store": each holds the next one's handle
            self.end_group(group, opts.group_end)
        self.count("groups_ended", len(self.groups))
        self.run_until_ended()

    def end_group(self, group: str, how: str) -> None:
        """End ``group`` now: "collect", Ray collects its router, whose host names the replicas to stop
        (``RouterHost.end``; the control plane lists the names of those started ``stale_lookup_ticks`` ago
        or more) and Ray stops each that runs, 1 to ``KILL_TICKS_MAX`` ticks later; "gone", the router
        vanishes unannounced. Either way it never restarts, and a replica it asked for still starts.

        Args:
            group: the group.
            how: "collect" or "gone".

        Raises:
            InvariantViolation: a collected group's end leaves a running replica unnamed (I13).
        """
        router, opts = self.routers[group], self.options
        if how == "collect" and router.host is not None:
            # Ray lists a replica's name once registered: one started recently is not listed yet
            named = [rid for rid, h in self.replicas[group].items()
                     if h.alive and h.born <= self.now - opts.stale_lookup_ticks]
            stop = router.host.end(named=named)
            self.checker.on_group_collected(group, stop)
            for rid in stop:
                if self._alive_replica(group, rid):
                    self.schedule(self.collect_rng.randint(1, KILL_TICKS_MAX), StopReplica(group, rid))
        self._router_gone(group)

    def run_until_ended(self) -> None:
        """Step until no replica of an ended group runs (I13: within ``end_ticks_max`` ticks of the first end).

        Raises:
            InvariantViolation: a replica still runs past the bound (I13), or one exited by the orphan rule
                while its router existed (I14).
        """
        bound = self.end_ticks_max
        while True:
            late = [h.rid for g in self.gone for h in self.replicas[g].values() if h.alive]
            if not late:
                return
            if self.now - min(self.gone.values()) > bound:
                raise InvariantViolation(f"I13: {late} still run {self.now - min(self.gone.values())} ticks after "
                                         f"their group ended ({self.options.group_end or 'ended'}; bound {bound})")
            self.step()

    @property
    def end_ticks_max(self) -> int:
        """I13: every replica of an ended group stops within this many ticks: one being created starts within
        ``SPAWN_TICKS_MAX``, Ray's kill takes ``KILL_TICKS_MAX``; the orphan rule asks once its router was
        unheard ``orphan_timeout_ticks`` and hears "gone" once the name's lookup stops being stale."""
        opts = self.options
        return SPAWN_TICKS_MAX + KILL_TICKS_MAX + opts.orphan_timeout_ticks + opts.stale_lookup_ticks + 2

    def _check_links(self) -> None:
        """I11 (the direct data plane): a member whose link was up when it went silent leaves the view within
        ``LINK_CLOSE_TICKS_MAX`` + 1 ticks of crashing (its link closed: a suspicion at once), and within a
        link delay plus ``(heartbeat_misses_max + 1) * link_heartbeat_ticks`` + 2 of going silent (paused
        or partitioned: heartbeats missed). A router starved of CPU is not judged while it is starved,
        and counts from the end of its starvation.

        Raises:
            InvariantViolation: a member stayed longer.
        """
        if not self.options.direct:
            return
        for group, router in self.routers.items():
            host = router.host
            if host is None or host.core is None or router.starved_until >= self.now:
                continue  # a starved router reads nothing and runs no timer: it is judged once it runs
            beat_bound = self.options.link_delay_max + host.links.settings.suspicion_bound_ticks + 2
            for m in host.core.links:
                rep = self.replicas[group][m]
                if rep.silent_since is None or rep.silent_link_up != router.incarnation:
                    continue
                silent = self.now - max(rep.silent_since, router.woke_at)  # a starved router counts from waking
                if not rep.alive and silent > LINK_CLOSE_TICKS_MAX + 1:
                    raise InvariantViolation(f"I11: {m} crashed {silent} ticks ago with its link up, still a member")
                if silent > beat_bound:
                    raise InvariantViolation(f"I11: {m} silent for {silent} ticks with its link up, still a member "
                                             f"(heartbeats suspect within {beat_bound})")

    def clients_done(self) -> bool:
        """True when every client finished its script."""
        return all(c.done for c in self.clients.values())

    def quiet(self) -> bool:
        """True when every group is idle and its members have caught up (for final checks)."""
        for group, hosts in self.replicas.items():
            core = self.routers[group].core
            if core is None or core.phase != Phase.NORMAL or core.pending or core.joining:
                return False
            if len(core.members) < core.config.min_replicas:  # a lost replica is replaced (row 34)
                return False
            primary = hosts[core.members[0]]
            for m in core.members:
                h = hosts[m]
                if h.busy or h.waiting is not None or h.paused or not h.alive or h.core.view != core.view:
                    return False
                if m == primary.rid and h.core.oneway_out:
                    return False  # a one-way nested call still on its way
                if self.options.style == "semi-active" and h.core.executed_upto != primary.core.executed_upto:
                    return False
                link = core.links[m]
                if link.announcements or link.requests or link.inflight:
                    return False
        return True

    def run(self) -> RunResult:
        """Run the safety phase, the liveness phase and the final checks.

        Returns:
            A summary of the run.

        Raises:
            InvariantViolation: an invariant broke; the message names it.
        """
        while self.faults_on or self.now < self.options.safety_ticks:
            self.step()
        return self.finish()

    def finish(self) -> RunResult:
        """Stop faults, then require every operation to complete within the bound (I6) and check all.

        Returns:
            A summary of the run.

        Raises:
            InvariantViolation: an invariant broke.
        """
        opts = self.options
        if self.faults_on:
            self._stop_faults()
        calm_since = self.now
        while not self.clients_done():
            # a scheduler that reorders may serve every later call first: wait counts from the last issued
            since = calm_since if opts.scheduling in ("reception", "sequence") else max(calm_since, self.last_issue)
            late = [op for c in self.clients.values() for _, op in c.outstanding.values()
                    if self.now - max(op.invoked, since) > opts.liveness_bound_ticks]
            if late:
                raise InvariantViolation(f"I6: {late[0].msg_id} pending over {opts.liveness_bound_ticks} ticks "
                                         f"after faults stopped: {self._pending_summary()}")
            self.step()
        settle = self.now + QUIESCE_TICKS_MAX
        while not self.quiet() or self.renotices_pending():
            if self.now > settle:
                raise InvariantViolation(f"I6: no quiescence {QUIESCE_TICKS_MAX} ticks after the last reply: "
                                         f"{self._group_summary()}")
            self.step()
        self.checker.final()
        if opts.group_end:
            self.end_groups()
        for router in self.routers.values():
            router.fold_link_counts()
        return RunResult(opts.seed, self.now, len(self.history), dict(self.counts))

    def _pending_summary(self) -> str:
        pending = [str(mid) for c in self.clients.values() for mid in c.outstanding]
        return f"{pending} {self._group_summary()}"

    def _group_summary(self) -> str:
        parts = []
        for group, router in self.routers.items():
            core = router.core
            desc = "down" if core is None else f"{core.phase.value} v{core.view} {core.members} pending={len(core.pending)}"
            reps = {h.rid: (h.core.role.value, h.core.view, h.core.executed_upto, h.alive, h.paused,
                            h.waiting is not None) for h in self.replicas[group].values() if h.alive}
            parts.append(f"{group}: {desc} {reps}")
        return "; ".join(parts)

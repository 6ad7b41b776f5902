"""Simulated hosts around the pure cores: a replica actor, a router actor, a client.

Each host owns one core and does what a Ray actor would do around it: it feeds
inputs in, carries effects out (execute the model, take snapshots, send
messages through the :class:`~ftactors.testing.cluster.Simulator`), and never
decides protocol questions itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import (
    TYPE_CHECKING,
    Any,
    Deque,
    Dict,
    Generator,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from ftactors.core import (
    AcknowledgedDuplicateError,
    ClientCore,
    CoreConfig,
    Deliver,
    Delivered,
    Execute,
    Kind,
    MsgId,
    Outcome,
    RemoteProtocolError,
    ReplyUnavailableError,
    ReplicaCore,
    Reply,
    Request,
    Restore,
    Role,
    RouterCore,
    Snapshot,
)
from ftactors.host import ReplicaTurns
from ftactors.host.replica import OrphanWatch
from ftactors.host.replica import ReplicaHost as HostLoop
from ftactors.host.links import LinkSettings, Parked, Route
from ftactors.host.spares import SpareSettings
from ftactors.host.router import RouterHost
from ftactors.testing.events import (
    Endpoint,
    HistoryOp,
    LinkBeat,
    LinkBeatAck,
    ParkedAnswer,
    Ping,
    Pong,
    StateQuery,
    ToReplicaMsg,
)
from ftactors.testing.models import (
    ByRef,
    Draw,
    Gather,
    LogEntry,
    Model,
    NestedCall,
    Raised,
    RaisedError,
    Replay,
    ReplayExhausted,
    Sleep,
    State,
    Stream,
    Work,
    canonical,
    run_tasks,
)

if TYPE_CHECKING:  # pragma: no cover
    from ftactors.testing.cluster import Simulator

#: inbox bound of a replica host (messages from its router, FIFO)
INBOX_MAX = 10_000
#: one-way calls a client keeps unacknowledged at once (outside its window: it never awaits them)
ONEWAY_OUTSTANDING_MAX = 4
#: simulated seconds per tick (the runtime's default ``tick_s``)
TICK_S = 0.01
#: how often a router saves its counters on the members (when they changed): 1 s, as in Ray
COUNTS_EVERY_TICKS = 100


class Via(NamedTuple):
    """Names a Deliver at a replica (the token of ``HostLoop.deliver``): the router incarnation that
    sent it, and whether it came on the direct link (its answer goes back the same way)."""

    inc: int
    wire: bool = False


def _via(token: Any) -> Via:
    return token if isinstance(token, Via) else Via(token)


class InvariantViolation(AssertionError):
    """An invariant of the replicated system broke; the message names it (I1..I6)."""


@dataclass(slots=True)
class NestedWait:
    """A replica waits for the reply to nested request ``request``.

    Args:
        request: the nested request.
        send: True at the primary (it sends); False at a backup (it pulls a copy).
    """

    request: Request
    send: bool


@dataclass(slots=True)
class Suspended:
    """An async method suspended on a nested call or a timer (``SimOptions.async_steps``).

    Args:
        gen: the method's generator, stopped at its ``NestedCall`` or ``Sleep``.
        wait: the nested request it awaits (None: it sleeps).
        timer: the timer it sleeps on, ``("t", position)``: named after the position of the step that
            set it, equal on every replica (None: it awaits a nested reply).
        arrived: the reply arrived or the timer fired (the call is resumable).
        value: the reply's value, once arrived.
        gone: the reply read gone at the callee (``ReplyUnavailableError``) for a call an earlier
            primary made, or at a backup: the resume step decides (``_resume_gone``).
    """

    gen: Generator[Any, Any, Any]
    wait: Optional[NestedWait]
    timer: Any = None
    arrived: bool = False
    value: Any = None
    gone: Optional[Reply] = None  # the callee's "expired" answer, resumed on (ReplicaCore.suspended_reply_gone)
    tasks: int = 0  # asyncio tasks the call created so far (their streams, see ``ReplicaHost._gather``)

    @property
    def event(self) -> Any:
        """The name of the event it awaits: the nested request's id, or its timer."""
        return self.wait.request.msg_id if self.wait is not None else self.timer


@dataclass(slots=True)
class ReplicaHost:
    """A simulated replica actor: the shared replica host (:class:`ftactors.host.replica.ReplicaHost`,
    ``loop``) around a ReplicaCore, with the model state, its lineage log and a generator executor.

    It is the loop's I/O (:class:`ftactors.host.replica.ReplicaIO`), as ``runtime/replica_actor.py``
    is in Ray: the loop does the turn-taking (Delivers of one router incarnation apply in their
    order whatever order they arrive in, a dead incarnation's are dropped once its successor spoke,
    one Deliver drives the core while another waits as its standby and any further one is answered
    at once with nothing, the output goes to the incarnation that is current when it is taken);
    this class executes the model's methods, which are generators that suspend on nested calls
    and long work, and answers over the simulated link. A Deliver's answer leaves when its drive
    stops. There is no unsolicited output: work that time makes possible waits for the router's
    next Deliver (a poll while callers wait), as in Ray.

    The lineage log (every executed message from position 1) travels inside
    checkpoints with the state, so any replica's log is complete and can be
    compared with the others (invariant I1).

    Args:
        sim: the simulator.
        group: the group.
        core: the replica's core.
        model: the application.
    """

    sim: "Simulator"
    group: str
    core: ReplicaCore
    model: Model
    state: State = field(default_factory=dict)
    log: List[LogEntry] = field(default_factory=list)
    logged: Set[MsgId] = field(default_factory=set)
    alive: bool = True
    paused: bool = False
    inbox: Deque[Tuple[Via, ToReplicaMsg, int]] = field(default_factory=deque)
    in_transit: int = 0
    loop: HostLoop = field(init=False)
    drive_inc: Optional[Via] = None  # the Deliver that started the current execution (output_to_deliverer)
    gen: Optional[Generator[Any, Any, Any]] = None  # a method that yields NestedCall, Work or Draw
    waiting: Optional[NestedWait] = None
    held_replies: List[Reply] = field(default_factory=list)
    working_until: Optional[int] = None  # a long method executes until this tick
    replay: Replay = field(default_factory=lambda: Replay(()))  # the announced now()/random() values of this step
    drawn: List[Tuple[Stream, Any]] = field(default_factory=list)  # (stream, value) drawn or replayed so far
    tasks: int = 0  # asyncio tasks the current execution's call created so far (streams (0,), (1,), ...)
    choosing: bool = False  # the current execution draws fresh values (a primary, a new message)
    coros: Dict[MsgId, "Suspended"] = field(default_factory=dict)  # async calls suspended (async_steps)
    arrived: List[MsgId] = field(default_factory=list)  # suspended calls whose reply arrived, in arrival order
    step_wake: Any = None  # the event the current step resumed on (a nested request's id)
    hold_since: Optional[int] = None  # the tick the driving Deliver began to be held
    silent_since: Optional[int] = None  # crashed, paused or partitioned since (the link checks, I11)
    silent_link_up: int = 0  # the router incarnation whose link to it was up when it went silent (0: none)
    partitioned_until: int = 0  # router<->replica traffic is held until this tick
    orphan: Optional[OrphanWatch] = None  # its orphan rule (``SimOptions.orphan_timeout_ticks``; None: not run)
    born: int = 0  # the tick it started (the control plane lists its name ``stale_lookup_ticks`` later)

    def __post_init__(self) -> None:
        self.state = self.model.initial()
        self.loop = HostLoop(self.core, self)

    @property
    def rid(self) -> str:
        """The replica id."""
        return self.core.replica_id

    @property
    def endpoint(self) -> Endpoint:
        """Where nested replies for this replica go."""
        return Endpoint(self.group, self.rid)

    @property
    def turns(self) -> ReplicaTurns:
        """The loop's turn-taking state."""
        return self.loop.turns

    @property
    def driver(self) -> Optional[int]:
        """The incarnation of the Deliver that drives (its answer is pending)."""
        return _via(self.loop.driver[1]).inc if self.loop.driver is not None else None

    @property
    def standby(self) -> Optional[int]:
        """The incarnation of the Deliver that waits to take over."""
        return _via(self.loop.standby[1]).inc if self.loop.standby is not None else None

    @property
    def router_counts(self) -> Dict[str, int]:
        """The router's counters this replica keeps for a restarted router."""
        return self.loop.router_counts

    @property
    def busy(self) -> bool:
        """True if the host has something to do now, or a Deliver's answer is pending."""
        return bool(self.inbox or self.loop.later or self.held_replies) or self.driver is not None or \
            self.standby is not None or self.core.has_work() or self.working_until is not None

    # ------------------------------------------------------------ inputs

    def receive(self, incarnation: int, msg: ToReplicaMsg, seq: int = 0, wire: bool = False) -> None:
        """A message from router incarnation ``incarnation`` arrived (Delivers carry ``seq``;
        ``wire``: on the direct link)."""
        if self.orphan is not None:  # every call from a router counts (the link's heartbeats too)
            self.orphan.heard(self.sim.now)
        if isinstance(msg, LinkBeat) and not self.paused:  # the link's reader answers at once
            self.sim.to_router(self.group, incarnation, self.rid, LinkBeatAck(), wire=True)
            return
        if isinstance(msg, Ping) and not self.paused:
            self.sim.to_router(self.group, incarnation, self.rid, Pong())
            return
        if isinstance(msg, StateQuery) and not self.paused:
            report = self.loop.state_report(self.epoch(incarnation))  # the dead router's late Delivers drop
            self.sim.to_router(self.group, incarnation, self.rid, report)
            return
        assert len(self.inbox) < INBOX_MAX, f"{self.rid}: inbox over {INBOX_MAX}"
        self.inbox.append((Via(incarnation, wire), msg, seq))

    def keep_router_counts(self, counts: Iterable[Tuple[str, int]]) -> None:
        """Keep the router's counters for a restarted router (see ``HostLoop.on_ping``)."""
        self.loop.on_ping(counts)

    def wake(self) -> None:
        """End a pause: answer what queued up meanwhile."""
        self.paused = False
        self.silent_since = None
        for via, msg, seq in list(self.inbox):
            if isinstance(msg, (Ping, StateQuery, LinkBeat)):
                self.inbox.remove((via, msg, seq))
                self.receive(via.inc, msg, seq, via.wire)

    def on_nested_reply(self, reply: Reply) -> None:
        """A nested reply (primary) or a pulled reply copy (backup) arrived."""
        if self.paused:
            self.held_replies.append(reply)
            return
        if reply.msg_id in self.core.oneway_out:  # its one-way call: the callee's router took it
            self.sim.count("oneway_nested_taken")
            self.core.oneway_taken(reply.msg_id)
            return
        w = self.waiting
        if w is None or w.request.msg_id != reply.msg_id:
            self._arrive_suspended(reply)
            return
        if not reply.outcome.ok and isinstance(reply.outcome.value, ReplyUnavailableError):
            if self.loop.pulled_reply_gone(reply.msg_id):
                self._give_step_up()
                return
            if self.sim.sent_before_by_another(reply.msg_id, self.rid):
                self.waiting = None  # a step of this primary's own choice: the method gets the error
                self._raise_gone(reply)
                return
        if not reply.outcome.ok and not isinstance(reply.outcome.value, Raised):
            raise InvariantViolation(f"I6: nested call {reply.msg_id} failed: {reply.outcome.value!r}")
        self.sim.record_nested(reply)
        self.waiting = None
        self.core.nested_reply(reply)
        self._advance(reply.outcome.value)

    def _give_step_up(self) -> None:
        """A replayed step's nested reply is gone at the callee (``ReplicaCore.pulled_reply_gone``):
        drop the execution, unlogged; the router repairs this replica by state transfer."""
        self.waiting, self.gen, self.working_until = None, None, None
        self.choosing, self.replay, self.drawn, self.drive_inc = False, Replay(()), [], None

    def _arrive_suspended(self, reply: Reply) -> None:
        """A nested reply for a suspended async call: it becomes resumable (late duplicates drop)."""
        for mid, sus in self.coros.items():
            if sus.wait is not None and sus.wait.request.msg_id == reply.msg_id and not sus.arrived:
                if mid not in self.core.suspended:
                    return  # dropped by the core (a Restore, fenced): resumable() forgets it
                if not reply.outcome.ok and not isinstance(reply.outcome.value, Raised):
                    if isinstance(reply.outcome.value, ReplyUnavailableError) and \
                            (self.core.suspended_reply_gone(reply.msg_id) or
                             self.sim.sent_before_by_another(reply.msg_id, self.rid)):
                        sus.arrived, sus.gone = True, reply  # outside a step: its resume step decides
                        self.arrived.append(mid)
                        return
                    raise InvariantViolation(f"I6: nested call {reply.msg_id} failed: {reply.outcome.value!r}")
                self.sim.record_nested(reply)
                self.core.nested_reply(reply)
                sus.arrived, sus.value = True, reply.outcome.value
                self.arrived.append(mid)
                return

    def timer_fired(self, msg_id: MsgId, timer: Any) -> None:
        """A suspended call's timer fired here: the call becomes resumable (this replica's arrival
        order). A timer of a call that resumed meanwhile (announced), or was dropped, does nothing."""
        sus = self.coros.get(msg_id)
        if sus is None or sus.timer != timer or sus.arrived:
            return
        sus.arrived = True
        self.arrived.append(msg_id)
        self.sim.count("timers_fired")

    def retry_nested(self, msg_id: MsgId) -> None:
        """Retransmission timer of a nested request: send (primary) or pull (backup) again."""
        w = self.waiting
        sus = None
        if w is None or w.request.msg_id != msg_id:
            sus = next((c for c in self.coros.values()
                        if c.wait is not None and c.wait.request.msg_id == msg_id and not c.arrived), None)
            w = sus.wait if sus is not None else None
        if w is None and msg_id in self.core.oneway_out:
            self.retry_oneway(msg_id)
            return
        if w is None or not self.alive:
            return
        if not w.send and self.core.role != Role.PRIMARY and not self.paused and \
                not self.core.has_reply_copy(msg_id) and sus is not None and not self._resume_due(sus):
            # a backup's suspended call needs its copy only when the order resumes it: the copy
            # rides with that announcement; until then waiting costs nothing
            self.sim.schedule_nested_retry(self, msg_id)
            return
        if not w.send and self.core.has_reply_copy(msg_id):
            self.take_pushed_copies()
            return
        if not self.paused:
            # a primary retransmits with its current view; a deposed one stays fenced
            req = replace(w.request, source_view=self.core.view)
            w = NestedWait(req, w.send or self.core.role == Role.PRIMARY)
            if sus is not None:
                sus.wait = w
            else:
                self.waiting = w
            self.sim.send_nested(self, w.request, pull=not w.send)
        self.sim.schedule_nested_retry(self, msg_id)

    def _resume_due(self, sus: Suspended) -> bool:
        """Whether the next announced position resumes the suspended call ``sus``."""
        ann = self.core.order.get(self.core.executed_upto + 1)
        return ann is not None and ann.resume > 0 and ann.msg_id in self.coros and self.coros[ann.msg_id] is sus

    def _took_copy(self, copy: Reply) -> None:
        """Count a pushed reply copy a backup's call took (one of a nested call that raised, too)."""
        self.sim.count("nested_copies")
        if not copy.outcome.ok:
            self.sim.count("nested_raised_copies")

    def take_pushed_copies(self) -> None:
        """A backup's nested calls whose reply copy its primary pushed (``Deliver.reply_copies``)
        arrived: the waiting call goes on, suspended ones become resumable (claim 48)."""
        w = self.waiting
        if w is not None and not w.send and self.core.has_reply_copy(w.request.msg_id):
            copy = self.core.reply_copy(w.request.msg_id)
            assert copy is not None
            self._took_copy(copy)
            self.sim.record_nested(copy)
            self.waiting = None
            self._advance(copy.outcome.value)
        for mid, sus in self.coros.items():
            nested = sus.wait  # None: the call sleeps on a timer, no reply to wait for
            if nested is None or sus.arrived or nested.send:
                continue
            if self.core.has_reply_copy(nested.request.msg_id):
                copy = self.core.reply_copy(nested.request.msg_id)
                assert copy is not None
                self._took_copy(copy)
                self.sim.record_nested(copy)
                sus.arrived, sus.value = True, copy.outcome.value
                self.arrived.append(mid)

    # -------------------------------------------------------------- work

    def run(self) -> None:
        """Take what arrived, then drive the core until idle, handed over, or blocked (a long
        method works, a nested call waits)."""
        if not self.alive or self.paused:
            return
        if self.working_until is not None and self.sim.now >= self.working_until:
            self.working_until = None  # a long method's work is done: it goes on
            self._advance(None)
        for rep in self.held_replies:
            self.on_nested_reply(rep)
        self.held_replies = []
        while self.inbox and self.alive:
            via, msg, seq = self.inbox.popleft()
            if isinstance(msg, Deliver):
                self.loop.deliver(self._localise(msg), self.epoch(via.inc), seq, via)
                self.resend_oneway()
            else:
                self.receive(via.inc, msg, seq, via.wire)
        if self.alive and not self.paused:
            self.take_pushed_copies()
        if self.alive:
            self.loop.drive()

    @staticmethod
    def epoch(incarnation: int) -> str:
        """The epoch string of a router incarnation (later incarnations sort later, as in Ray)."""
        return f"{incarnation:010d}"

    # ------------------------------------------------------------ ReplicaIO

    def ticks(self) -> int:
        """Now, in ticks."""
        return self.sim.now

    def answer(self, token: Any, out: Delivered) -> None:
        """Answer a Deliver (``token``: a :class:`Via`) the way it came (dropped if its router is dead)."""
        self.hold_since = None
        via = _via(token)
        self.sim.to_router(self.group, via.inc, self.rid, out, wire=via.wire)

    def refused(self, token: Any, exc: RemoteProtocolError) -> None:
        """The core refused a Deliver as malformed: fine for a zombie, a bug for a member."""
        self.sim.protocol_error(self, exc)
        self.answer(token, self.loop.nothing())

    def count(self, what: str) -> None:
        """Count a host event in the simulator's counters."""
        self.sim.count(what)

    def resumable(self) -> Tuple[MsgId, ...]:
        """The suspended calls whose nested reply arrived, in this replica's arrival order (the
        primary's core picks the first; backups follow the announced order). Calls the core
        dropped (a Restore, or fenced) are dropped here too."""
        for mid in [m for m in self.coros if m not in self.core.suspended]:
            del self.coros[mid]
        self.arrived = [m for m in self.arrived if m in self.coros]
        return tuple(self.arrived)

    def hold(self, token: Any) -> bool:
        """Keep the driving Deliver unanswered while suspended calls wait, for up to a heartbeat
        (Ray's ``heartbeat_s``); the step loop drives again every tick."""
        if not self.coros:
            return False
        if self.hold_since is None:
            self.hold_since = self.sim.now
            self.sim.count("holds")
        return self.sim.now - self.hold_since < self.core.config.heartbeat_ticks

    def restore(self, eff: Restore, token: Any) -> None:
        """Load a checkpoint's state and log."""
        payload = eff.checkpoint.state
        self.coros.clear()
        self.arrived.clear()
        self.state = self.model.copy(payload["app"])
        self.log = list(payload["log"])
        self.logged = {e.msg_id for e in self.log}
        self.loop.restored()

    def snapshot(self, eff: Snapshot, token: Any) -> None:
        """Take a digest, and the state with its log for a checkpoint."""
        payload = {"app": self.model.copy(self.state), "log": tuple(self.log)} if eff.for_checkpoint else None
        self.loop.snapshot_taken(payload, f"{eff.position}:{self.model.digest(self.state)}")

    def execute(self, ex: Execute, token: Any) -> None:
        """Run a model method as ``_Replica._execute`` does: fetch arguments passed by reference,
        record or replay ``now()``/``random()``, and turn what the method raises into the caller's
        exception (``BaseException`` errors into ``MethodAbortedError``), on every replica. A method
        is a generator that suspends on nested calls and long work (the shared host sees one
        execution out until it finishes: the simulator's methods never suspend between steps)."""
        self.drive_inc = token
        req = ex.request
        self.step_wake = None
        if ex.resume:
            self._resume(ex)
            return
        if req.msg_id in self.logged:
            raise InvariantViolation(f"I3: {self.rid} executes {req.msg_id} a second time (position {ex.position})")
        if req.method == "relay" and self.core.suspended:
            self.sim.count("reentrant_starts")  # a ring came back into this group while its first call waits
        self.choosing = self.core.role == Role.PRIMARY and not ex.replay
        self.replay, self.drawn, self.tasks = Replay(ex.nondet), [], 0
        try:
            args = self._materialise(req.payload)
            result = self.model.call(self.state, req.method, args)
        except BaseException as exc:  # noqa: B036 - the runtime's _execute catches BaseException too
            self._finish(Raised.of(self.model.name, req.method, exc))
            return
        if isinstance(result, Generator):
            self.gen = result
            self._advance(None)
        else:
            self._finish(result)

    def _resume(self, ex: Execute) -> None:
        """A resume step of a suspended async call: the primary resumes the one its core chose
        (its reply arrived), a backup the announced one (waiting for its reply copy if need be).

        Raises:
            InvariantViolation: the announced wake is not the event the call awaits (I2).
        """
        mid = ex.request.msg_id
        sus = self.coros.pop(mid, None)
        assert sus is not None, f"{self.rid}: resume of {mid}, which the host does not hold"
        self.sim.count("resumes")
        awaited = sus.event
        if ex.replay and ex.wake is not None and ex.wake != awaited:
            raise InvariantViolation(f"I2: {self.rid} resumes {mid} on {ex.wake}, but it awaits {awaited}")
        if sus.timer is not None:
            sus.arrived = True  # a replay fires the timer at once: the primary waited (CallLoop does too)
            self.sim.count("timer_resumes")
        self.choosing = self.core.role == Role.PRIMARY and not ex.replay
        self.replay, self.drawn, self.tasks = Replay(ex.nondet), [], sus.tasks
        self.step_wake = awaited
        self.gen = sus.gen
        if mid in self.arrived:
            self.arrived.remove(mid)
        if not sus.arrived and sus.wait is not None and not sus.wait.send:
            # pushed with this step's announcement, or before; missing, it was lost with a router
            # that restarted, or a reloaded link: pull it by id
            copy, pull = self.core.copy_or_pull(awaited, consuming=True)
            if copy is not None:
                self._took_copy(copy)
                self.sim.record_nested(copy)
                sus.arrived, sus.value = True, copy.outcome.value
            elif pull:
                self.sim.send_nested(self, sus.wait.request, pull=True)
        if sus.gone is not None:
            self._resume_gone(sus.gone)
        elif sus.arrived:
            self._advance(sus.value)
        else:  # a backup ahead of its reply copy: the step waits for it, as a sync call does
            assert sus.wait is not None
            self.waiting = sus.wait

    def _resume_gone(self, gone: Reply) -> None:
        """The resume step of a call whose nested reply read gone at the callee while it was suspended
        (``ReplicaCore.suspended_reply_gone``; docs/faults.md row 53). A replayed step (the order
        resumed the call on the real value) is given up and this replica resynced or removed
        (``pulled_reply_gone``); a step of the primary's own choice raises the error into the method,
        and the primary pushes it as the reply copy, so its backups replay the same step."""
        copy = self.core.reply_copy(gone.msg_id)  # a backup's pull read gone, then its primary's copy came
        if copy is not None:
            self._took_copy(copy)
            self.sim.record_nested(copy)
            self._advance(copy.outcome.value)
            return
        if self.loop.pulled_reply_gone(gone.msg_id):
            self._give_step_up()
            return
        self._raise_gone(gone)

    def _raise_gone(self, gone: Reply) -> None:
        """A step of the primary's own choice whose nested reply read gone at the callee: raise the error
        into the method, and push it as the reply copy (with the step's announcement), so its backups
        replay the same step (docs/faults.md rows 53, 55)."""
        raised = Raised(type(gone.outcome.value).__name__, str(gone.outcome.value))
        self.sim.note_nested_gone(gone.msg_id, raised)
        error = replace(gone, outcome=Outcome(False, raised))
        self.sim.record_nested(error)
        self.core.nested_reply(error)  # pushed as the copy, with this step's announcement
        self._advance(raised)

    def _suspend(self, sus: "Suspended") -> None:
        """End the step with the method waiting on its nested call (``executed(None, ...)``)."""
        ex = self.core.executing
        assert ex is not None
        entry = LogEntry(ex.position, ex.request.msg_id, ex.request.method, self.sim.store.args_of(ex.request.payload),
                         canonical(self.drawn), None, ex.resume, suspends=True)
        self.log.append(entry)
        self.logged.add(entry.msg_id)
        sus.tasks = self.tasks
        self.coros[ex.request.msg_id] = sus
        if sus.arrived:
            self.arrived.append(ex.request.msg_id)
        self.sim.count("suspensions")
        self.loop.executed(None, tuple(self.drawn) if self.choosing else (), self.step_wake)
        self.choosing, self.replay, self.drawn, self.drive_inc = False, Replay(()), [], None
        self.sim.on_executed(self, entry)

    def _localise(self, msg: Deliver) -> Deliver:
        """Arguments passed by reference are fetched on arrival, as ``_Replica._localise_requests``
        does: the fetched copy outlives the router that owns the object. One lost with its router
        and its caller is left out, as if never sent."""
        if not any(isinstance(r.payload, ByRef) for r in msg.requests):
            return msg
        reqs = []
        for req in msg.requests:
            if isinstance(req.payload, ByRef):
                if not self.sim.store.has(req.payload):
                    self.sim.count("byref_lost_on_arrival")
                    continue  # a dead router's: as if never sent (the rebuilt router or a retry sends it)
                self.sim.count("byref_fetches")
                req = replace(req, payload=self.sim.store.get(req.payload))
            reqs.append(req)
        return replace(msg, requests=tuple(reqs))

    def _materialise(self, payload: Any) -> Tuple[Any, ...]:
        """The call's arguments; one passed by reference is fetched from the object store.

        Raises:
            OwnerDiedError: the object's owner exited (Ray's ``ray.get`` raises it).
        """
        if isinstance(payload, ByRef):
            self.sim.count("byref_fetches")
            return tuple(self.sim.store.get(payload))
        return tuple(payload or ())

    def _draw(self, kind: str, stream: Stream = ()) -> Any:
        """``ftactors.now()`` / ``ftactors.random()`` (``CallContext.value``): a primary running a new
        message draws and records; any other execution replays the announced values of the drawing
        task's ``stream`` in order.

        Args:
            kind: "now" or "random".
            stream: who draws: () the method, ``(k,)`` its ``k``-th task.

        Raises:
            ReplayExhausted: more values asked for than the primary drew.
        """
        if self.choosing:
            # a task's values come from the tasks' stream: the seeds drawn before it keep their values
            rng = self.sim.rng if stream == () else self.sim.tasks_rng
            value: Any = self.sim.now if kind == "now" else round(rng.random(), 6)
            self.sim.count("nondet_draws")
        else:
            value = self.replay.next(stream)
            if isinstance(value, ReplayExhausted):
                raise value
            self.sim.count("nondet_replays")
        self.drawn.append((stream, value))
        return value

    def _gather(self, call: Gather) -> Any:
        """``asyncio.gather`` of a method's sub-tasks: each draws on its own stream, and they interleave
        in an order of this replica's own (``sim.tasks_rng``), as tasks whose nested replies arrive in
        another order do on a Ray backup.

        Returns:
            Their values in task order, or the first exception one raised (to raise into the method).
        """
        first, self.tasks = self.tasks, self.tasks + len(call.tasks)
        self.sim.count("gathers")
        self.sim.count("gathered_tasks", len(call.tasks))
        rng = self.sim.tasks_rng

        def draw(kind: str, stream: Stream) -> Any:
            try:
                return self._draw(kind, stream)
            except ReplayExhausted as exc:
                return exc

        try:
            return run_tasks(call.tasks, first, rng.choice, draw)
        except BaseException as exc:  # noqa: B036 - raised into the method, as gather raises it
            return exc

    def _advance(self, value: Any) -> None:
        """Resume the method with ``value`` (a nested call's :class:`Raised` is raised into it) until it
        returns, raises, works (``Work``) or makes a nested call; ``now()``/``random()`` answer at once."""
        assert self.gen is not None
        throw: Optional[BaseException] = RaisedError(value) if isinstance(value, Raised) else None
        while True:
            try:
                call = self.gen.throw(throw) if throw is not None else self.gen.send(value)
            except StopIteration as stop:
                self.gen = None
                self._finish(stop.value)
                return
            except BaseException as exc:  # noqa: B036 - as _start
                self.gen = None
                assert self.core.executing is not None
                self._finish(Raised.of(self.model.name, self.core.executing.request.method, exc))
                return
            if isinstance(call, Gather):
                value = self._gather(call)
                value, throw = (None, value) if isinstance(value, BaseException) else (value, None)
                continue
            if isinstance(call, NestedCall) and call.oneway:
                self._send_oneway(call)
                value, throw = None, None  # nothing waits for it
                continue
            if not isinstance(call, Draw):
                break
            try:
                value, throw = self._draw(call.kind), None
            except ReplayExhausted as exc:  # raised into the method, as CallContext.value raises it
                throw = exc
        if isinstance(call, Sleep):
            self.sim.count("timers")
            if self.sim.options.async_steps:
                self._suspend_on_timer(call.ticks)
                return
            call = Work(call.ticks)  # a sync method's sleep blocks its replica
        if isinstance(call, Work):
            self.working_until = self.sim.now + max(1, call.ticks)
            self.sim.count("long_methods")
            return
        req, send = self.core.nested_request(call.group, call.method, call.args)
        if self.sim.options.async_steps:
            self._suspend_on(NestedWait(req, send))
            return
        self.waiting = NestedWait(req, send)
        if not send:
            copy, _ = self.core.copy_or_pull(req.msg_id, consuming=True)
            if copy is not None:
                self.waiting = None
                self._took_copy(copy)
                self.sim.record_nested(copy)
                self._advance(copy.outcome.value)
                return
        # the copy travels no later than the announcement this execution follows: missing now, it
        # was lost (a router restart, a reloaded link): pull it by id
        self.sim.send_nested(self, req, pull=not send)
        self.sim.schedule_nested_retry(self, req.msg_id)

    def _send_oneway(self, call: NestedCall) -> None:  # the method's value for it is None
        """A one-way nested call, as the Ray host makes it (``runtime/api.py``): it travels as an
        acknowledged request; every replica keeps it (``ReplicaCore.keep_oneway``) to send it again if
        it becomes primary; the primary sends it and notes it on its way (``oneway_sent``) until its
        reply comes back, the callee's router having taken it (``oneway_taken``). Nobody waits.

        Args:
            call: the call the method made.
        """
        req, send = self.core.nested_request(call.group, call.method, call.args)
        self.core.keep_oneway(req)
        if send:
            self.core.oneway_sent(req.msg_id)
            self.sim.send_oneway(self, req)

    def resend_oneway(self) -> None:
        """Just promoted: send the one-way calls the dead primary may have lost (``take_resend``,
        as ``runtime/replica_actor.py:_Replica.deliver``)."""
        for req in self.core.take_resend():
            self.sim.count("oneway_nested_resent")
            self.sim.send_oneway(self, req, resend=True)

    def retry_oneway(self, msg_id: MsgId) -> None:
        """Retransmission timer of a one-way nested call: sent again while it is on its way (the
        callee's router drops a duplicate, answering it from its reply cache)."""
        req = self.core.oneway_kept.get(msg_id)
        if not self.alive or msg_id not in self.core.oneway_out or req is None or \
                self.core.role != Role.PRIMARY:
            return
        if not self.paused:
            self.sim.send_nested(self, replace(req, source_view=self.core.view), pull=False)
        self.sim.schedule_nested_retry(self, msg_id)

    def _suspend_on(self, wait: NestedWait) -> None:
        """An async method's nested call: send it (or take a backup's copy) and suspend the step."""
        gen, self.gen = self.gen, None
        assert gen is not None
        sus = Suspended(gen, wait)
        # a backup's copy comes with the announcement of the step that resumes the call: no pull now
        copy, pull = (None, False) if wait.send else self.core.copy_or_pull(wait.request.msg_id, consuming=False)
        if copy is not None:
            self._took_copy(copy)
            self.sim.record_nested(copy)
            sus.arrived, sus.value = True, copy.outcome.value
        elif pull:  # (never, unless the rule above breaks: tests/test_sim_planted.py plants it)
            self.sim.send_nested(self, wait.request, pull=True)
            self.sim.schedule_nested_retry(self, wait.request.msg_id)
        elif not wait.send:
            self.sim.schedule_nested_retry(self, wait.request.msg_id)  # (a promoted backup sends then)
        else:
            self.sim.send_nested(self, wait.request, pull=False)
            self.sim.schedule_nested_retry(self, wait.request.msg_id)
        self._suspend(sus)

    def _suspend_on_timer(self, ticks: int) -> None:
        """An async method sleeps: arm this replica's timer and suspend the step. Every replica arms
        its own (a backup promoted to primary resumes the call when its timer fires); a backup
        replaying an announced resume does not wait for it."""
        gen, self.gen = self.gen, None
        ex = self.core.executing
        assert gen is not None and ex is not None
        timer = ("t", ex.position)
        self.sim.schedule_timer(self, ex.request.msg_id, timer, max(1, ticks))
        self._suspend(Suspended(gen, None, timer))

    def _finish(self, value: Any) -> None:
        ex = self.core.executing
        assert ex is not None
        raised = value if isinstance(value, Raised) else None
        if raised is not None:
            self.sim.count("aborted" if raised.kind == "MethodAbortedError" else "raised")
        entry = LogEntry(ex.position, ex.request.msg_id, ex.request.method, self.sim.store.args_of(ex.request.payload),
                         canonical(self.drawn), raised, ex.resume)
        self.log.append(entry)
        self.logged.add(entry.msg_id)
        problem = self.model.check_state(self.state)
        if problem:
            raise InvariantViolation(f"I2: {self.rid}: {problem}")
        self.loop.executed(Outcome(raised is None, value), tuple(self.drawn) if self.choosing else (), self.step_wake)
        self.choosing, self.replay, self.drawn = False, Replay(()), []
        self.sim.on_executed(self, entry)
        started_by, self.drive_inc = self.drive_inc, None
        started_inc = None if started_by is None else _via(started_by).inc
        if self.sim.options.output_to_deliverer and started_inc != self.sim.routers[self.group].incarnation:
            # the Ray host before the fix: a drive's output is the return value of the Deliver
            # that started it; that router incarnation is dead, so the output is lost
            lost = self.core.take_delivered()
            if lost.replies or lost.announcements:
                self.sim.count("outputs_lost_to_dead_router")


class SimRouter:
    """A simulated router actor: it runs :class:`ftactors.host.router.RouterHost` (None while crashed)
    and is that host's I/O (:class:`ftactors.host.router.RouterIO`) over the simulated network, as
    ``runtime/router_actor.py`` is over Ray. Every incarnation gets a new host; the simulator drops
    what reaches or leaves a dead incarnation.

    Args:
        sim: the simulator.
        group: the group.
        config: the group's protocol settings.
        members: the first view.
    """

    def __init__(self, sim: "Simulator", group: str, config: CoreConfig, members: Tuple[str, ...]) -> None:
        self.sim = sim
        self.group = group
        self.config = config
        self.incarnation = 1
        self.closed_links: Set[str] = set()  # direct links this incarnation closed (their traffic drops)
        self.host: Optional[RouterHost] = self.new_host(members)
        self.released: Set[MsgId] = set()  # replies released by this incarnation (I3)
        self.starved_until = 0  # starved of CPU through this tick (0: runs): it neither ticks nor reads
        self.woke_at = 0  # the tick its last starvation ended
        self.unread: List[Any] = []  # what reached it while starved, in arrival order

    @property
    def core(self) -> Optional[RouterCore]:
        """The router core, None while the router is down (or not rebuilt yet)."""
        return self.host.core if self.host is not None else None

    @property
    def epoch(self) -> str:
        """The current incarnation's epoch (see :meth:`ReplicaHost.epoch`)."""
        return ReplicaHost.epoch(self.incarnation)

    @property
    def owner(self) -> str:
        """The object-store owner name of the current incarnation (its objects die with it)."""
        return f"{self.group}#router{self.incarnation}"

    def new_host(self, members: Optional[Tuple[str, ...]]) -> RouterHost:
        """A router host for the current incarnation (``members`` None: it rebuilds)."""
        self.fold_link_counts()
        self.closed_links = set()
        opts = self.sim.options
        settings = LinkSettings(opts.link_heartbeat_ticks, opts.heartbeat_misses_max) if opts.direct else None
        spares = SpareSettings(opts.spares, opts.spare_respawn_ticks, heartbeat_ticks=opts.heartbeat_ticks,
                               timeout_ticks=opts.failure_timeout_ticks) if opts.spares else None
        return RouterHost(self.group, self.config, self, self.epoch, members, counts_every_ticks=COUNTS_EVERY_TICKS,
                          link_settings=settings, spare_settings=spares)

    def fold_link_counts(self) -> None:
        """Add the current host's link decisions (``link_`` names) and spares (``spare_``) to the
        simulator's counters, once."""
        host = getattr(self, "host", None)
        if host is not None:
            for k, n in host.links.counts.items():
                self.sim.count("link_" + k, n)
                host.links.counts[k] = 0
            for k, n in host.spares.counts.items():  # and its spares' (``spare_`` names)
                self.sim.count("spare_" + k, n)
                host.spares.counts[k] = 0

    # ------------------------------------------------------------ RouterIO

    def ticks(self) -> int:
        """Now, in ticks."""
        return self.sim.now

    def wall_s(self) -> float:
        """Simulated seconds (ticks of 10 ms)."""
        return self.sim.now * TICK_S

    def deliver(self, rid: str, msg: Deliver, epoch: str, seq: int) -> None:
        """Send a Deliver to a replica: with the direct data plane (``SimOptions.direct``) on the path
        the host's links decide (the link, opened on the first Deliver; a Ray call while it opens, when
        it fell back, or for a message holding an object reference; nowhere once it closed), else as a
        Ray call (it may overtake an earlier one, as in Ray)."""
        assert epoch == self.epoch, f"a Deliver of {epoch} sent while {self.epoch} is current"
        self.sim.checker.on_send(self.group, rid, msg)
        if not self.sim.options.direct:
            self.sim._to_replica(self.group, rid, msg, seq)
            return
        links = self._host().links
        if links.want_link(rid):
            self.sim._open_link(self, rid)
        fits = not any(isinstance(r.payload, ByRef) for r in msg.requests)
        route = links.route(rid, fits)
        if route == Route.NONE:
            self.sim.count("link_delivers_to_closed")
            return
        if route == Route.WIRE:
            links.on_sent(rid)
        elif not fits:
            self.sim.count("link_byref_on_ray")
        self.sim._to_replica(self.group, rid, msg, seq, wire=route == Route.WIRE)

    def heartbeat(self, rid: str) -> None:
        """A heartbeat on the direct link."""
        self.sim._to_replica(self.group, rid, LinkBeat(), wire=True)

    def close_link(self, rid: str) -> None:
        """Close the direct link: what is on its way either way is dropped."""
        self.closed_links.add(rid)

    def on_wire(self, rid: str, msg: Any) -> None:
        """A frame came on ``rid``'s direct link: a heartbeat's answer, a Delivered or a parked answer
        (fetched with a Ray call if the links decide so)."""
        host = self._host()
        if isinstance(msg, LinkBeatAck):
            host.on_link_heard(rid)
            return
        if isinstance(msg, ParkedAnswer):
            decision, ticket = host.on_link_parked(rid)
            host.on_link_answer(rid)
            if decision == Parked.FETCH:
                self.sim._fetch_parked(self, rid, msg.delivered, ticket)
            return
        host.on_link_answer(rid)
        host.on_link_delivered(rid, msg)

    def _host(self) -> RouterHost:
        assert self.host is not None, f"{self.group}: no router host"
        return self.host

    def ping(self, rid: str) -> None:
        """Ping a replica."""
        self.sim._to_replica(self.group, rid, Ping())

    def save_counts(self, rid: str, counts: Dict[str, int]) -> None:
        """Leave the router's counters with a live replica (Ray's ping carrying them). Not a simulated
        message: it would shift the seeded network's random draws of every later message."""
        host = self.sim.replicas[self.group].get(rid)
        if host is not None and host.alive:
            host.keep_router_counts(counts.items())

    def query(self, rid: str, epoch: str) -> None:
        """Ask a replica for its state report (it adopts the incarnation the query comes from)."""
        self.sim._to_replica(self.group, rid, StateQuery())

    def spawn(self, rid: str) -> None:
        """Start a replica (ready a few ticks later, if this incarnation still lives)."""
        self.sim._spawn(self, rid)

    def retire(self, rid: str) -> None:
        """Stop a removed replica (Ray does, sometimes late)."""
        self.sim._retire(self.group, rid)

    def answer(self, reply: Reply, waiters: Sequence[Any]) -> None:
        """Send a released reply to every endpoint waiting for it.

        Raises:
            InvariantViolation: the reply was released before (I3).
        """
        if reply.msg_id in self.released:
            raise InvariantViolation(f"I3: router {self.group} released {reply.msg_id} twice")
        self.released.add(reply.msg_id)
        for who in waiters:
            self.sim.send_reply(who, reply)

    def fail(self, msg_id: MsgId, reason: str, waiters: Sequence[Any]) -> None:
        """A request failed for good: with every fault repaired, a bug (I6).

        Raises:
            InvariantViolation: always.
        """
        raise InvariantViolation(f"I6: {self.group} failed {msg_id}: {reason}")

    def fence(self, msg_id: MsgId, waiters: Sequence[Any]) -> None:
        """A deposed primary's nested request, fenced once a rebuilt router learnt its group's view:
        dropped, as the simulator drops a fenced ``submit`` (``fenced_submits``)."""
        self.sim.count("fenced_submits", len(waiters))
        self.sim.count("fenced_after_rebuild")

    def kick(self) -> None:
        """Nothing: the simulator processes every router once per step (``Simulator.step``)."""


@dataclass(frozen=True, slots=True)
class ScriptOp:
    """One operation of a client's script.

    Args:
        group: the group called.
        method: the method.
        args: its arguments.
        oneway: a one-way call (``.options(oneway=True)``): the client never awaits it; the
            group acknowledges it once executed and the client retransmits it until then.
        byref: the arguments go by reference (``ray.put``: over ``large_arg_bytes``).
    """

    group: str
    method: str
    args: Tuple[Any, ...]
    oneway: bool = False
    byref: bool = False


#: the size a call's arguments have when they go by reference (over the runtime's large_arg_bytes)
BYREF_SIZE_BYTES = 200 * 1024


@dataclass(slots=True)
class ClientHost:
    """A simulated client: issues its script with up to ``window`` calls outstanding, and retries.

    One-way calls do not wait in the window (the caller never awaits them): up to
    ``ONEWAY_OUTSTANDING_MAX`` are unacknowledged at once, and they are issued in script order
    with the other calls, so the group must run them in the client's order too.

    Args:
        core: the client's core.
        script: operations still to issue.
        window: calls it keeps outstanding at once (pipelined, like ``ray.get`` on a list).
    """

    core: ClientCore
    script: Deque[ScriptOp]
    window: int = 1
    outstanding: Dict[MsgId, Tuple[Request, HistoryOp]] = field(default_factory=dict)
    answers: Dict[MsgId, Tuple[int, Any]] = field(default_factory=dict)
    oneway_outstanding: int = 0
    exited: bool = False  # its script is done and the process is gone: the objects it owned are lost

    @property
    def name(self) -> str:
        """The client's source name."""
        return self.core.source

    @property
    def done(self) -> bool:
        """True when the script is finished and nothing is outstanding."""
        return not self.script and not self.outstanding

    def next_request(self, now: int, extra: Dict[str, Any], store: "ObjectStore") -> Optional[Request]:
        """Issue the next scripted operation (or None if done, or the window or the one-way slots are full).

        Args:
            now: the tick.
            extra: scheduling hints of the request.
            store: where arguments passed by reference go.
        """
        if not self.script:
            return None
        op = self.script[0]
        if op.oneway and self.oneway_outstanding >= ONEWAY_OUTSTANDING_MAX:
            return None
        if not op.oneway and len(self.outstanding) - self.oneway_outstanding >= self.window:
            return None
        self.script.popleft()
        payload: Any = op.args
        size = 0
        if op.byref:
            payload, size = store.put(self.name, op.args), BYREF_SIZE_BYTES
        req = self.core.request(op.group, op.method, payload=payload, kind=Kind.SYNC_REQUEST, size_bytes=size, **extra)
        self.outstanding[req.msg_id] = (req, HistoryOp(self.name, op.group, req.msg_id, op.method, op.args,
                                                       invoked=now, oneway=op.oneway))
        self.oneway_outstanding += op.oneway
        return req

    def pending(self, msg_id: MsgId) -> Optional[Request]:
        """The outstanding request ``msg_id`` (to retransmit), or None once answered."""
        entry = self.outstanding.get(msg_id)
        return entry[0] if entry is not None else None

    def on_reply(self, reply: Reply, now: int) -> Optional[HistoryOp]:
        """A reply arrived. Returns the completed operation, or None for a duplicate.

        A one-way call's reply is only its acknowledgement (the runtime's ``invoke`` returns None):
        its value and exception are not the caller's, and no announcements come back with it.

        Raises:
            InvariantViolation: two replies to one request differ (I3), or the call failed for a
                reason other than the method's own exception (I6).
        """
        seen = self.answers.get(reply.msg_id)
        answer = (reply.position, reply.outcome.value)
        if seen is not None:
            if isinstance(reply.outcome.value, AcknowledgedDuplicateError):
                return None  # says only that this client holds the answer (a stale duplicate's)
            if seen != answer:
                raise InvariantViolation(f"I3: {reply.msg_id} answered twice differently: {seen} then {answer}")
            return None
        entry = self.outstanding.get(reply.msg_id)
        if entry is None:
            return None
        if not reply.outcome.ok and not isinstance(reply.outcome.value, Raised):
            raise InvariantViolation(f"I6: {reply.msg_id} failed: {reply.outcome.value!r}")
        self.answers[reply.msg_id] = answer
        op = entry[1]
        if op.oneway:
            self.core.on_settled(reply.msg_id.seq)  # a Ray result (None), not a Reply
            self.oneway_outstanding -= 1
        else:
            self.core.on_reply(reply)
        del self.outstanding[reply.msg_id]
        return replace(op, completed=now, position=reply.position, value=None if op.oneway else reply.outcome.value)


#: objects the simulated object store holds at most (arguments passed by reference)
OBJECTS_MAX = 100_000


class OwnerDiedError(Exception):
    """Ray's ``OwnerDiedError``: the object's owner exited, so its value is lost."""


@dataclass(slots=True)
class ObjectStore:
    """The simulated object store: arguments passed by reference, each owned by the client that put it.

    ``archive`` keeps every object's arguments for the checker's reference replay (I2); replicas
    read only ``objects``, which loses an owner's objects when it exits.
    """

    objects: Dict[str, Tuple[Any, ...]] = field(default_factory=dict)
    archive: Dict[str, Tuple[Any, ...]] = field(default_factory=dict)
    owned: Dict[str, List[str]] = field(default_factory=dict)
    count: int = 0

    def put(self, owner: str, args: Tuple[Any, ...]) -> ByRef:
        """``ray.put`` by ``owner``: returns the reference.

        Raises:
            AssertionError: more than ``OBJECTS_MAX`` objects.
        """
        assert len(self.archive) < OBJECTS_MAX, f"more than {OBJECTS_MAX} objects put"
        self.count += 1
        ref = ByRef(f"{owner}/obj{self.count}", owner)
        self.objects[ref.key] = self.archive[ref.key] = tuple(args)
        self.owned.setdefault(owner, []).append(ref.key)
        return ref

    def get(self, ref: ByRef) -> Tuple[Any, ...]:
        """``ray.get``: the arguments.

        Raises:
            OwnerDiedError: the owner exited.
        """
        args = self.objects.get(ref.key)
        if args is None and ref.fallback is not None:
            args = self.objects.get(ref.fallback.key)
        if args is None:
            raise OwnerDiedError(f"{ref.key}: its owner {ref.owner} exited")
        return args

    def has(self, ref: ByRef) -> bool:
        """Whether ``get`` finds the object (or the caller's it was put again from)."""
        return ref.key in self.objects or (ref.fallback is not None and ref.fallback.key in self.objects)

    def owner_exited(self, owner: str) -> int:
        """The owner's process is gone: its objects are lost. Returns how many."""
        keys = self.owned.pop(owner, [])
        for key in keys:
            self.objects.pop(key, None)
        return len(keys)

    def args_of(self, payload: Any) -> Tuple[Any, ...]:
        """The arguments a payload stands for (for the lineage log and the reference replay)."""
        return self.archive[payload.key] if isinstance(payload, ByRef) else tuple(payload or ())

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
    List,
    Optional,
    Set,
    Tuple,
)

from ftactors.core import (
    ClientCore,
    Deliver,
    Execute,
    Kind,
    MsgId,
    Outcome,
    RemoteProtocolError,
    ReplicaCore,
    Reply,
    Request,
    Restore,
    Role,
    RouterCore,
    Snapshot,
    StaleViewError,
)
from ftactors.testing.events import (
    Endpoint,
    HistoryOp,
    Ping,
    Pong,
    StateQuery,
    ToReplicaMsg,
)
from ftactors.testing.models import LogEntry, Model, NestedCall, State, Work

if TYPE_CHECKING:  # pragma: no cover
    from ftactors.testing.cluster import Simulator

#: inbox bound of a replica host (messages from its router, FIFO)
INBOX_MAX = 10_000


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
class ReplicaHost:
    """A simulated replica actor: a ReplicaCore, the model state and its lineage log.

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
    inbox: Deque[Tuple[int, ToReplicaMsg]] = field(default_factory=deque)
    in_transit: int = 0
    answer_to: Optional[int] = None
    gen: Optional[Generator[NestedCall, Any, Any]] = None
    waiting: Optional[NestedWait] = None
    held_replies: List[Reply] = field(default_factory=list)
    worked: bool = False  # effects ran since the last Delivered: there may be output to push
    working_until: Optional[int] = None  # a long method executes until this tick
    drive_inc: Optional[int] = None  # the router incarnation whose Deliver started the current drive

    def __post_init__(self) -> None:
        self.state = self.model.initial()

    @property
    def rid(self) -> str:
        """The replica id."""
        return self.core.replica_id

    @property
    def endpoint(self) -> Endpoint:
        """Where nested replies for this replica go."""
        return Endpoint(self.group, self.rid)

    @property
    def busy(self) -> bool:
        """True if the host has something to do now."""
        return bool(self.inbox) or self.answer_to is not None or self.core.has_work() or \
            bool(self.held_replies) or self.working_until is not None

    # ------------------------------------------------------------ inputs

    def receive(self, incarnation: int, msg: ToReplicaMsg) -> None:
        """A message from router incarnation ``incarnation`` arrived (FIFO)."""
        if isinstance(msg, Ping) and not self.paused:
            self.sim.to_router(self.group, incarnation, self.rid, Pong())
            return
        if isinstance(msg, StateQuery) and not self.paused:
            self.sim.to_router(self.group, incarnation, self.rid, self.core.state_report())
            return
        assert len(self.inbox) < INBOX_MAX, f"{self.rid}: inbox over {INBOX_MAX}"
        self.inbox.append((incarnation, msg))

    def wake(self) -> None:
        """End a pause: answer what queued up meanwhile."""
        self.paused = False
        for inc, msg in list(self.inbox):
            if isinstance(msg, (Ping, StateQuery)):
                self.inbox.remove((inc, msg))
                self.receive(inc, msg)

    def purge(self, incarnation: int) -> None:
        """Drop unprocessed messages of a dead router incarnation."""
        self.inbox = deque((i, m) for i, m in self.inbox if i != incarnation)
        if self.answer_to == incarnation:
            self.answer_to = None

    def on_nested_reply(self, reply: Reply) -> None:
        """A nested reply (primary) or a pulled reply copy (backup) arrived."""
        if self.paused:
            self.held_replies.append(reply)
            return
        w = self.waiting
        if w is None or w.request.msg_id != reply.msg_id:
            return  # a late duplicate
        if not reply.outcome.ok:
            raise InvariantViolation(f"I6: nested call {reply.msg_id} failed: {reply.outcome.value!r}")
        self.sim.record_nested(reply)
        self.waiting = None
        self.worked = True
        self.core.nested_reply(reply)
        self._advance(reply.outcome.value)

    def retry_nested(self, msg_id: MsgId) -> None:
        """Retransmission timer of a nested request: send (primary) or pull (backup) again."""
        w = self.waiting
        if w is None or w.request.msg_id != msg_id or not self.alive:
            return
        if not self.paused:
            # a primary retransmits with its current view; a deposed one stays fenced
            req = replace(w.request, source_view=self.core.view)
            self.waiting = NestedWait(req, w.send or self.core.role == Role.PRIMARY)
            self.sim.send_nested(self, self.waiting.request, pull=not self.waiting.send)
        self.sim.schedule_nested_retry(self, msg_id)

    # -------------------------------------------------------------- work

    def run(self) -> None:
        """Process the inbox and the core's effects until idle or blocked on a nested call.

        Like an async actor, the host keeps taking Delivers while a method awaits
        a nested reply: each Deliver is answered once the core has done what it
        can; output that becomes ready later is pushed (see ``_push``).
        """
        if not self.alive or self.paused:
            return
        if self.working_until is not None and self.sim.now >= self.working_until:
            self.working_until = None  # a long method's work is done: it goes on
            self.worked = True
            self._advance(None)
        if not (self.inbox or self.held_replies or self.worked or self.answer_to is not None) and \
                (self.waiting is not None or self.working_until is not None or not self.core.has_work()):
            return  # idle: nothing arrived, nothing became runnable
        for rep in self.held_replies:
            self.on_nested_reply(rep)
        self.held_replies = []
        while self.alive:
            self._drive()
            if self.answer_to is not None:
                self.sim.to_router(self.group, self.answer_to, self.rid, self.core.take_delivered())
                self.answer_to = None
                self.worked = False
            if not self.inbox:
                break
            inc, msg = self.inbox.popleft()
            if isinstance(msg, Deliver):
                self._take_deliver(inc, msg)
            else:
                self.receive(inc, msg)
        self._push()

    def _take_deliver(self, incarnation: int, msg: Deliver) -> None:
        self.answer_to = incarnation
        try:
            self.core.deliver(msg)
        except StaleViewError:
            self.sim.count("stale_delivers")
        except RemoteProtocolError as exc:
            self.sim.protocol_error(self, exc)

    def _push(self) -> None:
        """Output no Deliver is waiting for (work made possible by time: resources, sequence
        gaps, give-up; the end of a long method or of a nested wait) is reported unsolicited
        to the current router incarnation. While the router is down it stays in the core
        for the restarted one."""
        if not self.worked or self.answer_to is not None or self.inbox or \
                self.core.role not in (Role.PRIMARY, Role.BACKUP):
            return
        if self.sim.routers[self.group].core is None:
            return  # the router is restarting: push to the new incarnation once it is up
        self.worked = False
        out = self.core.take_delivered()
        if out.replies or out.announcements or out.checkpoint is not None:
            self.sim.count("pushes")
            self.sim.to_router(self.group, self.sim.routers[self.group].incarnation, self.rid, out)

    def _drive(self) -> None:
        while self.waiting is None and self.working_until is None and self.alive:
            eff = self.core.next_effect()
            if eff is None:
                self.drive_inc = None  # idle: the drive ends
                return
            if self.drive_inc is None:
                self.drive_inc = self.answer_to if self.answer_to is not None else \
                    self.sim.routers[self.group].incarnation
            self.worked = True
            if isinstance(eff, Restore):
                self._restore(eff)
            elif isinstance(eff, Snapshot):
                self._snapshot(eff)
            else:
                self._start(eff)

    def _restore(self, eff: Restore) -> None:
        payload = eff.checkpoint.state
        self.state = self.model.copy(payload["app"])
        self.log = list(payload["log"])
        self.logged = {e.msg_id for e in self.log}

    def _snapshot(self, eff: Snapshot) -> None:
        payload = {"app": self.model.copy(self.state), "log": tuple(self.log)} if eff.for_checkpoint else None
        self.core.snapshot_taken(eff.position, payload, f"{eff.position}:{self.model.digest(self.state)}")

    def _start(self, ex: Execute) -> None:
        req = ex.request
        if req.msg_id in self.logged:
            raise InvariantViolation(f"I3: {self.rid} executes {req.msg_id} a second time (position {ex.position})")
        result = self.model.call(self.state, req.method, tuple(req.payload or ()))
        if isinstance(result, Generator):
            self.gen = result
            self._advance(None)
        else:
            self._finish(result)

    def _advance(self, value: Any) -> None:
        assert self.gen is not None
        try:
            call = self.gen.send(value)
        except StopIteration as stop:
            self.gen = None
            self._finish(stop.value)
            return
        if isinstance(call, Work):
            self.working_until = self.sim.now + max(1, call.ticks)
            self.sim.count("long_methods")
            return
        req, send = self.core.nested_request(call.group, call.method, call.args)
        self.waiting = NestedWait(req, send)
        if not send:
            copy = self.core.reply_copy(req.msg_id)
            if copy is not None:
                self.waiting = None
                self.sim.record_nested(copy)
                self._advance(copy.outcome.value)
                return
        self.sim.send_nested(self, req, pull=not send)
        self.sim.schedule_nested_retry(self, req.msg_id)

    def _finish(self, value: Any) -> None:
        ex = self.core.executing
        assert ex is not None
        entry = LogEntry(ex.position, ex.request.msg_id, ex.request.method, tuple(ex.request.payload or ()))
        self.log.append(entry)
        self.logged.add(entry.msg_id)
        problem = self.model.check_state(self.state)
        if problem:
            raise InvariantViolation(f"I2: {self.rid}: {problem}")
        self.core.executed(ex.request.msg_id, Outcome(True, value))
        self.sim.on_executed(self, entry)
        if self.sim.options.output_to_deliverer and self.drive_inc != self.sim.routers[self.group].incarnation:
            # the Ray host before the fix: a drive's output is the return value of the Deliver
            # that started it; that router incarnation is dead, so the output is lost
            lost = self.core.take_delivered()
            if lost.replies or lost.announcements:
                self.sim.count("outputs_lost_to_dead_router")


@dataclass(slots=True)
class RouterHost:
    """A simulated router actor: a RouterCore (None while crashed) and reply routing.

    Args:
        group: the group.
        core: the router core, None while down.
    """

    group: str
    core: Optional[RouterCore]
    incarnation: int = 1
    reply_to: Dict[MsgId, List[Endpoint]] = field(default_factory=dict)
    released: Set[MsgId] = field(default_factory=set)
    spawning: Set[str] = field(default_factory=set)

    def wait_for(self, msg_id: MsgId, who: Endpoint) -> None:
        """Route the reply of ``msg_id`` to ``who`` too, when it is released."""
        waiters = self.reply_to.setdefault(msg_id, [])
        if who not in waiters:
            waiters.append(who)


@dataclass(slots=True)
class ClientHost:
    """A simulated client: issues its script one operation at a time and retries.

    Args:
        core: the client's core.
        script: (group, method, args) operations still to issue.
    """

    core: ClientCore
    script: Deque[Tuple[str, str, Tuple[Any, ...]]]
    current: Optional[Request] = None
    op: Optional[HistoryOp] = None
    answers: Dict[MsgId, Tuple[int, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The client's source name."""
        return self.core.source

    @property
    def done(self) -> bool:
        """True when the script is finished and nothing is outstanding."""
        return not self.script and self.current is None

    def next_request(self, now: int, extra: Dict[str, Any]) -> Optional[Request]:
        """Issue the next scripted operation (or None if done or busy)."""
        if self.current is not None or not self.script:
            return None
        group, method, args = self.script.popleft()
        self.current = self.core.request(group, method, payload=args, kind=Kind.SYNC_REQUEST, **extra)
        self.op = HistoryOp(self.name, group, self.current.msg_id, method, args, invoked=now)
        return self.current

    def on_reply(self, reply: Reply, now: int) -> Optional[HistoryOp]:
        """A reply arrived. Returns the completed operation, or None for a duplicate.

        Raises:
            InvariantViolation: two replies to one request differ (I3).
        """
        seen = self.answers.get(reply.msg_id)
        answer = (reply.position, reply.outcome.value)
        if seen is not None:
            if seen != answer:
                raise InvariantViolation(f"I3: {reply.msg_id} answered twice differently: {seen} then {answer}")
            return None
        if self.current is None or reply.msg_id != self.current.msg_id:
            return None
        if not reply.outcome.ok:
            raise InvariantViolation(f"I6: {reply.msg_id} failed: {reply.outcome.value!r}")
        self.answers[reply.msg_id] = answer
        self.core.on_reply(reply)
        assert self.op is not None
        done = replace(self.op, completed=now, position=reply.position, value=reply.outcome.value)
        self.current, self.op = None, None
        return done

"""The replica host, written once: the Deliver loop around a :class:`~ftactors.core.ReplicaCore`.

The Ray replica actor (``runtime/replica_actor.py``) and the simulator (``testing/hosts.py``) both
run this class. The host takes Delivers in turn (:class:`~ftactors.host.turns.ReplicaTurns`: a
router incarnation's Delivers apply in their order whatever order they arrive in, a dead
incarnation's are dropped once its successor spoke), feeds them to the core at once (so the
primary's scheduler sees every call waiting), lets one Deliver drive the core while one waits as
its standby and any further one is answered at once with nothing, and answers a Deliver with the
core's output only if its router incarnation is still current. An empty Deliver (the router's poll)
that arrives while the driver is inside an effect (a long call) and replies wait is answered at
once with the output so far (``answered_early``): a reply does not wait for a long call delivered
after it.

Carrying an effect out is injected (:class:`ReplicaIO`): Ray runs the user's method on the thread of
the Deliver that drives, the simulator runs its models as generators that suspend on nested calls.
The host never blocks and never drives on its own: its driver calls :meth:`ReplicaHost.drive` after
each input, and an effect that finishes later (``executed``, ``snapshot_taken``, ``restored``) is
followed by another ``drive``. A Ray shell holds its lock around every call into the host.

Host loop (what a driver calls)::

    host.tick()                               # the core's clock (io.ticks())
    host.deliver(msg, epoch, seq, token)      # NOW: apply, then drive / stand by / answer at once;
                                              # LATER: kept; STALE: answered with nothing
    host.drive()                              # next_effect -> io.execute / io.snapshot / io.restore,
                                              # until idle or handed over: io.answer(token, Delivered);
                                              # a primary with suspended calls may keep it (io.hold)
    host.executed(outcome, nondet, wake); host.drive()    # the step ended (now or later); outcome
                                                          # None: an async call waits (suspended)
    host.pulled_reply_gone(msg_id) and host.drive()       # a replayed step's pulled nested reply is
                                                          # gone: the step is given up
    host.state_report(epoch) / host.view_info(epoch)      # a restarted router's questions
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, List, Optional, Protocol, Tuple

from ftactors.core import (
    Deliver,
    Delivered,
    Execute,
    MsgId,
    Outcome,
    RemoteProtocolError,
    ReplicaCore,
    Restore,
    Role,
    Snapshot,
    StaleViewError,
    StateReport,
)
from ftactors.host.turns import Claim, ReplicaTurns, Verdict

#: Delivers kept waiting for an earlier one of their link at most.
LATER_MAX = 10_000


class ReplicaIO(Protocol):
    """What a :class:`ReplicaHost` needs from its runtime. Every call returns at once."""

    def ticks(self) -> int:
        """Now, in ticks (the core's clock)."""
        ...

    def answer(self, token: Any, out: Delivered) -> None:
        """Answer the Deliver ``token`` (the router gets ``out``)."""
        ...

    def refused(self, token: Any, exc: RemoteProtocolError) -> None:
        """The core refused the Deliver ``token`` as malformed: answer it with ``exc`` (or nothing)."""
        ...

    def execute(self, ex: Execute, token: Any) -> None:
        """Run the method of ``ex`` for the driving Deliver ``token``; then :meth:`ReplicaHost.executed`."""
        ...

    def snapshot(self, snap: Snapshot, token: Any) -> None:
        """Take a snapshot (a digest, and the state if ``snap.for_checkpoint``); then
        :meth:`ReplicaHost.snapshot_taken`."""
        ...

    def restore(self, effect: Restore, token: Any) -> None:
        """Replace the state by the checkpoint's; then :meth:`ReplicaHost.restored`."""
        ...

    def resumable(self) -> Tuple[MsgId, ...]:
        """The suspended (async) calls whose awaited event arrived, oldest first (none where
        methods never suspend, as in the simulator)."""
        ...

    def hold(self, token: Any) -> bool:
        """The primary holds suspended calls and has nothing else to do: may the driving Deliver
        ``token`` stay unanswered until one can resume? True: the runtime calls
        :meth:`ReplicaHost.drive` again on a coroutine event or after a while, and answers False
        once the Deliver was kept long enough (Ray: ``heartbeat_s``); False: it is answered now."""
        ...

    def count(self, what: str) -> None:
        """A host event worth counting (``stale_delivers``, ``hand_overs``, ``answered_at_once``, ``answered_early``...)."""
        ...


class OrphanWatch:
    """A replica's orphan rule, written once (docs/faults.md rows 86 and 89): a replica exits when its
    group's router is gone for good, and never while it exists (a router being restarted as a new
    incarnation exists). The Ray replica (``runtime/replica_actor.py:_Replica._orphan_watch``, a thread
    that checks every quarter of the timeout) and the simulator (``testing/cluster.py``) both run it,
    with their own control plane: ``ray.get_actor`` of the router's name in Ray.

    The rule: once the router was unheard for ``timeout_ticks`` (every call from it counts: Delivers,
    pings, state queries, ``ready``, the direct link's heartbeats), ask the control plane whether the
    router still exists; it does: count again from now; it does not: exit; no answer (the control plane
    unreachable): ask again at the next check. The silence counts from the replica's start, whoever
    started it: a replica the router never called (its router ended while it was being created) still
    exits.

    Args:
        timeout_ticks: the router's silence after which the control plane is asked.
        started_tick: when the replica started; None: the silence counts from the router's first call
            (the Ray replica router-started before docs/faults.md row 89, which leaked one whose router
            ended while it was being created; the simulator replays it with ``SPAWNED_WATCH_FROM_START``).

    Raises:
        ValueError: ``timeout_ticks`` is not positive.
    """

    def __init__(self, timeout_ticks: int, started_tick: Optional[int]) -> None:
        if timeout_ticks < 1:
            raise ValueError(f"timeout_ticks must be >= 1, got {timeout_ticks!r}")
        self.timeout_ticks = timeout_ticks
        self.heard_tick = started_tick  # the router's last call (the start before any)
        self.asked = 0  # control-plane questions so far (for tests and counters)

    def heard(self, now: int) -> None:
        """The router called now.

        Args:
            now: the clock, in ticks.
        """
        self.heard_tick = now if self.heard_tick is None else max(self.heard_tick, now)

    def due(self, now: int) -> bool:
        """Whether the router has been unheard long enough to ask the control plane.

        Args:
            now: the clock, in ticks.

        Returns:
            True: ask whether the router exists, then call :meth:`decide` with the answer.
        """
        return self.heard_tick is not None and now - self.heard_tick >= self.timeout_ticks

    def decide(self, now: int, router_exists: Optional[bool]) -> bool:
        """The control plane's answer to :meth:`due`'s question.

        Args:
            now: the clock, in ticks.
            router_exists: whether the router's name resolves (a router being restarted does);
                None: no answer (the control plane is unreachable).

        Returns:
            True: the router is gone for good: the replica exits.
        """
        self.asked += 1
        if router_exists is None:
            return False
        if router_exists:
            self.heard(now)
            return False
        return True


def _is_poll(msg: Deliver) -> bool:
    """Whether ``msg`` carries nothing at all (the router's poll of its primary)."""
    return msg.is_null and not (msg.announcements or msg.reply_copies or msg.join or msg.give_up_from
                                or msg.oneway_taken)


class ReplicaHost:
    """One replica's Deliver loop.

    Args:
        core: the replica's core.
        io: the runtime (answers, the effects, the clock).
    """

    def __init__(self, core: ReplicaCore, io: ReplicaIO) -> None:
        self.core = core
        self.io = io
        self.turns = ReplicaTurns()
        self.later: List[Tuple[str, int, Deliver, Any]] = []  # Delivers waiting for an earlier one
        self.driver: Optional[Tuple[str, Any]] = None  # (epoch, token) of the Deliver that drives
        self.standby: Optional[Tuple[str, Any]] = None  # (epoch, token) of the one that takes over
        self.busy = False  # an effect is out with the runtime
        self.router_counts: Dict[str, int] = {}  # the router's counters, kept for a restarted router
        self._effect: Optional[Any] = None
        # the tokens of busy polls (``Deliver.busy_poll``) not yet answered: their answers say so
        # (``Delivered.busy_poll``: the router tells them from a Deliver's sent before, row 81)
        self._busy_polls: List[Any] = []

    @property
    def rid(self) -> str:
        """The replica id."""
        return self.core.replica_id

    # ------------------------------------------------------------ inputs

    def tick(self) -> None:
        """Advance the core's clock to ``io.ticks()``."""
        self.core.tick(self.io.ticks())

    def deliver(self, msg: Deliver, epoch: str, seq: int, token: Any) -> None:
        """A Deliver ``(epoch, seq)`` arrived; ``token`` names it in ``io.answer``. Call :meth:`drive` next.

        Raises:
            ValueError: ``seq`` is not positive.
        """
        self._arrive(epoch, seq, msg, token)

    def on_ping(self, counts: Iterable[Tuple[str, int]]) -> None:
        """A ping carrying the router's counters: keep the highest of each (a late ping from a dead
        incarnation carries lower ones)."""
        kept = self.router_counts
        for k, n in counts:
            if n > kept.get(k, -1):
                kept[k] = n

    def state_report(self, epoch: str) -> StateReport:
        """What this replica holds, for a router's recovery; the asking incarnation ``epoch`` is
        adopted: a dead one's Delivers are dropped from now on, so the report is all this replica
        will hold of what that one sent."""
        self.adopt(epoch)
        return self.core.state_report()

    def view_info(self, epoch: str) -> Tuple[int, Tuple[str, ...], str, Dict[str, int]]:
        """``(view, members, role, the router's counters)`` for a restarted router ``epoch``
        rebuilding the view (:func:`ftactors.host.rebuild.rebuilt_view`); ``epoch`` is adopted."""
        self.adopt(epoch)
        core = self.core
        return core.view, tuple(core.members), core.role.value, dict(self.router_counts)

    def adopt(self, epoch: str) -> None:
        """Router incarnation ``epoch`` asked for this replica's state: from now on only its
        Delivers (and later ones') apply; a dead one's that wait are answered with nothing."""
        self.turns.adopt(epoch)
        self._retry_later()

    # ------------------------------------------------------------ effects done

    def executed(self, outcome: Optional[Outcome], nondet: Tuple[Any, ...] = (), wake: Any = None) -> None:
        """The step ``io.execute`` ran ended. Call :meth:`drive` next.

        Args:
            outcome: what the method returned (or raised); None when an async call's step ended
                with the call waiting (it is suspended, and resumes in a later Execute).
            nondet: the values the primary drew in this step.
            wake: the event a resume step admitted (a backup admits the announced one).
        """
        ex = self._effect
        assert self.busy and isinstance(ex, Execute), "executed() without an execution out"
        if outcome is None:
            self.core.suspend(ex.request.msg_id, nondet, wake)
        else:
            self.core.executed(ex.request.msg_id, outcome, nondet, wake)
        self._done()

    def pulled_reply_gone(self, msg_id: MsgId) -> bool:
        """The step out needs the reply of nested request ``msg_id``, and its pull from the callee's
        router read it gone (``ReplyUnavailableError``). Call :meth:`drive` next if True.

        Args:
            msg_id: the nested request.

        Returns:
            True: the step was replaying an announced one, and is given up
            (``ReplicaCore.pulled_reply_gone``): the runtime drops the execution, reports no
            ``executed`` for it, and the driving Deliver is answered with ``Delivered.lost_reply``
            (the router repairs this replica by state transfer). False: the method gets the error.
        """
        ex = self._effect
        assert self.busy and isinstance(ex, Execute), "pulled_reply_gone() without an execution out"
        if not self.core.pulled_reply_gone(msg_id):
            return False
        self.io.count("steps_given_up")
        self._done()
        return True

    def snapshot_taken(self, state: Any, digest: str) -> None:
        """The snapshot ``io.snapshot`` asked for is taken. Call :meth:`drive` next."""
        snap = self._effect
        assert self.busy and isinstance(snap, Snapshot), "snapshot_taken() without a snapshot out"
        self.core.snapshot_taken(snap.position, state, digest)
        self._done()

    def restored(self) -> None:
        """The state ``io.restore`` was asked to load is loaded. Call :meth:`drive` next."""
        assert self.busy and isinstance(self._effect, Restore), "restored() without a restore out"
        self._done()

    def abort(self) -> None:
        """The effect out failed in the runtime (its Deliver call fails): stop driving without an
        answer for the driver; the standby, if any, takes over. Call :meth:`drive` next."""
        self._done()
        self.turns.stop()
        if self.driver is not None:
            self._forget_poll(self.driver[1])
        self.driver = None
        self._hand_over()

    # ------------------------------------------------------------ driving

    def drive(self) -> None:
        """Carry out effects until the core is idle, an effect is out, or the standby takes over
        after an effect; answer the driver when it stops."""
        while self.driver is not None and not self.busy:
            self.core.set_resumable(self.io.resumable())
            eff = self.core.next_effect() if self.turns.keep_driving() else None
            if eff is None and self._may_hold() and self.io.hold(self.driver[1]):
                return  # the primary keeps this Deliver until a suspended call can resume
            if eff is None:
                self.turns.stop()
                epoch, token = self.driver
                self.driver = None
                self._answer(token, self._take_for(epoch))
                self._hand_over()
                continue
            self.busy, self._effect = True, eff
            token = self.driver[1]
            if isinstance(eff, Execute):
                self.io.execute(eff, token)
            elif isinstance(eff, Snapshot):
                self.io.snapshot(eff, token)
            elif isinstance(eff, Restore):
                self.io.restore(eff, token)
            else:  # pragma: no cover - the core has no other effects
                raise AssertionError(f"unknown effect {eff!r}")

    def _may_hold(self) -> bool:
        """Whether the driving Deliver may stay unanswered: the primary holds suspended calls, has
        no replies to send and no standby Deliver waits (the router keeps one extra Deliver
        outstanding to such a primary, so the resumed step's reply leaves at once)."""
        core = self.core
        return (self.turns.keep_driving() and core.role == Role.PRIMARY and bool(core.suspended)
                and not core.replies_waiting())

    def nothing(self) -> Delivered:
        """An answer that carries no output (and claims no progress)."""
        return Delivered(replica=self.core.replica_id, view=self.core.view)

    def _done(self) -> None:
        self.busy, self._effect = False, None

    def _hand_over(self) -> None:
        if self.standby is not None and self.turns.take_over():
            self.driver, self.standby = self.standby, None
            self.io.count("hand_overs")

    def _take_for(self, epoch: str) -> Delivered:
        """The output for a Deliver of ``epoch``: nothing if its router incarnation is gone (the
        output waits for the current one)."""
        return self.core.take_delivered() if self.turns.owns_output(epoch) else self.nothing()

    def _arrive(self, epoch: str, seq: int, msg: Deliver, token: Any) -> None:
        """Apply a Deliver in its turn, then drive, stand by or answer at once."""
        verdict = self.turns.arrive(epoch, seq)
        if verdict is Verdict.LATER:
            assert len(self.later) < LATER_MAX, f"{self.rid}: over {LATER_MAX} Delivers wait for their turn"
            self.later.append((epoch, seq, msg, token))
            return
        if msg.busy_poll:
            self._busy_polls.append(token)
        if verdict is Verdict.STALE:
            self.io.count("stale_delivers")
            self._answer(token, self.nothing())
            return
        try:
            self.core.deliver(msg)
        except StaleViewError:
            self.io.count("stale_view_delivers")
            self.turns.applied()
            self._answer(token, self._take_for(epoch))
            self._retry_later()
            return
        except RemoteProtocolError as exc:
            self.turns.applied()
            self._forget_poll(token)  # answered with nothing: the router's busy poll is out till all are
            self.io.refused(token, exc)
            self._retry_later()
            return
        self.turns.applied()
        if self.busy and _is_poll(msg) and self.core.replies_waiting() and self.turns.owns_output(epoch):
            # the driver is inside an effect (a long call) with replies of earlier calls waiting:
            # they go back now on the router's poll, and the driver keeps driving (docs/faults.md,
            # row 76). A Deliver that carries anything stands by as before: answering it would
            # free the router's room for more Delivers, and the router polls after busy_poll_ticks
            self.io.count("answered_early")
            self._answer(token, self.core.take_delivered())
            self._retry_later()
            return
        claim = self.turns.claim()
        if claim is Claim.DRIVE:
            self.driver = (epoch, token)
        elif claim is Claim.STANDBY:
            self.standby = (epoch, token)
        else:
            self.io.count("answered_at_once")
            self._answer(token, self.nothing())
        self._retry_later()

    def _answer(self, token: Any, out: Delivered) -> None:
        """Answer the Deliver ``token`` names with ``out``, marked ``busy_poll`` if it was a busy poll."""
        if self._busy_polls and self._forget_poll(token):
            out = dataclasses.replace(out, busy_poll=True)
        self.io.answer(token, out)

    def _forget_poll(self, token: Any) -> bool:
        """Forget ``token`` among the busy polls not yet answered.

        Returns:
            True if it was one.
        """
        for i, t in enumerate(self._busy_polls):
            if t is token:
                del self._busy_polls[i]
                return True
        return False

    def _retry_later(self) -> None:
        """Look again at the Delivers that waited for an earlier one."""
        if not self.later:
            return
        waiting, self.later = self.later, []
        for epoch, seq, msg, token in sorted(waiting, key=lambda w: (w[0], w[1])):
            self._arrive(epoch, seq, msg, token)

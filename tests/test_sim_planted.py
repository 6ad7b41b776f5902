"""The simulator catches planted bugs: its invariants can fail."""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Tuple

import pytest

from ftactors.core import Execute, MsgId, ReplicaCore, Role, RouterCore
from ftactors.core.routing.intake import Intake
from ftactors.core.messages import Reply
from ftactors.testing import InvariantViolation, SimOptions, Simulator, draw_options, run_seed, run_swarm
from ftactors.testing.__main__ import main
from ftactors.testing import options as sim_options
from ftactors.testing.hosts import ReplicaHost
from ftactors.testing.models import ReplayExhausted


@pytest.fixture(autouse=True)
def _seeds_as_drawn_before_row_65(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seeds that catch each planted bug were chosen before ``replies_wait_for_backup`` (docs/faults.md
    row 65) and cancels (row 72) were drawn, which change the seeds they turn on: those draws, off."""
    monkeypatch.setattr(sim_options, "DBLFAULT_DRAW", False)
    monkeypatch.setattr(sim_options, "CANCEL_DRAW", False)
    monkeypatch.setattr(sim_options, "GROUP_END_DRAW", False)  # and a group's end (row 89), after them


#: the violation an unfenced deposed primary causes: its reply released (or answered) once more
STALE_REPLY_RELEASED = re.compile(r"I3: (router store released \S+ twice|\S+ answered twice differently)")


def _first_failure(seeds: int = 60, **kw: object) -> str:
    summary = run_swarm(seeds, start=500, stop_after=1, **kw)  # type: ignore[arg-type]
    assert summary.failures, "the planted bug went unnoticed"
    return summary.failures[0].error


def test_backup_executing_in_reception_order_breaks_agreement(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ReplicaCore._next_announced

    def reception_order(self: ReplicaCore) -> Optional[Execute]:
        if self.role == Role.BACKUP and self.requests:  # ignores the primary's announcements
            return Execute(self.executed_upto + 1, next(iter(self.requests.values())), replay=True)
        return original(self)

    monkeypatch.setattr(ReplicaCore, "_next_announced", reception_order)
    error = _first_failure(style="semi-active")
    assert error.startswith(("I1", "I2", "I3", "I4", "I9")), error


def _drop_replayed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: a replica replaying the announced order gets no recorded values (``Execute.nondet``)."""
    original = ReplicaCore._next_announced

    def without_values(self: ReplicaCore) -> Optional[Execute]:
        ex = original(self)
        return dataclasses.replace(ex, nondet=()) if ex is not None else None

    monkeypatch.setattr(ReplicaCore, "_next_announced", without_values)


def test_backups_dropping_the_primarys_now_and_random_values_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the workload drew now()/random() no seed caught this (no method asked for a value);
    now the divergence invariant names it: the backups' replay runs out of values (the runtime's
    RuntimeError), an outcome the primary did not have."""
    _drop_replayed_values(monkeypatch)
    error = _first_failure(style="semi-active")
    assert re.match(r"I9: \S+: \S+ and \S+ recorded different outcomes of \S+ at \d+: "
                    r"(raised ReplayExhausted vs returned|returned vs raised ReplayExhausted)", error), error


def test_backups_drawing_their_own_now_and_random_values_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other way to drop them: a replaying replica draws fresh values as if it were choosing."""
    def fresh(self: ReplicaHost, kind: str, stream: Tuple[int, ...] = ()) -> object:
        value = self.sim.now if kind == "now" else round(self.sim.rng.random(), 6)
        self.drawn.append((stream, value))
        return value

    _drop_replayed_values(monkeypatch)
    monkeypatch.setattr(ReplicaHost, "_draw", fresh)
    error = _first_failure(style="semi-active")
    assert re.match(r"I9: \S+: \S+ and \S+ drew different now\(\)/random\(\) for ", error), error


def test_dropped_values_go_unnoticed_without_draws_in_the_workload(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same planted bug with the workload of before (no method reads now() or random()): invisible."""
    _drop_replayed_values(monkeypatch)
    for seed in range(500, 530):
        Simulator(dataclasses.replace(draw_options(seed, style="semi-active"), p_stamped=0.0, p_gather=0.0)).run()


def _replay_in_draw_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: a replaying replica hands out the announced values in the primary's draw order,
    whichever task asks (one stream per call, as before ``CallContext.stream``): a gathered task whose
    turn comes in another order on this replica gets another task's value."""
    original = ReplicaHost._draw

    def one_stream(self: ReplicaHost, kind: str, stream: Tuple[int, ...] = ()) -> object:
        if self.choosing:
            return original(self, kind, stream)
        recorded = self.replay.recorded
        if len(self.drawn) >= len(recorded):
            raise ReplayExhausted("ftactors: method asked for more nondeterministic values than the primary did")
        value = recorded[len(self.drawn)][1]
        self.drawn.append((stream, value))
        return value

    monkeypatch.setattr(ReplicaHost, "_draw", one_stream)


#: semi-active seeds (their backups execute) whose workload gathers tasks drawing now()/random()
GATHER_SEEDS = [s for s in range(120) if draw_options(s, style="semi-active").p_gather][:4]


def test_a_backup_replaying_values_in_the_wrong_tasks_stream_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gathered tasks interleave in another order on a backup (as their nested replies arrive in
    another order in Ray); a backup that replays the primary's values in draw order, not per task,
    gives one task another's value: I9 names it on every seed that gathers."""
    _replay_in_draw_order(monkeypatch)
    assert len(GATHER_SEEDS) == 4
    for seed in GATHER_SEEDS:
        with pytest.raises(InvariantViolation, match=r"I9: \S+: \S+ and \S+ drew different now\(\)/random\(\) "):
            Simulator(draw_options(seed, style="semi-active")).run()


def test_values_replayed_in_the_wrong_tasks_stream_go_unnoticed_without_gathers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same planted bug with the workload of before (no method gathers tasks, a third of them
    read now() and random() in the method itself): every value is the method's own, one stream,
    and the same seeds pass."""
    _replay_in_draw_order(monkeypatch)
    for seed in GATHER_SEEDS:
        opts = dataclasses.replace(draw_options(seed, style="semi-active"), p_gather=0.0, p_stamped=0.3)
        result = Simulator(opts).run()
        assert result.counts.get("gathers", 0) == 0 and result.counts.get("nondet_draws", 0) > 0, seed


#: seeds whose router fetches arguments by reference for longer than the sequence gap while one client's
#: calls are pipelined on a Ray caller's link, under a scheduler that keeps their order (I10)
FETCH_SEEDS = (21, 72)


def _release_past_announced_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: the intake releases a source's held calls once the gap is over, though an
    earlier call of that source is at the router, its argument still fetched (``fetch_begins``)."""
    monkeypatch.setattr(Intake, "_first_coming", lambda self, src: None)
    monkeypatch.setattr(sim_options, "BUSY_POLL_DRAW", False)  # the draws that found it (before row 76)


def test_an_intake_releasing_past_a_call_whose_argument_is_fetched_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/faults.md row 27 in the simulator: its router fetches an argument by reference over
    several ticks (``fetch_ticks_max``), through the host calls the Ray router makes."""
    _release_past_announced_calls(monkeypatch)
    for seed in FETCH_SEEDS:
        assert draw_options(seed).fetch_ticks_max > draw_options(seed).sequence_gap_ticks
        with pytest.raises(InvariantViolation, match=r"I10: store ran \S+ at \d+, after \S+ at \d+: not in the "
                                                     r"client's order"):
            Simulator(draw_options(seed)).run()


def test_an_intake_releasing_past_a_fetched_call_goes_unnoticed_when_fetches_take_no_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same planted bug with the router of before, which fetched at once: the seeds pass."""
    _release_past_announced_calls(monkeypatch)
    for seed in FETCH_SEEDS:
        result = Simulator(dataclasses.replace(draw_options(seed), fetch_ticks_max=0)).run()
        assert result.counts.get("byref_args", 0) > 0, seed


def test_router_releasing_a_reply_twice_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RouterCore._release

    def release_twice(self: RouterCore, rep: Reply) -> None:
        original(self, rep)
        if rep in self._released:
            self._released.append(rep)

    monkeypatch.setattr(RouterCore, "_release", release_twice)
    assert _first_failure().startswith("I3: router")


def test_acknowledging_before_execution_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dedup bug the simulator found: a backup applied ack_below on reception."""
    original = ReplicaCore._accept_request

    def ack_early(self: ReplicaCore, req: object) -> None:
        self.dedup.acknowledge(req.msg_id.source, req.ack_below)  # type: ignore[attr-defined]
        original(self, req)  # type: ignore[arg-type]

    monkeypatch.setattr(ReplicaCore, "_accept_request", ack_early)
    assert "executed twice" in _first_failure(style="semi-active")


def test_deposed_primary_output_accepted_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without fencing, a paused primary's stale replies reach clients."""
    original = RouterCore.on_delivered

    def no_fencing(self: RouterCore, d: object) -> None:
        original(self, d)  # type: ignore[arg-type]
        if d.replica not in self.links and d.replies:  # type: ignore[attr-defined]
            for rep in d.replies:  # type: ignore[attr-defined]
                if rep.msg_id not in self.replies:
                    self.pending.add(rep.msg_id)
                    self._release(rep)

    monkeypatch.setattr(RouterCore, "on_delivered", no_fencing)
    opts = SimOptions(seed=3, replicas=3, clients=3, ops_per_client=6, p_crash=0, p_pause=0, p_router_crash=0,
                      p_drop=0, p_dup=0, safety_ticks=400, pause_max=60)
    caught = 0
    for seed in range(40):
        sim = Simulator(SimOptions(**{**{f: getattr(opts, f) for f in opts.__slots__}, "seed": seed}))
        for _ in range(15):
            sim.step()
        sim.pause_replica("store", "store-r0", ticks=60)  # far beyond failure_timeout_ticks
        try:
            sim.run()
        except AssertionError as exc:
            # the deposed primary's reply reaches a client a second time (I3); anything else
            # is not this bug being caught, and is raised
            if not STALE_REPLY_RELEASED.match(str(exc)):
                raise
            caught += 1
    assert caught > 0


def test_cli_reports_failures_with_replay_command(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    original = RouterCore._release

    def release_twice(self: RouterCore, rep: Reply) -> None:
        original(self, rep)
        if rep in self._released:
            self._released.append(rep)

    monkeypatch.setattr(RouterCore, "_release", release_twice)
    assert main(["--seeds", "3", "--start", "10"]) == 1
    out = capsys.readouterr().out
    assert "FAIL seed=10" in out
    assert "python -m ftactors.testing --replay 10 --style" in out
    assert "3 seeds, 3 failed" in out


def test_cli_passes_on_the_real_core(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "5", "--style", "passive"]) == 0
    assert "5 seeds, 0 failed" in capsys.readouterr().out


#: what a backup resuming out of the announced order breaks: another call at an acknowledged position
#: (I4), a state or step log unlike the primary's (I1), or a step the reference replay cannot run (I2)
RESUMED_OUT_OF_ORDER = re.compile(r"(I4: \S+ executes \S+ at \d+, where the acknowledged|I1: |I2: )")
#: the seeds from 500 that the resume-order plant needs to be caught (and that pass without it)
ASYNC_SEEDS = 60


def test_the_resume_order_seeds_pass_without_the_plant() -> None:
    summary = run_swarm(ASYNC_SEEDS, start=500, style="semi-active")
    assert not summary.failures, [f.error for f in summary.failures]
    assert summary.counts["resumes"] > 0


def test_backup_resuming_in_arrival_order_breaks_agreement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Async steps: a backup that resumes the suspended call whose nested reply arrived first here,
    instead of the one the primary announced at that position, diverges (its digest, its step log)."""
    original = ReplicaCore._next_announced

    def arrival_order(self: ReplicaCore) -> Optional[Execute]:
        ann = self.order.get(self.executed_upto + 1)
        if self.role == Role.BACKUP and ann is not None and ann.resume:
            first = next((m for m in self._resumable if m in self.suspended), None)
            if first is not None and first != ann.msg_id:
                held = self.suspended[first]
                return Execute(ann.position, held.request, replay=True, nondet=ann.nondet, resume=held.resumes + 1)
        return original(self)

    monkeypatch.setattr(ReplicaCore, "_next_announced", arrival_order)
    summary = run_swarm(ASYNC_SEEDS, start=500, stop_after=1, style="semi-active")
    assert summary.failures, "the planted resume-order bug went unnoticed"
    error = summary.failures[0].error
    assert RESUMED_OUT_OF_ORDER.match(error), error


def test_an_async_backup_pulling_at_the_step_that_suspends_on_its_nested_call_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 (docs/faults.md row 35): the Ray runtime's old rule, planted in the decision both hosts
    share (``ReplicaCore.copy_or_pull``): a backup whose async step makes a nested call before its
    copy arrived pulls it at once, though the copy rides with the announcement of the step that
    resumes the call. Fault-free, invariant I5 names the pulls."""
    original = ReplicaCore.copy_or_pull

    def pull_at_once(self: ReplicaCore, msg_id: MsgId, consuming: bool) -> Tuple[Optional[Reply], bool]:
        return original(self, msg_id, True)

    opts = SimOptions(seed=1, replicas=3, clients=3, ops_per_client=10, p_crash=0, p_pause=0, p_router_crash=0,
                      p_drop=0, p_dup=0, p_resources=0, safety_ticks=300, nested=True, model="kv",
                      async_steps=True, faults=False)
    Simulator(opts).finish()  # passes with the shared rule: the copy is awaited, never pulled
    monkeypatch.setattr(ReplicaCore, "copy_or_pull", pull_at_once)
    with pytest.raises(InvariantViolation, match=r"I5: fault-free run, yet backups pulled \d+ nested reply copies"):
        Simulator(opts).finish()


#: seeds from 500 with re-entrant rings or timers in the workload (``draw_options``)
RING_SEEDS = [s for s in range(500, 800) if draw_options(s).p_ring][:20]
#: (timer seeds without starved routers: no fault strikes a starved router's group, and this bug needs a
#: primary crash while a call sleeps)
TIMER_SEEDS = [s for s in range(500, 800) if draw_options(s).p_timer and not draw_options(s).p_router_starve][:20]


def _no_reentrance(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: a primary starts no new call while one is suspended (an async method is run
    as a sync one that yields only to its own nested replies): a call back into the group waits."""
    original = ReplicaCore._next_scheduled

    def one_at_a_time(self: ReplicaCore) -> Optional[Execute]:
        return None if self.suspended else original(self)

    monkeypatch.setattr(ReplicaCore, "_next_scheduled", one_at_a_time)


def test_no_reentrance_is_caught_by_the_rings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ring front -> store -> front cannot finish: no call completes once one is in flight (I6)."""
    _no_reentrance(monkeypatch)
    failures = []
    for seed in RING_SEEDS[:6]:
        try:
            run_seed(seed)
        except InvariantViolation as exc:
            failures.append(str(exc))
    assert failures, "the planted no-re-entrance bug went unnoticed"
    assert all(f.startswith("I6: ") for f in failures), failures


def test_no_reentrance_goes_unnoticed_without_rings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same plant with the workload of before (async steps, no rings): invisible."""
    _no_reentrance(monkeypatch)
    for seed in RING_SEEDS[:6]:
        run_seed(seed, options=dataclasses.replace(draw_options(seed), p_ring=0.0))


def test_timers_armed_only_on_the_primary_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: a backup does not arm a sleeping call's timer (it resumes the call when the
    order says so). When the primary dies while a call sleeps, the new primary holds the call
    suspended with no timer to wake it, and the call never completes (I6)."""
    original = ReplicaHost._suspend_on_timer

    def primary_only(self: ReplicaHost, ticks: int) -> None:
        if self.core.role == Role.PRIMARY:
            original(self, ticks)
            return
        arm = self.sim.schedule_timer
        self.sim.schedule_timer = lambda *args: None  # type: ignore[method-assign]
        try:
            original(self, ticks)
        finally:
            self.sim.schedule_timer = arm  # type: ignore[method-assign]

    monkeypatch.setattr(ReplicaHost, "_suspend_on_timer", primary_only)
    failures = []
    for seed in TIMER_SEEDS:
        try:
            run_seed(seed)
        except InvariantViolation as exc:
            failures.append(str(exc))
            break
    assert failures, "the planted timer bug went unnoticed"
    assert failures[0].startswith("I6: "), failures


def test_a_closed_link_not_counted_as_a_failure_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: the links close a crashed replica's link but do not suspect it. Ray's slower
    death notice still removes it, too late for I11 (a crashed member with its link up leaves the view
    within the link's close)."""
    from ftactors.host.links import Links

    original = Links.on_closed

    def not_a_failure(self: Links, rid: str, why: str) -> bool:
        original(self, rid, why)
        return False

    monkeypatch.setattr(Links, "on_closed", not_a_failure)
    error = _first_failure()
    assert re.match(r"I11: \S+ crashed \d+ ticks ago with its link up, still a member", error), error


def test_heartbeats_that_ignore_misses_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug: heartbeats go out but their misses never make a suspicion, so a paused or
    partitioned replica is only found by the core's failure timeout: I11 names it."""
    from ftactors.host.links import Links

    original = Links.tick

    def ignoring_misses(self: Links, now: int) -> object:
        real = self.settings
        self.settings = dataclasses.replace(real, heartbeat_misses_max=10**9)
        try:
            return original(self, now)
        finally:
            self.settings = real

    monkeypatch.setattr(Links, "tick", ignoring_misses)
    error = _first_failure()
    assert re.match(r"I11: \S+ silent for \d+ ticks with its link up, still a member", error), error


def test_a_ray_call_answer_taken_ahead_of_an_answer_parked_on_the_link_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug (row 46 undone): a member's answer by a Ray call goes to the core at once, ahead
    of its earlier answer parked on the link. Swarm seed 101253 (semi-active, deadline) catches it: the
    reply released from the later answer is acknowledged at a position whose parked announcement was
    lost with the primary (rows 46, 47). Row 56's router rule (a reply waits for the order up to its
    position) would hold that reply too: it is undone with it. (Seed 100001 caught it until the core's
    pings of a member with a link went on the link: the run changed; 101253 was the first of seeds
    100400-101700 and 103000-104250 in this cell to catch it.)"""
    from ftactors.core import RouterCore
    from ftactors.host.links import Links

    monkeypatch.setattr(Links, "on_ray_answer", lambda self, rid, answer: (answer,))
    monkeypatch.setattr(RouterCore, "_order_safe_upto", lambda self: 1 << 62)
    monkeypatch.setattr(sim_options, "BUSY_POLL_DRAW", False)  # the draws that found it (before row 76)
    with pytest.raises(InvariantViolation, match=r"I4: \S+ executes \S+ at \d+, where the acknowledged \S+ is"):
        run_seed(101253, options=draw_options(101253, "semi-active", "deadline"))


def _forget_one_way_calls_on_promotion(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planted bug (row 54 undone): a backup promoted to primary forgets the one-way nested calls
    its dead primary may not have delivered, and sends none again."""
    original = ReplicaCore._promote

    def forgetting(self: ReplicaCore) -> None:
        self.oneway_kept.clear()
        original(self)

    monkeypatch.setattr(ReplicaCore, "_promote", forgetting)


def test_a_promoted_primary_that_forgets_the_one_way_calls_on_their_way_is_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 94 makes one-way nested calls (``fwd1``) and crashes the front's primary while one is on
    its way (``p_oneway_nested_crash``): with the plant the call never reaches the store and the joint
    replay, in which the front's order made it, does not find it there."""
    _forget_one_way_calls_on_promotion(monkeypatch)
    monkeypatch.setattr(sim_options, "BUSY_POLL_DRAW", False)  # the draws that found it (before row 76)
    with pytest.raises(InvariantViolation, match=r"I4: nested call front\|c\d+#\d+#1 is not in the order of store"):
        run_seed(94)


def test_the_one_way_crash_seed_passes_without_the_plant() -> None:
    """Seed 94 unplanted: the promoted primary sends the one-way call again and it takes effect once."""
    result = run_seed(94)
    assert result.counts["oneway_nested_crashes"] > 0 and result.counts["oneway_nested_resent"] > 0, result.counts

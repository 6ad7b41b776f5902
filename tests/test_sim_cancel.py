"""``ray.cancel`` in the simulator (docs/faults.md rows 67, 72): clients cancel calls before or after their
router took them; a call the router gave up never runs, one it had taken runs once, and the caller's later
calls do not wait ``sequence_gap_ticks`` for one it gave up (invariant I12)."""

from __future__ import annotations

import heapq
from dataclasses import replace

import pytest

from ftactors.core import MsgId
from ftactors.testing import InvariantViolation, SimOptions, Simulator, cluster, draw_options, options, run_seed
from ftactors.testing.events import AbandonArrives, CancelCall, NoticeAnswered


def quiet_options(**kw: object) -> SimOptions:
    """One client, no random faults, no script: the test issues and cancels the calls."""
    base = SimOptions(seed=1, replicas=3, clients=1, ops_per_client=0, p_crash=0, p_pause=0, p_router_crash=0,
                      p_drop=0, p_dup=0, p_resources=0, safety_ticks=0, faults=False)
    return replace(base, **kw)  # type: ignore[arg-type]


def c0(seq: int) -> MsgId:
    return MsgId("c0", seq)


def taken_call_cancelled_then_a_later_call_overtakes_it() -> Simulator:
    """c1's long method keeps the replicas busy; c0#1 (priority 0) is taken by the router and waits at the
    replicas; c0 cancels it, the router answers that it had taken it; c0#2 (priority 3) then goes first
    under the priority scheduler."""
    sim = Simulator(quiet_options(scheduling="priority", clients=2))
    sim._hints = lambda: {"priority": 0, "deadline_tick": None, "resources": ()}  # type: ignore[method-assign]
    sim.add_operation("c1", "store", "slow", (12, "add", (1,)))
    sim.run_until(lambda: sim.replicas["store"]["store-r0"].busy)  # the primary
    sim.add_operation("c0", "store", "add", (10,))
    router = sim.routers["store"]
    sim.run_until(lambda: router.core is not None and c0(1) in router.core.requests)
    sim._on_CancelCall(CancelCall("c0", c0(1)))
    sim._on_AbandonArrives(AbandonArrives("store", c0(1)))
    assert sim.counts["cancels_taken"] == 1 and not sim.abandoned
    sim._hints = lambda: {"priority": 3, "deadline_tick": None, "resources": ()}  # type: ignore[method-assign]
    sim.add_operation("c0", "store", "add", (100,))
    return sim


def test_a_cancelled_call_the_router_had_taken_runs_once_though_a_later_call_runs_first() -> None:
    """Found by the simulator's cancels (seeds 3 and 14): the caller settled a cancelled call at once (its
    sweep settled the cancelled result), so the later call's ``ack_below`` passed it; under a scheduler that
    reorders, the later call ran first and raised the replicas' floor past the cancelled one, which then ran
    (``AssertionError: c0#1 executed twice`` in ``DedupTable.record``). Now the caller keeps a cancelled call
    unsettled unless its router gave it up (docs/faults.md row 72)."""
    sim = taken_call_cancelled_then_a_later_call_overtakes_it()
    result = sim.finish()
    log = [e.msg_id for e in sim.replicas["store"]["store-r0"].log]
    assert log.index(c0(2)) < log.index(c0(1)), "the later call did not overtake the cancelled one"
    assert log.count(c0(1)) == 1 and result.counts["cancels_ran"] == 1


def test_the_caller_settles_a_cancelled_call_the_router_had_taken_once_it_ran() -> None:
    """Row 82: the same scenario; the caller kept the cancelled call unsettled for good (row 72), its
    ``ack_below`` at c0#1 (so the group kept each later reply of c0). Now the router answers the notice
    once the call ran, and the caller settles it then, not before (I12)."""
    sim = taken_call_cancelled_then_a_later_call_overtakes_it()
    result = sim.finish()
    assert sim.clients["c0"].core.ack_below() == 3
    assert result.counts["cancels_settled_ran"] == 1
    assert sim.settled_ran[c0(1)] >= sim.checker.first_run[c0(1)]


def test_a_caller_told_its_cancelled_call_ran_before_it_did_breaks_i12() -> None:
    """I12 can fail: a caller settling a cancelled call that no replica executed yet (told "ran" too early)."""
    sim = Simulator(quiet_options())
    sim.add_operation("c0", "store", "add", (1,))
    sim.run_until(lambda: c0(1) in sim.clients["c0"].outstanding)
    with pytest.raises(InvariantViolation, match=r"I12: c0 settles its cancelled c0#1 .* no replica executed it"):
        sim._on_NoticeAnswered(NoticeAnswered(c0(1)))


def test_a_cancelled_call_settled_at_once_fails_as_the_runtime_did_before_row_72(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scenario with the caller of before row 72 (``SETTLE_CANCELLED``): the replicas assert."""
    monkeypatch.setattr(cluster, "SETTLE_CANCELLED", True)
    sim = taken_call_cancelled_then_a_later_call_overtakes_it()
    with pytest.raises(AssertionError, match="c0#1 executed twice"):
        sim.finish()


def test_a_call_cancelled_before_the_router_took_it_never_runs_and_does_not_hold_the_next() -> None:
    """The notice reaches the router before the call: it is given up; the call, arriving after all, is
    refused; the caller's next call is not held ``sequence_gap_ticks`` for it (I12 checks each step)."""
    sim = Simulator(quiet_options(sequence_gap_ticks=50, window=2))
    sim.add_operation("c0", "store", "add", (1,))
    sim.run_until(lambda: c0(1) in sim.clients["c0"].outstanding)
    sim._on_CancelCall(CancelCall("c0", c0(1)))
    sim._on_AbandonArrives(AbandonArrives("store", c0(1)))
    assert c0(1) in sim.abandoned and sim.clients["c0"].core.ack_below() == 2
    sim.add_operation("c0", "store", "add", (10,))
    steps = sim.run_until(lambda: not sim.clients["c0"].outstanding and sim.history)
    assert steps < 20, f"the next call took {steps} ticks (sequence_gap_ticks=50)"
    result = sim.finish()
    assert [op.msg_id for op in sim.history] == [c0(2)] and result.counts["cancels_ran"] == 0
    assert result.counts["fenced_submits"] >= 1  # the cancelled call arrived after the notice: refused


def test_a_given_up_call_that_ran_all_the_same_breaks_i12() -> None:
    """I12 can fail: a call recorded as given up by its router must not execute."""
    sim = Simulator(quiet_options())
    sim.add_operation("c0", "store", "add", (1,))
    sim.abandoned[c0(1)] = ("store", 1, 0)  # as if the router had said so before it ran
    with pytest.raises(InvariantViolation, match="I12: .* executes c0#1 .* after router incarnation 1 reported"):
        sim.finish()


def test_seed_150_a_given_up_call_arriving_late_is_not_a_duplicate() -> None:
    """Seed 150 (fault-free, passive, cancels, arguments by reference fetched slowly) once callers settled the
    cancelled calls that ran (row 82): a given-up call that arrived after a later call's ``ack_below`` passed
    it was counted a duplicate (``I5: store saw 1 duplicates without retransmissions``)."""
    result = run_seed(150, "passive", "sequence")
    assert result.counts["cancels_abandoned"] > 0 and result.counts["cancels_settled_ran"] > 0


def test_swarm_seed_102094_a_call_whose_stale_position_a_later_view_took_is_not_held_for_good() -> None:
    """Swarm seed 102094 (semi-active, priority, router crashes in a failover, replies wait for a backup) once
    its callers settled their cancelled calls that ran (row 82): a rebuilt router kept view 5's positions of
    calls that view 6 re-ordered, took them for known and held their retries for good (``I6: c0#32 pending
    over 372 ticks after faults stopped``); ``OrderLog.merge`` now drops the replaced message's position."""
    result = run_seed(102094, "semi-active", "priority")
    assert result.counts["cancels_settled_ran"] > 0 and result.counts["router_rebuilds"] > 0


@pytest.mark.parametrize("seed", [3, 14])
def test_seeds_that_found_row_72(seed: int) -> None:
    """The swarm seeds whose cancels found row 72 (a priority and a deadline scheduler)."""
    assert draw_options(seed).p_cancel
    result = run_seed(seed)
    assert result.counts["cancels_taken"] > 0 and result.counts["cancels_ran"] > 0
    assert result.counts["cancels_settled_ran"] > 0  # row 82: their callers settled them once they ran


def test_seeds_without_cancels_draw_every_other_option_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancels come from their own stream (``cancel-<seed>``): a seed's other options are the same with the
    draw on or off, and about ``P_CANCEL`` of the seeds draw cancels."""
    on = [draw_options(seed) for seed in range(200)]
    monkeypatch.setattr(options, "CANCEL_DRAW", False)
    off = [draw_options(seed) for seed in range(200)]
    assert [replace(o, p_cancel=0.0, cancel_ticks_max=0) for o in on] == off
    assert 30 <= sum(1 for o in on if o.p_cancel) <= 90


@pytest.mark.parametrize("seed,style,scheduling", [(100142, "semi-active", "deadline"), (111137, "passive", "sequence")])
def test_a_rebuilt_router_still_recovering_does_not_give_up_a_call_a_replica_holds(
        seed: int, style: str, scheduling: str) -> None:
    """Swarm seeds (row 72b): the router took the call and crashed, the client cancelled it, and the
    notice reached the rebuilt router before the members' reports told it the call was relayed: it gave
    the call up (so the caller settled it), and the call ran all the same (``I12: store-r0 executes c2#26
    at 87, first run at tick 291, after router incarnation 3 reported it given up at tick 226``). Now a
    recovering router gives nothing up."""
    result = run_seed(seed, style, scheduling)
    assert result.counts["cancels"] > 0 and result.counts["router_rebuilds"] > 0


def test_swarm_seed_102169_with_cancels_quiesces() -> None:
    """Swarm seed 102169 (semi-active, priority, nested, 2 replicas, ``sources_max`` 28): with its 8 cancels
    (all taken, run) front's primary held a call nobody waited for any more and was never polled for it
    (``I6: no quiescence 400 ticks after the last reply``): docs/faults.md row 72c."""
    run_seed(102169, "semi-active", "priority")


def cancelled_call_whose_notice_its_dead_router_lost() -> Simulator:
    """c1's long method keeps the replicas busy; the router takes c0#1, then crashes; c0 cancels c0#1 and
    its notice reaches no router (Ray's call to a router that died fails; the caller ignored the error)."""
    sim = Simulator(quiet_options(clients=2, faults=True))  # a router crash: the fault-free checks (I5) are off
    sim.add_operation("c1", "store", "slow", (12, "add", (1,)))
    sim.run_until(lambda: sim.replicas["store"]["store-r0"].busy)  # the primary
    sim.add_operation("c0", "store", "add", (10,))
    router = sim.routers["store"]
    sim.run_until(lambda: router.core is not None and c0(1) in router.core.requests)
    assert sim.crash_router("store")
    sim._on_CancelCall(CancelCall("c0", c0(1)))
    sim.queue = [e for e in sim.queue if not (isinstance(e[2], AbandonArrives) and e[2].msg_id == c0(1))]
    heapq.heapify(sim.queue)  # its notice arrives now, while the router is down
    sim._on_AbandonArrives(AbandonArrives("store", c0(1)))
    assert sim.counts["cancel_notices_lost"] == 1
    return sim


def test_a_cancelled_call_whose_notice_its_dead_router_lost_is_settled_all_the_same() -> None:
    """Row 88: a cancelled call whose notice got no settling answer (lost with its router, or "unknown")
    stayed unsettled for good: its caller's ``ack_below`` stayed at it, and every replica kept the caller's
    later replies. Now the caller sends the notice again (``core.CancelRenotices``) and the rebuilt router
    answers it."""
    sim = cancelled_call_whose_notice_its_dead_router_lost()
    result = sim.finish()
    assert sim.clients["c0"].core.ack_below() == 2
    assert result.counts["cancel_renotices"] >= 1 and result.counts["router_rebuilds"] == 1


def test_a_cancelled_call_left_unsettled_breaks_i12(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same with the caller of before row 88 (``RENOTICE_CANCELLED`` off): I12 fails at quiescence."""
    monkeypatch.setattr(cluster, "RENOTICE_CANCELLED", False)
    sim = cancelled_call_whose_notice_its_dead_router_lost()
    with pytest.raises(InvariantViolation, match=r"I12: c0 never settles its cancelled c0#1 \(its ack_below stays at 1"):
        sim.finish()


def test_seed_that_found_row_88_settles_every_cancelled_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 14: a cancelled call's notice got no settling answer (``I12: c0 never settles its cancelled c0#4
    (its ack_below stays at 4; 0 notices of its sent again)`` without the re-notice)."""
    result = run_seed(14)
    assert result.counts["cancel_renotices"] > 0 and "cancels_left_unsettled" not in result.counts
    monkeypatch.setattr(cluster, "RENOTICE_CANCELLED", False)
    with pytest.raises(InvariantViolation, match=r"I12: c0 never settles its cancelled c0#4"):
        run_seed(14)

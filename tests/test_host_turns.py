"""ReplicaTurns: the replica host's turn-taking, as transcripts (no Ray, no threads)."""

from __future__ import annotations

import pytest

from ftactors.host import Claim, ReplicaTurns, Verdict


def test_delivers_of_one_router_apply_in_their_order_whatever_order_they_arrive_in() -> None:
    t = ReplicaTurns()
    assert t.arrive("e1", 2) is Verdict.LATER  # Ray ran the second call first
    assert t.arrive("e1", 1) is Verdict.NOW
    t.applied()
    assert t.arrive("e1", 2) is Verdict.NOW
    t.applied()
    assert t.arrive("e1", 2) is Verdict.STALE  # a repeat


def test_a_new_router_incarnation_whose_first_deliver_is_late_is_not_dropped() -> None:
    """Regression (issue 10): the replica took a new router's second Deliver, arriving before
    its first, for one of a dead router's, and dropped it."""
    t = ReplicaTurns()
    assert t.arrive("e1", 1) is Verdict.NOW
    t.applied()
    assert t.arrive("e2", 2) is Verdict.LATER
    assert t.arrive("e2", 1) is Verdict.NOW
    t.applied()
    assert t.arrive("e2", 2) is Verdict.NOW


def test_a_dead_incarnation_is_dropped_once_its_successor_spoke() -> None:
    t = ReplicaTurns()
    t.arrive("e1", 1)
    t.applied()
    assert t.arrive("e2", 1) is Verdict.NOW
    t.applied()
    assert t.arrive("e1", 2) is Verdict.STALE
    assert not t.owns_output("e1") and t.owns_output("e2")


def test_a_state_query_of_a_new_router_fences_its_predecessor() -> None:
    """Regression (simulator seed 36 once a dead router's Deliver could still arrive): the dead
    router's last Deliver reached the primary after the new router's state query; the primary
    executed a request the new router never learnt, and after a primary crash its position,
    already acknowledged, went to another call."""
    t = ReplicaTurns()
    t.arrive("e1", 1)
    t.applied()
    t.adopt("e2")  # the restarted router asks for the state
    assert t.arrive("e1", 2) is Verdict.STALE
    assert t.arrive("e2", 1) is Verdict.NOW
    t.adopt("e1")  # an older one never wins back
    assert t.owns_output("e2")


def test_one_driver_one_standby_the_rest_answer_at_once() -> None:
    t = ReplicaTurns()
    assert t.claim() is Claim.DRIVE
    assert t.keep_driving()
    assert t.claim() is Claim.STANDBY
    assert t.claim() is Claim.ANSWER
    assert not t.take_over()  # the driver is still in its effect
    assert not t.keep_driving()  # after the effect: hand over
    t.stop()
    assert t.take_over()
    assert t.keep_driving() and t.claim() is Claim.STANDBY


def test_output_of_an_execution_started_under_a_dead_router_goes_to_the_new_one() -> None:
    """Regression (issue 10, hole 1): the result of a long call went back to the router that
    started it, which had died."""
    t = ReplicaTurns()
    t.arrive("e1", 1)
    t.applied()
    assert t.claim() is Claim.DRIVE  # executes a 3 s call
    assert t.arrive("e2", 1) is Verdict.NOW  # the restarted router speaks meanwhile
    t.applied()
    assert t.claim() is Claim.STANDBY
    assert not t.keep_driving()
    t.stop()
    assert not t.owns_output("e1")  # the old driver answers its dead router with nothing
    assert t.take_over() and t.owns_output("e2")


def test_bad_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        ReplicaTurns().arrive("e1", 0)

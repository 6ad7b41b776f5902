"""``core.CancelRenotices``: when a caller sends again the notice of a call it cancelled (docs/faults.md row 88)."""

from __future__ import annotations

import pytest

from ftactors.core import CancelRenotices, LocalProtocolError


def test_a_notice_answered_unknown_is_sent_again_renotice_ticks_after_the_answer() -> None:
    r = CancelRenotices(renotice_ticks=5, answer_wait_ticks=100)
    assert r.cancelled(7, now=0) is None
    r.answered(7, settled=False, now=3)
    assert r.due(7).send == ()
    assert r.due(8).send == (7,)
    assert r.due(9).send == ()  # out again: waits for its answer
    r.answered(7, settled=True, now=12)
    assert len(r) == 0 and r.next_due() is None and r.sent_again == 1


def test_a_notice_that_got_no_answer_is_sent_again_answer_wait_ticks_after_it() -> None:
    r = CancelRenotices(renotice_ticks=5, answer_wait_ticks=20)
    r.cancelled(3, now=10)
    assert r.next_due() == 30
    assert r.due(29).send == () and r.due(30).send == (3,) and r.next_due() == 50


def test_a_settling_answer_forgets_the_call_and_no_notice_follows() -> None:
    r = CancelRenotices(renotice_ticks=1, answer_wait_ticks=1)
    r.cancelled(1, now=0)
    r.answered(1, settled=True, now=0)
    assert r.due(100) == ((), (), None) and 1 not in r


def test_past_renotices_max_the_call_is_dropped_unsettled_and_said_once() -> None:
    r = CancelRenotices(renotice_ticks=1, answer_wait_ticks=1, renotices_max=2)
    r.cancelled(1, now=0)
    r.cancelled(2, now=0)
    sent = [r.due(t) for t in range(1, 4)]
    assert [s.send for s in sent] == [(1, 2), (1, 2), ()]
    assert sent[2].dropped == (1, 2) and "renotices_max" in (sent[2].note or "")
    r.cancelled(3, now=10)
    later = [r.due(t) for t in range(11, 14)]
    assert later[2].dropped == (3,) and later[2].note is None  # said once
    assert r.left_unsettled == 3 and len(r) == 0


def test_past_tracked_max_a_cancelled_call_is_not_tracked_and_said_once() -> None:
    r = CancelRenotices(renotice_ticks=1, answer_wait_ticks=1, tracked_max=1)
    assert r.cancelled(1, now=0) is None
    assert "tracked_max" in (r.cancelled(2, now=0) or "")
    assert r.cancelled(3, now=0) is None and 2 not in r and r.left_unsettled == 2


def test_bounds_below_one_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        CancelRenotices(renotice_ticks=0, answer_wait_ticks=1)

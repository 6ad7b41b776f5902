"""Schedulers: each built-in picks in its documented order, deterministically."""

from __future__ import annotations

from typing import List, Optional

import pytest

from ftactors.core import (
    ConfigError,
    Kind,
    MsgId,
    Queued,
    Request,
    ScheduleContext,
    make_scheduler,
)


def req(source: str, seq: int, priority: int = 0, deadline: Optional[int] = None,
        resources: tuple = ()) -> Request:
    return Request(Kind.SYNC_REQUEST, MsgId(source, seq), "g", "m", priority=priority, deadline_tick=deadline,
                   resources=resources)


def drain(name: str, reqs: List[Request], ctx: Optional[ScheduleContext] = None) -> List[str]:
    sched = make_scheduler(name)
    for i, r in enumerate(reqs):
        sched.push(Queued(r, i, 0))
    out = []
    while (item := sched.pop(ctx or ScheduleContext(100, next_seq={}))) is not None:
        out.append(str(item.request.msg_id))
    return out


def test_reception_order() -> None:
    assert drain("reception", [req("b", 1), req("a", 1), req("c", 1)]) == ["b#1", "a#1", "c#1"]


def test_priority_order_highest_first_ties_by_reception() -> None:
    reqs = [req("a", 1, priority=1), req("b", 1, priority=5), req("c", 1, priority=1), req("d", 1, priority=9)]
    assert drain("priority", reqs) == ["d#1", "b#1", "a#1", "c#1"]


def test_deadline_order_earliest_first_none_last() -> None:
    reqs = [req("a", 1), req("b", 1, deadline=30), req("c", 1, deadline=10), req("d", 1, deadline=30)]
    assert drain("deadline", reqs) == ["c#1", "b#1", "d#1", "a#1"]


def test_fair_order_round_robin_across_sources() -> None:
    reqs = [req("a", 1), req("a", 2), req("a", 3), req("b", 1), req("c", 1), req("b", 2)]
    assert drain("fair", reqs) == ["a#1", "b#1", "c#1", "a#2", "b#2", "a#3"]


def test_sequence_order_waits_for_earlier_sequence_numbers() -> None:
    sched = make_scheduler("sequence")
    sched.push(Queued(req("a", 3), 0, 0))
    sched.push(Queued(req("b", 1), 1, 0))
    ctx = ScheduleContext(now_tick=1, next_seq={"a": 2}, sequence_gap_ticks=5)
    first = sched.pop(ctx)
    assert first is not None and str(first.request.msg_id) == "b#1"
    assert sched.pop(ctx) is None  # a#3 waits for a#2
    sched.push(Queued(req("a", 2), 2, 1))
    got = sched.pop(ctx)
    assert got is not None and str(got.request.msg_id) == "a#2"
    late = sched.pop(ScheduleContext(now_tick=1, next_seq={"a": 3}, sequence_gap_ticks=5))
    assert late is not None and str(late.request.msg_id) == "a#3"


def test_sequence_gap_expires() -> None:
    sched = make_scheduler("sequence")
    sched.push(Queued(req("a", 5), 0, 0))
    assert sched.pop(ScheduleContext(now_tick=4, next_seq={"a": 1}, sequence_gap_ticks=5)) is None
    assert sched.pop(ScheduleContext(now_tick=5, next_seq={"a": 1}, sequence_gap_ticks=5)) is not None


def test_resources_skip_unavailable() -> None:
    reqs = [req("a", 1, resources=("disk",)), req("b", 1), req("c", 1, resources=("net",))]
    ctx = ScheduleContext(0, unavailable=frozenset({"disk"}), next_seq={})
    assert drain("resources", reqs, ctx) == ["b#1", "c#1"]


def test_double_push_is_our_bug() -> None:
    sched = make_scheduler("reception")
    sched.push(Queued(req("a", 1), 0, 0))
    with pytest.raises(AssertionError):
        sched.push(Queued(req("a", 1), 1, 0))


def test_unknown_scheduler_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        make_scheduler("lottery")
    assert type(make_scheduler(make_scheduler("fair"))).__name__ == "FairOrder"


def test_fair_order_remembers_at_most_sources_max_sources() -> None:
    sched = make_scheduler("fair", sources_max=8)
    ctx = ScheduleContext(0)
    for i in range(1, 2001):  # a nested source per calling message
        sched.push(Queued(req(f"A|c#{i}", 1), i, 0))
        assert sched.pop(ctx) is not None
    assert len(sched._served) <= 8  # type: ignore[attr-defined]


def test_fair_order_is_unchanged_by_forgetting_the_least_recently_served() -> None:
    reqs = [req(s, q) for q in range(1, 4) for s in ("a", "b", "c", "d")]
    bounded = make_scheduler("fair", sources_max=2)
    for i, r in enumerate(reqs):
        bounded.push(Queued(r, i, 0))
    order = []
    while (q := bounded.pop(ScheduleContext(0))) is not None:
        order.append(str(q.request.msg_id))
    assert order == drain("fair", reqs)

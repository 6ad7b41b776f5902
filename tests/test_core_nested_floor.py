"""``sources_max`` under a scheduler that reorders: a calling message that waits while later messages of
its client run and have their nested sources forgotten by the callee still gets its nested calls run
(the callee's root floor never passes a message the caller still holds), and a duplicate of a
forgotten source still never runs twice."""

from __future__ import annotations

from typing import List, Tuple

import pytest

from ftactors.core import CoreConfig, Deliver, Execute, Kind, MsgId, NewView, Outcome, ReplicaCore, Request
from ftactors.core.dedup import DedupTable
from ftactors.core.messages import HOLDS_CARRIED_MAX


def _front(sources_max: int = 100) -> ReplicaCore:
    return ReplicaCore("front", "front-r0", CoreConfig(sources_max=sources_max), "priority",
                       NewView(1, ("front-r0", "front-r1")))


def _store(sources_max: int) -> ReplicaCore:
    return ReplicaCore("store", "store-r0", CoreConfig(sources_max=sources_max), "reception",
                       NewView(1, ("store-r0", "store-r1")))


def _client_call(seq: int, priority: int) -> Request:
    return Request(Kind.SYNC_REQUEST, MsgId("c", seq), "front", "fwd", priority=priority)


def _at_store(store: ReplicaCore, req: Request) -> Tuple[str, object]:
    """Deliver ``req`` to the store's primary and run it: ("ran", value) or ("refused", the error)."""
    store.deliver(Deliver(view=1, requests=(req,)))
    eff = store.next_effect()
    if isinstance(eff, Execute):
        assert eff.request.msg_id == req.msg_id
        store.executed(req.msg_id, Outcome(True, str(req.msg_id)))
        return "ran", store.take_delivered().replies[0].outcome.value
    (reply,) = store.take_delivered().replies
    return "refused", reply.outcome.value


def _run_front(front: ReplicaCore, store: ReplicaCore, steps: int = 1_000_000) -> List[Tuple[str, str, object]]:
    """Run the front's calls in its scheduler's order (at most ``steps``), each making one nested call
    to the store."""
    out: List[Tuple[str, str, object]] = []
    while len(out) < steps and isinstance(eff := front.next_effect(), Execute):
        mid = eff.request.msg_id
        nested, send = front.nested_request("store", "op")
        assert send
        what, value = _at_store(store, nested)
        out.append((str(mid), what, value))
        front.executed(mid, Outcome(what == "ran", value))
    return out


def test_a_call_that_waited_behind_later_calls_of_its_client_still_runs_its_nested_call() -> None:
    front, store = _front(), _store(sources_max=2)
    # c#1 waits (priority 0) while c#2..c#7 (priority 5) run; each makes one nested call to the store,
    # which tracks 2 sources: it forgets front|c#2.. while c#1 still waits at the front
    calls = (_client_call(1, 0),) + tuple(_client_call(seq, 5) for seq in range(2, 8))
    front.deliver(Deliver(view=1, requests=calls))
    ran = _run_front(front, store)
    assert [m for m, _, _ in ran] == ["c#2", "c#3", "c#4", "c#5", "c#6", "c#7", "c#1"]
    assert [(m, what) for m, what, _ in ran] == [(m, "ran") for m, _, _ in ran], ran


def test_a_duplicate_of_a_forgotten_nested_source_still_never_runs_twice() -> None:
    front, store = _front(), _store(sources_max=2)
    calls = (_client_call(1, 0),) + tuple(_client_call(seq, 5) for seq in range(2, 8))
    front.deliver(Deliver(view=1, requests=calls))
    first: List[Request] = []
    while isinstance(eff := front.next_effect(), Execute):
        nested, _ = front.nested_request("store", "op")
        first.append(nested)
        _at_store(store, nested)
        front.executed(eff.request.msg_id, Outcome(True, None))
    # every source but the last two is forgotten by now (held back or folded): their duplicates,
    # as a new primary of the front re-executing them would send, are refused, never run again
    for dup in first[:-2]:
        assert _at_store(store, dup)[0] == "refused", dup.msg_id


def test_a_floor_raised_past_a_held_call_keeps_that_calls_subtree_apart() -> None:
    table = DedupTable(reply_cache_max=100, sources_max=2)
    for seq in range(2, 9):  # the caller still holds c#1 (waiting) while c#2..c#8 make their calls
        table.record(MsgId(f"front|c#{seq}", 1), None, holds=((1,),))
    assert table.sources() == 2 and table.exemptions() == 1
    assert table.status(MsgId("front|c#1", 1)) == "new"
    assert [table.status(MsgId(f"front|c#{seq}", 1)) for seq in range(2, 7)] == ["expired"] * 5
    # c#1 runs at last and is forgotten in turn: its subtree's own floor covers what it ran
    table.record(MsgId("front|c#1", 1), None)
    for seq in range(9, 12):
        table.record(MsgId(f"front|c#{seq}", 1), None)
    assert table.status(MsgId("front|c#1", 1)) == "expired"
    assert table.status(MsgId("front|c#1", 2)) == "new"  # a later call of c#1, if it still runs
    back = DedupTable.restore(table.export(), 100, 2)  # a checkpoint keeps the exemption and its floor
    assert [back.status(MsgId("front|c#1", q)) for q in (1, 2)] == ["expired", "new"]


def test_exemptions_are_bounded_by_sources_max_and_the_oldest_falls_below_the_floor() -> None:
    table = DedupTable(reply_cache_max=100, sources_max=2)
    held = ((1,), (3,), (5,))  # three calls the caller holds, each passed by a later one
    for seq in (2, 4, 6, 7, 8):
        table.record(MsgId(f"front|c#{seq}", 1), None, holds=held)
    assert table.exemptions() == 2
    assert table.status(MsgId("front|c#1", 1)) == "expired"  # the oldest exemption went: never run twice
    assert [table.status(MsgId(f"front|c#{seq}", 1)) for seq in (3, 5)] == ["new", "new"]


def test_a_source_recorded_again_after_it_was_folded_keeps_its_forgotten_calls_expired() -> None:
    table = DedupTable(reply_cache_max=100, sources_max=1)
    table.record(MsgId("front|c#1", 1), None)
    table.record(MsgId("front|c#1", 2), None)
    table.record(MsgId("front|c#2", 1), None)  # front|c#1 is folded into the floor
    table.record(MsgId("front|c#1", 3), None)  # c#1 still runs: its source is tracked again
    assert [table.status(MsgId("front|c#1", q)) for q in (1, 2, 3, 4)] == ["expired", "expired", "done", "new"]


@pytest.mark.xfail(strict=True, reason="docs/faults.md, Open: more than HOLDS_CARRIED_MAX held calls of one root")
def test_a_caller_holding_more_calls_of_one_client_than_a_request_carries_still_runs_their_nested_calls() -> None:
    """``Request.holds`` carries the lowest ``HOLDS_CARRIED_MAX`` (64) held calling paths: c#1..c#66 wait
    (priority 0) while later calls of c keep coming one at a time and run first (67 calls in flight at
    most, below ``sources_max=100``); the store forgets their sources and its floor passes c#65 and
    c#66, which no request carried: their nested calls read "expired" (``[('c#65', 'refused'),
    ('c#66', 'refused')]``)."""
    front, store = _front(sources_max=100), _store(sources_max=100)
    held = HOLDS_CARRIED_MAX + 2
    front.deliver(Deliver(view=1, requests=tuple(_client_call(seq, 0) for seq in range(1, held + 1))))
    for seq in range(held + 1, held + 151):
        front.deliver(Deliver(view=1, requests=(_client_call(seq, 5),)))
        assert _run_front(front, store, steps=1) == [(f"c#{seq}", "ran", f"front|c#{seq}#1")]
    assert len(front.requests) == held
    ran = _run_front(front, store)
    assert [m for m, _, _ in ran] == [f"c#{seq}" for seq in range(1, held + 1)]
    assert [(m, what) for m, what, _ in ran if what != "ran"] == []


def _reception_front() -> ReplicaCore:
    return ReplicaCore("front", "front-r0", CoreConfig(), "reception", NewView(1, ("front-r0", "front-r1")))


@pytest.mark.xfail(strict=True, reason="docs/faults.md, Open: a call that reaches its caller after later "
                   "calls of its client ran there (sequence_gap_ticks gave up)")
def test_a_call_that_reaches_its_caller_after_later_calls_of_its_client_ran_still_runs_its_nested_call() -> None:
    """The front's router gave up waiting for c#1 (``sequence_gap_ticks``) and relayed c#2..c#7, which ran
    and made their nested calls; the store (``sources_max=2``) forgot their sources and its floor passed
    c#1, which the front never held meanwhile (no request carried it): when c#1 comes at last, its
    nested call reads "expired" (``('c#1', 'refused')``)."""
    front, store = _reception_front(), _store(sources_max=2)
    front.deliver(Deliver(view=1, requests=tuple(_client_call(seq, 0) for seq in range(2, 8))))
    assert [what for _, what, _ in _run_front(front, store)] == ["ran"] * 6
    front.deliver(Deliver(view=1, requests=(_client_call(1, 0),)))
    assert [(m, what) for m, what, _ in _run_front(front, store)] == [("c#1", "ran")]


@pytest.mark.xfail(strict=True, reason="docs/faults.md, Open: a one-way nested call still on its way after "
                   "its calling message finished")
def test_a_one_way_nested_call_delayed_past_later_calls_of_its_client_still_runs() -> None:
    """c#1 sends a one-way nested call and finishes; c#2..c#7 run and make their nested calls first; the
    store (``sources_max=2``) forgets their sources and its floor passes c#1's: the one-way call,
    arriving at last, reads "expired" and is dropped as a duplicate: it never takes effect."""
    front, store = _reception_front(), _store(sources_max=2)
    front.deliver(Deliver(view=1, requests=(_client_call(1, 0),)))
    eff = front.next_effect()
    assert isinstance(eff, Execute)
    oneway, send = front.nested_request("store", "op", kind=Kind.ONEWAY)
    assert send
    front.executed(eff.request.msg_id, Outcome(True, None))
    front.deliver(Deliver(view=1, requests=tuple(_client_call(seq, 0) for seq in range(2, 8))))
    assert [what for _, what, _ in _run_front(front, store)] == ["ran"] * 6
    store.deliver(Deliver(view=1, requests=(oneway,)))  # the one-way call arrives at last
    eff = store.next_effect()
    assert isinstance(eff, Execute) and eff.request.msg_id == oneway.msg_id

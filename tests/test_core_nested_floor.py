"""``sources_max`` under a scheduler that reorders: a calling message that waits while later messages of
its client run and have their nested sources forgotten by the callee still gets its nested calls run
(the callee's root floor never passes a message the caller still holds), and a duplicate of a
forgotten source still never runs twice."""

from __future__ import annotations

from typing import List, Tuple

from ftactors.core import CoreConfig, Deliver, Execute, Kind, MsgId, NewView, Outcome, ReplicaCore, Request
from ftactors.core.dedup import DedupTable


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


def _run_front(front: ReplicaCore, store: ReplicaCore) -> List[Tuple[str, str, object]]:
    """Run the front's calls in its scheduler's order, each making one nested call to the store."""
    out = []
    while isinstance(eff := front.next_effect(), Execute):
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

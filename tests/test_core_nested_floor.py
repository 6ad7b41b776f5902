"""``sources_max`` under a scheduler that reorders: a calling message that waits while later messages of
its client run and have their nested sources forgotten by the callee still gets its nested calls run
(the callee's root floor never passes a message the caller still holds), and a duplicate of a
forgotten source still never runs twice."""

from __future__ import annotations

from typing import List, Tuple

import pytest

from ftactors.core import CoreConfig, Deliver, Execute, Kind, MsgId, NewView, Outcome, ReplicaCore, Request
from ftactors.core.dedup import DedupTable
from ftactors.core import Announcement, RemoteProtocolError
from ftactors.core.messages import HOLD_RANGES_MAX, hold_runs, merge_holds
from ftactors.core.replica import ONEWAY_OUT_MAX


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
        table.record(MsgId(f"front|c#{seq}", 1), None, holds=hold_runs([(1,)]))
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
    held = hold_runs([(1,), (3,), (5,)])  # three calls the caller holds, each passed by a later one
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


def test_a_nested_call_carries_the_held_calls_of_its_own_root_only() -> None:
    """``Request.holds`` names the calling messages of the caller's root held here unfinished: c#1,
    which waits behind c#2; not d#5 of another client (a floor of root ``front|c`` has nothing to
    keep apart for it), nor the calling message itself."""
    front = _front()
    front.deliver(Deliver(view=1, requests=(_client_call(1, 0), Request(Kind.SYNC_REQUEST, MsgId("d", 5), "front",
                                                                         "fwd", priority=0), _client_call(2, 5))))
    eff = front.next_effect()
    assert isinstance(eff, Execute) and eff.request.msg_id == MsgId("c", 2)
    nested, _ = front.nested_request("store", "op")
    assert nested.holds == (((), 1, 1),)


def test_a_forgotten_source_keeps_apart_every_call_held_when_any_of_its_calls_ran() -> None:
    """A source's holds are the union of those its requests carried: c#5 made two nested calls, the
    first while the front held c#1, the second while it held c#3. Forgetting the source exempts both."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("front|c#5", 1), None, holds=hold_runs([(1,)]))
    table.record(MsgId("front|c#5", 2), None, holds=hold_runs([(3,)]))
    table.record(MsgId("front|x#1", 1), None)
    table.record(MsgId("front|y#1", 1), None)  # front|c#5 is forgotten: the root's floor passes c#1..c#4
    assert table.exemptions() == 2
    assert [table.status(MsgId(f"front|c#{seq}", 1)) for seq in (1, 2, 3, 4)] == ["new", "expired", "new", "expired"]
    assert table.status(MsgId("front|c#5", 2)) == "expired"


def test_a_forgotten_source_keeps_apart_a_call_its_roots_latest_request_named() -> None:
    """The front held c#7 when c#9 made its call, not when c#8 made its own: forgetting front|c#8 (whose
    floor passes c#7) still keeps c#7's subtree apart, from the root's latest holds."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("front|c#8", 1), None)
    table.record(MsgId("front|c#9", 1), None, holds=hold_runs([(7,)]))
    table.record(MsgId("front|x#1", 1), None)  # front|c#8 is forgotten
    assert table.exemptions() == 1
    assert table.status(MsgId("front|c#7", 1)) == "new" and table.status(MsgId("front|c#6", 1)) == "expired"


def test_an_exempt_subtrees_floor_only_rises_whatever_order_its_sources_are_forgotten_in() -> None:
    """Two hops (A -> B -> this group): c#1 is still held at A while B ran A|c#1's second call before
    its first. Both sources lie in c#1's exempt subtree; forgetting the second one after the first
    keeps the subtree's floor at the higher one, so a duplicate of the first never runs again."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("B|A|c#2#1", 1), None, holds=hold_runs([(1,)]))
    table.record(MsgId("B|A|c#3#1", 1), None, holds=hold_runs([(1,)]))
    table.record(MsgId("B|A|c#1#2", 1), None)  # B|A|c#2#1 is forgotten: c#1's subtree is exempt
    table.record(MsgId("B|A|c#1#1", 1), None)
    assert table.exemptions() == 1
    table.record(MsgId("B|A|c#4#1", 1), None)  # forgets B|A|c#1#2 ...
    table.record(MsgId("B|A|c#5#1", 1), None)  # ... then B|A|c#1#1, lower in the same subtree
    assert table.status(MsgId("B|A|c#1#2", 1)) == "expired"
    assert table.status(MsgId("B|A|c#1#1", 1)) == "expired" and table.status(MsgId("B|A|c#1#3", 1)) == "new"


def test_a_held_call_and_a_call_it_made_are_one_exempt_subtree() -> None:
    """A request's holds may name a held call (c#1, waiting at A) and a call made under it (A|c#1's
    first call, queued at B): one subtree, so one exemption. An exemption within another would use
    one of the ``sources_max`` places and push the outer one out, and the held call's other calls would
    then read expired."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    holds = hold_runs([(1,), (1, 1), (3,)])
    for src in ("B|A|c#2#1", "B|A|c#4#1", "B|A|c#5#1", "B|A|c#6#1"):
        table.record(MsgId(src, 1), None, holds=holds)
    assert table.exemptions() == 2  # c#1 and c#3
    assert [table.status(MsgId(src, 1)) for src in ("B|A|c#1#1", "B|A|c#1#2", "B|A|c#3#1")] == ["new"] * 3
    assert table.status(MsgId("B|A|c#2#1", 1)) == "expired"


def test_a_source_keeps_what_a_forgotten_floor_covered_of_it() -> None:
    """front|c#1 ran up to #5 and was forgotten (the root's floor covers it); its #3, accepted before,
    ran late and tracks the source again, which takes over what the floor covered (#4, #5 expired). The
    root's floor is then forgotten (other roots' floors fill ``sources_max``), and the source too: its
    record puts the floor back, so #4 still never runs twice."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("front|c#1", 5), None)
    table.record(MsgId("front|x#1", 1), None)
    table.record(MsgId("front|y#1", 1), None)  # front|c#1 forgotten: floor (1, 5)
    table.record(MsgId("front|c#1", 3), None)  # ran late: tracked again
    table.record(MsgId("front|z#1", 1), None)
    assert table.status(MsgId("front|c#1", 4)) == "expired"  # the floor of front|c is forgotten by now
    table.record(MsgId("front|w#1", 1), None)  # front|c#1 forgotten again
    assert [table.status(MsgId("front|c#1", q)) for q in (3, 4, 5, 6)] == ["expired", "expired", "expired", "new"]


def test_a_checkpoint_restores_the_table_as_it_was() -> None:
    """``restore(export())`` gives a table whose export is the same: each source's holds, the roots'
    latest holds (``sources_max`` of them), exemptions and floors. Restored with a smaller
    ``sources_max``, it keeps the most recent roots' holds."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("front|e#1", 1), None, holds=hold_runs([(4,)]))
    table.record(MsgId("front|g#1", 1), None)
    table.record(MsgId("front|c#8", 1), None, holds=hold_runs([(2,)]))
    table.record(MsgId("front|c#9", 1), None, holds=hold_runs([(7,)]))
    exported = table.export()
    assert len(exported[4]) == 2 and any(src[4] for src in exported[0])  # (source, floor, evicted_upto, entries, holds, gaps)
    assert DedupTable.restore(exported, 100, 2).export() == exported
    assert DedupTable.restore(exported, 100, 1).export()[4] == exported[4][-1:]


def test_a_restored_source_forgotten_later_still_covers_what_it_ran() -> None:
    """A checkpoint holds front|c#1's entry for #5 (not acknowledged): the restored table, forgetting
    the source, raises the floor past #5, so a duplicate of it never runs again."""
    table = DedupTable(reply_cache_max=100, sources_max=1)
    table.record(MsgId("front|c#1", 5), None)
    back = DedupTable.restore(table.export(), 100, 1)
    back.record(MsgId("front|c#2", 1), None)  # front|c#1 is forgotten
    assert back.status(MsgId("front|c#1", 5)) == "expired"


def test_a_source_first_recorded_at_a_later_call_keeps_its_earlier_calls_new() -> None:
    """A scheduler may run a source's call #2 before its #1 (a higher priority): #1 still runs once it
    comes, whether the source has no floor yet or lies above its root's floor."""
    table = DedupTable(reply_cache_max=100, sources_max=1)
    table.record(MsgId("c", 2), None)
    assert table.status(MsgId("c", 1)) == "new"
    table.record(MsgId("front|c#1", 5), None)
    table.record(MsgId("front|c#2", 1), None)  # front|c#1 forgotten: the root's floor is (1, 5)
    table.record(MsgId("front|c#3", 2), None)
    assert table.status(MsgId("front|c#3", 1)) == "new"
    table.acknowledge("front|c#3", 3)
    with pytest.raises(AssertionError, match="executed twice"):  # a message acknowledged already: our bug
        table.record(MsgId("front|c#3", 2), None)


def test_a_source_wholly_below_its_roots_floor_recorded_late_keeps_its_earlier_calls_expired() -> None:
    """front|c#1's calls all lie below the root's floor (front|c#2 was forgotten), but its call #3 was
    accepted before and runs late: tracked again, the source keeps #1 and #2 expired (never run
    twice) and #4, which its calling message may still make, new."""
    table = DedupTable(reply_cache_max=100, sources_max=1)
    table.record(MsgId("front|c#2", 1), None)
    table.record(MsgId("front|c#3", 1), None)  # front|c#2 forgotten: the floor (2, 1) passes all of front|c#1
    table.record(MsgId("front|c#1", 3), None)
    assert [table.status(MsgId("front|c#1", q)) for q in (1, 2, 3, 4)] == ["expired", "expired", "done", "new"]


def test_the_roots_holds_kept_are_those_learnt_most_recently() -> None:
    """At most ``sources_max`` roots' latest holds are kept; a root learnt again counts as recent."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    for source in ("front|c#1", "front|d#1", "front|c#2", "front|e#1", "c"):  # "c": a client, no holds
        table.record(MsgId(source, 1), None, holds=hold_runs([(9,)]) if "|" in source else ())
    assert [root for root, _ in table.export()[4]] == ["front|c", "front|e"]


def test_a_settled_source_touched_again_is_forgotten_after_the_ones_settled_since() -> None:
    """Sources holding no entry go first, the least recently active first: one acknowledged again
    is kept over another settled since; one that holds an entry again is no longer settled."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("a", 1), None)
    table.acknowledge("a", 2)
    table.record(MsgId("b", 1), None)
    table.acknowledge("b", 2)
    table.acknowledge("a", 3)  # a is active again
    table.record(MsgId("x", 1), None)  # one source too many: b goes, the settled one idle longest
    assert table.status(MsgId("a", 1)) == "forgotten" and table.status(MsgId("b", 1)) == "expired"
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("b", 1), None)
    table.record(MsgId("a", 1), None)
    table.acknowledge("a", 2)
    table.record(MsgId("a", 2), None)  # a holds an entry again
    table.record(MsgId("x", 1), None)  # no settled source: the least recently active goes, b
    assert table.status(MsgId("a", 2)) == "done" and table.status(MsgId("b", 1)) == "expired"
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("b", 1), None)  # b holds its entry (its reply is not acknowledged)
    table.record(MsgId("a", 1), None)
    table.acknowledge("a", 2)  # a holds none: settled, though more recently active than b
    table.record(MsgId("x", 1), None)
    assert table.status(MsgId("b", 1)) == "done" and table.status(MsgId("a", 1)) == "expired"


def test_a_caller_holding_more_calls_of_one_client_than_a_request_carries_still_runs_their_nested_calls() -> None:
    """c#1..c#66 wait (priority 0) while later calls of c keep coming one at a time and run first (67
    calls in flight at most, below ``sources_max=100``); the store forgets their sources and its floor
    passes c#1..c#66. ``Request.holds`` carries them as one run (it carried the lowest 64 single paths
    before, docs/faults.md row 50: c#65 and c#66 then read "expired", ``[('c#65', 'refused'),
    ('c#66', 'refused')]``), so every one of them still runs its nested call."""
    front, store = _front(sources_max=100), _store(sources_max=100)
    held = HOLD_RANGES_MAX + 2
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


def test_a_call_that_reaches_its_caller_after_later_calls_of_its_client_ran_still_runs_its_nested_call() -> None:
    """The front's router gave up waiting for c#1 (``sequence_gap_ticks``) and relayed c#2..c#7, which ran
    and made their nested calls; the store (``sources_max=2``) forgot their sources and its floor passed
    c#1, which the front never held meanwhile. Their nested requests name c#1 in ``holds`` (it never
    ran at the front and may still come), so the store keeps its subtree apart: when c#1 comes at
    last its nested call runs (before row 48: ``('c#1', 'refused')``)."""
    front, store = _reception_front(), _store(sources_max=2)
    front.deliver(Deliver(view=1, requests=tuple(_client_call(seq, 0) for seq in range(2, 8))))
    assert [what for _, what, _ in _run_front(front, store)] == ["ran"] * 6
    front.deliver(Deliver(view=1, requests=(_client_call(1, 0),)))
    assert [(m, what) for m, what, _ in _run_front(front, store)] == [("c#1", "ran")]


def test_a_one_way_nested_call_delayed_past_later_calls_of_its_client_still_runs() -> None:
    """c#1 sends a one-way nested call and finishes; c#2..c#7 run and make their nested calls first; the
    store (``sources_max=2``) forgets their sources and its floor passes c#1's. The front keeps c#1
    named in their ``holds`` until the store's router took the one-way call (``oneway_out``), so the
    call, arriving at last, runs (docs/faults.md row 51: it read "expired" and was dropped as a
    duplicate before, never taking effect)."""
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


# ------------------------------------------------------------- holds as runs (row 50)


def test_held_paths_travel_as_runs_merged_per_prefix() -> None:
    """Consecutive sequence numbers under one prefix make one run; runs that overlap or touch merge."""
    assert hold_runs([(3,), (1,), (2,), (5,), (2, 1), (2, 2), (2, 4)]) == (
        ((), 1, 3), ((), 5, 5), ((2,), 1, 2), ((2,), 4, 4))
    assert hold_runs([(q,) for q in range(1, 1001)]) == (((), 1, 1000),)
    assert merge_holds((((), 1, 3),), (((), 4, 6), ((), 9, 9))) == (((), 1, 6), ((), 9, 9))
    assert merge_holds((((), 1, 5),), (((), 2, 3), ((7,), 1, 1))) == (((), 1, 5), ((7,), 1, 1))
    assert merge_holds((), (((), 2, 3),)) == (((), 2, 3),)


def test_holds_are_bounded_by_hold_ranges_max_runs_the_lowest_kept() -> None:
    """At most ``HOLD_RANGES_MAX`` runs, the lowest; a request carrying more is malformed."""
    runs = hold_runs([(2 * q,) for q in range(1, HOLD_RANGES_MAX + 11)])
    assert len(runs) == HOLD_RANGES_MAX and runs[0] == ((), 2, 2) and runs[-1] == ((), 2 * HOLD_RANGES_MAX,
                                                                                    2 * HOLD_RANGES_MAX)
    Request(Kind.SYNC_REQUEST, MsgId("front|c#1", 1), "store", "op", holds=runs)
    too_many = runs + (((), 10_000, 10_000),)
    with pytest.raises(RemoteProtocolError, match="at most 64 runs"):
        Request(Kind.SYNC_REQUEST, MsgId("front|c#1", 1), "store", "op", holds=too_many)
    with pytest.raises(RemoteProtocolError, match="runs"):
        Request(Kind.SYNC_REQUEST, MsgId("front|c#1", 1), "store", "op", holds=(((), 5, 4),))


def test_a_caller_holding_a_thousand_calls_sends_one_run() -> None:
    """A thousand waiting calls of one client are one run in the nested request's holds."""
    front = _front(sources_max=2000)
    front.deliver(Deliver(view=1, requests=tuple(_client_call(seq, 0) for seq in range(1, 1001))
                          + (_client_call(1001, 5),)))
    eff = front.next_effect()
    assert isinstance(eff, Execute) and eff.request.msg_id == MsgId("c", 1001)
    nested, _ = front.nested_request("store", "op")
    assert nested.holds == (((), 1, 1000),)


def test_an_exempt_run_splits_off_a_call_that_ran_and_was_forgotten() -> None:
    """The floor passes the held run c#1..c#100 at once: one exempt run. c#50 runs and its source
    is forgotten: it is split off with its own floor (a duplicate of its call never runs again), the
    others around it stay new; a checkpoint keeps the three runs and their floors."""
    table = DedupTable(reply_cache_max=1000, sources_max=4)
    held = hold_runs([(q,) for q in range(1, 101)])
    for seq in range(101, 106):
        table.record(MsgId(f"front|c#{seq}", 1), None, holds=held)
    assert table.exemptions() == 1
    assert [table.status(MsgId(f"front|c#{q}", 1)) for q in (1, 50, 100, 101)] == ["new", "new", "new", "expired"]
    table.record(MsgId("front|c#50", 1), None, holds=hold_runs([(q,) for q in range(1, 101) if q != 50]))
    for seq in range(106, 110):  # front|c#50 is forgotten
        table.record(MsgId(f"front|c#{seq}", 1), None)
    assert table.exemptions() == 3
    assert [table.status(MsgId(f"front|c#{q}", 1)) for q in (1, 49, 51, 100)] == ["new"] * 4
    assert [table.status(MsgId("front|c#50", q)) for q in (1, 2)] == ["expired", "new"]
    exported = table.export()
    assert [run[1:] for run in exported[3]] == [((), 1, 49, None), ((), 50, 50, (50, 1)), ((), 51, 100, None)]
    back = DedupTable.restore(exported, 1000, 4)
    assert back.export() == exported
    assert [back.status(MsgId(f"front|c#{q}", 1)) for q in (1, 50, 51)] == ["new", "expired", "new"]


# ------------------------------------------------------ one-way calls held until taken (row 51)


def test_a_one_way_call_holds_its_calling_message_until_the_callees_router_took_it() -> None:
    """While c#1's one-way call is on its way, c#2's nested call names c#1 in its holds; once the
    host says the callee's router took it (``oneway_taken``), no longer. A backup notes nothing."""
    front = _reception_front()
    front.deliver(Deliver(view=1, requests=(_client_call(1, 0), _client_call(2, 0), _client_call(3, 0))))
    eff = front.next_effect()
    assert isinstance(eff, Execute)
    oneway, _ = front.nested_request("store", "op", kind=Kind.ONEWAY)
    front.executed(eff.request.msg_id, Outcome(True, None))
    assert list(front.oneway_out) == [oneway.msg_id]
    eff = front.next_effect()
    assert isinstance(eff, Execute) and eff.request.msg_id == MsgId("c", 2)
    assert front.nested_request("store", "op")[0].holds == (((), 1, 1), ((), 3, 3))
    front.oneway_taken(oneway.msg_id)
    assert front.nested_request("store", "op")[0].holds == (((), 3, 3),)
    assert not front.oneway_out
    backup = ReplicaCore("front", "front-r1", CoreConfig(), "reception", NewView(1, ("front-r0", "front-r1")))
    backup.deliver(Deliver(view=1, requests=(_client_call(1, 0),)))
    backup.deliver(Deliver(view=1, announcements=(Announcement("front", 1, 1, MsgId("c", 1)),)))
    eff = backup.next_effect()
    assert isinstance(eff, Execute)
    _, send = backup.nested_request("store", "op", kind=Kind.ONEWAY)
    assert not send and not backup.oneway_out


def test_a_host_notes_one_way_calls_that_travel_as_acknowledged_requests() -> None:
    """The Ray shell sends a one-way nested call as a synchronous request and notes it itself
    (``oneway_sent``); at most ``ONEWAY_OUT_MAX`` are kept, the oldest dropped and counted."""
    front = _reception_front()
    front.deliver(Deliver(view=1, requests=(_client_call(1, 0), _client_call(2, 0))))
    eff = front.next_effect()
    assert isinstance(eff, Execute)
    for _ in range(ONEWAY_OUT_MAX + 2):
        req, send = front.nested_request("store", "op")
        assert send
        front.oneway_sent(req.msg_id)
    assert len(front.oneway_out) == ONEWAY_OUT_MAX and front.counts["oneway_out_dropped"] == 2
    assert next(iter(front.oneway_out)) == MsgId("front|c#1", 3)
    front.executed(eff.request.msg_id, Outcome(True, None))
    eff = front.next_effect()
    assert isinstance(eff, Execute)
    assert front.nested_request("store", "op")[0].holds == (((), 1, 1),)


def test_a_table_names_the_calls_of_a_source_that_never_ran_below_the_one_running() -> None:
    """``DedupTable.unrun_below``: what a caller running ``seq`` has not run of its source and may still
    get: not what ran (held, or below the watermark and not a gap), nor below the source's
    acknowledgement or ``low``; an untracked source names what its root's floor does not cover."""
    table = DedupTable(reply_cache_max=100, sources_max=10)
    table.record(MsgId("c", 2), None)
    table.record(MsgId("c", 4), None)
    assert table.unrun_below("c", 5, 0, 64) == ((1, 1), (3, 3))
    assert table.unrun_below("c", 5, 2, 64) == ((3, 3),)  # the request's ack_below: c holds the replies below
    assert table.unrun_below("c", 5, 0, 1) == ((1, 1),)  # the lowest ``limit`` runs
    assert table.unrun_below("c", 2, 0, 64) == ((1, 1),)  # only below the one running
    table.acknowledge("c", 2)
    assert table.unrun_below("c", 5, 0, 64) == ((3, 3),)
    assert table.unrun_below("c", 9, 0, 64) == ((3, 3), (5, 8))  # a run
    small = DedupTable(reply_cache_max=2, sources_max=10)
    for seq in (3, 5, 6):  # c#3's entry is evicted: the watermark passes 1 and 2, kept as gaps
        small.record(MsgId("c", seq), None)
    assert small.unrun_below("c", 8, 0, 64) == ((1, 2), (4, 4), (7, 7))
    assert DedupTable.restore(small.export(), 2, 10).unrun_below("c", 8, 0, 64) == ((1, 2), (4, 4), (7, 7))  # a checkpoint
    forgets = DedupTable(reply_cache_max=100, sources_max=1)
    forgets.record(MsgId("front|c#1", 5), None)
    forgets.record(MsgId("front|c#2", 1), None)  # front|c#1 is forgotten: its root's floor (1, 5)
    assert forgets.unrun_below("front|c#1", 8, 0, 64) == ((6, 7),)
    assert forgets.unrun_below("d", 4, 0, 64) == ((1, 3),)  # never seen: all may still come
    assert forgets.unrun_below("d", 4, 3, 64) == ((3, 3),)
    assert not forgets.floor_dropped()
    for other in ("front|d#1", "front|e#1"):  # front|d's floor too, past sources_max=1: front|c's is dropped
        forgets.record(MsgId(other, 1), None)
    assert forgets.floor_dropped() and forgets.export()[5]
    assert forgets.unrun_below("d", 4, 0, 64) == () and forgets.unrun_below("front|c#1", 8, 0, 64) == ()
    assert DedupTable.restore(forgets.export(), 100, 1).unrun_below("d", 4, 0, 64) == ()  # a checkpoint keeps it


def test_a_nested_call_names_the_calls_of_its_client_that_never_reached_its_caller() -> None:
    """The front runs c#3 before c#1 and c#2 reached it (its router relayed c#3 past them): c#3's nested
    request names both in ``holds``; once they ran, or the client acknowledged them, none is named."""
    front = _reception_front()
    front.deliver(Deliver(view=1, requests=(_client_call(3, 0),)))
    eff = front.next_effect()
    assert isinstance(eff, Execute)
    nested, _ = front.nested_request("store", "op")
    assert nested.holds == (((), 1, 2),)
    front.executed(eff.request.msg_id, Outcome(True, None))
    front.deliver(Deliver(view=1, requests=(_client_call(1, 0), _client_call(2, 0), _client_call(4, 0))))
    made = []
    while isinstance(eff := front.next_effect(), Execute):
        made.append(front.nested_request("store", "op")[0].holds)
        front.executed(eff.request.msg_id, Outcome(True, None))
    assert made == [(((), 2, 2), ((), 4, 4)), (((), 4, 4),), ()]  # c#1 holds c#2 and c#4 (queued); c#4 none
    late = Request(Kind.SYNC_REQUEST, MsgId("c", 9), "front", "fwd", ack_below=9)
    front.deliver(Deliver(view=1, requests=(late,)))  # c#5..c#8 acknowledged: settled, never named
    assert isinstance(front.next_effect(), Execute)
    assert front.nested_request("store", "op")[0].holds == ()


def test_a_nested_call_of_a_nested_message_names_its_sources_calls_that_never_came() -> None:
    """Two hops: B runs A|c#5's second call before its first reached B; B's nested request names the
    first one's path (5, 1), besides what A held (c#3)."""
    b = ReplicaCore("B", "B-r0", CoreConfig(), "reception", NewView(1, ("B-r0", "B-r1")))
    b.deliver(Deliver(view=1, requests=(Request(Kind.SYNC_REQUEST, MsgId("A|c#5", 2), "B", "op", holds=(((), 3, 3),)),)))
    assert isinstance(b.next_effect(), Execute)
    assert b.nested_request("C", "op")[0].holds == (((), 3, 3), ((5,), 1, 1))


def test_a_duplicate_still_never_runs_twice_when_a_caller_that_forgot_its_client_names_calls_that_ran() -> None:
    """The front forgot client c and dropped the floor it left (``sources_max=1``: more roots than that), so
    its table reads c#1 and c#2 as never run though they ran (c acknowledges nothing: ``ack_below`` 0).
    Named in c#3's nested request's holds, they made the store, which had dropped its floor of ``front|c``
    too, exempt them with no floor, and a duplicate of c#1's nested call ran again (``['ran', 'ran']``).
    A table that dropped a root floor names no call as never run (``DedupTable.floor_dropped``): the
    duplicates are refused."""
    front, store = _front(sources_max=1), _store(sources_max=2)
    first: List[Request] = []
    for mid in (MsgId("c", 1), MsgId("c", 2), MsgId("d", 1), MsgId("e", 1), MsgId("c", 3)):
        front.deliver(Deliver(view=1, requests=(Request(Kind.SYNC_REQUEST, mid, "front", "fwd"),)))
        eff = front.next_effect()
        assert isinstance(eff, Execute) and eff.request.msg_id == mid
        nested, _ = front.nested_request("store", "op")
        first.append(nested)
        assert _at_store(store, nested)[0] == "ran"
        front.executed(mid, Outcome(True, None))
    assert front.dedup.floor_dropped() and first[-1].holds == ()  # not named: the front cannot vouch
    for _ in range(3):  # the store forgets front|c#3 too
        front.deliver(Deliver(view=1, requests=(_client_call(front.counts["executed"] + 10, 0),)))
        assert len(_run_front(front, store)) == 1
    assert [_at_store(store, dup)[0] for dup in first[:2]] == ["refused", "refused"]


# ------------------------------------- a held call whose own source was forgotten (row 60, seed 6423)


def test_a_floor_raised_past_a_held_call_it_partly_covers_keeps_the_rest_of_its_subtree_apart() -> None:
    """c#1 made its first nested call and still runs (an async method waiting between two calls) while
    c#2 makes its own, naming c#1 held. The store (``sources_max=2``) forgets front|c#1 first: the
    root's floor becomes (1, 1), c#1's own call, and leaves c#1's later calls above it. Forgetting
    front|c#2 next raises the floor to (2, 1): it passed c#1's subtree, which c#2 named held, so that
    subtree keeps the floor it had, (1, 1) (before row 60 it was taken for a call the floor had
    already passed, and c#1's second call read "expired")."""
    table = DedupTable(reply_cache_max=100, sources_max=2)
    table.record(MsgId("front|c#1", 1), None)
    table.record(MsgId("front|c#2", 1), None, holds=hold_runs([(1,)]))
    table.record(MsgId("front|x#1", 1), None)  # front|c#1 is forgotten: the floor is its own call
    assert [table.status(MsgId("front|c#1", q)) for q in (1, 2)] == ["expired", "new"]
    table.record(MsgId("front|y#1", 1), None)  # front|c#2 is forgotten: the floor passes c#1's subtree
    assert table.exemptions() == 1
    assert [table.status(MsgId("front|c#1", q)) for q in (1, 2)] == ["expired", "new"]
    assert table.status(MsgId("front|c#2", 1)) == "expired"
    back = DedupTable.restore(table.export(), 100, 2)  # a checkpoint keeps the subtree's floor
    assert [back.status(MsgId("front|c#1", q)) for q in (1, 2)] == ["expired", "new"]


def test_an_async_call_whose_first_nested_source_was_forgotten_still_runs_its_second_nested_call() -> None:
    """Seed 6423's mechanism, in the cores: the front's c#1 makes its first nested call and suspends on
    it; c#2..c#5 run meanwhile, each making a nested call that names c#1 held. The store
    (``sources_max=2``) forgets front|c#1 (its floor stops at c#1's first call), then front|c#2 and
    the others (its floor rises past c#1). c#1 resumes and makes its second call, which runs (before
    row 60: ``('c#1', 'refused')``, ``ReplyUnavailableError``, the simulator's I6)."""
    front, store = _reception_front(), _store(sources_max=2)
    front.deliver(Deliver(view=1, requests=tuple(_client_call(seq, 0) for seq in range(1, 6))))
    first = front.next_effect()
    assert isinstance(first, Execute) and first.request.msg_id == MsgId("c", 1)
    call, _ = front.nested_request("store", "op")
    front.suspend(first.request.msg_id)  # c#1 awaits its first call's reply
    assert _at_store(store, call)[0] == "ran"
    assert [(m, what) for m, what, _ in _run_front(front, store)] == [(f"c#{q}", "ran") for q in range(2, 6)]
    front.set_resumable((MsgId("c", 1),))  # the reply came: c#1 goes on and makes its second call
    ran = _run_front(front, store)
    assert [(m, what) for m, what, _ in ran] == [("c#1", "ran")], ran

"""The exactly-once table: status, bounds, acknowledgement, export/restore."""

from __future__ import annotations

import pytest

from ftactors.core import DedupTable, MsgId, Outcome, Reply, nested_source
from ftactors.core.dedup import GAPS_MAX


def reply(source: str, seq: int) -> Reply:
    return Reply(MsgId(source, seq), "g", 1, seq, Outcome(True, seq))


def test_new_then_done_with_cached_reply() -> None:
    t = DedupTable(10)
    mid = MsgId("a", 1)
    assert t.status(mid) == "new"
    t.record(mid, reply("a", 1))
    assert t.status(mid) == "done" and t.reply(mid) == reply("a", 1)


def test_recording_twice_is_our_bug() -> None:
    t = DedupTable(10)
    t.record(MsgId("a", 1), None)
    with pytest.raises(AssertionError, match="executed twice"):
        t.record(MsgId("a", 1), None)


def test_bound_evicts_oldest_and_duplicates_become_expired() -> None:
    t = DedupTable(3)
    for seq in range(1, 6):
        t.record(MsgId("a", seq), reply("a", seq))
    assert len(t) == 3
    assert t.status(MsgId("a", 1)) == "expired" and t.status(MsgId("a", 2)) == "expired"
    assert t.status(MsgId("a", 5)) == "done"
    assert t.status(MsgId("a", 6)) == "new"


def test_acknowledge_forgets_below_floor() -> None:
    t = DedupTable(100)
    for seq in (1, 2, 3):
        t.record(MsgId("a", seq), reply("a", seq))
    t.record(MsgId("b", 1), reply("b", 1))
    t.acknowledge("a", 3)
    assert t.status(MsgId("a", 1)) == "forgotten" and t.status(MsgId("a", 2)) == "forgotten"
    assert t.status(MsgId("a", 3)) == "done" and t.status(MsgId("b", 1)) == "done"
    assert len(t) == 2
    t.acknowledge("a", 2)  # never moves back
    assert t.status(MsgId("a", 2)) == "forgotten"


def test_export_restore_round_trip() -> None:
    t = DedupTable(3)
    for seq in range(1, 5):
        t.record(MsgId("a", seq), reply("a", seq))
    t.acknowledge("a", 3)
    back = DedupTable.restore(t.export(), 3)
    for seq in range(1, 7):
        assert back.status(MsgId("a", seq)) == t.status(MsgId("a", seq))
    assert back.reply(MsgId("a", 4)) == reply("a", 4)


def nested(caller_seq: int) -> str:
    """The source of nested calls made while group A executes client c's message ``caller_seq``."""
    return nested_source("A", MsgId("c", caller_seq))


def test_nested_sources_are_bounded_and_the_checkpoint_with_them() -> None:
    t = DedupTable(reply_cache_max=10, sources_max=10)
    for i in range(1, 5001):
        t.record(MsgId(nested(i), 1), reply(nested(i), 1))
    assert len(t) <= 10
    assert t.sources() <= 10
    exported = DedupTable.restore(t.export(), 10, 10)
    assert exported.sources() <= 10 and len(repr(t.export())) < 5_000


def test_bound_defaults_to_reply_cache_max() -> None:
    t = DedupTable(reply_cache_max=10)
    for i in range(1, 5001):
        t.record(MsgId(nested(i), 1), None)
    assert t.sources() <= 10


def test_a_duplicate_of_a_forgotten_source_is_not_new() -> None:
    t = DedupTable(reply_cache_max=10, sources_max=4)
    for i in range(1, 101):
        t.record(MsgId(nested(i), 1), reply(nested(i), 1))
        t.record(MsgId(nested(i), 2), reply(nested(i), 2))
    assert t.status(MsgId(nested(1), 1)) == "expired"  # forgotten: answered with an error, never run again
    assert t.status(MsgId(nested(50), 2)) == "expired"
    assert t.status(MsgId(nested(100), 2)) == "done"
    assert t.status(MsgId(nested(101), 1)) == "new"  # the next calling message's calls are new
    assert t.status(MsgId(nested(100), 3)) == "new"  # a later call of a forgotten source's execution too
    back = DedupTable.restore(t.export(), 10, 4)  # a checkpoint keeps the floor
    assert back.status(MsgId(nested(1), 1)) == "expired" and back.status(MsgId(nested(101), 1)) == "new"


def test_a_forgotten_client_source_keeps_its_floor() -> None:
    t = DedupTable(reply_cache_max=10, sources_max=2)
    t.record(MsgId("a", 1), None)
    t.record(MsgId("a", 2), None)
    t.acknowledge("a", 2)
    for name in ("b", "c", "d"):
        t.record(MsgId(name, 1), None)
    assert t.sources() <= 2
    assert t.status(MsgId("a", 1)) != "new" and t.status(MsgId("a", 2)) != "new"
    assert t.status(MsgId("a", 3)) == "new"


def test_nested_calls_of_nested_calls_share_their_client_lineage() -> None:
    t = DedupTable(reply_cache_max=10, sources_max=3)
    for i in range(1, 201):  # B executes A's nested call i, and calls C: C sees B|A|c#i#1
        t.record(MsgId(nested_source("B", MsgId(nested(i), 1)), 1), None)
    assert t.sources() <= 3 and len(t.export()[1]) <= 3
    assert t.status(MsgId(nested_source("B", MsgId(nested(7), 1)), 1)) == "expired"
    assert t.status(MsgId(nested_source("B", MsgId(nested(201), 1)), 1)) == "new"


def test_a_message_accepted_before_its_root_floor_rose_is_recorded_once() -> None:
    t = DedupTable(reply_cache_max=10, sources_max=2)
    waiting = MsgId(nested(3), 1)
    assert t.status(waiting) == "new"  # accepted; it waits in the queue
    for i in (5, 6, 7):  # later calling messages run first (a priority scheduler); nested(5) is forgotten
        t.record(MsgId(nested(i), 1), None)
    assert t.status(waiting) == "expired"
    t.record(waiting, None)  # it runs now: once
    assert t.status(waiting) == "done"
    with pytest.raises(AssertionError, match="executed twice"):
        t.record(waiting, None)


def test_a_restored_table_forgets_in_the_same_order() -> None:
    t = DedupTable(reply_cache_max=2, sources_max=3)
    t.record(MsgId("a", 1), None)
    t.record(MsgId("b", 1), None)
    t.acknowledge("a", 2)  # a settles first, though b was active before it
    t.record(MsgId("c", 1), None)
    t.record(MsgId("c", 2), None)  # evicts b's entry: b settles second
    back = DedupTable.restore(t.export(), 2, 3)
    for table in (t, back):
        table.record(MsgId("d", 1), None)  # past sources_max: the first settled (a) is forgotten
    assert t.export() == back.export()


def test_a_call_the_watermark_passed_before_it_ran_stays_new_and_a_checkpoint_keeps_it() -> None:
    """A reordering scheduler ran c#2..c#4 before c#1; with room for 2 replies, evicting c#2 raises
    c's watermark to 2. c#1 never ran: it is a gap, "new" (here and in a checkpoint's copy of the
    table), while a duplicate of the evicted c#2 is "expired" and runs no second time
    (docs/faults.md, row 42)."""
    t = DedupTable(2, 10)
    for seq in (2, 3, 4):
        t.record(MsgId("c", seq), None)
    assert t.status(MsgId("c", 2)) == "expired"
    assert t.status(MsgId("c", 1)) == "new"
    back = DedupTable.restore(t.export(), 2, 10)
    assert back.status(MsgId("c", 1)) == "new" and back.status(MsgId("c", 2)) == "expired"
    back.record(MsgId("c", 1), None)  # it runs at last
    back.record(MsgId("c", 5), None)
    back.record(MsgId("c", 6), None)  # c#1's reply is evicted in turn: a duplicate of it is "expired"
    assert back.status(MsgId("c", 1)) == "expired"
    t.acknowledge("c", 2)  # the caller holds every reply below 2: c#1 is forgotten, no gap left
    assert t.status(MsgId("c", 1)) == "forgotten" and t.export()[0][0][5] == ()


def test_gaps_are_bounded_per_source() -> None:
    """One call run far ahead of the rest leaves at most GAPS_MAX gaps below it; older ones read
    "expired" (they fail as before gaps were kept, never run twice)."""
    t = DedupTable(1, 10)
    t.record(MsgId("c", GAPS_MAX + 50), None)
    t.record(MsgId("d", 1), None)  # evicts c's entry
    assert t.status(MsgId("c", GAPS_MAX + 49)) == "new" and t.status(MsgId("c", 50)) == "new"
    assert t.status(MsgId("c", 49)) == "expired"
    assert len(t.export()[0][0][5]) == GAPS_MAX


def test_a_call_that_ran_before_a_later_one_was_evicted_is_no_gap_and_never_runs_twice() -> None:
    """A reordering scheduler ran c#3, then c#1 and c#2; with room for 2 replies, evicting c#3
    raises c's watermark to 3 while c#1 and c#2 are still in the table. They ran: they are no gaps,
    so once their own replies are evicted a duplicate of either reads "expired", never "new"."""
    t = DedupTable(2, 10)
    for seq in (3, 1, 2):
        t.record(MsgId("c", seq), None)
    t.record(MsgId("c", 4), None)
    t.record(MsgId("c", 5), None)  # c#1 and c#2 left the table in turn
    assert t.status(MsgId("c", 1)) == "expired" and t.status(MsgId("c", 2)) == "expired"


def test_past_gaps_max_the_lowest_gaps_go_first() -> None:
    """Gaps left by two evictions past GAPS_MAX: the highest are kept, the calls most likely still
    on their way; the lowest read "expired"."""
    t = DedupTable(1, 10)
    t.record(MsgId("c", 200), None)
    t.record(MsgId("d", 1), None)  # evicts c#200: c#1..c#199 are gaps
    t.record(MsgId("c", 300), None)  # evicts d#1
    t.record(MsgId("d", 2), None)  # evicts c#300: c#201..c#299 are gaps too, past GAPS_MAX together
    assert t.status(MsgId("c", 299)) == "new" and t.status(MsgId("c", 201)) == "new"
    assert t.status(MsgId("c", 1)) == "expired"
    assert [len(s[5]) for s in t.export()[0] if s[0] == "c"] == [GAPS_MAX]


def test_a_checkpoint_carries_no_gap_the_caller_has_acknowledged() -> None:
    """The caller holds every reply below 100 (its acknowledgement); c#150 then ran alone and left
    the table. Only c#100..c#149 can still arrive: the checkpoint's gaps are those, none below 100."""
    t = DedupTable(1, 10)
    t.acknowledge("c", 100)
    t.record(MsgId("c", 150), None)
    t.record(MsgId("d", 1), None)  # evicts c#150
    (source, floor, _, _, _, gaps), = [s for s in t.export()[0] if s[0] == "c"]
    assert floor == 100 and gaps == tuple(range(100, 150))

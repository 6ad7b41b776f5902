"""The exactly-once table: status, bounds, acknowledgement, export/restore."""

from __future__ import annotations

import pytest

from ftactors.core import DedupTable, MsgId, Outcome, Reply


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

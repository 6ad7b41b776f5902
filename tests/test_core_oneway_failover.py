"""A one-way nested call survives the failure of the primary that sent it (docs/faults.md, row 54).

Only the primary sends nested calls. When it dies after its calling message finished but before the
callee's router took its one-way call, the backup that becomes primary does not run that message
again (a semi-active backup executed it, a passive one restored a checkpoint that covers it), so
before row 54 nobody sent the call again: it never took effect. Now every replica keeps the one-way
calls of the messages it executes (a passive backup: those its checkpoint says are on their way), and
a promoted primary re-sends them (``ReplicaCore.take_resend``); the callee drops the duplicates of
those that arrived after all.
"""

from __future__ import annotations

from typing import List

from ftactors.core import (
    Announcement,
    CoreConfig,
    Deliver,
    Execute,
    Kind,
    MsgId,
    NewView,
    Outcome,
    ReplicaCore,
    Request,
)
from ftactors.core.replica import ONEWAY_OUT_MAX, Restore, Snapshot

MEMBERS = ("front-r0", "front-r1")


def _front(rid: str, style: str) -> ReplicaCore:
    cfg = CoreConfig(style=style, checkpoint_every_messages=1)
    return ReplicaCore("front", rid, cfg, "reception", NewView(1, MEMBERS))


def _store() -> ReplicaCore:
    return ReplicaCore("store", "store-r0", CoreConfig(), "reception", NewView(1, ("store-r0",)))


def _call(seq: int) -> Request:
    return Request(Kind.SYNC_REQUEST, MsgId("c", seq), "front", "send_oneway")


def _store_runs(store: ReplicaCore, reqs: List[Request]) -> List[MsgId]:
    """Deliver ``reqs`` to the store's primary one at a time; the ids it executed."""
    ran = []
    for req in reqs:
        store.deliver(Deliver(view=1, requests=(req,)))
        while isinstance(eff := store.next_effect(), Execute):
            ran.append(eff.request.msg_id)
            store.executed(eff.request.msg_id, Outcome(True, None))
        store.take_delivered()
    return ran


def _primary_runs_c1(primary: ReplicaCore) -> tuple:
    """The primary runs c#1, which sends one one-way call; returns (the call, its Delivered)."""
    primary.deliver(Deliver(view=1, requests=(_call(1),)))
    eff = primary.next_effect()
    assert isinstance(eff, Execute)
    oneway, send = primary.nested_request("store", "add", ("token",), kind=Kind.ONEWAY)
    assert send and list(primary.oneway_out) == [oneway.msg_id]
    primary.executed(eff.request.msg_id, Outcome(True, None))
    snap = primary.next_effect()
    if isinstance(snap, Snapshot):
        primary.snapshot_taken(snap.position, {"state": 1}, "d1")
    return oneway, primary.take_delivered()


def _promote(backup: ReplicaCore) -> None:
    backup.deliver(Deliver(view=2, new_view=NewView(2, ("front-r1",))))
    while (eff := backup.next_effect()) is not None:
        assert isinstance(eff, Restore), eff  # a passive backup restores its checkpoint; nothing runs


def test_a_semi_active_backup_promoted_re_sends_the_one_way_call_its_dead_primary_had_on_its_way() -> None:
    primary, backup, store = _front("front-r0", "semi-active"), _front("front-r1", "semi-active"), _store()
    oneway, out = _primary_runs_c1(primary)  # ... and dies before the store's router took the call
    backup.deliver(Deliver(view=1, requests=(_call(1),), announcements=out.announcements))
    eff = backup.next_effect()
    assert isinstance(eff, Execute) and eff.replay
    copy, send = backup.nested_request("store", "add", ("token",), kind=Kind.ONEWAY)
    assert not send and copy.msg_id == oneway.msg_id  # a backup does not send it
    backup.executed(eff.request.msg_id, Outcome(True, None))
    _promote(backup)
    assert oneway.msg_id in backup.oneway_out  # the new primary knows the call may still be on its way
    resent = backup.take_resend()
    assert [r.msg_id for r in resent] == [oneway.msg_id] and resent[0].source_view == 2
    assert backup.take_resend() == () and backup.counts["oneway_resent"] == 1  # taken once
    # the store takes it once, whether or not the dead primary's call arrived after all
    assert _store_runs(store, [resent[0], oneway, resent[0]]) == [oneway.msg_id]
    backup.oneway_taken(oneway.msg_id)
    assert not backup.oneway_out and not backup.oneway_kept


def test_a_passive_backup_promoted_re_sends_the_one_way_calls_its_checkpoint_says_are_on_their_way() -> None:
    primary, backup, store = _front("front-r0", "passive"), _front("front-r1", "passive"), _store()
    oneway, out = _primary_runs_c1(primary)
    assert out.checkpoint is not None and [r.msg_id for r in out.checkpoint.oneway] == [oneway.msg_id]
    backup.deliver(Deliver(view=1, requests=(_call(1),), announcements=out.announcements,
                           checkpoint=out.checkpoint))
    assert backup.executed_upto == 1  # the checkpoint covers c#1: a promotion does not run it again
    _promote(backup)
    assert oneway.msg_id in backup.oneway_out
    resent = backup.take_resend()
    assert [r.msg_id for r in resent] == [oneway.msg_id]
    assert _store_runs(store, [oneway, resent[0]]) == [oneway.msg_id]


def test_a_one_way_call_the_callees_router_took_is_not_re_sent_by_a_later_primary() -> None:
    """The primary forgets a call once it was taken: its next checkpoint does not carry it."""
    primary, backup = _front("front-r0", "passive"), _front("front-r1", "passive")
    oneway, out = _primary_runs_c1(primary)
    primary.oneway_taken(oneway.msg_id)
    primary.deliver(Deliver(view=1, requests=(_call(2),)))
    eff = primary.next_effect()
    assert isinstance(eff, Execute)
    primary.executed(eff.request.msg_id, Outcome(True, None))
    snap = primary.next_effect()
    assert isinstance(snap, Snapshot)
    primary.snapshot_taken(snap.position, {"state": 2}, "d2")
    cp = primary.take_delivered().checkpoint
    assert cp is not None and cp.oneway == ()
    backup.deliver(Deliver(view=1, requests=(_call(1), _call(2)), checkpoint=cp,
                           announcements=(Announcement("front", 1, 1, MsgId("c", 1)),
                                          Announcement("front", 1, 2, MsgId("c", 2)))))
    _promote(backup)
    assert backup.take_resend() == () and not backup.oneway_out


def test_a_backup_keeps_at_most_oneway_out_max_one_way_calls() -> None:
    backup = _front("front-r1", "semi-active")
    backup.deliver(Deliver(view=1, requests=(_call(1),),
                           announcements=(Announcement("front", 1, 1, MsgId("c", 1)),)))
    eff = backup.next_effect()
    assert isinstance(eff, Execute)
    for _ in range(ONEWAY_OUT_MAX + 3):
        backup.nested_request("store", "add", kind=Kind.ONEWAY)
    backup.executed(eff.request.msg_id, Outcome(True, None))
    assert len(backup.oneway_kept) == ONEWAY_OUT_MAX and next(iter(backup.oneway_kept)) == MsgId("front|c#1", 4)
    assert backup.counts["oneway_kept_dropped"] == 3
    assert not backup.oneway_out

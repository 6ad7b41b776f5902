"""Backups learn which one-way nested calls their primary's callee took (docs/faults.md, row 69).

Row 54 made every replica keep the one-way nested calls of the messages it executes, so that a promoted
primary re-sends the ones its dead primary may not have delivered. Only the primary learns that a call
was taken (the callee's router answers the primary), so before row 69 a backup kept every call it made,
up to ``ONEWAY_OUT_MAX``, and a promoted backup re-sent them all: duplicates the callee refuses, but
traffic, and past ``sources_max`` a risk of running one again. Now the primary names the calls taken on
its next answer (``Delivered.oneway_taken``) and the router passes them to each backup on the next
Deliver it sends there anyway (``Deliver.oneway_taken``): no message of their own.
"""

from __future__ import annotations

from ftactors.core import (
    Announcement,
    CoreConfig,
    Deliver,
    Delivered,
    Execute,
    Kind,
    MsgId,
    NewView,
    Outcome,
    ReplicaCore,
    Request,
    RouterCore,
)
from ftactors.core.replica import ONEWAY_OUT_MAX

MEMBERS = ("front-r0", "front-r1")


def _front(rid: str) -> ReplicaCore:
    return ReplicaCore("front", rid, CoreConfig(), "reception", NewView(1, MEMBERS))


def _call(seq: int) -> Request:
    return Request(Kind.SYNC_REQUEST, MsgId("c", seq), "front", "send_oneway")


def _run_with_oneway(core: ReplicaCore, seq: int, calls: int = 1) -> list:
    """``core`` runs c#seq (delivered already), which makes ``calls`` one-way calls; their requests."""
    eff = core.next_effect()
    assert isinstance(eff, Execute) and eff.request.msg_id == MsgId("c", seq)
    made = [core.nested_request("store", "add", (i,), kind=Kind.ONEWAY)[0] for i in range(calls)]
    core.executed(eff.request.msg_id, Outcome(True, None))
    return made


def _promote(backup: ReplicaCore) -> None:
    backup.deliver(Deliver(view=2, new_view=NewView(2, ("front-r1",))))
    assert backup.next_effect() is None


def test_a_promoted_backup_re_sends_only_the_one_way_calls_its_primary_did_not_learn_taken() -> None:
    primary, backup = _front("front-r0"), _front("front-r1")
    primary.deliver(Deliver(view=1, requests=(_call(1), _call(2))))
    taken = _run_with_oneway(primary, 1)
    on_way = _run_with_oneway(primary, 2)
    primary.oneway_taken(taken[0].msg_id)  # the store's router took c#1's call, not yet c#2's
    out = primary.take_delivered()
    assert out.oneway_taken == (taken[0].msg_id,)
    assert primary.take_delivered().oneway_taken == ()  # named once
    backup.deliver(Deliver(view=1, requests=(_call(1), _call(2)), announcements=out.announcements))
    _run_with_oneway(backup, 1)
    _run_with_oneway(backup, 2)
    backup.deliver(Deliver(view=1, oneway_taken=out.oneway_taken))
    assert list(backup.oneway_kept) == [on_way[0].msg_id]
    _promote(backup)
    assert [r.msg_id for r in backup.take_resend()] == [on_way[0].msg_id]
    assert backup.counts["oneway_resent"] == 1


def test_a_backup_told_a_call_was_taken_before_it_made_the_call_does_not_keep_it() -> None:
    """A lagging backup may learn "taken" before it executes the calling message itself."""
    primary, backup = _front("front-r0"), _front("front-r1")
    primary.deliver(Deliver(view=1, requests=(_call(1),)))
    made = _run_with_oneway(primary, 1, calls=2)
    primary.oneway_taken(made[1].msg_id)
    out = primary.take_delivered()
    backup.deliver(Deliver(view=1, requests=(_call(1),), announcements=out.announcements,
                           oneway_taken=out.oneway_taken))
    _run_with_oneway(backup, 1, calls=2)
    assert list(backup.oneway_kept) == [made[0].msg_id]


def test_the_taken_calls_a_replica_remembers_are_bounded() -> None:
    backup = _front("front-r1")
    ids = tuple(MsgId("front|c#9", s) for s in range(1, ONEWAY_OUT_MAX + 4))
    backup.deliver(Deliver(view=1, oneway_taken=ids))
    assert len(backup.oneway_known_taken) == ONEWAY_OUT_MAX
    assert next(iter(backup.oneway_known_taken)) == ids[3]  # the oldest went first


def test_the_router_passes_the_taken_calls_to_each_backup_on_a_deliver_it_sends_anyway() -> None:
    members = ("g-r0", "g-r1", "g-r2")
    router = RouterCore("g", CoreConfig(null_message_ticks=1), members)
    taken = (MsgId("g|c#1", 1), MsgId("g|c#1", 2))
    for m, _ in router.ready().sends:  # what goes at the start, answered
        if m != "g-r0":
            router.on_delivered(Delivered(m, 1))
    router.on_delivered(Delivered("g-r0", 1, acked_position=0, oneway_taken=taken))
    router.tick(5)
    assert [m for m, _ in router.ready().sends if m != "g-r0"] == []  # no message of their own
    ann = Announcement("g", 1, 1, MsgId("c", 1))
    router.submit(Request(Kind.SYNC_REQUEST, MsgId("c", 1), "g", "add"))
    router.ready()
    router.on_delivered(Delivered("g-r0", 1, announcements=(ann,), acked_position=1))
    router.tick(10)
    sends = dict(router.ready().sends)
    assert "g-r0" not in sends or not sends["g-r0"].oneway_taken
    for backup in ("g-r1", "g-r2"):
        assert sends[backup].oneway_taken == taken
    assert not any(link.oneway_taken for link in router.links.values())


def test_a_passive_backup_told_a_call_was_taken_keeps_it_when_promoted_it_makes_and_sends_it_again() -> None:
    """A promoted passive backup replays the logged calling message and makes the call again, as primary:
    it sends it (a duplicate the callee drops), so it keeps it until taken, to retry it. A first version
    skipped the known-taken call there and left it on its way with nothing to retry (simulator seed 132:
    ``I6: no quiescence``, ``front|c0#10#1`` in the primary's ``oneway_out`` for good)."""
    cfg = CoreConfig(style="passive")
    primary = ReplicaCore("front", "front-r0", cfg, "reception", NewView(1, MEMBERS))
    backup = ReplicaCore("front", "front-r1", cfg, "reception", NewView(1, MEMBERS))
    primary.deliver(Deliver(view=1, requests=(_call(1),)))
    made = _run_with_oneway(primary, 1)
    primary.oneway_taken(made[0].msg_id)
    out = primary.take_delivered()
    backup.deliver(Deliver(view=1, requests=(_call(1),), announcements=out.announcements,
                           oneway_taken=out.oneway_taken))
    assert not backup.oneway_kept
    backup.deliver(Deliver(view=2, new_view=NewView(2, ("front-r1",))))
    again = _run_with_oneway(backup, 1)
    assert again[0].msg_id == made[0].msg_id
    assert made[0].msg_id in backup.oneway_out and made[0].msg_id in backup.oneway_kept
    backup.oneway_taken(made[0].msg_id)
    assert not backup.oneway_out and not backup.oneway_kept

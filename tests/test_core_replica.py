"""ReplicaCore: the transition table, fencing, announced order, nested ids, acknowledgement."""

from __future__ import annotations

from typing import List, Optional

import pytest

from ftactors.core import (
    Announcement,
    Checkpoint,
    ClientCore,
    CoreConfig,
    Deliver,
    Execute,
    Kind,
    MsgId,
    NewView,
    Outcome,
    RemoteProtocolError,
    Reply,
    ReplicaCore,
    Request,
    Role,
    StaleViewError,
)
from ftactors.core.replica import TRANSITIONS

CFG = CoreConfig()
VIEW = NewView(1, ("g-r0", "g-r1"))


def replica(rid: str = "g-r1", view: Optional[NewView] = VIEW) -> ReplicaCore:
    return ReplicaCore("g", rid, CFG, "reception", view)


def run(core: ReplicaCore) -> List[str]:
    """Execute everything runnable; returns the executed msg ids in order."""
    done = []
    while (eff := core.next_effect()) is not None:
        if isinstance(eff, Execute):
            core.executed(eff.request.msg_id, Outcome(True, None))
            done.append(str(eff.request.msg_id))
    return done


def ann(pos: int, mid: MsgId, view: int = 1) -> Announcement:
    return Announcement("g", view, pos, mid)


def test_table_has_no_primary_to_backup_demotion() -> None:
    assert (Role.PRIMARY, "view_backup") not in TRANSITIONS
    assert (Role.JOINING, "view_primary") not in TRANSITIONS


def test_joining_replica_rejects_a_view_before_joining() -> None:
    core = replica(view=None)
    with pytest.raises(RemoteProtocolError, match="before join"):
        core.deliver(Deliver(view=2, new_view=NewView(2, ("g-r0", "g-r1"))))
    assert core.role == Role.JOINING


def test_primary_demoted_to_backup_is_illegal() -> None:
    core = replica("g-r0")
    with pytest.raises(RemoteProtocolError, match="illegal view_backup"):
        core.deliver(Deliver(view=2, new_view=NewView(2, ("g-r1", "g-r0"))))


def test_join_into_a_view_as_primary_is_rejected() -> None:
    core = replica("g-r2", view=None)
    cp = Checkpoint("g", 1, 0, None, ())
    with pytest.raises(RemoteProtocolError):
        core.deliver(Deliver(view=2, new_view=NewView(2, ("g-r2", "g-r0")), checkpoint=cp, join=True))


def test_stale_view_deliver_is_fenced() -> None:
    core = replica()
    core.deliver(Deliver(view=3, new_view=NewView(3, ("g-r0", "g-r1"))))
    with pytest.raises(StaleViewError):
        core.deliver(Deliver(view=2, requests=()))
    assert core.counts["fenced"] == 1


def test_view_jump_without_new_view_is_malformed() -> None:
    with pytest.raises(RemoteProtocolError, match="without NewView"):
        replica().deliver(Deliver(view=5))


def test_backup_executes_announced_order_not_reception_order() -> None:
    client = ClientCore("c")
    a, b = client.request("g", "m"), client.request("g", "m")
    core = replica()
    core.deliver(Deliver(view=1, requests=(a, b)))
    assert run(core) == []  # nothing announced yet
    core.deliver(Deliver(view=1, announcements=(ann(1, b.msg_id), ann(2, a.msg_id))))
    assert run(core) == ["c#2", "c#1"]


def test_acknowledgement_applies_at_execution_not_reception() -> None:
    """Regression: a copy of c#2 (ack_below=2) reached a backup before c#1 executed there."""
    client = ClientCore("c")
    first = client.request("g", "m")
    from ftactors.core import Reply
    client.on_reply(Reply(first.msg_id, "g", 1, 1, Outcome(True, None)))
    second = client.request("g", "m")
    assert second.ack_below == 2
    core = replica()
    core.deliver(Deliver(view=1, requests=(first, second)))
    core.deliver(Deliver(view=1, announcements=(ann(1, first.msg_id), ann(2, second.msg_id))))
    assert run(core) == ["c#1", "c#2"]
    assert core.dedup.status(first.msg_id) == "forgotten"


def test_nested_ids_do_not_depend_on_replica_history() -> None:
    """Regression: nested MsgIds counted across executions, so a joined replica or a re-execution
    numbered them differently and the callee executed the nested call twice."""
    client = ClientCore("c")
    old, new = client.request("g", "m"), client.request("g", "m")
    veteran = replica("g-r0")
    veteran.deliver(Deliver(view=1, requests=(old, new)))
    ids = []
    while (eff := veteran.next_effect()) is not None:
        if isinstance(eff, Execute):
            req, send = veteran.nested_request("h", "call")
            assert send
            if eff.request.msg_id == new.msg_id:
                ids.append(req.msg_id)
            veteran.executed(eff.request.msg_id, Outcome(True, None))
    newcomer = replica("g-r1")
    newcomer.deliver(Deliver(view=1, requests=(new,), announcements=(ann(1, new.msg_id),)))
    eff = newcomer.next_effect()
    assert isinstance(eff, Execute)
    req, send = newcomer.nested_request("h", "call")
    assert not send
    assert req.msg_id == ids[0] == MsgId("g|c#2", 1)


def test_executed_rejects_the_wrong_message() -> None:
    from ftactors.core import LocalProtocolError
    with pytest.raises(LocalProtocolError):
        replica().executed(MsgId("c", 1), Outcome(True, None))


def test_request_for_another_group_is_rejected() -> None:
    bad = Request(ClientCore("c").request("h", "m").kind, MsgId("c", 1), "h", "m")
    with pytest.raises(RemoteProtocolError):
        replica().deliver(Deliver(view=1, requests=(bad,)))


def test_per_source_state_is_bounded_by_sources_max() -> None:
    """Nested calls mint a source per calling message: 5,000 of them keep the replica,
    its scheduler and its checkpoint bounded, and a duplicate after forgetting is not run."""
    from ftactors.core import CoreConfig, Deliver, Execute, Kind, MsgId, NewView, Outcome, ReplicaCore, Request
    from ftactors.core import nested_source

    cfg = CoreConfig(reply_cache_max=10, sources_max=16, style="passive", checkpoint_every_messages=5000)
    core = ReplicaCore("B", "B-r0", cfg, "fair", NewView(1, ("B-r0",)))

    def call(i: int) -> Request:
        return Request(Kind.SYNC_REQUEST, MsgId(nested_source("A", MsgId("c", i)), 1), "B", "m", source_view=1)

    for i in range(1, 5001):
        core.deliver(Deliver(view=1, requests=(call(i),)))
        while (e := core.next_effect()) is not None:
            if isinstance(e, Execute):
                core.executed(e.request.msg_id, Outcome(True, i))
            else:
                core.snapshot_taken(e.position, "state", "d")
        core.take_delivered()
    assert core.executed_upto == 5000
    assert len(core.dedup) <= 10 and core.dedup.sources() <= 16 and len(core.next_seq) <= 16
    assert len(core._sched._served) <= 16  # type: ignore[attr-defined]
    sources, floors, *_ = core.dedup.export()
    assert len(sources) <= 16 and len(floors) <= 16
    core.deliver(Deliver(view=1, requests=(call(3),)))  # a very late duplicate of a forgotten source
    assert core.next_effect() is None and core.executed_upto == 5000
    answer = core.take_delivered()
    assert [r.msg_id for r in answer.replies] == [call(3).msg_id] and not answer.replies[0].outcome.ok


def test_state_report_includes_the_request_being_executed() -> None:
    """Regression (simulator seed 36): a primary executing a call the restarted router never saw
    left it out of its StateReport; the backups never got it, and after the primary died its
    position, already acknowledged, went to another call."""
    from ftactors.core import CoreConfig, Execute, MsgId, NewView, ReplicaCore, Request, Kind, Deliver

    members = ("g-r0", "g-r1")
    core = ReplicaCore("g", "g-r0", CoreConfig(), "reception", NewView(1, members))
    req = Request(Kind.SYNC_REQUEST, MsgId("c", 1), "g", "slow", ())
    core.deliver(Deliver(view=1, requests=(req,)))
    effect = core.next_effect()
    assert isinstance(effect, Execute) and core.executing is not None
    assert req.msg_id in {r.msg_id for r in core.state_report().requests}


# ------------------------------------------------------- pushed reply copies (claim 48)


def _nested_reply(caller: MsgId, seq: int = 1, value: int = 7) -> Reply:
    from ftactors.core.messages import nested_source
    return Reply(MsgId(nested_source("g", caller), seq), "b", 1, 3, Outcome(True, value))


def test_primary_pushes_each_nested_reply_on_its_next_delivered() -> None:
    """The primary's nested reply goes out once, in the Delivered of the step that consumed it."""
    core = replica("g-r0")
    req = Request(kind=Kind.SYNC_REQUEST, msg_id=MsgId("c", 1), group="g", method="m")
    core.deliver(Deliver(view=1, requests=(req,)))
    eff = core.next_effect()
    assert isinstance(eff, Execute)
    nreq, send = core.nested_request("b", "m")
    assert send
    rep = _nested_reply(MsgId("c", 1))
    assert nreq.msg_id == rep.msg_id
    core.nested_reply(rep)
    core.executed(req.msg_id, Outcome(True, None))
    out = core.take_delivered()
    assert out.reply_copies == (rep,) and [a.msg_id for a in out.announcements] == [req.msg_id]
    assert core.take_delivered().reply_copies == ()


def test_backup_takes_a_pushed_copy_instead_of_pulling_and_drops_copies_it_no_longer_needs() -> None:
    """A backup keeps a pushed copy until its call takes it; the copies of a message it executed,
    and those arriving after it, are dropped; at most ``reply_copies_max`` are kept."""
    core = ReplicaCore("g", "g-r1", CoreConfig(reply_copies_max=2), "reception", VIEW)
    c1, c2 = MsgId("c", 1), MsgId("c", 2)
    req1 = Request(kind=Kind.SYNC_REQUEST, msg_id=c1, group="g", method="m")
    core.deliver(Deliver(view=1, requests=(req1,), announcements=(ann(1, c1),),
                         reply_copies=(_nested_reply(c1, 1), _nested_reply(c1, 2))))
    assert isinstance(core.next_effect(), Execute)
    nreq, send = core.nested_request("b", "m")
    assert not send and core.reply_copy(nreq.msg_id) == _nested_reply(c1, 1)
    core.executed(c1, Outcome(True, None))  # the second call was never made: its copy goes
    assert not core.has_reply_copy(_nested_reply(c1, 2).msg_id)
    core.deliver(Deliver(view=1, reply_copies=(_nested_reply(c1, 3),)))  # late: c1 is done here
    assert not core._reply_copies
    core.deliver(Deliver(view=1, reply_copies=tuple(_nested_reply(c2, s) for s in (1, 2, 3))))
    assert [m.seq for m in core._reply_copies] == [2, 3]  # bounded: the oldest dropped


def test_passive_backup_drops_copies_a_checkpoint_covers() -> None:
    """A passive backup never executes; a checkpoint that covers a calling message drops its copies."""
    from ftactors.core.dedup import DedupTable
    core = ReplicaCore("g", "g-r1", CoreConfig(style="passive"), "reception", VIEW)
    c1, c2 = MsgId("c", 1), MsgId("c", 2)
    core.deliver(Deliver(view=1, reply_copies=(_nested_reply(c1), _nested_reply(c2))))
    table = DedupTable(100, 100)
    table.record(c1, None)
    core.deliver(Deliver(view=1, checkpoint=Checkpoint("g", 1, 1, None, table.export())))
    assert [caller.source for caller in core._reply_copies] == ["g|c#2"]


def test_a_backups_async_step_waits_for_its_nested_copy_and_pulls_only_at_the_step_that_consumes_it() -> None:
    """Issue 11 (docs/faults.md row 35): an async step that suspends on a nested call before the copy
    came waits for it (it rides with the announcement of the resume step); the resume step takes it.
    A copy still missing at the consuming step is pulled, and counted."""
    core = ReplicaCore("g", "g-r1", CoreConfig(), "reception", VIEW)
    c1 = MsgId("c", 1)
    req1 = Request(kind=Kind.SYNC_REQUEST, msg_id=c1, group="g", method="m")
    core.deliver(Deliver(view=1, requests=(req1,), announcements=(ann(1, c1),)))
    assert isinstance(core.next_effect(), Execute)
    nreq, send = core.nested_request("b", "m")
    assert not send
    assert core.copy_or_pull(nreq.msg_id, consuming=False) == (None, False)  # suspends: wait, no pull
    core.suspend(c1)
    resume = Announcement("g", 1, 2, c1, resume=1, wake=("f", 1))
    core.deliver(Deliver(view=1, announcements=(resume,), reply_copies=(_nested_reply(c1, 1),)))
    ex = core.next_effect()
    assert isinstance(ex, Execute) and ex.resume == 1
    assert core.copy_or_pull(nreq.msg_id, consuming=True) == (_nested_reply(c1, 1), False)
    assert core.counts["reply_copies_pulled"] == 0
    assert core.copy_or_pull(MsgId(nreq.msg_id.source, 2), consuming=True) == (None, True)  # lost: pull
    assert core.counts["reply_copies_pulled"] == 1


def test_a_backup_says_what_its_next_position_waits_for() -> None:
    core = replica()
    r1, r2 = (Request(Kind.SYNC_REQUEST, MsgId("c", i), "g", "m") for i in (1, 2))
    assert core.waits_for() == "the announcement of position 1 (0 later ones held)"
    core.deliver(Deliver(view=1, announcements=(ann(1, r1.msg_id), ann(2, r2.msg_id))))
    assert core.waits_for() == "the request c#1 announced at position 1"
    core.deliver(Deliver(view=1, requests=(r1,)))
    assert core.waits_for() == ""  # it can execute position 1 now
    eff = core.next_effect()
    assert isinstance(eff, Execute) and core.waits_for() == "the end of position 1 (c#1)"
    core.executed(r1.msg_id, Outcome(True, None))
    assert core.waits_for() == "the request c#2 announced at position 2"
    primary = replica("g-r0")
    assert primary.waits_for() == ""  # a primary orders its calls itself

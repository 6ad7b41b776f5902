"""ReplicaCore with async methods: steps, the resume order the primary announces, and what waits."""

from __future__ import annotations

import pytest

from ftactors.core import (
    CoreConfig,
    Deliver,
    Execute,
    Kind,
    LocalProtocolError,
    MsgId,
    NewView,
    Outcome,
    Reply,
    ReplicaCore,
    Request,
    Role,
    Snapshot,
)

VIEW = NewView(1, ("g-r0", "g-r1"))


def req(seq: int) -> Request:
    return Request(kind=Kind.SYNC_REQUEST, msg_id=MsgId("c", seq), group="g", method="m")


def core(rid: str, **cfg: object) -> ReplicaCore:
    return ReplicaCore("g", rid, CoreConfig(**cfg), "reception", VIEW)  # type: ignore[arg-type]


def step(c: ReplicaCore) -> Execute:
    ex = c.next_effect()
    assert isinstance(ex, Execute), ex
    return ex


def test_primary_starts_a_call_while_another_waits_and_announces_the_resume_order() -> None:
    p = core("g-r0")
    p.deliver(Deliver(view=1, requests=(req(1), req(2))))
    first = step(p)
    assert (first.position, first.resume) == (1, 0)
    p.suspend(first.request.msg_id, ("t0",))  # c#1 awaits a nested reply
    second = step(p)  # c#2 starts meanwhile (a re-entrant call needs exactly this)
    assert (second.request.msg_id, second.position) == (MsgId("c", 2), 2)
    p.suspend(second.request.msg_id)
    assert p.next_effect() is None  # nothing can go on until the host says so
    p.set_resumable((MsgId("c", 2), MsgId("c", 1)))  # c#2's reply came first
    r2 = step(p)
    assert (r2.request.msg_id, r2.position, r2.resume) == (MsgId("c", 2), 3, 1)
    p.executed(r2.request.msg_id, Outcome(True, "two"), (), ("f", 1))
    r1 = step(p)
    assert (r1.request.msg_id, r1.position, r1.resume) == (MsgId("c", 1), 4, 1)
    p.executed(r1.request.msg_id, Outcome(True, "one"), ("t1",), ("t", 1))
    out = p.take_delivered()
    assert [(a.position, a.msg_id.seq, a.resume, a.wake, a.nondet) for a in out.announcements] == [
        (1, 1, 0, None, ("t0",)), (2, 2, 0, None, ()), (3, 2, 1, ("f", 1), ()), (4, 1, 1, ("t", 1), ("t1",))]
    assert [(r.msg_id.seq, r.position, r.outcome.value) for r in out.replies] == [(2, 3, "two"), (1, 4, "one")]
    assert out.suspended == 0

    b = core("g-r1")  # the backup follows the announced steps, whatever its own events do
    b.deliver(Deliver(view=1, requests=(req(1), req(2)), announcements=out.announcements))
    b.set_resumable((MsgId("c", 1),))  # ignored: it follows the order
    seen = []
    while (ex := b.next_effect()) is not None:
        assert isinstance(ex, Execute) and ex.replay
        seen.append((ex.request.msg_id.seq, ex.resume, ex.wake, ex.nondet))
        if ex.position in (1, 2):
            b.suspend(ex.request.msg_id)
        else:
            b.executed(ex.request.msg_id, Outcome(True, None))
    assert seen == [(1, 0, None, ("t0",)), (2, 0, None, ()), (2, 1, ("f", 1), ()), (1, 1, ("t", 1), ("t1",))]
    assert b.executed_upto == 4 and not b.suspended


def test_nested_ids_continue_across_a_calls_steps() -> None:
    p = core("g-r0")
    p.deliver(Deliver(view=1, requests=(req(1), req(2))))
    ex = step(p)
    first, _ = p.nested_request("h", "x")
    p.suspend(ex.request.msg_id)
    other = step(p)
    p.nested_request("h", "x")  # c#2's own numbering
    p.suspend(other.request.msg_id)
    p.set_resumable((MsgId("c", 1),))
    step(p)
    second, _ = p.nested_request("h", "x")
    assert (first.msg_id.source, first.msg_id.seq) == ("g|c#1", 1)
    assert (second.msg_id.source, second.msg_id.seq) == ("g|c#1", 2)


def test_checkpoint_waits_until_no_call_is_suspended_and_state_report_keeps_suspended_calls() -> None:
    p = core("g-r0", style="passive", checkpoint_every_messages=1)
    p.deliver(Deliver(view=1, requests=(req(1), req(2))))
    ex = step(p)
    p.suspend(ex.request.msg_id)
    assert MsgId("c", 1) in {r.msg_id for r in p.state_report().requests}
    # the checkpoint due at 1 waits (c#1 is half-run), and c#2 does not start meanwhile: a primary
    # that kept starting calls might never reach a position with none suspended (docs/faults.md 14)
    assert p.next_effect() is None and not p.has_work()
    p.set_resumable((MsgId("c", 1),))
    ex2 = step(p)
    assert ex2.resume == 1 and ex2.request.msg_id == MsgId("c", 1)
    p.executed(ex2.request.msg_id, Outcome(True, None))
    snap = p.next_effect()
    assert snap is not None and type(snap).__name__ == "Snapshot" and snap.position == 2


def test_a_nested_call_back_into_the_group_still_starts_while_a_checkpoint_waits() -> None:
    """A re-entrant ring: c#1 is suspended on a call that calls back into this group; the callback
    (a nested source) must start though a checkpoint is due, or c#1 never finishes."""
    p = core("g-r0", style="passive", checkpoint_every_messages=1)
    back = Request(kind=Kind.SYNC_REQUEST, msg_id=MsgId("h|c#1", 1), group="g", method="m")
    p.deliver(Deliver(view=1, requests=(req(1), req(2), back)))
    p.suspend(step(p).request.msg_id)
    assert p.has_work()
    ex = step(p)
    assert ex.request.msg_id == back.msg_id and ex.resume == 0  # c#2, a client call, waits
    p.executed(back.msg_id, Outcome(True, None))
    assert p.next_effect() is None


def test_suspended_max_bounds_the_calls_started_and_resumes_go_first() -> None:
    p = core("g-r0", suspended_max=1)
    p.deliver(Deliver(view=1, requests=(req(1), req(2))))
    p.suspend(step(p).request.msg_id)
    assert p.next_effect() is None and not p.has_work()  # c#2 waits: one call is suspended
    p.set_resumable((MsgId("c", 1),))
    assert p.has_work()
    ex = step(p)
    assert ex.resume == 1 and ex.request.msg_id == MsgId("c", 1)


def test_new_primary_replays_announced_resumes_then_chooses() -> None:
    b = core("g-r1")
    p = core("g-r0")
    p.deliver(Deliver(view=1, requests=(req(1), req(2))))
    p.suspend(step(p).request.msg_id)
    p.suspend(step(p).request.msg_id)
    anns = p.take_delivered().announcements  # the primary dies after announcing two starts
    b.deliver(Deliver(view=1, requests=(req(1), req(2)), announcements=anns))
    b.suspend(step(b).request.msg_id)
    b.deliver(Deliver(view=2, new_view=NewView(2, ("g-r1",))))
    assert b.role == Role.PRIMARY
    ex = step(b)
    assert ex.replay and ex.request.msg_id == MsgId("c", 2) and ex.resume == 0
    b.suspend(ex.request.msg_id)
    b.set_resumable((MsgId("c", 2),))
    ex = step(b)
    assert not ex.replay and ex.resume == 1 and ex.position == 3


def test_a_step_reported_for_a_message_not_executing_is_refused_and_named() -> None:
    """A host that reports a suspend (or an outcome) for the wrong message gets a typed error
    naming the call it made, the message and what is executing."""
    p = core("g-r0")
    p.deliver(Deliver(view=1, requests=(req(1), req(2))))
    step(p)
    with pytest.raises(LocalProtocolError, match=r"^suspend\(c#2\) but executing c#1$"):
        p.suspend(MsgId("c", 2))
    with pytest.raises(LocalProtocolError, match=r"^executed\(c#2\) but executing c#1$"):
        p.executed(MsgId("c", 2), Outcome(True, None))
    p.suspend(MsgId("c", 1))  # the refused reports changed nothing
    with pytest.raises(LocalProtocolError, match=r"^suspend\(c#1\) but executing None$"):
        p.suspend(MsgId("c", 1))


def test_retries_of_a_suspended_call_are_counted_as_duplicates_and_not_started_again() -> None:
    p = core("g-r0")
    p.deliver(Deliver(view=1, requests=(req(1),)))
    p.suspend(step(p).request.msg_id)
    for _ in range(2):  # the caller retries while its call waits for a nested reply
        p.deliver(Deliver(view=1, requests=(req(1),)))
    assert p.counts["duplicates"] == 2
    assert p.next_effect() is None and not p.has_work()


def test_the_resume_order_a_backup_reports_is_the_order_the_primary_announced() -> None:
    """A rebuilt router recovers the order from the replicas' state reports, and a promoted
    primary re-announces it: a backup must report each resume step with its wake, as announced
    (the hosts replaying it check the wake against the event they hold)."""
    p = core("g-r0")
    p.deliver(Deliver(view=1, requests=(req(1),)))
    p.suspend(step(p).request.msg_id)
    p.set_resumable((MsgId("c", 1),))
    p.executed(step(p).request.msg_id, Outcome(True, None), (), ("timer", 7))
    announced = p.take_delivered().announcements
    assert [(a.position, a.resume, a.wake) for a in announced] == [(1, 0, None), (2, 1, ("timer", 7))]

    b = core("g-r1")
    b.deliver(Deliver(view=1, requests=(req(1),), announcements=announced))
    b.suspend(step(b).request.msg_id)
    b.executed(step(b).request.msg_id, Outcome(True, None), (), ("ignored", 0))
    assert b.state_report().announcements == announced


def test_a_nested_call_started_while_a_checkpoint_waits_is_a_fresh_step() -> None:
    """The drain for a due checkpoint starts the nested call as the primary's own choice: a
    first step, not a replay of announced order, at the next position."""
    p = core("g-r0", style="passive", checkpoint_every_messages=1)
    back = Request(kind=Kind.SYNC_REQUEST, msg_id=MsgId("h|c#1", 1), group="g", method="m")
    p.deliver(Deliver(view=1, requests=(req(1), back)))
    p.suspend(step(p).request.msg_id)
    assert p.next_effect() == Execute(2, back, replay=False)


def snapshot_after_steps(steps: int, **cfg: object) -> object:
    """A passive primary runs c#1 as ``steps`` steps (it suspends after all but the last);
    returns the effect that follows."""
    p = core("g-r0", style="passive", **cfg)
    p.deliver(Deliver(view=1, requests=(req(1),)))
    p.suspend(step(p).request.msg_id)
    for _ in range(steps - 2):
        p.set_resumable((MsgId("c", 1),))
        p.suspend(step(p).request.msg_id)
    p.set_resumable((MsgId("c", 1),))
    last = step(p)
    p.executed(last.request.msg_id, Outcome(True, None))
    assert last.position == steps
    return p.next_effect()


def test_a_checkpoint_waiting_for_a_suspended_call_is_taken_when_it_finishes() -> None:
    """Checkpoint due at 4 while c#1 is suspended; a digest falls due at 5 meanwhile: the snapshot
    taken once c#1 finishes at 6 is still the checkpoint's (its state goes to the backups)."""
    assert snapshot_after_steps(6, checkpoint_every_messages=4, digest_every_messages=5) == Snapshot(6, True)


def test_a_checkpoint_waiting_for_a_suspended_call_is_not_lost_when_a_digest_falls_due_as_it_finishes() -> None:
    """Checkpoint due at 4 while c#1 is suspended; c#1 finishes at 5, where a digest is due: the one
    snapshot taken there must serve the checkpoint (a state), not only the digest."""
    assert snapshot_after_steps(5, checkpoint_every_messages=4, digest_every_messages=5) == Snapshot(5, True)


def test_a_nested_reply_copy_waits_for_the_announcement_of_the_step_that_consumes_it() -> None:
    """Simulator seed 7402 (direct links, a parked answer): the primary answered one Deliver with
    the copy of c#1's nested reply and another with the announcement of c#1's resume step; the
    second reached the router first, the backups ran the resume without the copy and pulled it.
    A copy goes on the answer that carries its calling message's announcement, never earlier."""
    p = core("g-r0")
    p.deliver(Deliver(view=1, requests=(req(1),)))
    first = step(p)
    nested, send = p.nested_request("b", "m")
    assert send
    p.suspend(first.request.msg_id)  # c#1 waits for its nested reply at position 1
    p.take_delivered()
    reply = Reply(nested.msg_id, "b", 1, 3, Outcome(True, 7))
    p.nested_reply(reply)
    p.set_resumable((MsgId("c", 1),))
    early = p.take_delivered()  # an answer before the resume step: no copy on it
    assert early.reply_copies == () and early.announcements == ()
    p.executed(step(p).request.msg_id, Outcome(True, 7))  # the resume step consumes the reply
    answer = p.take_delivered()
    assert [a.msg_id for a in answer.announcements] == [MsgId("c", 1)] and answer.reply_copies == (reply,)
    assert p.take_delivered().reply_copies == ()

"""ReplicaCore with async methods: steps, the resume order the primary announces, and what waits."""

from __future__ import annotations

from ftactors.core import (
    CoreConfig,
    Deliver,
    Execute,
    Kind,
    MsgId,
    NewView,
    Outcome,
    ReplicaCore,
    Request,
    Role,
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

"""Behaviour that the mutation run of ``ftactors/core`` showed untested (see docs/mutation.md).

Each test is a short transcript of something a user or a host relies on:
error messages that name the problem, counters and ``describe()`` that
observability reads, boundaries of the timeouts and bounds in ``CoreConfig``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import List, Optional

import pytest

from ftactors.core import (
    AcknowledgedDuplicateError,
    Announcement,
    Checkpoint,
    ClientCore,
    CoreConfig,
    Deliver,
    Delivered,
    Execute,
    GroupOverloadedError,
    LocalProtocolError,
    MsgId,
    NewView,
    Outcome,
    Phase,
    RemoteProtocolError,
    ReplicaCore,
    Reply,
    ReplyUnavailableError,
    Request,
    RouterCore,
    StaleViewError,
    nested_source,
)
from ftactors.core.dedup import DedupTable
from ftactors.core.scheduler import Queued, ScheduleContext, make_scheduler
from tests.test_core_router import MEMBERS, Group

VIEW = NewView(1, ("g-r0", "g-r1"))


def primary(cfg: Optional[CoreConfig] = None) -> ReplicaCore:
    """A primary replica of group ``g`` in view 1 (default settings unless ``cfg``)."""
    return ReplicaCore("g", "g-r0", cfg or CoreConfig(), "reception", VIEW)


def execute_all(core: ReplicaCore) -> List[MsgId]:
    """Execute everything runnable at ``core``; returns the executed ids in order."""
    done = []
    while (eff := core.next_effect()) is not None:
        if isinstance(eff, Execute):
            core.executed(eff.request.msg_id, Outcome(True, eff.request.payload))
            done.append(eff.request.msg_id)
    return done


# ------------------------------------------------------------------ clients


def test_client_source_must_be_non_empty_and_without_separator() -> None:
    """Nested sources are ``group|...``: a client name with ``|`` could collide with them."""
    for bad in ("", "a|b", "|"):
        with pytest.raises(LocalProtocolError, match="non-empty and without"):
            ClientCore(bad)
    assert ClientCore("driver-1").source == "driver-1"


def test_settling_a_request_twice_or_an_unknown_one_is_harmless() -> None:
    """A Ray result may settle a call whose Reply was also seen; both paths may run."""
    client = ClientCore("c")
    first, second = client.request("g", "m"), client.request("g", "m")
    client.on_settled(first.msg_id.seq)
    client.on_settled(first.msg_id.seq)
    client.on_settled(99)
    assert client.outstanding == 1 and client.ack_below() == second.msg_id.seq
    client.on_settled(second.msg_id.seq)
    assert client.outstanding == 0 and client.ack_below() == 3


def loaded_group(calls: int, ticks: int, cfg: Optional[CoreConfig] = None):
    """A :class:`Group` that ran ``calls`` additions of 1 from one client for ``ticks`` ticks."""
    g = Group(cfg or CoreConfig())
    client = ClientCore("c")
    for _ in range(calls):
        g.router.submit(client.request("g", "add", payload=1))
    g.pump(ticks)
    return g, client


# ----------------------------------------------------------------- replicas


def test_replica_errors_name_the_replica_and_the_problem() -> None:
    """Hosts log these messages; each says which replica and what was wrong."""
    with pytest.raises(LocalProtocolError, match=r"g-r9 is not in its initial view \('g-r0', 'g-r1'\)"):
        ReplicaCore("g", "g-r9", CoreConfig(), "reception", VIEW)
    core = ReplicaCore("g", "g-r1", CoreConfig(), "reception", NewView(2, ("g-r0", "g-r1")))
    with pytest.raises(StaleViewError, match=r"g-r1: Deliver of view 1 < 2"):
        core.deliver(Deliver(view=1))
    assert core.counts["fenced"] == 1
    with pytest.raises(RemoteProtocolError, match="g-r1: join without checkpoint or view"):
        core.deliver(Deliver(view=2, join=True))
    with pytest.raises(LocalProtocolError, match="snapshot at 5 but executed 0"):
        core.snapshot_taken(5, None, "d")


def test_fresh_replica_counts_nothing() -> None:
    """The counters a host exports start at zero."""
    assert primary().counts == {"executed": 0, "replayed": 0, "duplicates": 0, "fenced": 0, "reply_copies_out": 0,
                                "reply_copies_in": 0, "reply_copies_used": 0, "reply_copies_pulled": 0,
                                "oneway_out_dropped": 0, "replies_lost": 0, "oneway_kept_dropped": 0,
                                "oneway_resent": 0}


def test_a_replica_sent_more_than_pending_max_requests_refuses_the_deliver() -> None:
    """The router admits ``pending_max`` calls, ``inflight_max`` more calls back into the group
    (rings), and may send a lagging member up to ``log_max`` more the order needs; a replica sent
    more reports the router's fault instead of dropping or refusing a copy the order may need
    (docs/faults.md)."""
    core = primary(CoreConfig(pending_max=1, log_max=1, inflight_max=1))
    client = ClientCore("c")
    kept, caught_up, ring, extra = (client.request("g", "m", i) for i in (1, 2, 3, 4))
    with pytest.raises(RemoteProtocolError, match=r"more than 3 requests relayed \(pending_max=1\)"):
        core.deliver(Deliver(view=1, requests=(kept, caught_up, ring, extra)))
    assert core.take_delivered().replies == ()
    assert execute_all(core) == [kept.msg_id, caught_up.msg_id, ring.msg_id]


def test_router_refuses_a_call_before_relaying_once_pending_max_requests_are_retained() -> None:
    """A request some member has not yet executed stays retained; ``pending_max`` of them and the next
    call is refused at the router, before any replica has a copy; once every member executed
    them, calls are accepted again."""
    g = Group(CoreConfig(pending_max=2))
    client = ClientCore("c")
    first, second = client.request("g", "add", payload=1), client.request("g", "add", payload=1)
    g.router.submit(first)
    g.router.submit(second)
    with pytest.raises(GroupOverloadedError, match="2 requests not yet executed by every replica"):
        g.router.submit(client.request("g", "add", payload=1))
    g.pump(20)
    assert len(g.released) == 2 and set(g.state.values()) == {2}
    assert g.router.submit(client.request("g", "add", payload=1)) is None
    g.pump(40)  # past the gap the refused call left in c's sequence
    assert len(g.released) == 3 and set(g.state.values()) == {3}


def test_a_call_refused_at_pending_max_is_admitted_on_its_retry_before_later_calls() -> None:
    """A call refused at ``pending_max`` keeps its place: once room frees, calls that arrive after
    it are refused while its retransmission is admitted, so a caller's retries are not starved by
    other callers' new calls while the group stays full (swarm seed 103032 with nested calls and
    ``pending_max=3``: one client's retransmission found the router full every time for 526 ticks).
    A place whose caller gave up is free again after ``refused_hold_ticks``."""
    g = Group(CoreConfig(pending_max=2, refused_hold_ticks=50))
    callers = {name: ClientCore(name) for name in "abcdefg"}

    def call(name: str) -> Request:
        return callers[name].request("g", "add", payload=1)

    g.router.submit(call("a"))
    g.router.submit(call("b"))
    starved = call("c")
    with pytest.raises(GroupOverloadedError, match="pending_max"):
        g.router.submit(starved)
    g.pump(20)
    assert len(g.released) == 2 and not g.router.log.requests
    assert g.router.submit(call("d")) is None  # room for one beside the place kept for c
    with pytest.raises(GroupOverloadedError, match="pending_max"):
        g.router.submit(call("e"))  # e's caller gives up: its place is kept for nothing
    assert g.router.submit(starved) is None  # the retransmission takes the place kept for it
    g.pump(60)  # past refused_hold_ticks of e's place
    assert {starved.msg_id} <= {r.msg_id for r in g.released} and not g.router.log.requests
    assert g.router.submit(call("f")) is None
    assert g.router.submit(call("g")) is None  # e's abandoned place no longer counts


def test_duplicate_of_a_trimmed_reply_gets_reply_unavailable() -> None:
    """With ``reply_cache_max`` exceeded, a late retry must not run twice: it gets an error."""
    core = primary(CoreConfig(reply_cache_max=1))
    client = ClientCore("c")
    old, new = client.request("g", "m", 1), client.request("g", "m", 2)
    core.deliver(Deliver(view=1, requests=(old, new)))
    assert execute_all(core) == [old.msg_id, new.msg_id]
    core.take_delivered()
    core.deliver(Deliver(view=1, requests=(old,)))  # the retry of the evicted one
    assert execute_all(core) == []
    (rep,) = core.take_delivered().replies
    assert rep.msg_id == old.msg_id and rep.group == "g" and rep.outcome.ok is False
    assert isinstance(rep.outcome.value, ReplyUnavailableError)
    assert "trimmed" in str(rep.outcome.value)


def test_duplicate_of_an_acknowledged_reply_is_answered_so_no_router_keeps_waiting() -> None:
    """A stale duplicate of a call whose reply its source acknowledged (``ack_below``), relayed by
    a rebuilt router that never saw the acknowledgement, does not run again and is answered with
    ``AcknowledgedDuplicateError`` (at no position), so the router stops waiting for it."""
    core = primary()
    client = ClientCore("c")
    first = client.request("g", "m", 1)
    core.deliver(Deliver(view=1, requests=(first,)))
    assert execute_all(core) == [first.msg_id]
    client.on_reply(core.take_delivered().replies[0])
    second = client.request("g", "m", 2)
    assert second.ack_below == 2
    core.deliver(Deliver(view=1, requests=(second,)))
    assert execute_all(core) == [second.msg_id]
    core.take_delivered()
    core.deliver(Deliver(view=1, requests=(first,)))  # the stale duplicate
    assert execute_all(core) == []
    (rep,) = core.take_delivered().replies
    assert rep.msg_id == first.msg_id and rep.position == 0 and rep.outcome.ok is False
    assert isinstance(rep.outcome.value, AcknowledgedDuplicateError)


# ------------------------------------------------------------------ routers


def test_router_needs_a_replica() -> None:
    """An empty member list is refused with a message that says so."""
    with pytest.raises(LocalProtocolError) as err:
        RouterCore("g", CoreConfig(), ())
    assert str(err.value) == "a group needs at least one replica"


def test_describe_lists_members_joiners_retention_and_counts() -> None:
    """``describe()`` is what ``ftactors status`` shows; its keys are an interface."""
    g = Group(CoreConfig())
    g.router.submit(ClientCore("c").request("g", "add", payload=1))
    g.pump(5)
    g.router.replica_started("g-r3")
    d = g.router.describe()
    assert d["members"] == list(MEMBERS) and d["primary"] == "g-r0"
    assert d["joining"] == ["g-r3"]
    assert d["retained_requests"] == len(g.router.requests)
    assert d["diverged"] == [] and d["counts"]["requests"] >= 1
    assert set(d) >= {"group", "view", "phase", "acked", "pending", "retained_order", "retained_replies"}


def test_retransmission_and_reply_copy_fetch_are_counted_apart() -> None:
    """A client's retry is a duplicate; a backup fetching a nested reply is a reply copy."""
    g = Group(CoreConfig())
    req = ClientCore("c").request("g", "add", payload=4)
    g.router.submit(req)
    g.pump(5)
    assert g.router.submit(req).outcome.value == 4
    assert g.router.submit(req, copy=True).outcome.value == 4
    assert g.router.submit(req, copy=True).outcome.value == 4
    assert (g.router.counts["duplicates"], g.router.counts["reply_copies"]) == (1, 2)


def test_backup_copies_are_counted() -> None:
    """Every request copy sent to a backup is counted (the cost of replication)."""
    g, _ = loaded_group(3, 8)
    assert g.router.counts["copies"] == 3 * (len(MEMBERS) - 1)


def test_requests_to_a_lost_group_fail_with_a_reason() -> None:
    """Once every replica failed, a new call fails at once instead of waiting forever (and the
    router keeps running: the host still ticks it)."""
    g = Group(CoreConfig())
    for m in MEMBERS:
        g.router.on_failure(m)
    assert g.router.phase == Phase.LOST
    g.router.ready()
    g.pump(3)  # the host keeps ticking a lost group's router
    req = ClientCore("c").request("g", "add", payload=1)
    assert g.router.submit(req) is None
    assert g.router.ready().failed == ((req.msg_id, "all replicas of the group failed"),)


def test_router_accepts_exactly_inflight_max_calls() -> None:
    """``inflight_max`` calls may wait; the next one is refused as overloaded."""
    g = Group(CoreConfig(inflight_max=2))
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=1))
    g.router.submit(client.request("g", "add", payload=1))
    with pytest.raises(GroupOverloadedError, match="2 requests in flight"):
        g.router.submit(client.request("g", "add", payload=1))


def test_router_admits_a_call_back_into_the_group_past_inflight_max() -> None:
    """A ring g -> h -> g: the call back descends from a call waiting at g's router; refusing it
    would leave that call, and the calls filling the bound, waiting for ever (docs/faults.md row 18).
    It is admitted, up to twice ``inflight_max``; an unrelated nested call is refused as before."""
    g = Group(CoreConfig(inflight_max=2))
    client = ClientCore("c")
    first = client.request("g", "add", payload=1)
    g.router.submit(first)
    g.router.submit(client.request("g", "add", payload=1))
    h_call = MsgId(nested_source("g", first.msg_id), 1)  # the call h executes for c#1
    back = replace(first, msg_id=MsgId(nested_source("h", h_call), 1), source_view=1)
    assert g.router.submit(back) is None and back.msg_id in g.router.pending
    other = MsgId(nested_source("h", MsgId(nested_source("g", MsgId("c", 9)), 1)), 1)  # c#9 does not wait here
    with pytest.raises(GroupOverloadedError):
        g.router.submit(replace(first, msg_id=other, source_view=1))
    back2 = replace(back, msg_id=MsgId(back.msg_id.source, 2))
    assert g.router.submit(back2) is None
    with pytest.raises(GroupOverloadedError, match="as many calls back"):
        g.router.submit(replace(back, msg_id=MsgId(back.msg_id.source, 3)))


def test_a_call_back_descending_from_a_call_refused_at_pending_max_is_admitted() -> None:
    """A rebuilt router that never learnt a call its replicas still run (suspended on a ring
    g -> h -> g) refuses the caller's retry of it at ``pending_max``; the ring's call back, which
    descends from it, proves the replicas run it: it is admitted as a call back (before, it was
    refused too and the group waited on itself for good: simulator seed 441 with router fetches
    over ``fetch_ticks_max``, ``I6: c0#3 pending over 728 ticks after faults stopped``)."""
    g = Group(CoreConfig(pending_max=2))
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=1))
    g.router.submit(client.request("g", "add", payload=1))
    running = ClientCore("d").request("g", "ring", payload=1)  # suspended at the replicas, unknown here
    with pytest.raises(GroupOverloadedError, match="pending_max"):
        g.router.submit(running)
    h_call = MsgId(nested_source("g", running.msg_id), 1)
    back = replace(running, msg_id=MsgId(nested_source("h", h_call), 1), source_view=1)
    assert g.router.submit(back) is None and back.msg_id in g.router.pending
    other = MsgId(nested_source("h", MsgId(nested_source("g", MsgId("d", 9)), 1)), 1)  # d#9 is nowhere
    with pytest.raises(GroupOverloadedError, match="pending_max"):
        g.router.submit(replace(running, msg_id=other, source_view=1))


def test_a_removed_member_is_reported_retired_to_the_host() -> None:
    """The host stops (kills) retired replicas: ``ready().retired`` names them once."""
    g = Group(CoreConfig())
    g.router.ready()
    g.router.on_failure("g-r2")
    assert g.router.ready().retired == ("g-r2",)
    assert g.router.ready().retired == ()


# --------------------------------------------------------------- schedulers


def test_scheduler_membership_and_removal() -> None:
    """``in`` and ``remove`` say whether a request is still queued."""
    sched = make_scheduler("reception")
    req = ClientCore("c").request("g", "m")
    assert req.msg_id not in sched
    sched.push(Queued(req, 0, 0))
    assert req.msg_id in sched
    assert sched.remove(req.msg_id) is True
    assert req.msg_id not in sched and sched.remove(req.msg_id) is False


def test_sequence_gap_counts_from_the_arrival_tick() -> None:
    """A request after a gap in its source's numbers waits ``sequence_gap_ticks`` from its arrival."""
    sched = make_scheduler("sequence")
    client = ClientCore("c")
    client.request("g", "m")  # seq 1: lost
    late = client.request("g", "m")  # seq 2
    sched.push(Queued(late, 0, 100))
    assert sched.pop(ScheduleContext(now_tick=105, sequence_gap_ticks=20)) is None
    assert sched.pop(ScheduleContext(now_tick=119, sequence_gap_ticks=20)) is None
    assert sched.pop(ScheduleContext(now_tick=120, sequence_gap_ticks=20)).request == late


# ---------------------------------------------------------- digests, repair


class RestoringGroup(Group):
    """A :class:`Group` whose replicas also apply ``Restore`` (state transfer); it keeps
    the state-transfer Delivers it passed on in ``joins``."""

    joins: List[tuple]

    def __init__(self, cfg: CoreConfig) -> None:
        """A group of MEMBERS with ``cfg``, no state transfer seen yet."""
        super().__init__(cfg)
        self.joins = []

    def answer(self, m: str, d):
        """Deliver ``d`` to ``m``, run its effects (Restore included), return its answer."""
        from ftactors.core.replica import Restore, Snapshot

        if d.join:
            self.joins.append((m, d))
        core = self.reps[m]
        core.deliver(d)
        while (e := core.next_effect()) is not None:
            if isinstance(e, Restore):
                self.state[m] = e.checkpoint.state
            elif isinstance(e, Execute):
                self.state[m] += e.request.payload
                core.executed(e.request.msg_id, Outcome(True, self.state[m]))
            elif isinstance(e, Snapshot):
                core.snapshot_taken(e.position, self.state[m], str(self.state[m]))
        return core.take_delivered()


def test_diverged_backups_are_detected_and_repaired_in_place() -> None:
    """Digests catch backups whose state differs; they are repaired by state transfer,
    keeping their membership and the view."""
    g = RestoringGroup(CoreConfig(digest_every_messages=1))
    g.state["g-r1"] = g.state["g-r2"] = 100  # their state went wrong before the first call
    client = ClientCore("c")
    for _ in range(2):
        g.router.submit(client.request("g", "add", payload=1))
        g.pump(1)
    assert g.router.counts["divergences"] == 2
    assert sorted(g.router.diverged) == [("g-r1", 1), ("g-r2", 1)]
    g.pump(10)
    assert g.router.counts["resyncs"] == 2
    for _, d in g.joins:  # the checkpoint plus only what comes after it
        assert all(a.position > d.checkpoint.position for a in d.announcements)
    assert g.router.members == list(MEMBERS) and g.router.view == 1
    g.router.submit(client.request("g", "add", payload=1))
    g.pump(6)
    assert g.state == {"g-r0": 3, "g-r1": 3, "g-r2": 3}
    assert g.router.counts["divergences"] == 2  # repaired: no new divergence


# ------------------------------------------------- replicas: more transcripts


def test_semi_active_backup_has_work_when_the_announced_next_request_is_here() -> None:
    """Hosts poll ``has_work``: a backup holding the next announced request must run it."""
    from ftactors.core import Announcement

    backup = ReplicaCore("g", "g-r1", CoreConfig(), "reception", VIEW)
    req = ClientCore("c").request("g", "m", 1)
    backup.deliver(Deliver(view=1, requests=(req,)))
    assert not backup.has_work()  # not ordered yet
    backup.deliver(Deliver(view=1, announcements=(Announcement("g", 1, 1, req.msg_id),)))
    assert backup.has_work()
    assert execute_all(backup) == [req.msg_id]
    assert backup.counts["replayed"] == 1 and backup.counts["executed"] == 1


def test_state_report_keeps_retain_executed_max_recent_messages() -> None:
    """Recovery sees exactly the last ``retain_executed_max`` executed messages."""
    core = primary(CoreConfig(retain_executed_max=3))
    client = ClientCore("c")
    reqs = [client.request("g", "m", i) for i in range(5)]
    core.deliver(Deliver(view=1, requests=tuple(reqs)))
    execute_all(core)
    report = core.state_report()
    assert [a.position for a in report.announcements] == [3, 4, 5]
    assert [r.msg_id for r in report.requests] == [r.msg_id for r in reqs[2:]]


def test_digests_are_taken_every_digest_every_messages() -> None:
    """With ``digest_every_messages=2`` a replica snapshots at positions 2 and 4, no more."""
    from ftactors.core.replica import Snapshot

    core = primary(CoreConfig(digest_every_messages=2))
    client = ClientCore("c")
    core.deliver(Deliver(view=1, requests=tuple(client.request("g", "m", i) for i in range(5))))
    snapshots = []
    while (eff := core.next_effect()) is not None:
        if isinstance(eff, Execute):
            core.executed(eff.request.msg_id, Outcome(True, None))
        elif isinstance(eff, Snapshot):
            snapshots.append(eff.position)
            core.snapshot_taken(eff.position, None, f"d{eff.position}")
    assert snapshots == [2, 4]
    assert core.take_delivered().digests == ((2, "d2"), (4, "d4"))


def test_backup_takes_a_nested_reply_copy_and_carries_its_announcements() -> None:
    """Claims 48 and 66 at a backup: the copy is taken once; its announcements ride back."""
    from ftactors.core import Announcement

    backup = ReplicaCore("g", "g-r1", CoreConfig(), "reception", VIEW)
    mid = MsgId("g|c:1", 1)
    ann = Announcement("h", 1, 7, mid)
    rep = Reply(mid, "h", 1, 7, Outcome(True, 42), (ann,))
    backup.deliver(Deliver(view=1, reply_copies=(rep,)))
    assert backup.reply_copy(mid) == rep
    assert backup.reply_copy(mid) is None
    assert backup.carried_for("h") == (ann,)


def test_passive_backup_keeps_requests_after_a_checkpoint() -> None:
    """A checkpoint covers what it executed; requests after it are still needed on failover."""
    from ftactors.core import Announcement, Checkpoint
    from ftactors.core.dedup import DedupTable

    cfg = CoreConfig(style="passive")
    backup = ReplicaCore("g", "g-r1", cfg, "reception", VIEW)
    client = ClientCore("c")
    first, second = client.request("g", "m", 1), client.request("g", "m", 2)
    backup.deliver(Deliver(view=1, requests=(first, second),
                           announcements=(Announcement("g", 1, 1, first.msg_id),)))
    table = DedupTable(cfg.reply_cache_max)
    table.record(first.msg_id, None)
    backup.deliver(Deliver(view=1, checkpoint=Checkpoint("g", 1, 1, "state", table.export())))
    assert [r.msg_id for r in backup.state_report().requests] == [second.msg_id]


def test_sequence_scheduler_works_before_the_first_tick() -> None:
    """A replica may get a gap in a source's numbers before its host ever called ``tick``."""
    core = ReplicaCore("g", "g-r0", CoreConfig(sequence_gap_ticks=5), "sequence", VIEW)
    client = ClientCore("c")
    client.request("g", "m", 1)  # lost
    late = client.request("g", "m", 2)
    core.deliver(Deliver(view=1, requests=(late,)))
    assert execute_all(core) == []
    core.tick(5)
    assert execute_all(core) == [late.msg_id]


# ------------------------------------------------------ routers: more transcripts


def test_a_callers_calls_run_in_its_order_when_they_reach_the_router_reversed() -> None:
    """FIFO per caller: calls 3 and 2 arriving before 1 wait for it, then all run at once."""
    g = Group(CoreConfig())
    client = ClientCore("c")
    reqs = [client.request("g", "add", payload=1) for _ in range(3)]
    for req in reversed(reqs):
        g.router.submit(req)
    g.pump(6)  # far less than sequence_gap_ticks
    order = [ann.msg_id for _, (ann, _) in sorted(g.reps["g-r0"]._recent.items())]
    assert order == [r.msg_id for r in reqs]


def test_primary_gets_at_most_primary_inflight_max_unanswered_delivers() -> None:
    """Flow control: unanswered Delivers to the primary stop at ``primary_inflight_max``."""
    router = RouterCore("g", CoreConfig(primary_inflight_max=2), MEMBERS)
    client = ClientCore("c")
    to_primary = 0
    for now in range(1, 6):
        router.submit(client.request("g", "add", payload=1))
        router.tick(now)
        to_primary += sum(1 for m, _ in router.ready().sends if m == "g-r0")
    assert to_primary == 2


def test_replacements_are_named_with_consecutive_indexes() -> None:
    """Spawned replicas get the next free names, in order."""
    router = RouterCore("g", CoreConfig(min_replicas=3), MEMBERS)
    router.on_failure("g-r1")
    router.on_failure("g-r2")
    assert router.ready().spawns == ("g-r3", "g-r4")


def test_joiner_is_admitted_at_its_checkpoint_position() -> None:
    """A joiner restored from a checkpoint counts as having acknowledged its position."""
    from ftactors.core import Checkpoint

    g, _ = loaded_group(2, 6)
    g.router.replica_started("g-r3")
    g.router._relay_checkpoint(Checkpoint("g", 1, 2, 2, ()))
    assert g.router.describe()["acked"]["g-r3"] == 2
    assert "g-r3" in g.router.members


def test_a_joiner_gets_only_the_order_after_its_checkpoint() -> None:
    """The join Deliver carries the checkpoint plus the announcements after it, not the
    one the checkpoint already covers."""
    from ftactors.core import Checkpoint

    g = Group(CoreConfig(failure_timeout_ticks=1_000))
    client = ClientCore("c")
    for _ in range(2):
        g.router.submit(client.request("g", "add", payload=1))
        g.pump(3, alive={"g-r0", "g-r1"})  # g-r2 lags: the router keeps the order
    assert g.router.trimmed == 0
    g.router.replica_started("g-r3")
    g.router._relay_checkpoint(Checkpoint("g", 1, 1, 1, ()))
    join = dict(g.router.ready().sends)["g-r3"]
    assert join.join and [a.position for a in join.announcements] == [2]


def test_acknowledged_order_is_trimmed() -> None:
    """Once every member executed a position, the router forgets it (bounded memory)."""
    g, _ = loaded_group(3, 10)
    d = g.router.describe()
    assert g.router.trimmed == 3
    assert d["retained_order"] == 0 and d["retained_requests"] == 0


# ------------------------------------------------------ a restarted router's recovery


def restarted(cfg: CoreConfig) -> RouterCore:
    """A router rebuilt after a crash at tick 0, for MEMBERS in view 1; its queries taken."""
    router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=0)
    assert router.ready().queries == MEMBERS
    return router


def test_restarted_router_drops_members_silent_past_recovery_timeout() -> None:
    """Members that do not report within ``recovery_timeout_ticks`` are dropped; the
    reporters go on in a new view."""
    cfg = CoreConfig(recovery_timeout_ticks=10)
    router = restarted(cfg)
    for m in ("g-r0", "g-r1"):
        router.on_state_report(ReplicaCore("g", m, cfg, "reception", NewView(1, MEMBERS)).state_report())
    for now in range(1, 11):
        router.tick(now)
    assert router.phase == Phase.RECOVERING  # exactly the timeout: still waiting
    router.ready()
    router.tick(11)
    assert router.phase == Phase.NORMAL and router.members == ["g-r0", "g-r1"]
    assert router.ready().retired == ("g-r2",)


def test_restarted_router_asks_again_then_gives_the_group_up() -> None:
    """Nobody reports: the router asks again each timeout, ``RECOVERY_ROUNDS_MAX`` times,
    then fails the group (slow survivors get several chances; dead ones do not hang it)."""
    from ftactors.core.router import RECOVERY_ROUNDS_MAX

    router = restarted(CoreConfig(recovery_timeout_ticks=10, failure_timeout_ticks=100_000))
    rounds = 0
    now = 0
    while router.phase == Phase.RECOVERING and now < 1_000:
        now += 1
        router.tick(now)
        if router.ready().queries:
            rounds += 1
    assert rounds == RECOVERY_ROUNDS_MAX
    assert router.phase == Phase.LOST


def restarted_after_a_lost_deliver():
    """A group whose call (add 7) reached only the backups, then whose router was rebuilt."""
    cfg = CoreConfig()
    g = Group(cfg)
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=7))
    g.pump(1, alive={"g-r1", "g-r2"})  # the primary's Deliver is lost
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    return g, client


def test_request_known_only_to_backups_runs_after_a_router_restart() -> None:
    """The dead router had copied a request to the backups only: the restarted router learns
    it from their reports and the new view runs it, without the caller retrying."""
    g, _ = restarted_after_a_lost_deliver()
    g.pump(8)
    assert g.state == {"g-r0": 7, "g-r1": 7, "g-r2": 7}


def test_restarted_router_keeps_accepting_the_undeposed_primarys_old_view_output() -> None:
    """After recovery the primary is the same replica: its late output of view 1 is its own
    and is released, not fenced."""
    cfg = CoreConfig()
    g = Group(cfg)
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=1))
    g.pump(6)
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    g.pump(3)
    assert g.router.phase == Phase.NORMAL and g.router.primary == "g-r0" and g.router.view == 2
    late_id = client.request("g", "add", payload=2).msg_id  # a reply carries its announcement (row 56)
    late = Reply(late_id, "g", 1, 2, Outcome(True, 3), announcements=(Announcement("g", 1, 2, late_id),))
    g.router.on_delivered(Delivered("g-r0", 1, replies=(late,)))
    assert g.router.lookup(late.msg_id)[0] == "released"


def test_restarted_router_replaces_a_member_whose_missing_order_is_gone() -> None:
    """A backup far behind needs positions no survivor retains any more: the restarted router
    drops it (to be replaced by state transfer) instead of waiting forever."""
    cfg = CoreConfig(retain_executed_max=1, failure_timeout_ticks=1_000)
    g = Group(cfg)
    client = ClientCore("c")
    for _ in range(3):
        g.router.submit(client.request("g", "add", payload=1))
        g.pump(3, alive={"g-r0", "g-r1"})  # g-r2 answers pings but gets no Deliver through
    assert g.state == {"g-r0": 3, "g-r1": 3, "g-r2": 0}
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    g.router.ready()
    for m in MEMBERS:
        g.router.on_state_report(g.reps[m].state_report())
    assert g.router.phase == Phase.NORMAL
    assert g.router.members == ["g-r0", "g-r1"] and g.router.primary == "g-r0"
    assert g.router.counts["resyncs"] == 1
    assert g.router.ready().retired == ("g-r2",)


def test_slowest_backup_is_dropped_when_the_log_exceeds_log_max() -> None:
    """A backup that stops acknowledging must not grow the router's log without bound."""
    cfg = CoreConfig(log_max=2, failure_timeout_ticks=1_000)
    g = Group(cfg)
    client = ClientCore("c")
    gone: List[str] = []
    for _ in range(5):
        g.router.submit(client.request("g", "add", payload=1))
        g.pump(1, alive={"g-r0", "g-r1"})
        gone += [m for m in MEMBERS if m not in g.router.members and m not in gone]
    assert gone[:1] == ["g-r2"]  # the slowest goes first
    assert g.router.primary == "g-r0"


def test_a_held_call_waits_exactly_sequence_gap_ticks_for_a_missing_earlier_one() -> None:
    """Call 2 arrives but call 1 never does (its caller's message was lost): call 2 is
    accepted ``sequence_gap_ticks`` after it arrived, not before and not later."""
    router = RouterCore("g", CoreConfig(sequence_gap_ticks=5), MEMBERS)
    client = ClientCore("c")
    client.request("g", "add", payload=1)  # lost
    router.submit(client.request("g", "add", payload=1))
    for now in range(1, 5):
        router.tick(now)
    assert router.counts["requests"] == 0
    router.tick(5)
    assert router.counts["requests"] == 1


@pytest.mark.parametrize("ticks_before", [1, 2])
def test_after_a_restart_a_call_does_not_wait_for_one_the_backups_already_hold(ticks_before: int) -> None:
    """Call 1 reached the backups before the router died; call 2 arrives at the restarted
    router, which knows call 1 from the reports (1 tick: not ordered yet; 2 ticks: ordered):
    call 2 runs at once, after call 1."""
    g, client = restarted_after_a_lost_deliver()
    g.pump(ticks_before)
    g.router.submit(client.request("g", "add", payload=1))
    g.pump(6)  # far less than sequence_gap_ticks
    assert g.state == {"g-r0": 8, "g-r1": 8, "g-r2": 8}


def test_retries_and_copy_fetches_of_a_pending_call_are_counted_apart() -> None:
    """Before the reply exists, a client's retry is a duplicate and a backup's fetch a copy."""
    router = RouterCore("g", CoreConfig(), MEMBERS)
    req = ClientCore("c").request("g", "add", payload=1)
    router.submit(req)
    assert router.submit(req) is None
    assert router.submit(req, copy=True) is None
    assert router.submit(req, copy=True) is None
    assert (router.counts["duplicates"], router.counts["reply_copies"]) == (1, 2)


def test_the_first_deliver_tells_each_replica_its_view() -> None:
    """A replica host may start its core without a view: the router's first Deliver gives it."""
    router = RouterCore("g", CoreConfig(), MEMBERS)
    router.submit(ClientCore("c").request("g", "add", payload=1))
    router.tick(1)
    sends = dict(router.ready().sends)
    assert set(sends) == set(MEMBERS)
    assert all(d.new_view == NewView(1, MEMBERS) for d in sends.values())


def test_a_replica_silent_from_the_start_fails_after_failure_timeout_ticks() -> None:
    """Failure detection counts from the group's start: tick ``failure_timeout_ticks + 1``."""
    cfg = CoreConfig()
    router = RouterCore("g", cfg, MEMBERS)
    for now in range(1, cfg.failure_timeout_ticks + 2):
        router.tick(now)
        if now == cfg.failure_timeout_ticks:
            assert "g-r2" in router.members
        for m in router.ready().pings:
            if m != "g-r2":
                router.on_pong(m)
    assert router.members == ["g-r0", "g-r1"]


def test_a_diverged_backup_that_fails_before_its_repair_is_simply_gone() -> None:
    """The repair of a diverged backup must not trip over it having failed meanwhile."""
    g = RestoringGroup(CoreConfig(digest_every_messages=1))
    g.state["g-r2"] = 100
    g.router.submit(ClientCore("c").request("g", "add", payload=1))
    while not g.router.counts["divergences"] and g.now < 10:
        g.pump(1)
    assert g.router.diverged == [("g-r2", 1)]
    g.router.on_failure("g-r2")  # before the primary's checkpoint for the repair
    g.pump(10)
    assert g.router.members == ["g-r0", "g-r1"] and g.router.counts["resyncs"] == 0
    assert g.state["g-r0"] == g.state["g-r1"] == 1


def test_a_joiner_offered_a_too_old_checkpoint_gets_a_fresh_one() -> None:
    """The router asks the primary for a new snapshot at once instead of waiting for the
    next periodic checkpoint."""
    from ftactors.core import Checkpoint

    g, _ = loaded_group(1, 6, CoreConfig(style="passive", checkpoint_every_messages=100))
    assert g.router.trimmed == 1
    g.reps["g-r3"] = ReplicaCore("g", "g-r3", g.router.config, "reception", None)
    g.state["g-r3"] = 0
    g.router.replica_started("g-r3")
    from ftactors.core.dedup import DedupTable

    empty = DedupTable(g.router.config.reply_cache_max).export()
    g.router._relay_checkpoint(Checkpoint("g", 1, 0, 0, empty))  # older than the trimmed log
    assert "g-r3" not in g.router.members
    g.pump(4)
    assert "g-r3" in g.router.members


def test_restarted_router_drops_every_backup_that_cannot_reach_the_leader() -> None:
    """Two backups behind the leader by order no survivor retains are both dropped, even
    though they are level with each other."""
    cfg = CoreConfig(retain_executed_max=1, failure_timeout_ticks=1_000, min_replicas=1)
    g, client = loaded_group(1, 4, cfg)
    for _ in range(2):
        g.router.submit(client.request("g", "add", payload=1))
        g.pump(3, alive={"g-r0"})
    assert g.state == {"g-r0": 3, "g-r1": 1, "g-r2": 1}
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    g.router.ready()
    for m in MEMBERS:
        g.router.on_state_report(g.reps[m].state_report())
    assert g.router.members == ["g-r0"] and g.router.counts["resyncs"] == 2


def test_an_idle_primary_is_polled_every_heartbeat_while_callers_wait() -> None:
    """The primary may hold work that became possible later: with a caller waiting and the
    link idle, the router sends an empty Deliver ``heartbeat_ticks`` after the last one."""
    cfg = CoreConfig()
    router = RouterCore("g", cfg, MEMBERS)
    router.submit(ClientCore("c").request("g", "add", payload=1))
    router.tick(1)
    router.ready()
    router.on_delivered(Delivered("g-r0", 1))  # answered, without the reply yet
    polled_at = []
    for now in range(2, 2 + cfg.heartbeat_ticks + 1):
        router.tick(now)
        r = router.ready()
        for m in r.pings:
            router.on_pong(m)
        if any(m == "g-r0" for m, _ in r.sends):
            polled_at.append(now)
            router.on_delivered(Delivered("g-r0", 1))
    assert polled_at == [1 + cfg.heartbeat_ticks] and router.counts["polls"] == 1


def test_new_primary_with_a_hole_in_the_order_gives_it_up_when_its_router_says_so() -> None:
    """A promoted primary knows position 2 but never got position 1: it waits for it however
    long its own clock runs (its router may be starved), and drops that order and runs what it
    holds when the router says nobody holds position 1 (``give_up_from``; docs/faults.md, row 44)."""
    from ftactors.core import Announcement

    cfg = CoreConfig(recovery_timeout_ticks=10)
    core = ReplicaCore("g", "g-r1", cfg, "reception", NewView(2, ("g-r1", "g-r0")))
    client = ClientCore("c")
    first, second = client.request("g", "m", 1), client.request("g", "m", 2)
    core.deliver(Deliver(view=2, requests=(first, second),
                         announcements=(Announcement("g", 1, 2, second.msg_id),)))
    assert execute_all(core) == []
    core.tick(10 * cfg.recovery_timeout_ticks)
    assert execute_all(core) == []
    core.deliver(Deliver(view=2, give_up_from=1))
    assert execute_all(core) == [first.msg_id, second.msg_id]


def test_backups_blocked_on_a_request_nobody_holds_are_replaced() -> None:
    """The primary announced a request the router does not hold (it was lost with a crashed
    router): backups that cannot get it are replaced after ``2 * failure_timeout_ticks``
    without progress, instead of lagging forever."""
    from ftactors.core import Announcement

    cfg = CoreConfig()
    router = RouterCore("g", cfg, MEMBERS)
    ann = Announcement("g", 1, 1, MsgId("c", 1))
    router.on_delivered(Delivered("g-r0", 1, announcements=(ann,), acked_position=1))
    patience = 2 * cfg.failure_timeout_ticks
    spawns: List[str] = []
    for now in range(1, patience + 3):
        router.tick(now)
        if now == patience:
            assert router.members == list(MEMBERS)
        r = router.ready()
        spawns += r.spawns
        for m in r.pings:
            router.on_pong(m)
        for m, _ in r.sends:
            router.on_delivered(Delivered(m, router.view, acked_position=1 if m == "g-r0" else 0))
    assert router.members == ["g-r0"] and router.counts["resyncs"] == 2
    assert spawns == ["g-r3"]


def test_a_repaired_backup_still_gets_announcements_batched() -> None:
    """After a state transfer, announcements to the repaired backup wait ``null_message_ticks``
    for a request to ride on, as for any backup: both backups get their null message together."""
    cfg = CoreConfig(digest_every_messages=1)
    g = RestoringGroup(cfg)
    g.state["g-r2"] = 100
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=1))
    g.pump(30)
    assert g.router.counts["resyncs"] == 1
    g.router.submit(client.request("g", "add", payload=1))
    nulls_per_tick = []
    for _ in range(cfg.null_message_ticks + 1):
        before = g.router.counts["null_messages"]
        g.pump(1)
        nulls_per_tick.append(g.router.counts["null_messages"] - before)
    assert nulls_per_tick == [0] * cfg.null_message_ticks + [2]


# ------------------------------------- survivors of the run after the router split


def test_a_forgotten_nested_source_cannot_run_again_whatever_order_its_siblings_are_forgotten_in() -> None:
    """The root floor only rises: forgetting a source of an older calling message after a newer
    one must not lower it, or a late duplicate of a call in between would run twice."""
    from ftactors.core import DedupTable, nested_source

    table = DedupTable(reply_cache_max=10, sources_max=1)
    newer, older = nested_source("A", MsgId("c", 5)), nested_source("A", MsgId("c", 3))
    between = nested_source("A", MsgId("c", 4))
    table.record(MsgId(newer, 1), None)
    table.record(MsgId(older, 1), None)  # past sources_max: ``newer`` is forgotten first
    table.record(MsgId("x", 1), None)  # then ``older``
    assert table.status(MsgId(between, 1)) == "expired"
    assert table.status(MsgId(newer, 1)) == "expired"


def test_the_oldest_root_floor_is_forgotten_first() -> None:
    from ftactors.core import DedupTable, nested_source

    table = DedupTable(reply_cache_max=10, sources_max=1)
    a, b = nested_source("A", MsgId("c", 5)), nested_source("B", MsgId("d", 2))
    table.record(MsgId(a, 1), None)
    table.record(MsgId(b, 1), None)  # a forgotten: floor of root A|c
    table.record(MsgId("y", 1), None)  # b forgotten: floor of root B|d; A|c's floor goes (the oldest)
    assert table.status(MsgId(b, 1)) == "expired"
    assert table.status(MsgId(a, 1)) == "new"


def test_a_joined_replica_sends_no_checkpoint_and_takes_no_snapshot_nobody_asked_for() -> None:
    """After a join, the first Delivered carries no checkpoint (only a primary's snapshot makes
    one) and executing a call makes no Snapshot effect (digests are off)."""
    from ftactors.core import Checkpoint, DedupTable, Kind, Snapshot

    cfg = CoreConfig(digest_every_messages=0)
    core = ReplicaCore("g", "g-r2", cfg, "reception", None)
    cp = Checkpoint("g", 2, 0, "state", DedupTable(10).export(), "d0")
    core.deliver(Deliver(view=2, new_view=NewView(2, ("g-r0", "g-r2")), checkpoint=cp, join=True))
    assert core.take_delivered().checkpoint is None
    req = Request(Kind.SYNC_REQUEST, MsgId("c", 1), "g", "m")
    from ftactors.core import Announcement

    core.deliver(Deliver(view=2, requests=(req,), announcements=(Announcement("g", 2, 1, req.msg_id),)))
    effects = []
    while (eff := core.next_effect()) is not None:
        effects.append(eff)
        if isinstance(eff, Execute):
            core.executed(eff.request.msg_id, Outcome(True, 1))
    assert not any(isinstance(e, Snapshot) for e in effects) and core.executed_upto == 1
    assert core.take_delivered().checkpoint is None


def test_a_passive_backup_keeps_its_exactly_once_table_within_sources_max_after_a_checkpoint() -> None:
    from ftactors.core import Checkpoint, DedupTable

    big = DedupTable(reply_cache_max=100, sources_max=100)
    for i in range(12):
        big.record(MsgId(f"s{i}", 1), None)
    cfg = CoreConfig(style="passive", reply_cache_max=100, sources_max=4)
    core = ReplicaCore("g", "g-r1", cfg, "reception", VIEW)
    core.deliver(Deliver(view=1, checkpoint=Checkpoint("g", 1, 12, "state", big.export(), "d")))
    assert core.executed_upto == 12 and core.dedup.sources() == 4


def test_the_sequence_scheduler_forgets_the_least_recently_executed_source_first() -> None:
    """Past ``sources_max``, the source executed longest ago is forgotten: one that just ran
    keeps its place, and its next call runs at once instead of waiting ``sequence_gap_ticks``."""
    from ftactors.core import Kind, Request

    cfg = CoreConfig(sources_max=2)
    core = ReplicaCore("g", "g-r0", cfg, "sequence", VIEW)
    for src, seq in (("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3)):
        core.deliver(Deliver(view=1, requests=(Request(Kind.SYNC_REQUEST, MsgId(src, seq), "g", "m"),)))
        assert execute_all(core) == [MsgId(src, seq)]
    assert list(core.next_seq) == ["c", "a"]


def test_a_promoted_backup_schedules_within_sources_max() -> None:
    from ftactors.core import Kind, Request

    cfg = CoreConfig(sources_max=2)
    core = ReplicaCore("g", "g-r1", cfg, "fair", VIEW)
    core.deliver(Deliver(view=2, new_view=NewView(2, ("g-r1",))))  # the primary failed
    for i in range(5):
        core.deliver(Deliver(view=2, requests=(Request(Kind.SYNC_REQUEST, MsgId(f"s{i}", 1), "g", "m"),)))
        execute_all(core)
    assert core.executed_upto == 5
    assert len(core._sched._served) <= 2  # type: ignore[attr-defined]


def test_a_user_scheduler_class_is_accepted() -> None:
    from ftactors.core.scheduler import SequenceOrder

    class MyOrder(SequenceOrder):
        name = "mine"

    assert isinstance(make_scheduler(MyOrder), MyOrder)
    core = ReplicaCore("g", "g-r0", CoreConfig(), MyOrder, VIEW)
    assert isinstance(core._sched, MyOrder)  # type: ignore[attr-defined]


def test_a_restarted_router_long_after_start_still_waits_for_resubmitted_calls() -> None:
    """The restart grace counts from the rebuild, not from tick 0: a call held at a router rebuilt
    at tick 1000 waits ``failure_timeout_ticks`` (not just ``sequence_gap_ticks``) for an earlier one."""
    from ftactors.core import Kind, Request, StateReport

    cfg = CoreConfig()
    rebuilt_at = 1000
    router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=rebuilt_at)
    for m in MEMBERS:
        router.on_state_report(StateReport(m, 1, 0))
    assert router.phase == Phase.NORMAL
    second = Request(Kind.SYNC_REQUEST, MsgId("c", 2), "g", "m", ack_below=1)
    router.submit(second)
    assert 2 in router.held["c"]
    now = rebuilt_at
    for now in range(rebuilt_at + 1, rebuilt_at + cfg.failure_timeout_ticks + 2):
        router.tick(now)
        for m in router.ready().pings:
            router.on_pong(m)
        if now < rebuilt_at + cfg.failure_timeout_ticks:
            assert 2 in router.held.get("c", {}), now
    assert "c" not in router.held and second.msg_id in router.requests


def test_a_rebuilt_router_relays_to_the_backups_a_request_only_its_primary_reported() -> None:
    """The primary executed a call the dead router had taken; asked about the order it lacks, it
    reports the announcement and the request, and the backups get both."""
    from ftactors.core import Announcement, Kind, Request, StateReport

    router = RouterCore.rebuilt("g", CoreConfig(), ("g-r0", "g-r1"), view=1, next_replica_index=2)
    for m in ("g-r0", "g-r1"):
        router.on_state_report(StateReport(m, 1, 0))
    for m, _ in router.ready().sends:  # the new view
        router.on_delivered(Delivered(m, router.view))
    assert router.primary == "g-r0" and router.phase == Phase.NORMAL
    lost = Request(Kind.SYNC_REQUEST, MsgId("c", 1), "g", "m")
    ann = Announcement("g", router.view, 1, lost.msg_id)
    router.on_delivered(Delivered("g-r0", router.view, acked_position=1))  # executed position 1
    assert router.ready().queries == ("g-r0",)
    router.on_state_report(StateReport("g-r0", router.view, 1, (lost,), (ann,)))
    router.tick(1)  # past relay_delay_ticks
    sends = dict(router.ready().sends)
    assert "g-r0" not in sends
    assert sends["g-r1"].requests == (lost,) and sends["g-r1"].announcements == (ann,)


def test_a_late_state_report_after_the_recovery_is_ignored() -> None:
    from ftactors.core import Announcement, StateReport

    g = Group(CoreConfig())
    stale = Announcement("g", 1, 1, MsgId("c", 9))
    g.router.on_state_report(StateReport("g-r1", 1, 1, (), (stale,)))
    assert 1 not in g.router.order and g.router.gap_queried is None


def test_announcements_carried_back_are_counted() -> None:
    from ftactors.core import Announcement

    g = Group(CoreConfig())
    client = ClientCore("c")
    first = client.request("g", "add", payload=1)
    g.router.submit(first)
    g.pump(3)
    carried = (Announcement("g", 1, 1, first.msg_id),)
    second = client.request("g", "add", payload=1)
    g.router.submit(second.__class__(**{**{f: getattr(second, f) for f in second.__slots__},
                                        "peer_announcements": carried}))
    assert g.router.counts["announcements_carried_back"] == 1


def test_backups_blocked_at_different_times_are_each_counted_as_resyncs() -> None:
    """Two backups blocked on the same lost request, one 50 ticks after the other: each is
    replaced after its own ``2 * failure_timeout_ticks`` without progress, and both count."""
    from ftactors.core import Announcement

    cfg = CoreConfig()
    router = RouterCore("g", cfg, MEMBERS)
    client = ClientCore("c")
    first = client.request("g", "add", payload=1)
    router.submit(first)
    anns = (Announcement("g", 1, 1, first.msg_id), Announcement("g", 1, 2, MsgId("c", 99)))
    slow_answer_at = 50
    parked = None
    removed = {}
    for now in range(1, slow_answer_at + 2 * cfg.failure_timeout_ticks + 3):
        router.tick(now)
        r = router.ready()
        for m in r.pings:
            router.on_pong(m)
        for m, d in r.sends:
            if m == "g-r0":
                router.on_delivered(Delivered(m, router.view, announcements=anns if now == 1 else (),
                                              acked_position=2))
            elif m == "g-r2" and now < slow_answer_at:
                parked = d  # g-r2 is slow: it answers its first Deliver at tick 50
            else:
                router.on_delivered(Delivered(m, router.view, acked_position=1))
        if now == slow_answer_at and parked is not None:
            router.on_delivered(Delivered("g-r2", router.view, acked_position=1))
        for m in r.retired:
            removed[m] = now
    assert removed == {"g-r1": 2 * cfg.failure_timeout_ticks + 2,
                       "g-r2": slow_answer_at + 2 * cfg.failure_timeout_ticks + 1}
    assert router.counts["resyncs"] == 2


def test_a_call_refused_as_overloaded_takes_no_place_in_the_order_and_is_not_retained() -> None:
    """A call refused as overloaded (at the router, before any replica has a copy) takes no
    position: its caller may retry it, and the router retains nothing of it for recovery."""
    g = Group(CoreConfig(pending_max=1))
    client = ClientCore("c")
    kept, refused = client.request("g", "add", payload=1), client.request("g", "add", payload=2)
    g.router.submit(kept)
    with pytest.raises(GroupOverloadedError):
        g.router.submit(refused)
    g.pump(6)
    by_id = {r.msg_id: r for r in g.released}
    assert refused.msg_id not in by_id and by_id[kept.msg_id].position == 1
    assert g.router.describe()["retained_requests"] == 0


# ------------------------------------------- main after pushed copies, kept places and rings


def test_a_backup_counts_each_pushed_reply_copy_it_receives_and_each_one_its_calls_take() -> None:
    """The replica's ``reply_copies_in`` / ``reply_copies_used`` (its status ``counts``) count copies,
    one each: two copies pushed and both taken are 2 and 2."""
    backup = ReplicaCore("g", "g-r1", CoreConfig(), "reception", VIEW)
    caller = MsgId("c", 1)
    copies = tuple(Reply(MsgId(nested_source("g", caller), s), "h", 1, s, Outcome(True, s)) for s in (1, 2))
    backup.deliver(Deliver(view=1, reply_copies=copies))
    assert backup.counts["reply_copies_in"] == 2 and backup.counts["reply_copies_used"] == 0
    assert [backup.reply_copy(rep.msg_id) for rep in copies] == list(copies)
    assert backup.counts["reply_copies_used"] == 2


def test_the_router_keeps_at_most_inflight_max_places_for_refused_calls() -> None:
    """Calls refused at ``pending_max`` keep their place in line, ``inflight_max`` of them: a call
    refused beyond them keeps none, and a newcomer arriving when room frees is admitted before it."""
    cfg = CoreConfig(pending_max=1, inflight_max=2)
    g = Group(cfg)
    first = ClientCore("a").request("g", "add", payload=1)
    g.router.submit(first)
    refused = [ClientCore(name).request("g", "add", payload=1) for name in ("b", "c", "d")]
    for req in refused:
        with pytest.raises(GroupOverloadedError, match="pending_max"):
            g.router.submit(req)
    assert list(g.router.refused) == [refused[0].msg_id, refused[1].msg_id]  # "d" kept no place
    for kept in refused[:2]:  # room frees, call by call: the kept places are served in order
        g.pump(6)
        assert g.router.submit(kept) is None
    g.pump(6)
    assert not g.router.refused and g.router.describe()["retained_requests"] == 0
    newcomer = ClientCore("e").request("g", "add", payload=1)
    assert g.router.submit(newcomer) is None  # "d" kept no place ahead of it
    with pytest.raises(GroupOverloadedError, match="pending_max"):
        g.router.submit(refused[2])


def test_a_retransmission_waits_behind_every_place_kept_before_its_own() -> None:
    """Kept places are served in the order of the first refusals: once room frees for two calls,
    the third refused call's retransmission is refused while the two places before it are kept,
    and admitted once their calls took them."""
    g = Group(CoreConfig(pending_max=2, inflight_max=3))
    for name in ("a1", "a2"):
        g.router.submit(ClientCore(name).request("g", "add", payload=1))
    first, second, third = (ClientCore(name).request("g", "add", payload=1) for name in ("b", "c", "d"))
    for req in (first, second, third):
        with pytest.raises(GroupOverloadedError, match="pending_max"):
            g.router.submit(req)
    g.pump(10)
    assert len(g.released) == 2 and g.router.describe()["retained_requests"] == 0
    with pytest.raises(GroupOverloadedError, match="pending_max"):
        g.router.submit(third)  # room for two, both kept for b and c
    assert g.router.submit(first) is None and g.router.submit(second) is None
    g.pump(10)
    assert g.router.submit(third) is None
    g.pump(10)
    assert {r.msg_id for r in g.released} >= {first.msg_id, second.msg_id, third.msg_id}


def test_a_source_naming_a_call_numbered_zero_is_not_a_call_back_into_the_group() -> None:
    """Calls are numbered from 1 (client and nested ones alike): a source whose lineage names a
    call numbered 0 names no call, so the router does not admit it past ``inflight_max`` as a call
    back into the group, even when the rest of its lineage leads to a call waiting here."""
    g = Group(CoreConfig(inflight_max=1))
    first = ClientCore("c").request("g", "add", payload=1)
    g.router.submit(first)
    waiting = nested_source("g", first.msg_id)  # "g|c#1": calls g's c#1 makes
    no_call = MsgId(f"h|{waiting}#0", 1)  # as if made by h's call numbered 0 of that source
    with pytest.raises(GroupOverloadedError, match="in flight"):
        g.router.submit(replace(first, msg_id=no_call, source_view=1))
    back = MsgId(nested_source("h", MsgId(waiting, 1)), 1)  # h's call 1 of it: a real ring
    assert g.router.submit(replace(first, msg_id=back, source_view=1)) is None


# ------------------------------------------ reply copies kept by the router's log (issue 11)


def _push(router: RouterCore, position: int, caller: Request, *copies: Reply) -> None:
    """The primary ``g-r0`` announces ``caller`` at ``position`` and pushes the copies of its nested replies."""
    router.on_delivered(Delivered("g-r0", 1, announcements=(Announcement("g", 1, position, caller.msg_id),),
                                  acked_position=position, reply_copies=copies))


def _copy(caller: Request, seq: int) -> Reply:
    """The reply to the ``seq``-th nested call ``caller`` made (to group ``b``)."""
    return Reply(MsgId(nested_source("g", caller.msg_id), seq), "b", 1, seq, Outcome(True, seq))


def test_the_router_counts_only_the_kept_copies_it_drops_and_a_joiner_gets_none_its_checkpoint_covers() -> None:
    """The router's log keeps ``reply_copies_max`` pushed copies for later joiners; the status counter
    ``reply_copies_unkept`` counts each one it drops for that bound, not a late copy of a call every
    member executed (nobody replays it). A joiner restored from a checkpoint at position 2 replays
    position 3 only: it gets that call's copy, not the copy of the call at the checkpoint's own
    position, and queuing it drops nothing (``reply_copies_dropped`` counts the backups' links only)."""
    router = RouterCore("g", CoreConfig(reply_copies_max=2, null_message_ticks=1), MEMBERS)
    client = ClientCore("c")
    calls = [client.request("g", "fwd", payload=i) for i in (1, 2, 3)]
    for req in calls:
        router.submit(req)
    for pos, req in enumerate(calls, start=1):  # each call made one nested call; none sent on yet
        _push(router, pos, req, _copy(req, 1))
    assert router.counts["reply_copies_dropped"] == 2  # each backup's link held 3 of at most 2
    assert router.counts["reply_copies_unkept"] == 1  # the log dropped c#1's copy
    router.tick(1)
    router.ready()
    for backup in ("g-r1", "g-r2"):
        router.on_delivered(Delivered(backup, 1, acked_position=1))
    assert router.trimmed == 1
    _push(router, 3, calls[2])  # (a repeat of position 3, nothing new)
    router.on_delivered(Delivered("g-r0", 1, acked_position=3, reply_copies=(_copy(calls[0], 2),)))  # late
    assert router.counts["reply_copies_unkept"] == 1  # c#1 ran everywhere: its late copy is not kept
    router.replica_started("g-r3")
    router._relay_checkpoint(Checkpoint("g", 1, 2, 2, DedupTable(100, 100).export()))
    router.tick(2)
    join = dict(router.ready().sends)["g-r3"]
    assert join.join and [a.position for a in join.announcements] == [3]
    assert [r.msg_id for r in join.reply_copies] == [_copy(calls[2], 1).msg_id]
    assert router.counts["reply_copies_dropped"] == 2 and router.counts["reply_copies_unkept"] == 1


def test_a_repaired_backup_is_sent_the_kept_copies_it_lacks_and_each_one_its_link_drops_is_counted() -> None:
    """A diverged backup repaired by state transfer replays the retained log after the checkpoint: the
    kept copies of those calls are queued on its link behind the copies already waiting there, at most
    ``reply_copies_max``; each dropped to stay within the bound counts in ``reply_copies_dropped``."""
    router = RouterCore("g", CoreConfig(reply_copies_max=2, null_message_ticks=1), MEMBERS)
    client = ClientCore("c")
    first, second = client.request("g", "fwd", payload=1), client.request("g", "fwd", payload=2)
    router.submit(first)
    router.submit(second)
    _push(router, 1, first, _copy(first, 1))
    router.tick(1)
    router.ready()
    for backup in ("g-r1", "g-r2"):
        router.on_delivered(Delivered(backup, 1, acked_position=1))
    _push(router, 2, second, _copy(second, 1), _copy(second, 2))
    router.tick(2)
    router.ready()  # both copies went to the backups, which answer before running c#2
    for backup in ("g-r1", "g-r2"):
        router.on_delivered(Delivered(backup, 1, acked_position=1))
    late = _copy(first, 2)  # c#1 ran everywhere: its late copy waits on the backups' links, not in the log
    router.on_delivered(Delivered("g-r0", 1, acked_position=2, reply_copies=(late,)))
    assert router.counts["reply_copies_dropped"] == 0
    router.resync.add("g-r1")  # g-r1 diverged: repaired from the primary's next checkpoint
    router.on_delivered(Delivered("g-r0", 1, acked_position=2,
                                  checkpoint=Checkpoint("g", 1, 1, 1, DedupTable(100, 100).export())))
    assert router.counts["resyncs"] == 1
    assert router.counts["reply_copies_dropped"] == 1  # the late copy made room for c#2's second
    router.tick(3)
    sends = dict(router.ready().sends)
    assert [r.msg_id for r in sends["g-r1"].reply_copies] == [_copy(second, 1).msg_id, _copy(second, 2).msg_id]
    assert [r.msg_id for r in sends["g-r2"].reply_copies] == [late.msg_id]


def test_a_deep_lineage_with_no_call_waiting_here_is_not_a_call_back_into_the_group() -> None:
    """The router walks a nested source's lineage at most ``REENTRANT_DEPTH_MAX`` calls up looking
    for a call that waits here; a lineage deeper than that, none of whose calls waits here, is an
    ordinary nested call: refused at ``inflight_max``."""
    from ftactors.core.router import REENTRANT_DEPTH_MAX
    g = Group(CoreConfig(inflight_max=1))
    first = ClientCore("c").request("g", "add", payload=1)
    g.router.submit(first)
    source = "d"  # a client with no call here
    for _ in range(REENTRANT_DEPTH_MAX + 1):
        source = nested_source("h", MsgId(source, 1))
    with pytest.raises(GroupOverloadedError, match="in flight"):
        g.router.submit(replace(first, msg_id=MsgId(source, 1), source_view=1))


@pytest.mark.parametrize("calling", ["c#x", "c#", "c#-1"])
def test_a_lineage_naming_no_numbered_call_is_refused_as_overloaded_not_an_error(calling: str) -> None:
    """A nested source whose calling message has no sequence number (a garbled or forged request)
    names no call waiting here: at ``inflight_max`` it is refused as overloaded, like any other
    call, and the router does not fail on it."""
    g = Group(CoreConfig(inflight_max=1))
    first = ClientCore("c").request("g", "add", payload=1)
    g.router.submit(first)
    with pytest.raises(GroupOverloadedError, match="in flight"):
        g.router.submit(replace(first, msg_id=MsgId(f"g|{calling}", 1), source_view=1))


def test_time_the_router_did_not_run_does_not_count_toward_a_held_calls_wait() -> None:
    """Call 2 arrives before call 1; the router is then starved for 30 ticks (its loop did not run,
    call 1 waits unread behind the next tick). The tick after the starvation counts one tick of
    waiting, not 30: call 1, read after it, still runs first (docs/faults.md, row 40)."""
    router = RouterCore("g", CoreConfig(sequence_gap_ticks=5), MEMBERS)
    client = ClientCore("c")
    first = client.request("g", "add", payload=1)
    router.submit(client.request("g", "add", payload=2))
    router.tick(1)
    router.tick(31)  # starved from tick 1 to 31
    assert router.counts["requests"] == 0
    router.submit(first)
    assert [r.msg_id.seq for r in router.log.requests.values()] == [1, 2]
    for now in range(32, 40):  # and a call that never comes still holds the rest only the gap
        router.tick(now)
    router.submit(client.request("g", "add", payload=3))
    lost = client.request("g", "add", payload=4)
    router.submit(client.request("g", "add", payload=5))
    assert lost.msg_id not in router.log.requests
    for now in range(40, 43):  # 3 ticks of waiting
        router.tick(now)
    assert router.counts["requests"] == 3
    router.tick(60)  # starved again: the 4th tick of waiting, still held
    assert router.counts["requests"] == 3
    router.tick(61)  # the 5th: call 5 gives call 4 up
    assert router.counts["requests"] == 4

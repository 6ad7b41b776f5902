"""RouterCore: fencing of stale views, exactly-once release, zero extra messages, restart recovery."""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List

import pytest

from ftactors.core import (
    Announcement,
    Checkpoint,
    ClientCore,
    CoreConfig,
    Delivered,
    Execute,
    Kind,
    MsgId,
    NewView,
    Outcome,
    Phase,
    ReplicaCore,
    Reply,
    Request,
    RouterCore,
    Snapshot,
    StaleViewError,
    StateReport,
    nested_source,
)
from ftactors.core.dedup import DedupTable
from ftactors.core.errors import CallGivenUpError

MEMBERS = ("g-r0", "g-r1", "g-r2")


class Group:
    """A router and replicas wired synchronously (as in the smoke example): a counter."""

    def __init__(self, cfg: CoreConfig, members=MEMBERS) -> None:
        self.router = RouterCore("g", cfg, members)
        self.reps: Dict[str, ReplicaCore] = {m: ReplicaCore("g", m, cfg, "reception", NewView(1, members))
                                             for m in members}
        self.state = {m: 0 for m in members}
        self.released: List[Reply] = []
        self.now = 0
        self.null_while_loaded = 0

    def answer(self, m: str, d) -> Delivered:
        core = self.reps[m]
        core.deliver(d)
        while (e := core.next_effect()) is not None:
            if isinstance(e, Execute):
                self.state[m] += e.request.payload
                core.executed(e.request.msg_id, Outcome(True, self.state[m]))
            elif isinstance(e, Snapshot):
                core.snapshot_taken(e.position, self.state[m], str(self.state[m]))
        return core.take_delivered()

    def pump(self, ticks: int = 1, alive=None) -> None:
        for _ in range(ticks):
            self.now += 1
            self.router.tick(self.now)
            r = self.router.ready()
            self.released.extend(r.released)
            for rid in r.pings:
                self.router.on_pong(rid)
            for rid in r.queries:
                self.router.on_state_report(self.reps[rid].state_report())
            for m, d in r.sends:
                if alive is None or m in alive:
                    self.router.on_delivered(self.answer(m, d))


def test_exactly_once_release_and_cached_duplicate() -> None:
    g = Group(CoreConfig())
    client = ClientCore("c")
    req = client.request("g", "add", payload=5)
    assert g.router.submit(req) is None
    g.pump(5)
    assert [r.outcome.value for r in g.released] == [5]
    again = g.router.submit(req)  # a retransmission after the release
    assert again is not None and again.outcome.value == 5
    g.pump(5)
    assert len(g.released) == 1 and g.router.counts["duplicates"] == 1
    assert g.state == {"g-r0": 5, "g-r1": 5, "g-r2": 5}


def test_output_of_a_removed_primary_is_fenced() -> None:
    g = Group(CoreConfig())
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=1))
    g.pump(4)
    g.router.on_failure("g-r0")
    g.pump(4)
    assert g.router.primary != "g-r0"
    stale = Reply(client.request("g", "add", payload=2).msg_id, "g", 1, 2, Outcome(True, 3))
    before = len(g.released)
    g.router.on_delivered(Delivered("g-r0", 1, replies=(stale,)))
    g.router.on_delivered(Delivered("g-r1", 1, replies=(stale,)))  # old view, even from the new primary
    g.pump(2)
    assert len(g.released) == before
    assert g.router.counts["fenced"] == 2


def test_nested_request_from_a_deposed_primary_view_is_fenced() -> None:
    g = Group(CoreConfig())
    caller = ReplicaCore("h", "h-r0", CoreConfig(), "reception", NewView(3, ("h-r0",)))
    req = ClientCore("c").request("h", "m")
    caller.deliver(__import__("ftactors.core", fromlist=["Deliver"]).Deliver(view=3, requests=(req,)))
    assert isinstance(caller.next_effect(), Execute)
    new, _ = caller.nested_request("g", "add", payload=1)
    g.router.submit(new)
    from dataclasses import replace
    with pytest.raises(StaleViewError):
        g.router.submit(replace(new, source_view=2))


def nested_call(caller_seq: int, view: int) -> "Request":
    """The nested call group h's primary (in ``view``) makes to g while executing c's message ``caller_seq``."""
    return Request(Kind.SYNC_REQUEST, MsgId(nested_source("h", MsgId("c", caller_seq)), 1), "g", "add",
                   payload=1, source_view=view)


def test_a_lagging_backup_fetches_its_reply_copy_after_the_callers_view_moved_on() -> None:
    """h's primary (view 1) calls g; h changes view; h's backup, still in view 1, fetches the copy."""
    g = Group(CoreConfig())
    first = nested_call(1, view=1)
    g.router.submit(first)
    g.pump(4)
    assert g.router.lookup(first.msg_id)[0] == "released"
    g.router.submit(nested_call(2, view=2))  # h's primary, now in view 2, calls again
    g.pump(4)
    copy = g.router.submit(first, copy=True)  # the lagging backup of view 1 pulls its copy
    assert copy is not None and copy.outcome == Outcome(True, 1)
    with pytest.raises(StaleViewError):
        g.router.submit(nested_call(3, view=1))  # a deposed primary's own call is still fenced


def test_a_stale_copy_fetch_of_an_unknown_request_executes_it_once() -> None:
    """The backup's fetch got ahead of its primary's send: the request runs once, the send finds it."""
    g = Group(CoreConfig())
    g.router.submit(nested_call(1, view=2))
    g.pump(4)
    ahead = nested_call(2, view=1)
    assert g.router.submit(ahead, copy=True) is None  # a lagging backup's fetch, before the primary's send
    g.pump(4)
    assert g.router.submit(replace(ahead, source_view=2)) is not None  # the primary's send: the cached reply
    g.pump(4)
    assert g.state["g-r0"] == 2 and g.router.counts["requests"] == 2


def test_zero_null_messages_under_load() -> None:
    """Claim 2: under load, announcements ride on request copies; no null message is needed."""
    g = Group(CoreConfig(null_message_ticks=3))
    clients = [ClientCore(f"c{i}") for i in range(4)]
    for _ in range(40):
        for c in clients:
            g.router.submit(c.request("g", "add", payload=1))
        g.pump(1)
    assert g.router.counts["null_messages"] == 0
    assert g.router.counts["announcements_piggybacked"] > 0
    g.pump(20)  # load stops: the last announcements need null messages
    c = g.router.counts
    assert c["null_messages"] <= 2 * (len(MEMBERS) - 1)
    assert c["announcements_piggybacked"] + c["announcements_in_null"] == 160 * (len(MEMBERS) - 1)
    assert len(set(g.state.values())) == 1 and g.state["g-r0"] == 160
    assert c["failovers"] == c["view_changes"] == c["recovery_messages"] == 0


def test_rebuilt_router_recovers_and_keeps_the_undeposed_primary() -> None:
    g = Group(CoreConfig())
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=1))
    g.pump(6)
    g.router = RouterCore.rebuilt("g", CoreConfig(), MEMBERS, view=1, next_replica_index=3, now=g.now)
    assert g.router.phase == Phase.RECOVERING
    # the old primary's output of view 1 is still accepted while the new router recovers
    late_id = client.request("g", "add", payload=2).msg_id
    late = Reply(late_id, "g", 1, 2, Outcome(True, 3), announcements=(Announcement("g", 1, 2, late_id),))
    g.router.on_delivered(Delivered("g-r0", 1, replies=(late,)))
    # released once the rebuilt router holds the order below it (row 56: here, once every member
    # acknowledged position 1)
    g.pump(3)
    assert g.router.lookup(late.msg_id)[0] == "released"
    assert g.router.phase == Phase.NORMAL and g.router.primary == "g-r0" and g.router.view == 2


def test_a_rebuilt_router_missing_a_member_that_did_not_answer_asks_for_a_replacement() -> None:
    """docs/faults.md (the replacement path of "An argument lost with its router and its caller"): a
    backup stopped while the router restarted did not answer the rebuild and is left out of the
    view (two members of ``min_replicas=3``). The rebuilt router never asked for a replica: the
    recovery replenished only when it dropped a member itself, and the group ran on two replicas
    for good (the Ray test waited 120 s for a third)."""
    cfg = CoreConfig(min_replicas=3)
    router = RouterCore.rebuilt("g", cfg, ("g-r0", "g-r2"), view=1, next_replica_index=103)
    for m in ("g-r0", "g-r2"):
        router.on_state_report(StateReport(m, 1, 0))
    out = router.ready()
    assert router.phase == Phase.NORMAL and router.members == ["g-r0", "g-r2"]
    assert out.spawns == ("g-r103",)


def test_a_replacement_that_dies_before_it_joins_is_replaced_in_turn() -> None:
    """docs/faults.md row 39: a replacement (a new process, or a warm spare made the replacement)
    that died while it waited for its snapshot was only forgotten: the router asked for no other,
    and the group ran one replica short for good (simulator seeds 974 and 318 with a spare:
    ``I6: no quiescence ... store: normal v6 ['store-r4']``, ``min_replicas`` 2)."""
    cfg = CoreConfig(min_replicas=3)
    router = RouterCore.rebuilt("g", cfg, ("g-r0", "g-r2"), view=1, next_replica_index=103)
    for m in ("g-r0", "g-r2"):
        router.on_state_report(StateReport(m, 1, 0))
    assert router.ready().spawns == ("g-r103",)
    router.replica_started("g-r103")
    assert "g-r103" in router.joining
    router.on_failure("g-r103")  # died before the primary's snapshot admitted it
    assert router.ready().spawns == ("g-r104",)
    assert router.members == ["g-r0", "g-r2"] and not router.joining and router.spawning == {"g-r104"}


def test_retry_of_a_request_known_only_from_reports_is_answered() -> None:
    """Regression: a restarted router knew a request from a StateReport, not who waited for it."""
    cfg = CoreConfig()
    g = Group(cfg)
    client = ClientCore("c")
    req = client.request("g", "add", payload=7)
    g.router.submit(req)
    g.pump(1, alive={"g-r1", "g-r2"})  # copies reach the backups only; the primary's Deliver is lost
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    g.pump(1)  # reports: g-r1 and g-r2 hold the request
    assert g.router.submit(req) is None  # the client's retry: someone waits now
    g.pump(6)
    assert [r.msg_id for r in g.released] == [req.msg_id]


def long_call_across_a_rebuild(retry_while_running: bool) -> Group:
    """The repro router_restart_reorder.py: store-r0 executes m1 and starts m2, a long call;
    the router dies, and the rebuilt one queries the replicas while m2 still runs. m2's output
    (its reply and the announcement of position 2) goes to the dead router: lost. The caller
    retries m2 (while it runs, or after), then sends m3..m5, which are acknowledged."""
    cfg = CoreConfig()
    g = Group(cfg)
    c = ClientCore("c")
    m1, m2 = c.request("g", "add", payload=1), c.request("g", "add", payload=10)
    g.router.submit(m1)
    g.router.submit(m2)
    primary = g.reps["g-r0"]
    for rid, d in g.router.ready().sends:
        if rid == "g-r0":
            primary.deliver(d)  # the backups' copies are still batched when the router dies
    e = primary.next_effect()
    assert isinstance(e, Execute) and e.request.msg_id == m1.msg_id
    g.state["g-r0"] += 1
    primary.executed(m1.msg_id, Outcome(True, 1))
    assert primary.next_effect().request.msg_id == m2.msg_id  # m2 runs
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    g.pump(2)
    assert g.router.phase == Phase.NORMAL and primary.executing is not None  # recovered while m2 runs
    if retry_while_running:
        assert g.router.submit(m2) is None
        g.pump(1)
    g.state["g-r0"] += 10
    primary.executed(m2.msg_id, Outcome(True, g.state["g-r0"]))
    assert primary.take_delivered().announcements  # returned to the dead router: lost
    if not retry_while_running:
        assert g.router.submit(m2) is None
    later = [c.request("g", "add", payload=k) for k in (100, 1000, 10000)]
    for m in later:
        g.router.submit(m)
        g.pump(3)
    g.pump(30)
    return g


@pytest.mark.parametrize("retry_while_running", [True, False])
def test_a_rebuilt_router_learns_the_order_its_state_query_missed(retry_while_running: bool) -> None:
    g = long_call_across_a_rebuild(retry_while_running)
    assert sorted(r.position for r in g.released) == [2, 3, 4, 5]  # m2 answered too
    assert {m: core.executed_upto for m, core in g.reps.items()} == {m: 5 for m in MEMBERS}  # no backup stalls
    assert len(set(g.state.values())) == 1
    # a later primary crash keeps every acknowledged call where it was
    g.router.on_failure("g-r0")
    g.pump(5, alive={"g-r1", "g-r2"})
    assert g.router.primary == "g-r1"
    assert [a.msg_id.seq for _, (a, _) in sorted(g.reps["g-r1"]._recent.items())] == [1, 2, 3, 4, 5]


def test_a_rebuilt_router_keeps_a_primary_that_replays_behind_its_backups() -> None:
    """Found by seed 40 with --output-to-deliverer: g-r1, promoted after a failover, still replays
    position 3 (a long call) that g-r2 and g-r3 finished. The router dies and the rebuilt one
    ranked the backups first: a NewView making the primary a backup, which no replica accepts."""
    cfg = CoreConfig()
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=k) for k in (1, 2, 3)]
    anns = tuple(Announcement("g", 2, p, r.msg_id) for p, r in enumerate(reqs, start=1))
    members = ("g-r1", "g-r2", "g-r3")
    router = RouterCore.rebuilt("g", cfg, members, view=4, next_replica_index=4)
    router.on_state_report(StateReport("g-r2", 4, 3, tuple(reqs), anns))  # its recent history
    router.on_state_report(StateReport("g-r3", 4, 3, tuple(reqs), anns))
    router.on_state_report(StateReport("g-r1", 4, 2, tuple(reqs[:2]), anns))  # executing position 3
    assert router.phase == Phase.NORMAL and router.primary == "g-r1"
    nv = {rid: d.new_view for rid, d in router.ready().sends}
    assert nv["g-r1"] is not None and nv["g-r1"].primary == "g-r1"
    assert router.counts["resyncs"] == 0


def test_a_rebuilt_router_retires_a_primary_that_cannot_catch_up() -> None:
    """Nobody holds the request of position 3 the primary lacks: it cannot lead; it leaves the
    view (it cannot be made a backup) and the most advanced backup leads."""
    cfg = CoreConfig()
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=k) for k in (1, 2, 3)]
    anns = tuple(Announcement("g", 2, p, r.msg_id) for p, r in enumerate(reqs, start=1))
    router = RouterCore.rebuilt("g", cfg, ("g-r1", "g-r2"), view=4, next_replica_index=4)
    router.on_state_report(StateReport("g-r2", 4, 3, (), anns))
    router.on_state_report(StateReport("g-r1", 4, 2, (), anns[:2]))
    ready = router.ready()
    assert router.primary == "g-r2" and router.members == ["g-r2"]
    assert ready.retired == ("g-r1",) and ready.spawns == ("g-r4",)


def test_join_waits_for_a_checkpoint_the_log_can_complete() -> None:
    """Regression: a joiner admitted with a snapshot older than the trimmed log lost positions."""
    g = Group(CoreConfig(style="passive", checkpoint_every_messages=100))
    client = ClientCore("c")
    g.router.submit(client.request("g", "add", payload=1))
    g.pump(6)
    assert g.router.trimmed == 1
    g.router.replica_started("g-r3")
    g.router._relay_checkpoint(Checkpoint("g", 1, 0, 0, ()))  # older than the trimmed log
    assert "g-r3" in g.router.joining and "g-r3" not in g.router.members
    g.router._relay_checkpoint(Checkpoint("g", 1, 1, 1, ()))
    assert "g-r3" in g.router.members


def test_restarted_router_keeps_a_callers_order_when_retries_arrive_after_new_calls() -> None:
    """Regression (issue 10, one-way calls): Ray may deliver a caller's new calls to a restarted
    router before the retries of the calls the dead router had taken. The caller's
    ``ack_below`` says where its unsettled calls start, so the router waits for them (at most
    ``sequence_gap_ticks``) and one caller's calls still run in its order."""
    cfg = CoreConfig()
    g = Group(cfg)
    client = ClientCore("c")
    first = client.request("g", "add", payload=1)
    g.router.submit(first)
    g.pump(6)
    assert [r.msg_id for r in g.released] == [first.msg_id]
    client.on_reply(g.released[0])
    lost = [client.request("g", "add", payload=1) for _ in range(2)]  # taken by the router that dies
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    g.pump(2)
    late = client.request("g", "add", payload=1)
    assert late.ack_below == lost[0].msg_id.seq
    g.router.submit(late)  # arrives first
    g.pump(2)
    for req in lost:  # Ray's retries
        g.router.submit(req)
    g.pump(8)
    order = [ann.msg_id for _, (ann, _) in sorted(g.reps["g-r0"]._recent.items())]
    assert order == [first.msg_id, lost[0].msg_id, lost[1].msg_id, late.msg_id]


def _digests(first: int, last: int, tag: str = "d") -> tuple:
    return tuple((p, f"{tag}{p}") for p in range(first, last + 1))


def test_backup_lagging_many_digests_behind_is_still_compared() -> None:
    """A backup reports its digest for a position when it executes it, possibly long after the
    primary did: the primary's digest must still be there, however many came since (it was
    dropped after 64, so a backup lagging steadily beyond that was never checked)."""
    router = RouterCore("g", CoreConfig(digest_every_messages=1), ("g-r0", "g-r1"))
    router.on_delivered(Delivered("g-r0", 1, acked_position=500, digests=_digests(1, 500)))
    router.on_delivered(Delivered("g-r1", 1, acked_position=2, digests=((1, "d1"), (2, "wrong"))))
    assert router.diverged == [("g-r1", 2)] and router.counts["divergences"] == 1
    assert router.resync == {"g-r1"} and router.links["g-r0"].snapshot_wanted  # state transfer asked for


def test_primary_digests_are_forgotten_once_every_member_passed_them() -> None:
    router = RouterCore("g", CoreConfig(digest_every_messages=1), ("g-r0", "g-r1", "g-r2"))
    router.on_delivered(Delivered("g-r0", 1, acked_position=10, digests=_digests(1, 10)))
    router.on_delivered(Delivered("g-r1", 1, acked_position=10, digests=_digests(1, 10)))
    assert list(router.primary_digests) == list(range(1, 11))  # g-r2 has not reported yet
    router.on_delivered(Delivered("g-r2", 1, acked_position=6, digests=_digests(1, 6)))
    assert list(router.primary_digests) == [7, 8, 9, 10] and not router.diverged
    router.on_delivered(Delivered("g-r2", 1, acked_position=10, digests=_digests(7, 10)))
    assert not router.primary_digests and router.counts["divergences"] == 0


def test_a_call_answered_while_held_for_an_earlier_one_is_not_released_again() -> None:
    """Regression (simulator, pipelined clients): a restarted router held c#3 for c#2; the
    primary, which had c#3 from before, answered it; the caller acknowledged it, the router
    forgot the reply, and then the sequence-gap timer accepted the held c#3 again and released
    its reply a second time."""
    cfg = CoreConfig()
    g = Group(cfg)
    client = ClientCore("c")
    reqs = [client.request("g", "add", payload=1) for _ in range(3)]
    g.router.submit(reqs[0])
    g.pump(6)
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    g.pump(3)
    g.router.submit(reqs[2])  # held: c#2 has not arrived
    assert reqs[2].msg_id.seq in g.router.held.get("c", {})
    answer = Reply(reqs[2].msg_id, "g", g.router.view, 2, Outcome(True, 3),
                   announcements=(Announcement("g", g.router.view, 2, reqs[2].msg_id),))
    g.router.on_delivered(Delivered("g-r0", g.router.view, replies=(answer,)))
    assert [r.msg_id for r in g.router.ready().released] == [reqs[2].msg_id]
    assert reqs[2].msg_id.seq not in g.router.held.get("c", {}), "an answered call is still held"
    for r in (g.released + [answer]):
        client.on_reply(r)
    client.on_settled(2)
    g.router.submit(client.request("g", "add", payload=1))  # acknowledges up to c#3: its reply is forgotten
    g.pump(cfg.sequence_gap_ticks + 5)
    assert reqs[2].msg_id not in [r.msg_id for r in g.released]


def test_recovery_sends_a_new_primary_the_requests_of_the_announced_order_first() -> None:
    """A new primary replays the announced order as its requests arrive, ``batch_max`` per Deliver,
    and gives the order up after ``recovery_timeout_ticks`` without the next one. Sent in the
    router's reception order, the request at position 1 came last: with ``batch_max=1`` the new
    primary gave up an order whose positions were acknowledged (simulator seeds 394 and 489:
    ``I4: store-r3 executes c1#5 at 12, where the acknowledged c3#4 is``)."""
    router = RouterCore("g", CoreConfig(batch_max=1, query_on_failover=True), MEMBERS)
    reqs = [Request(Kind.SYNC_REQUEST, MsgId(f"c{i}", 1), "g", "add", 1) for i in range(4)]
    for req in reqs:
        router.submit(req)
    router.ready()
    announced = list(reversed(reqs))  # the primary ran them in the opposite order
    anns = tuple(Announcement("g", 1, p, req.msg_id) for p, req in enumerate(announced, 1))
    router.on_delivered(Delivered("g-r0", 1, announcements=anns, acked_position=4))
    router.on_failure("g-r0")
    for m in ("g-r1", "g-r2"):
        router.on_state_report(StateReport(m, 1, 0))
    assert router.phase == Phase.NORMAL and router.primary == "g-r1"
    sends = dict(router.ready().sends)
    assert [r.msg_id for r in sends["g-r1"].requests] == [announced[0].msg_id]  # position 1's request first
    link = router.links["g-r1"]
    assert [r.msg_id for r in link.requests] == [r.msg_id for r in announced[1:]]  # then 2, 3, 4


def test_pushed_reply_copies_go_to_every_backup_once_bounded_per_link() -> None:
    """Claim 48: the primary's nested replies are queued for each backup (never back to the
    primary), ride on the next Deliver with the announcements, and at most ``reply_copies_max``
    wait on a link (the oldest dropped, counted; that backup pulls it)."""
    router = RouterCore("g", CoreConfig(reply_copies_max=2, null_message_ticks=1), MEMBERS)
    copies = tuple(Reply(MsgId(nested_source("g", MsgId("c", 1)), s), "b", 1, s, Outcome(True, s))
                   for s in (1, 2, 3))
    ann = Announcement("g", 1, 1, MsgId("c", 1))
    router.on_delivered(Delivered("g-r0", 1, announcements=(ann,), acked_position=1, reply_copies=copies))
    assert router.counts["reply_copies_pushed"] == 6 and router.counts["reply_copies_dropped"] == 2
    router.tick(5)
    sends = dict(router.ready().sends)
    assert "g-r0" not in sends or not sends["g-r0"].reply_copies
    for backup in ("g-r1", "g-r2"):
        d = sends[backup]
        assert [r.msg_id.seq for r in d.reply_copies] == [2, 3] and d.announcements == (ann,)
    assert router.counts["reply_copies_in_null"] + router.counts["reply_copies_piggybacked"] == 4
    assert not any(link.reply_copies for link in router.links.values())


def test_a_joining_backup_is_sent_the_reply_copies_of_the_retained_log_it_replays() -> None:
    """Issue 11: a replica admitted by state transfer replays the retained log after the checkpoint;
    the nested replies its calls consumed at the primary come with the join, bounded by
    ``reply_copies_max``, so it pulls none from the callee's router. Copies of calls the
    checkpoint covers, or that every member executed, are not kept."""
    router = RouterCore("g", CoreConfig(reply_copies_max=2, null_message_ticks=1), MEMBERS)
    client = ClientCore("c")
    calls = [client.request("g", "fwd", payload=i) for i in (1, 2, 3)]
    for req in calls:
        router.submit(req)
    nested = [Reply(MsgId(nested_source("g", req.msg_id), 1), "b", 1, i + 1, Outcome(i != 1, f"v{i}"))
              for i, req in enumerate(calls)]
    anns = [Announcement("g", 1, i + 1, req.msg_id) for i, req in enumerate(calls)]
    for i in range(3):  # the primary runs c#1..c#3; each made one nested call (c#2's raised)
        router.on_delivered(Delivered("g-r0", 1, announcements=(anns[i],), acked_position=i + 1,
                                      reply_copies=(nested[i],)))
    router.tick(1)
    router.ready()
    for backup in ("g-r1", "g-r2"):  # the backups executed c#1 only: position 1 is trimmed
        router.on_delivered(Delivered(backup, 1, acked_position=1))
    assert router.trimmed == 1
    router.replica_started("g-r3")
    executed_c1 = DedupTable(100, 100)
    executed_c1.record(calls[0].msg_id, None)
    router._relay_checkpoint(Checkpoint("g", 1, 1, 1, executed_c1.export()))
    assert "g-r3" in router.members
    router.tick(2)
    join = dict(router.ready().sends)["g-r3"]
    assert join.join and [a.position for a in join.announcements] == [2, 3]
    assert [r.msg_id for r in join.reply_copies] == [nested[1].msg_id, nested[2].msg_id]
    joiner = ReplicaCore("g", "g-r3", router.config, "reception")
    joiner.deliver(join)
    assert joiner.has_reply_copy(nested[1].msg_id) and joiner.has_reply_copy(nested[2].msg_id)
    assert not joiner.reply_copy(nested[1].msg_id).outcome.ok  # the exception travels too
    for member in ("g-r1", "g-r2", "g-r3"):
        router.on_delivered(Delivered(member, router.view, acked_position=3))
    assert router.trimmed == 3 and not router.log.copies  # every member executed their callers


def test_a_rebuilt_router_fences_a_deposed_calling_primary_as_its_predecessor_did() -> None:
    """Seed 103108 (reception, ``sources_max=16``): front's primary, paused and deposed (front at view
    9), woke and retried a nested call to store for 250 ticks, fenced by store's router; store's router
    restarted, the rebuilt one had seen no view of front and admitted the retry; store's replicas had
    long forgotten its source (``sources_max``) and answered ``ReplyUnavailableError``. The replicas
    saw front's later view on the requests they accepted: a rebuilt router learns it from their
    StateReports and fences the deposed primary again."""
    cfg = CoreConfig()
    g = Group(cfg)
    g.router.submit(nested_call(1, view=3))  # h's primary in view 3
    g.pump(4)
    assert {m: core.executed_upto for m, core in g.reps.items()} == {m: 1 for m in MEMBERS}
    rebuilt = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3)
    for m in MEMBERS:
        rebuilt.on_state_report(g.reps[m].state_report())
    assert rebuilt.phase == Phase.NORMAL and rebuilt.source_views == {"h": 3}
    with pytest.raises(StaleViewError, match="view 2 of h, which is at 3"):
        rebuilt.submit(nested_call(2, view=2))  # h's deposed primary of view 2 calls again
    assert rebuilt.submit(nested_call(3, view=3)) is None  # h's primary of view 3 is admitted


def test_a_replica_reports_the_highest_view_of_each_calling_group_within_sources_max() -> None:
    """``StateReport.source_views``: only raised, never lowered (a late copy from an older view), and
    at most ``sources_max`` calling groups, the least recently raised forgotten first."""
    from ftactors.core import Deliver
    core = ReplicaCore("g", "g-r1", CoreConfig(sources_max=2), "reception", NewView(1, MEMBERS))

    def call(group: str, seq: int, view: int) -> Request:
        return Request(Kind.SYNC_REQUEST, MsgId(nested_source(group, MsgId("c", seq)), 1), "g", "add",
                       payload=1, source_view=view)

    core.deliver(Deliver(view=1, requests=(call("a", 1, 3), call("b", 1, 5), call("a", 2, 2))))
    assert core.state_report().source_views == (("a", 3), ("b", 5))
    core.deliver(Deliver(view=1, requests=(call("a", 3, 4), call("h", 1, 1))))
    assert core.state_report().source_views == (("a", 4), ("h", 1))  # b, raised least recently, went


def test_a_joiner_is_not_admitted_with_a_checkpoint_older_than_a_position_whose_request_the_router_lacks() -> None:
    """Simulator seed 521 (semi-active, forced; routers starved with direct links): the store's router
    restarted, learnt position 4's announcement from the primary but not its request, and admitted a
    joiner with the primary's checkpoint at 3 plus the log after it. When the primary died, the joiner,
    alone and lacking that request, gave the order up there and ran another call at the acknowledged
    position 4 (``I4: nested call front|c0#2#1 is not in the order of store``). A joiner now waits for
    a checkpoint past every position whose request the router does not hold."""
    router = RouterCore("g", CoreConfig(), ("g-r0", "g-r1"))
    gone = MsgId("c", 1)  # its request reached the primary only
    router.on_delivered(Delivered("g-r0", 1, announcements=(Announcement("g", 1, 1, gone),), acked_position=1))
    router.replica_started("g-r2")
    dedup = DedupTable(100, 100).export()
    router._relay_checkpoint(Checkpoint("g", 1, 0, {}, dedup, "d0"))
    assert "g-r2" in router.joining and "g-r2" not in router.members
    assert router.links["g-r0"].snapshot_wanted  # a newer one is asked for
    router._relay_checkpoint(Checkpoint("g", 1, 1, {}, dedup, "d1"))
    assert "g-r2" not in router.joining and router.members == ["g-r0", "g-r1", "g-r2"]


def test_a_call_back_into_the_group_passes_while_a_joiner_keeps_executed_requests_retained() -> None:
    """Simulator seed 19532 (``ROUTER_CRASH_WHILE_PAUSED`` on; nested, async rings, ``pending_max`` 2,
    ``inflight_max`` 7): front's router crashed while a backup was paused; the rebuilt router retained
    the members' recent history (11 requests, every member had executed them) and, with a replacement
    joining, trims nothing until the joiner is admitted. The joiner waits for a checkpoint, the
    checkpoint for the primary's suspended c0#4, c0#4 for store, and store for its call back into front
    (``store|front|c0#4#1#1``), which front refused as past ``pending_max`` plus as many calls back:
    the group waited on itself (``I6: c0#4 pending over 832 ticks after faults stopped``). Requests
    every member executed, kept only for the joiner, are held by no member (a joiner drops those its
    checkpoint covers, and ``requests_max`` leaves it ``log_max`` for the rest): a call back passes."""
    cfg = CoreConfig(pending_max=2, inflight_max=1, min_replicas=3)
    c = ClientCore("c")
    done = [c.request("g", "add", payload=k) for k in (1, 2, 3, 4)]
    ring = c.request("g", "ring", payload=5)  # started at position 5, suspended on h
    anns = tuple(Announcement("g", 1, p, r.msg_id) for p, r in enumerate(done + [ring], start=1))
    router = RouterCore.rebuilt("g", cfg, ("g-r0", "g-r1"), view=1, next_replica_index=103)  # g-r2 paused
    for m in ("g-r0", "g-r1"):
        router.on_state_report(StateReport(m, 1, 5, tuple(done) + (ring,), anns))
    assert router.phase == Phase.NORMAL and router.ready().spawns == ("g-r103",)
    router.replica_started("g-r103")  # joins with a checkpoint: none while ring is suspended
    for m in ("g-r0", "g-r1"):
        router.on_delivered(Delivered(m, router.view, acked_position=5, suspended=1))
    assert "g-r103" in router.joining and len(router.requests) == 5  # executed by every member, kept
    assert router.submit(ring) is None and ring.msg_id in router.pending  # the caller's retry waits
    h_call = MsgId(nested_source("g", ring.msg_id), 1)
    back = Request(Kind.SYNC_REQUEST, MsgId(nested_source("h", h_call), 1), "g", "add", payload=1, source_view=1)
    assert router.submit(back) is None and back.msg_id in router.pending


def test_a_rebuilt_router_starved_while_it_recovers_reads_the_report_that_waited_before_it_times_out() -> None:
    """Simulator seed 3275 (semi-active, two replicas, routers starved during a failover or a join too):
    store's router restarted, store-r1 reported, and the rebuilt router got no CPU for 17 ticks, twice
    ``recovery_timeout_ticks``, while the primary's report (positions 1-4, c0#2 acknowledged at 3)
    waited unread. Waking, it timed the recovery out on the time it had not run, removed the primary
    for "no state report" just before reading that report, and made store-r1 primary, which ran
    another call at 3 (``I4: store-r1 executes c1#3 at 3, where the acknowledged c0#2 is``). Time the
    router did not run no longer counts toward the recovery's timeout (as toward a held call's wait)."""
    cfg = CoreConfig(recovery_timeout_ticks=8)
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=k) for k in (1, 2)]
    anns = tuple(Announcement("g", 1, p, r.msg_id) for p, r in enumerate(reqs, start=1))
    members = ("g-r0", "g-r1")
    router = RouterCore.rebuilt("g", cfg, members, view=1, next_replica_index=103, now=1)
    router.tick(2)
    router.ready()
    router.on_state_report(StateReport("g-r1", 1, 0, tuple(reqs), ()))  # the backup had executed nothing
    router.tick(3)
    router.tick(3 + 2 * cfg.recovery_timeout_ticks)  # starved meanwhile: the primary's report waits unread
    router.on_state_report(StateReport("g-r0", 1, 2, tuple(reqs), anns))
    assert router.phase == Phase.NORMAL and router.primary == "g-r0" and router.members == ["g-r0", "g-r1"]


def _two_answers_of_the_primary(g: Group, client: ClientCore):
    """The primary executes c#1 then c#2 on two Delivers; their answers are returned, not handed over."""
    answers = []
    for payload in (1, 2):
        assert g.router.submit(client.request("g", "add", payload=payload)) is None
        g.now += 1
        g.router.tick(g.now)
        sends = dict(g.router.ready().sends)
        answers.append(g.answer("g-r0", sends["g-r0"]))
    return answers


def test_a_primary_answer_that_overtakes_its_earlier_answer_is_released_only_after_it() -> None:
    """Swarm seed 104085 (docs/faults.md, row 56): the primary's answers took two paths (a Ray call, its
    direct link) and the later one, carrying c#2 at position 2, came first. Released then, the reply's
    position stood on an order the router did not hold (position 1): had the primary died before the
    earlier answer came, the new primary would put another call at the acknowledged position."""
    g = Group(CoreConfig(), members=("g-r0", "g-r1"))
    first, second = _two_answers_of_the_primary(g, ClientCore("c"))
    g.router.on_delivered(second)
    assert [r.msg_id.seq for r in g.router.ready().released] == []
    g.router.on_delivered(first)
    assert [r.msg_id.seq for r in g.router.ready().released] == [1, 2]


def test_a_held_reply_of_a_primary_that_died_before_its_earlier_answer_came_is_never_released() -> None:
    """The same overtaking answer, and the primary dies: its held reply goes with it (the new primary
    executes the call again, wherever its order puts it)."""
    g = Group(CoreConfig(), members=("g-r0", "g-r1"))
    _, second = _two_answers_of_the_primary(g, ClientCore("c"))
    g.router.on_delivered(second)
    g.router.on_failure("g-r0")
    g.pump(g.router.config.recovery_timeout_ticks + 20, alive={"g-r1"})  # it gives the order up at 1
    assert [(r.msg_id.seq, r.position) for r in g.released] in ([(1, 1), (2, 2)], [(2, 1), (1, 2)])
    assert all(r.view > 1 for r in g.released)


@pytest.mark.parametrize("abandon_first", [True, False])
def test_a_call_its_caller_abandoned_does_not_hold_the_next_one_and_never_runs(abandon_first: bool) -> None:
    """A caller whose call was cancelled before the router took it (Ray's ``ray.cancel`` of a queued
    task, docs/faults.md row 67) tells the router: its next call goes on at once, not after
    ``sequence_gap_ticks``, whether the notice or the next call comes first; the cancelled call, if it
    came after all, is refused; a call the router had taken is not given up (it ran: row 82)."""
    cfg = CoreConfig(sequence_gap_ticks=1000)
    g = Group(cfg)
    client = ClientCore("c")
    first = client.request("g", "add", payload=1)
    g.router.submit(first)
    g.pump(6)
    cancelled, nxt = client.request("g", "add", payload=10), client.request("g", "add", payload=100)
    if abandon_first:
        assert g.router.abandon(cancelled.msg_id) == "given up"
        g.router.submit(nxt)
    else:
        g.router.submit(nxt)
        g.pump(2)
        assert g.router.abandon(cancelled.msg_id) == "given up"
    g.pump(6)
    assert [r.msg_id for r in g.released] == [first.msg_id, nxt.msg_id]
    assert g.state == {m: 101 for m in MEMBERS}
    with pytest.raises(CallGivenUpError, match="given up by its caller"):
        g.router.submit(cancelled)
    assert g.router.abandon(first.msg_id) == "ran" and g.router.abandon(nxt.msg_id) == "ran"  # row 82
    assert g.router.counts["abandoned"] == 1


def test_a_cancelled_call_the_router_took_is_answered_ran_once_its_reply_is_released() -> None:
    """Row 82: the notice of a call the router had taken (``ray.cancel`` while it waited at the replicas)
    was answered False, and the caller kept the call unsettled for good, its ``ack_below`` at it (row 72).
    Now the router says it runs (its reply is awaited, ``pending``) and, once the reply is released, that
    it ran: the caller may settle it then."""
    g = Group(CoreConfig())
    req = ClientCore("c").request("g", "add", payload=5)
    assert g.router.submit(req) is None
    assert g.router.abandon(req.msg_id) == "runs"
    assert req.msg_id in g.router.pending
    g.pump(6)
    assert [r.msg_id for r in g.released] == [req.msg_id]
    assert g.router.abandon(req.msg_id) == "ran"
    assert "abandoned" not in g.router.counts and g.state == {m: 5 for m in MEMBERS}


def test_a_given_up_call_arriving_after_a_later_calls_ack_below_passed_it_is_refused_not_a_duplicate() -> None:
    """Simulator seed 150 once row 82 let callers' ``ack_below`` move again: the notice overtook the call
    (given up, so the caller settled it), a later call's ``ack_below`` passed it, and the call itself,
    arriving late, was counted a duplicate (``I5: store saw 1 duplicates without retransmissions``). It
    is refused as given up, not counted."""
    g = Group(CoreConfig())
    client = ClientCore("c")
    cancelled = client.request("g", "add", payload=10)
    assert g.router.abandon(cancelled.msg_id) == "given up"
    client.on_settled(cancelled.msg_id.seq)
    g.router.submit(client.request("g", "add", payload=1))  # ack_below 2
    g.pump(6)
    with pytest.raises(CallGivenUpError, match="given up by its caller"):
        g.router.submit(cancelled)
    assert g.router.counts["duplicates"] == 0 and g.state == {m: 1 for m in MEMBERS}


def test_a_cancelled_call_a_rebuilt_router_knows_from_the_reports_is_answered_ran_once_it_ran() -> None:
    """Row 82, a rebuilt router: it knows the cancelled call only from the members' reports and nobody
    waits for it (the caller's invoke went to the incarnation that died, and Ray sends no cancelled call
    again): the notice makes it wait for the reply, as a caller's retry would, and asks the primary."""
    cfg = CoreConfig()
    g = Group(cfg)
    req = ClientCore("c").request("g", "add", payload=7)
    g.router.submit(req)
    g.pump(1, alive={"g-r1", "g-r2"})  # copies reach the backups only; the primary's Deliver is lost
    g.router = RouterCore.rebuilt("g", cfg, MEMBERS, view=1, next_replica_index=3, now=g.now)
    assert g.router.abandon(req.msg_id) == "unknown"  # recovering (row 72b): it cannot tell yet
    g.pump(1)  # reports: g-r1 and g-r2 hold the request
    assert g.router.abandon(req.msg_id) == "runs"
    g.pump(6)
    assert [r.msg_id for r in g.released] == [req.msg_id]
    assert g.router.abandon(req.msg_id) == "ran"


def test_a_call_the_primary_holds_that_no_caller_waits_for_still_runs() -> None:
    """Swarm seed 102169 with the simulator's cancels: the primary had taken a call in but not run it
    (its Deliver was answered before the call's turn), and no caller waited for it any more (its caller
    cancelled it, and no retry comes after a router restart). The router polled an idle primary only
    while callers waited, so the call sat at the primary until some later call came (the run never
    went quiet: ``I6: no quiescence``). A call the primary holds is work: an idle primary is polled."""
    cfg = CoreConfig()
    g = Group(cfg)
    req = ClientCore("c").request("g", "add", payload=5)
    assert g.router.submit(req) is None
    g.now += 1
    g.router.tick(g.now)
    primary = g.reps["g-r0"]
    for m, d in g.router.ready().sends:
        if m == "g-r0":  # taken in; its Deliver answered before the call's turn
            primary.deliver(d)
            g.router.on_delivered(primary.take_delivered())
        else:
            g.router.on_delivered(g.answer(m, d))
    g.router.intake.pending.discard(req.msg_id)  # nobody waits for it any more
    g.pump(3 * cfg.heartbeat_ticks)
    assert g.state == {m: 5 for m in MEMBERS}
    polls = g.router.counts["polls"]
    g.pump(3 * cfg.heartbeat_ticks)
    assert g.router.counts["polls"] == polls  # nothing held: no more polls

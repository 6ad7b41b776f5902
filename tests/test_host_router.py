"""RouterHost: the router host both drivers run, over a fake in-memory I/O, as transcripts.

The fake I/O records every call the host makes (``io.log``); the tests play the replicas with
real replica cores and feed their answers back, as the Ray shell and the simulator do.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest

from ftactors.core import (
    ClientCore,
    CoreConfig,
    Deliver,
    Execute,
    GroupOverloadedError,
    MsgId,
    NewView,
    Outcome,
    Phase,
    ReplicaCore,
    Reply,
    Restore,
    Snapshot,
)
from ftactors.host.links import Parked
from ftactors.host.router import RouterHost

MEMBERS = ("g-r0", "g-r1", "g-r2")


class FakeIO:
    """RouterIO in memory: a clock, a transcript of calls, and what is still to be answered."""

    def __init__(self) -> None:
        self.now = 0
        self.log: List[Tuple[Any, ...]] = []
        self.sent: List[Tuple[str, Deliver, str, int]] = []  # Delivers not answered yet
        self.pinged: List[str] = []  # pings not answered yet
        self.asked: List[str] = []  # state queries not answered yet
        self.answered: Dict[Any, Reply] = {}
        self.failed: Dict[Any, str] = {}
        self.kicks = 0

    def ticks(self) -> int:
        return self.now

    def wall_s(self) -> float:
        return self.now * 0.01

    def deliver(self, rid: str, msg: Deliver, epoch: str, seq: int) -> None:
        self.log.append(("deliver", rid, epoch, seq))
        self.sent.append((rid, msg, epoch, seq))

    def ping(self, rid: str) -> None:
        self.log.append(("ping", rid))
        self.pinged.append(rid)

    def save_counts(self, rid: str, counts: Dict[str, int]) -> None:
        self.log.append(("save_counts", rid, counts["requests"]))

    def query(self, rid: str, epoch: str) -> None:
        self.log.append(("query", rid, epoch))
        self.asked.append(rid)

    def spawn(self, rid: str) -> None:
        self.log.append(("spawn", rid))

    def retire(self, rid: str) -> None:
        self.log.append(("retire", rid))

    def answer(self, reply: Reply, waiters: Sequence[Any]) -> None:
        self.log.append(("answer", str(reply.msg_id), tuple(waiters)))
        for w in waiters:
            self.answered[w] = reply

    def fail(self, msg_id: MsgId, reason: str, waiters: Sequence[Any]) -> None:
        self.log.append(("fail", str(msg_id), tuple(waiters)))
        for w in waiters:
            self.failed[w] = reason

    def fence(self, msg_id: MsgId, waiters: Sequence[Any]) -> None:
        self.log.append(("fence", str(msg_id), tuple(waiters)))

    def kick(self) -> None:
        self.kicks += 1

    def calls(self, *kinds: str) -> List[Tuple[Any, ...]]:
        """The transcript, only the calls of these kinds."""
        return [c for c in self.log if c[0] in kinds]


class Replicas:
    """The group's replicas: a counter each, answering Delivers synchronously."""

    def __init__(self, cfg: CoreConfig, members: Tuple[str, ...] = MEMBERS) -> None:
        self.cores = {m: ReplicaCore("g", m, cfg, "reception", NewView(1, members)) for m in members}
        self.state = {m: 0 for m in members}
        self.alive = set(members)

    def answer(self, host: RouterHost, io: FakeIO) -> None:
        """Every live replica answers what was sent to it (a joiner restores its checkpoint); a call to a
        dead one fails."""
        pinged, io.pinged = io.pinged, []
        for rid in pinged:
            host.on_pong(rid) if rid in self.alive else host.on_failure(rid)
        sent, io.sent = io.sent, []
        for rid, msg, _, _ in sent:
            if rid not in self.alive:
                host.on_failure(rid)
                continue
            core = self.cores[rid]
            core.deliver(msg)
            while (e := core.next_effect()) is not None:
                if isinstance(e, Restore):  # a joining replica takes the primary's checkpoint
                    self.state[rid] = e.checkpoint.state
                elif isinstance(e, Execute):
                    self.state[rid] += e.request.payload
                    core.executed(e.request.msg_id, Outcome(True, self.state[rid]))
                elif isinstance(e, Snapshot):
                    core.snapshot_taken(e.position, self.state[rid], str(self.state[rid]))
            host.on_delivered(core.take_delivered())
        asked, io.asked = io.asked, []
        for rid in asked:
            host.on_state_report(self.cores[rid].state_report()) if rid in self.alive else host.on_failure(rid)


def run(host: RouterHost, io: FakeIO, reps: Replicas, ticks: int) -> None:
    """Drive the host as both drivers do: a tick, then answer what it sent."""
    for _ in range(ticks):
        io.now += 1
        host.tick()
        reps.answer(host, io)
        host.process()


def setup(cfg: Optional[CoreConfig] = None) -> Tuple[RouterHost, FakeIO, Replicas]:
    cfg = cfg or CoreConfig()
    io = FakeIO()
    return RouterHost("g", cfg, io, "e1", MEMBERS, counts_every_ticks=50), io, Replicas(cfg)


def test_a_call_in_a_deliver_out_the_answer_releases_the_caller() -> None:
    host, io, reps = setup()
    req = ClientCore("c").request("g", "add", payload=5)
    assert host.submit(req, waiter="caller-1") is None
    assert io.kicks == 1  # the driver is asked to process soon
    host.process()
    # the router relays the call to every replica (semi-active), each Deliver numbered on its link
    assert io.calls("deliver") == [("deliver", m, "e1", 1) for m in MEMBERS]
    reps.answer(host, io)
    host.process()
    assert io.calls("answer") == [("answer", "c#1", ("caller-1",))]
    assert io.answered["caller-1"].outcome.value == 5
    assert host.waiters == {}
    again = host.submit(req, waiter="caller-2")  # a retry after the release: answered from the cache
    assert again is not None and again.outcome.value == 5


def test_the_notice_of_a_cancelled_call_the_router_took_is_answered_once_the_call_ran() -> None:
    """Row 82: ``abandon`` of a call the router holds takes a waiter, answered with the call's reply when
    it is released (the runtime's ``_AsyncRouter.abandon`` then answers "ran"); one already released is
    answered "ran" at once; one the router never took is given up, and its waiter is not kept."""
    host, io, reps = setup()
    req = ClientCore("c").request("g", "add", payload=5)
    host.submit(req, waiter="caller")
    host.process()
    assert host.abandon(req.msg_id, waiter="notice") == "runs"
    assert "notice" not in io.answered
    reps.answer(host, io)
    host.process()
    assert io.calls("answer") == [("answer", "c#1", ("caller", "notice"))]
    assert host.abandon(req.msg_id, waiter="late") == "ran" and host.waiters == {}
    assert host.abandon(MsgId("c", 3), waiter="never") == "given up" and host.waiters == {}


def test_delivers_are_numbered_per_link_with_the_incarnation_s_epoch() -> None:
    host, io, reps = setup()
    client = ClientCore("c")
    for k in range(3):
        host.submit(client.request("g", "add", payload=k + 1), waiter=k)
        run(host, io, reps, 2)
    run(host, io, reps, 20)  # announcements reach the backups
    seqs: Dict[str, List[int]] = {}
    for _, rid, epoch, seq in io.calls("deliver"):
        assert epoch == "e1"
        seqs.setdefault(rid, []).append(seq)
    assert set(seqs) == set(MEMBERS)
    for rid, got in seqs.items():
        assert got == list(range(1, len(got) + 1)), rid
    assert [io.answered[k].outcome.value for k in range(3)] == [1, 3, 6]


def test_callers_retrying_one_call_all_get_its_one_reply() -> None:
    host, io, reps = setup()
    req = ClientCore("c").request("g", "add", payload=2)
    host.submit(req, waiter="first")
    host.submit(req, waiter="retry")
    host.submit(req, waiter="retry")  # the same waiter twice waits once
    run(host, io, reps, 2)
    assert io.calls("answer") == [("answer", "c#1", ("first", "retry"))]


def test_a_primary_failing_mid_call_fails_over_and_the_call_is_answered_once() -> None:
    host, io, reps = setup(CoreConfig(query_on_failover=True, min_replicas=3))
    run(host, io, reps, 5)
    req = ClientCore("c").request("g", "add", payload=7)
    host.submit(req, waiter="caller")
    host.process()
    assert "g-r0" in [s[0] for s in io.sent]
    reps.alive.discard("g-r0")  # the primary dies with the call in hand
    reps.answer(host, io)  # its Deliver fails: on_failure
    assert host.last_failover_s == io.wall_s()
    core = host.core
    assert core is not None and core.phase == Phase.RECOVERING  # it asks the survivors (query_on_failover)
    host.process()
    assert io.calls("query") == [("query", "g-r1", "e1"), ("query", "g-r2", "e1")]
    # the core wants a replacement at once; it is started once the recovery is over (in Ray,
    # creating an actor holds the router's thread up and would delay the new primary)
    assert core.spawning and io.calls("spawn") == []
    run(host, io, reps, 40)
    assert core.phase == Phase.NORMAL and core.primary == "g-r1"
    assert host.last_recovery_ms is not None
    assert io.answered["caller"].outcome.value == 7
    assert [c for c in io.calls("answer") if c[1] == "c#1"] == [("answer", "c#1", ("caller",))]
    # the counters are saved on the new view's members at once (a restart right after keeps them)
    assert {c[1] for c in io.calls("save_counts")} >= {"g-r1", "g-r2"}
    assert io.calls("spawn") == [("spawn", "g-r3")]


def test_a_restarted_router_rebuilds_the_highest_view_and_goes_on_from_the_saved_counters() -> None:
    cfg = CoreConfig()
    io = FakeIO()
    host = RouterHost("g", cfg, io, "e2", None)
    with pytest.raises(AssertionError):
        host.submit(ClientCore("c").request("g", "add", payload=1), waiter="w")  # not rebuilt yet
    rebuilt = host.rebuild({
        "g-r0": (1, MEMBERS, "primary", {"requests": 3}),  # deposed, still running
        "g-r1": (2, ("g-r1", "g-r2"), "primary", {"requests": 40, "failovers": 1}),
        "g-r2": (2, ("g-r1", "g-r2"), "backup", {"requests": 41, "failovers": 1}),
    }, known=["g-r7"])
    assert (rebuilt.view, rebuilt.members) == (2, ("g-r1", "g-r2"))
    assert rebuilt.next_replica_index > 7
    core = host.core
    assert core is not None and core.counts["requests"] == 41 and core.counts["failovers"] == 1
    host.tick()
    assert io.calls("query")  # the rebuilt router recovers: it asks the members for their state


def test_a_restarted_router_retires_every_replica_it_heard_of_outside_the_view_it_takes_over() -> None:
    """docs/faults.md (the replacement path of "An argument lost with its router and its caller"): a
    backup stopped (SIGSTOP) while its router restarts does not answer the rebuild, which leaves it out
    of the view; the rebuilt router never told it, so once continued it lingered for good, a replica
    of no view (the Ray test waited 60 s for its process to go). Now the rebuilt router retires every
    replica it heard of that is not a member of the view it takes over: the stopped one, a deposed
    one still running, a joiner of the dead incarnation."""
    io = FakeIO()
    host = RouterHost("g", CoreConfig(), io, "e2", None)
    rebuilt = host.rebuild({
        "g-r0": (1, MEMBERS, "primary", {}),                      # deposed, still running
        "g-r1": (2, ("g-r1", "g-r2", "g-r3"), "primary", {}),
        "g-r2": (2, ("g-r1", "g-r2", "g-r3"), "backup", {}),
        "g-r5": (0, (), "joining", {}),                           # spawned by the dead incarnation
    }, known=["g-r3"])                                            # a member that did not answer
    assert rebuilt.members == ("g-r1", "g-r2")
    assert io.calls("retire") == [("retire", "g-r0"), ("retire", "g-r3"), ("retire", "g-r5")]
    assert rebuilt.orphans == ("g-r0", "g-r3", "g-r5")
    host.tick()
    assert {c[1] for c in io.calls("query")} == {"g-r1", "g-r2"}  # it recovers with the members only


def test_a_restart_with_no_live_replica_loses_the_group() -> None:
    host = RouterHost("g", CoreConfig(), FakeIO(), "e2", None)
    with pytest.raises(LookupError):
        host.rebuild({"g-r4": (0, (), "joining", {})})


def test_shutdown_fails_every_waiting_caller() -> None:
    host, io, _ = setup()
    host.submit(ClientCore("c").request("g", "add", payload=1), waiter="caller")
    host.close("g was shut down")
    assert io.failed == {"caller": "g was shut down"}
    host.process()
    assert io.calls("deliver") == []  # closed: nothing is sent any more


def test_the_counters_are_saved_on_the_members_at_most_once_a_period_and_only_when_changed() -> None:
    host, io, reps = setup()  # counts_every_ticks=50
    client = ClientCore("c")
    for now in range(120):
        if now in (0, 60):
            host.submit(client.request("g", "add", payload=1), waiter="caller")
        run(host, io, reps, 1)
    saves = io.calls("save_counts")
    assert [c[2] for c in saves] == [1] * 6 + [2] * 3  # ticks 1, 51 (its Delivers) and 101 (the second call)
    before = len(io.log)
    host.save_counts()
    assert len(io.log) == before  # nothing changed since


def test_an_idle_groups_heartbeats_alone_save_no_counters() -> None:
    """An idle group: only the core's ``heartbeats`` counter moves (its pings). Saving it sent every
    member a Ray call each save period (a second in Ray), for a counter no restarted router needs
    to the unit; it is saved with the next change of another."""
    host, io, reps = setup(CoreConfig(heartbeat_ticks=10))
    run(host, io, reps, 60)  # the first two saves: at tick 1, and at 51 for the start-up's Delivers
    saves = len(io.calls("save_counts"))
    heartbeats = host.core.counts["heartbeats"] if host.core is not None else 0
    run(host, io, reps, 300)
    assert host.core is not None and host.core.counts["heartbeats"] > heartbeats
    assert len(io.calls("save_counts")) == saves  # idle: none
    host.submit(ClientCore("c").request("g", "add", payload=1), waiter="caller")
    run(host, io, reps, 100)
    assert [c[2] for c in io.calls("save_counts")[saves:]] == [1] * len(MEMBERS)  # the call's, heartbeats with it


def test_too_many_waiting_requests_overload_the_host() -> None:
    cfg = CoreConfig(inflight_max=2, reply_cache_max=1)
    host, io, _ = setup(cfg)
    client = ClientCore("c")
    with pytest.raises(GroupOverloadedError):
        for k in range(10):
            host.submit(client.request("g", "add", payload=k), waiter=k)
    assert len(host.waiters) <= host.waiters_max


def _answered_seqs(io: FakeIO) -> List[int]:
    return [int(c[1].split("#")[1]) for c in io.calls("answer")]


def test_a_call_whose_argument_the_driver_fetches_holds_its_sources_later_calls_until_fetched() -> None:
    """``fetch_begins`` .. ``fetched``: what the Ray router and the simulator's both call around the
    fetch of an argument by reference. Its caller's later calls, submitted meanwhile, wait past the
    sequence gap and then run after it, in the caller's order."""
    host, io, reps = setup(CoreConfig(sequence_gap_ticks=3))
    client = ClientCore("c")
    first, byref, later = (client.request("g", "add", payload=k) for k in (1, 10, 100))
    host.submit(first, waiter="w1")
    host.fetch_begins(byref.msg_id)
    host.submit(later, waiter="w3")
    run(host, io, reps, ticks=20)  # far past the gap
    assert _answered_seqs(io) == [1]
    assert host.fetched(byref, waiter="w2") is None
    run(host, io, reps, ticks=5)
    assert _answered_seqs(io) == [1, 2, 3]
    assert io.answered["w3"].outcome.value == 111  # after the call by reference, in the caller's order
    assert host.core is not None and host.core.intake.coming == set()


def test_a_call_whose_argument_could_not_be_fetched_holds_the_later_ones_only_the_gap() -> None:
    host, io, reps = setup(CoreConfig(sequence_gap_ticks=3))
    client = ClientCore("c")
    first, byref, later = (client.request("g", "add", payload=k) for k in (1, 10, 100))
    host.submit(first, waiter="w1")
    host.fetch_begins(byref.msg_id)
    host.submit(later, waiter="w3")
    run(host, io, reps, ticks=10)
    assert _answered_seqs(io) == [1]
    host.fetch_failed(byref.msg_id)  # the caller's object is gone: never submitted
    run(host, io, reps, ticks=10)
    assert _answered_seqs(io) == [1, 3] and io.answered["w3"].outcome.value == 101


def test_a_fetched_call_the_core_refuses_no_longer_holds_the_later_ones() -> None:
    host, io, reps = setup(CoreConfig(inflight_max=2, sequence_gap_ticks=3))
    client = ClientCore("c")
    reqs = [client.request("g", "add", payload=k) for k in (1, 2, 4)]
    host.submit(reqs[0], waiter="w1")
    host.submit(reqs[1], waiter="w2")
    other = ClientCore("d").request("g", "add", payload=8)
    host.fetch_begins(other.msg_id)
    with pytest.raises(GroupOverloadedError):
        host.fetched(other, waiter="w4")
    assert host.core is not None and host.core.intake.coming == set()


def test_a_rebuilt_router_fences_a_deposed_callers_request_it_admitted_before_the_reports() -> None:
    """Seed 103108's order: the rebuilt router of g takes a retry of group h's deposed primary (view 8)
    before its members' state reports, which show h at view 12: the retry is never relayed and its
    waiter fails with StaleViewError (``io.fence``); h's primary of view 12 goes on."""
    from ftactors.core import Kind, Request, nested_source

    def nested(caller_seq: int, view: int) -> Request:
        return Request(Kind.SYNC_REQUEST, MsgId(nested_source("h", MsgId("c", caller_seq)), 1), "g", "add",
                       payload=1, source_view=view)

    host, io, reps = setup()
    host.submit(nested(1, view=12), waiter="h-r4")
    run(host, io, reps, 4)
    assert io.answered["h-r4"].outcome.value == 1
    io2 = FakeIO()
    io2.now = io.now
    rebuilt = RouterHost("g", CoreConfig(), io2, "e2", None)
    rebuilt.rebuild({m: (1, MEMBERS, "primary" if m == "g-r0" else "backup", {}) for m in MEMBERS})
    assert rebuilt.submit(nested(17, view=8), waiter="h-r3") is None  # h's deposed primary: nothing known yet
    run(rebuilt, io2, reps, 4)  # the state reports come, the recovery ends
    deposed = MsgId(nested_source("h", MsgId("c", 17)), 1)
    assert [core.dedup.status(deposed) for core in reps.cores.values()] == ["new"] * 3  # never relayed
    assert io2.calls("fence") == [("fence", "h|c#17#1", ("h-r3",))]
    assert {m: core.executed_upto for m, core in reps.cores.items()} == {m: 1 for m in MEMBERS}
    assert rebuilt.waiters == {} and reps.state == {m: 1 for m in MEMBERS}
    assert rebuilt.submit(nested(18, view=12), waiter="h-r4") is None
    run(rebuilt, io2, reps, 4)
    assert io2.answered["h-r4"].outcome.value == 2


def test_an_answer_on_the_ray_path_waits_for_a_parked_answer_of_its_link_that_came_before_it() -> None:
    """Swarm seed 100001 (semi-active, deadline, direct links, parked answers, by-reference arguments):
    the primary's answer carrying positions 146-149 was parked on its link; its next answer, to a Deliver
    sent as a Ray call (it carried an argument by reference), came by Ray and released the replies of
    positions 150-151 before the parked answer was fetched. The primary died, the fetch failed, and the
    new primary, never sent 146-149, put another call at an acknowledged position (``I4: store-r10
    executes c0#39 at 150, where the acknowledged c0#38 is``). An answer on the Ray path now waits behind
    a parked answer of the same replica, as a link answer does (row 20); if the fetch fails it is dropped."""
    host, io, reps = setup()
    assert host.links.want_link("g-r0")
    host.on_link_up("g-r0")
    client = ClientCore("c")
    for n, rid in ((1, "caller-1"), (2, "caller-2")):
        assert host.submit(client.request("g", "add", payload=n), waiter=rid) is None
        host.process()
        sent, io.sent = io.sent, []
        for to, msg, _, _ in sent:
            core = reps.cores[to]
            core.deliver(msg)
            while (e := core.next_effect()) is not None:
                assert isinstance(e, Execute)
                reps.state[to] += e.request.payload
                core.executed(e.request.msg_id, Outcome(True, reps.state[to]))
            answer = core.take_delivered()
            if to != "g-r0":
                host.on_delivered(answer)
            elif n == 1:  # parked on the link: fetched with a Ray call
                parked, (decision, ticket) = answer, host.on_link_parked("g-r0")
                assert decision == Parked.FETCH
            else:  # by Ray, overtaking the parked one
                host.on_delivered(answer)
    host.process()
    assert io.calls("answer") == []  # caller-2's reply waits for the parked answer before it
    host.on_parked_fetched("g-r0", ticket, parked)
    host.process()
    assert [c[1] for c in io.calls("answer")] == ["c#1", "c#2"]

"""ReplicaHost: the replica host both drivers run, over a fake in-memory I/O, as transcripts.

A real RouterCore makes the Delivers; the fake I/O records answers by token and holds each
effect until the test finishes it (as a long method, or one waiting for a nested reply, would).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ftactors.core import (
    ClientCore,
    CoreConfig,
    Deliver,
    Delivered,
    Execute,
    NewView,
    Outcome,
    RemoteProtocolError,
    ReplicaCore,
    Restore,
    RouterCore,
    Snapshot,
)
from ftactors.host.replica import ReplicaHost

MEMBERS = ("g-r0", "g-r1")


class FakeIO:
    """ReplicaIO in memory: answers by token, and the effect out (finished by the test)."""

    def __init__(self) -> None:
        self.now = 0
        self.answers: Dict[Any, Delivered] = {}
        self.refusals: Dict[Any, RemoteProtocolError] = {}
        self.out: Optional[Tuple[Any, Any]] = None  # (effect, token) being carried out
        self.counts: Dict[str, int] = {}
        self.sync = True  # finish effects at once (a quick method)
        self.host: Optional[ReplicaHost] = None
        self.total = 0
        self.ready_ids: Tuple[Any, ...] = ()  # suspended calls whose event arrived
        self.may_hold = False  # the runtime lets the driving Deliver wait (Ray: up to heartbeat_s)
        self.holds: List[Any] = []  # the Delivers the host asked to keep

    def ticks(self) -> int:
        return self.now

    def answer(self, token: Any, out: Delivered) -> None:
        assert token not in self.answers, f"{token} answered twice"
        self.answers[token] = out

    def refused(self, token: Any, exc: RemoteProtocolError) -> None:
        self.refusals[token] = exc

    def execute(self, ex: Execute, token: Any) -> None:
        self.out = (ex, token)
        if self.sync:
            self.finish()

    def snapshot(self, snap: Snapshot, token: Any) -> None:
        assert self.host is not None
        self.host.snapshot_taken(self.total if snap.for_checkpoint else None, str(self.total))

    def restore(self, effect: Restore, token: Any) -> None:
        assert self.host is not None
        self.total = effect.checkpoint.state
        self.host.restored()

    def resumable(self) -> Tuple[Any, ...]:
        return self.ready_ids

    def hold(self, token: Any) -> bool:
        self.holds.append(token)
        return self.may_hold

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def finish(self) -> Any:
        """The method out returns; returns the token of the Deliver that drove it."""
        assert self.host is not None and self.out is not None
        ex, token = self.out
        self.out = None
        self.total += ex.request.payload
        self.host.executed(Outcome(True, self.total))
        return token


def setup(rid: str = "g-r0") -> Tuple[ReplicaHost, FakeIO, RouterCore, ClientCore]:
    cfg = CoreConfig(primary_inflight_max=8, batch_max=1)
    io = FakeIO()
    host = ReplicaHost(ReplicaCore("g", rid, cfg, "reception", NewView(1, MEMBERS)), io)
    io.host = host
    return host, io, RouterCore("g", cfg, MEMBERS), ClientCore("c")


def delivers(router: RouterCore, client: ClientCore, payloads: List[int], rid: str = "g-r0") -> List[Deliver]:
    """The router's Delivers to ``rid`` for one call each."""
    out = []
    for p in payloads:
        router.submit(client.request("g", "add", payload=p))
        out += [d for r, d in router.ready().sends if r == rid]
    return out


def values(answer: Delivered) -> List[Any]:
    return [r.outcome.value for r in answer.replies]


def test_a_deliver_in_the_call_executed_the_reply_out() -> None:
    host, io, router, client = setup()
    (d,) = delivers(router, client, [5])
    host.tick()
    host.deliver(d, "e1", 1, "call-1")
    host.drive()
    assert values(io.answers["call-1"]) == [5]
    assert not host.turns.driving and host.driver is None


def test_delivers_apply_in_their_link_order_whatever_order_they_arrive_in() -> None:
    host, io, router, client = setup()
    d1, d2 = delivers(router, client, [1, 10])
    host.deliver(d2, "e1", 2, "second")  # Ray ran the later call first
    host.drive()
    assert io.answers == {}  # it waits for the first
    host.deliver(d1, "e1", 1, "first")
    host.drive()
    # both applied in order; the second stood by, so the first handed over before any effect
    assert values(io.answers["first"]) == []
    assert values(io.answers["second"]) == [1, 11]
    assert io.counts["hand_overs"] == 1


def test_one_drives_one_stands_by_the_rest_are_answered_at_once() -> None:
    host, io, router, client = setup()
    io.sync = False  # a long method
    d1, d2, d3 = delivers(router, client, [1, 2, 3])
    host.deliver(d1, "e1", 1, "a")
    host.drive()
    assert io.out is not None and io.out[1] == "a"  # "a" drives: its method is out
    host.deliver(d2, "e1", 2, "b")  # enters the core at once, and stands by
    host.deliver(d3, "e1", 3, "c")
    host.drive()
    assert values(io.answers.pop("c")) == [] and io.counts["answered_at_once"] == 1
    assert io.finish() == "a"
    host.drive()
    assert values(io.answers.pop("a")) == [1]  # the driver answers after the effect...
    assert io.counts["hand_overs"] == 1 and io.out is not None and io.out[1] == "b"  # ...b drives on
    assert io.finish() == "b"
    host.drive()
    assert io.finish() == "b"
    host.drive()
    assert values(io.answers.pop("b")) == [3, 6]
    assert io.answers == {}


def test_a_new_router_s_state_query_drops_the_dead_one_s_delivers() -> None:
    host, io, router, client = setup()
    d1, d2, d3 = delivers(router, client, [1, 2, 3])
    host.deliver(d1, "e1", 1, "old-1")
    host.drive()
    host.deliver(d3, "e1", 3, "old-3")  # waits for old-2
    host.state_report("e2")  # the restarted router asks: the waiting one is answered with nothing
    assert values(io.answers.pop("old-3")) == [] and io.counts["stale_delivers"] == 1
    host.deliver(d2, "e1", 2, "old-2")  # late: dropped
    host.drive()
    assert values(io.answers.pop("old-2")) == [] and io.counts["stale_delivers"] == 2
    assert host.core.executed_upto == 1


def test_an_execution_started_under_a_dead_router_answers_the_new_one() -> None:
    host, io, router, client = setup()
    io.sync = False
    (d1,) = delivers(router, client, [4])
    host.deliver(d1, "e1", 1, "old")
    host.drive()
    assert host.view_info("e2")[0] == 1  # a restarted router rebuilds meanwhile
    io.finish()
    host.drive()
    assert values(io.answers.pop("old")) == []  # not to the dead router...
    poll = Deliver(view=1)
    host.deliver(poll, "e2", 1, "new")  # ...but to the new one's next Deliver
    host.drive()
    assert values(io.answers.pop("new")) == [4]


def test_a_failed_effect_hands_over_to_the_standby_which_answers() -> None:
    host, io, router, client = setup()
    io.sync = False
    d1, d2 = delivers(router, client, [1, 2])
    host.deliver(d1, "e1", 1, "a")
    host.drive()
    host.deliver(d2, "e1", 2, "b")
    host.drive()
    assert io.out is not None and io.out[1] == "a"
    io.out = None
    host.abort()  # the Ray call of "a" raised: it gets no answer
    host.drive()
    assert "a" not in io.answers
    assert "b" in io.answers and host.driver is None  # the standby took over, and was not left waiting


def test_a_restarted_router_learns_the_highest_counters_the_pings_carried() -> None:
    host, _, _, _ = setup()
    host.on_ping([("requests", 40), ("failovers", 1)])
    host.on_ping([("requests", 30)])  # a late ping from a dead incarnation
    view, members, role, counts = host.view_info("e2")
    assert (view, members, role) == (1, MEMBERS, "primary")
    assert counts == {"requests": 40, "failovers": 1}


def test_a_malformed_deliver_is_refused_and_the_link_goes_on() -> None:
    host, io, router, client = setup("g-r1")  # a backup
    (d1,) = delivers(router, client, [1], rid="g-r1")
    bad = Deliver(view=1, join=True)  # a join without a checkpoint
    host.deliver(d1, "e1", 2, "next")
    host.deliver(bad, "e1", 1, "bad")
    host.drive()
    assert isinstance(io.refusals.get("bad"), RemoteProtocolError)
    assert "next" in io.answers  # the one that waited for it applied


def test_a_primary_with_a_suspended_call_keeps_its_deliver_until_the_call_resumes() -> None:
    host, io, router, client = setup()
    io.sync, io.may_hold = False, True
    (d,) = delivers(router, client, [7])
    host.deliver(d, "e1", 1, "call-1")
    host.drive()
    assert io.out is not None
    ex, _ = io.out
    io.out = None
    host.executed(None)  # the async method awaits something: the call is suspended
    host.drive()
    assert io.answers == {} and io.holds == ["call-1"]  # nothing to send yet: the Deliver is kept
    io.ready_ids = (ex.request.msg_id,)  # its awaited event arrived (Ray: _wake_driver)
    host.drive()
    assert io.out is not None and io.out[0].resume == 1  # the resume step
    io.ready_ids = ()
    io.finish()
    host.drive()
    assert values(io.answers["call-1"]) == [7]  # the resumed step's reply leaves with the kept Deliver


def test_a_primary_with_a_suspended_call_answers_when_the_runtime_will_not_wait() -> None:
    host, io, router, client = setup()
    io.sync = False
    (d,) = delivers(router, client, [7])
    host.deliver(d, "e1", 1, "call-1")
    host.drive()
    io.out = None
    host.executed(None)
    host.drive()
    assert io.holds == ["call-1"]
    answer = io.answers["call-1"]  # the hold timed out (or is refused): answered, the call still waits
    assert values(answer) == [] and answer.suspended == 1


def _primary_given_two_calls_in_one_deliver() -> Tuple[FakeIO, ReplicaHost, Deliver]:
    """A primary's host whose executions wait for the test (``io.sync`` False), and the router's one
    Deliver carrying two calls (add 1, add 2) to it, not yet delivered."""
    cfg = CoreConfig(primary_inflight_max=1, batch_max=8)
    io = FakeIO()
    host = ReplicaHost(ReplicaCore("g", "g-r0", cfg, "reception", NewView(1, MEMBERS)), io)
    io.host = host
    router, client = RouterCore("g", cfg, MEMBERS), ClientCore("c")
    router.submit(client.request("g", "add", payload=1))
    router.submit(client.request("g", "add", payload=2))
    (d,) = [d for r, d in router.ready().sends if r == "g-r0"]
    assert len(d.requests) == 2
    io.sync = False
    return io, host, d


def test_a_poll_reaching_a_primary_busy_with_a_long_call_is_answered_at_once_with_the_replies_so_far() -> None:
    """docs/faults.md, row 76: two calls in one Deliver, the first executed, the second long (its
    Execute out). The short call's reply waited for the driver's answer, after the long call; a
    Deliver arriving meanwhile (the router's poll) stood by. It now takes the waiting replies at once."""
    io, host, d = _primary_given_two_calls_in_one_deliver()
    host.deliver(d, "e1", 1, "batch")
    host.drive()
    assert io.finish() == "batch"  # the short call returned
    host.drive()
    assert io.out is not None and io.out[1] == "batch"  # the long one is out
    host.deliver(Deliver(view=1), "e1", 2, "poll")
    host.drive()
    assert values(io.answers.pop("poll")) == [1] and io.counts["answered_early"] == 1
    assert host.standby is None and io.out is not None  # the driver keeps driving
    assert io.finish() == "batch"
    host.drive()
    assert values(io.answers.pop("batch")) == [3] and io.answers == {}
    assert "hand_overs" not in io.counts


def test_a_deliver_reaching_a_busy_primary_with_no_reply_waiting_stands_by_as_before() -> None:
    """The long call first: nothing to answer early, so the poll stands by and takes over after it."""
    io, host, d = _primary_given_two_calls_in_one_deliver()
    host.deliver(d, "e1", 1, "batch")
    host.drive()
    host.deliver(Deliver(view=1), "e1", 2, "poll")
    host.drive()
    assert io.answers == {} and host.standby is not None and "answered_early" not in io.counts
    assert io.finish() == "batch"
    host.drive()
    assert values(io.answers.pop("batch")) == [1] and io.counts["hand_overs"] == 1
    assert io.finish() == "poll"
    host.drive()
    assert values(io.answers.pop("poll")) == [3]

"""docs/faults.md, row 76: the router polls a primary that sits on a Deliver longer than
``busy_poll_ticks`` while callers wait, so the replies of calls executed before a long one in the
same batch come back at once (``ReplicaHost`` answers the poll with them); calls answered in time
cost nothing extra."""

from __future__ import annotations

from typing import List, Tuple

import pytest

from ftactors.core import ClientCore, ConfigError, CoreConfig, Deliver, Delivered, RouterCore

from tests.test_core_router import Group

MEMBERS = ("g-r0", "g-r1")


def primary_sends(router: RouterCore, ticks: range) -> List[Tuple[int, Deliver]]:
    """The Delivers sent to the primary over ``ticks`` (the primary never answers; pings are)."""
    out = []
    for now in ticks:
        router.tick(now)
        r = router.ready()
        for rid in r.pings:
            router.on_pong(rid)
        out += [(now, d) for m, d in r.sends if m == "g-r0"]
    return out


def test_a_primary_silent_on_a_deliver_for_busy_poll_ticks_is_polled_once() -> None:
    cfg = CoreConfig(busy_poll_ticks=3, primary_inflight_max=1)
    router = RouterCore("g", cfg, MEMBERS)
    client = ClientCore("c")
    router.submit(client.request("g", "add", payload=1))
    router.submit(client.request("g", "add", payload=2))
    router.tick(1)
    (batch,) = [d for m, d in router.ready().sends if m == "g-r0"]
    assert len(batch.requests) == 2
    sent = primary_sends(router, range(2, 12))
    # one poll past primary_inflight_max, busy_poll_ticks after the batch; none more while unanswered
    assert [(now, d.requests) for now, d in sent] == [(4, ())]
    assert router.counts["polls"] == 1 and router.counts["busy_polls"] == 1
    # the poll is answered at once with the first call's reply (no reply here: the shape matters);
    # the batch is still out, so busy_poll_ticks after that answer (tick 11) the next poll goes
    assert sent[0][1].busy_poll
    router.on_delivered(Delivered("g-r0", 1, busy_poll=True))
    assert [now for now, _ in primary_sends(router, range(12, 18))] == [14]
    assert router.counts["busy_polls"] == 2


def test_a_primary_answering_within_busy_poll_ticks_is_not_polled() -> None:
    cfg = CoreConfig(busy_poll_ticks=3, primary_inflight_max=1)
    router = RouterCore("g", cfg, MEMBERS)
    router.submit(ClientCore("c").request("g", "add", payload=1))
    router.tick(1)
    router.ready()
    assert primary_sends(router, range(2, 4)) == []
    router.on_delivered(Delivered("g-r0", 1))  # answered after 2 ticks (the reply still to come)
    assert all(d.requests or now >= 1 + cfg.heartbeat_ticks for now, d in primary_sends(router, range(4, 10)))
    assert router.counts.get("busy_polls", 0) == 0


def test_no_busy_poll_while_no_caller_waits() -> None:
    cfg = CoreConfig(busy_poll_ticks=3, primary_inflight_max=1)
    router = RouterCore("g", cfg, MEMBERS)
    router.tick(1)
    (first,) = [d for m, d in router.ready().sends if m == "g-r0"]
    assert first.new_view is not None  # the first view goes out; the primary sits on it
    assert primary_sends(router, range(2, 12)) == []
    assert router.counts.get("busy_polls", 0) == 0


def test_a_sequential_fault_free_run_of_short_calls_sends_no_poll() -> None:
    g = Group(CoreConfig(busy_poll_ticks=2), members=MEMBERS)
    client = ClientCore("c")
    for n in range(50):
        g.router.submit(client.request("g", "add", payload=1))
        g.pump(2)
    g.pump(5)
    assert len(g.released) == 50 and g.router.counts["polls"] == 0
    assert g.router.counts.get("busy_polls", 0) == 0


def test_busy_poll_ticks_is_checked() -> None:
    with pytest.raises(ConfigError, match="busy_poll_ticks"):
        CoreConfig(busy_poll_ticks=0)


def test_a_busy_poll_sent_as_the_deliver_before_it_is_answered_does_not_chain_polls_that_hold_the_link() -> None:
    """docs/faults.md row 81 (swarm seed 102102, ``busy_poll_ticks`` 1): the router polled its primary
    a tick after a batch, as the batch's answer was on its way; it took that answer for the poll's, so a
    tick later it polled again while the first poll was still out, and so on: each poll's answer came
    after the next poll went, the link stayed at ``primary_inflight_max`` with a poll, and the calls
    queued behind never went. The answer to a busy poll says so (``Delivered.busy_poll``)."""
    cfg = CoreConfig(busy_poll_ticks=1, primary_inflight_max=1)
    router = RouterCore("g", cfg, MEMBERS)
    client = ClientCore("c")
    router.submit(client.request("g", "add", payload=1))
    router.tick(1)
    assert [len(d.requests) for m, d in router.ready().sends if m == "g-r0"] == [1]
    (poll,) = [d for _, d in primary_sends(router, range(2, 3))]
    assert poll.is_null and not poll.requests
    router.on_delivered(Delivered("g-r0", 1, acked_position=1))  # the batch's answer, read after the poll went
    router.submit(client.request("g", "add", payload=2))  # a second call waits on the primary's link
    out, sent = [], [poll]
    for now in range(3, 15):  # each Deliver is answered a tick after it went, after the router's step
        router.tick(now)
        r = router.ready()
        for rid in r.pings:
            router.on_pong(rid)
        for d in sent:  # the host marks a busy poll's answer (ReplicaHost._answer)
            router.on_delivered(Delivered("g-r0", 1, acked_position=1, busy_poll=d.busy_poll))
        sent = [d for m, d in r.sends if m == "g-r0"]
        out += [(now, len(d.requests)) for d in sent]
    # the second call goes once the first poll is answered; a busy poll follows it a tick later (its
    # answer is a tick away), then nothing: no poll went while another was out
    assert out == [(4, 1), (5, 0)]


def test_the_replica_host_marks_the_answers_of_busy_polls_only() -> None:
    """Row 81: whichever way the host answers a busy poll (early, with the replies so far; standing by
    and driving after the long call), its answer carries ``busy_poll``; the batch's answer does not."""
    from ftactors.core import NewView, ReplicaCore
    from ftactors.host.replica import ReplicaHost
    from tests.test_host_replica import FakeIO, values

    cfg = CoreConfig(primary_inflight_max=1, batch_max=8)
    io = FakeIO()
    host = ReplicaHost(ReplicaCore("g", "g-r0", cfg, "reception", NewView(1, MEMBERS)), io)
    io.host = host
    router, client = RouterCore("g", cfg, MEMBERS), ClientCore("c")
    for n in (1, 2, 3):
        router.submit(client.request("g", "add", payload=n))
    (d,) = [d for r, d in router.ready().sends if r == "g-r0"]
    io.sync = False
    host.deliver(d, "e1", 1, "batch")
    host.drive()
    assert io.finish() == "batch"  # the first call returned, the second is out (long)
    host.drive()
    host.deliver(Deliver(view=1, busy_poll=True), "e1", 2, "poll1")  # answered early
    host.drive()
    early = io.answers.pop("poll1")
    assert values(early) == [1] and early.busy_poll
    host.deliver(Deliver(view=1, busy_poll=True), "e1", 3, "poll2")  # nothing waits: stands by
    host.drive()
    assert host.standby is not None and "poll2" not in io.answers
    while io.out is not None:
        io.finish()
        host.drive()
    batch, later = io.answers.pop("batch"), io.answers.pop("poll2")
    assert not batch.busy_poll and later.busy_poll and io.answers == {}


def _first_busy_poll(router: RouterCore, ticks: range) -> int:
    """The tick at which the router, ticked only at ``ticks``, sends its primary a busy poll."""
    for now, d in primary_sends(router, ticks):
        if d.busy_poll:
            return now
    raise AssertionError(f"no busy poll over ticks {ticks}")


def _router_sitting_on_a_batch(cfg: CoreConfig) -> RouterCore:
    """A router whose primary took a batch of two calls at tick 1 and has not answered it."""
    router = RouterCore("g", cfg, MEMBERS)
    client = ClientCore("c")
    router.submit(client.request("g", "add", payload=1))
    router.submit(client.request("g", "add", payload=2))
    router.tick(1)
    assert [len(d.requests) for m, d in router.ready().sends if m == "g-r0"] == [2]
    return router


def test_a_router_whose_ticks_come_late_polls_its_busy_primary_busy_poll_ticks_after_the_batch() -> None:
    """docs/faults.md row 87. A loaded router ran its clock late, a few ticks at a time (measured under
    load 45: 2-30 ticks of 10 ms between two runs of the router's tick); each late tick's lateness was
    taken for a pause of the router, so only one tick per run counted toward ``busy_poll_ticks``: the
    poll went ``busy_poll_ticks`` runs after the batch (up to 1.6 s for ``busy_poll_s`` 0.05), and the
    short call's reply waited for the 1 s call after it. A tick late by less than ``heartbeat_ticks``
    (the router ran late; failure detection counts that time too) counts toward the poll."""
    router = _router_sitting_on_a_batch(CoreConfig(busy_poll_ticks=5, heartbeat_ticks=20, primary_inflight_max=1))
    assert _first_busy_poll(router, range(4, 60, 3)) == 7  # 6 ticks after the batch, not 5 runs (16)


def test_a_router_that_did_not_run_for_longer_than_a_heartbeat_does_not_count_that_time_toward_a_busy_poll() -> None:
    """Row 76's rule kept: after a real pause (more than ``heartbeat_ticks``) the primary's answer may
    be unread; the poll waits ``busy_poll_ticks`` of the router running again."""
    router = _router_sitting_on_a_batch(CoreConfig(busy_poll_ticks=5, heartbeat_ticks=20, primary_inflight_max=1))
    assert _first_busy_poll(router, range(30, 60)) == 34  # 30 - 1 - 1 excused: 1 + 5 + 28

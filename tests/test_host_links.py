"""The data plane's fault decisions (``ftactors.host.links``), as the Ray router and the simulator use them."""

from __future__ import annotations

from typing import List, Tuple

import pytest

from ftactors.core import CoreConfig
from ftactors.core.errors import ConfigError
from ftactors.core.messages import Delivered
from ftactors.host.links import LinkActions, Links, LinkSettings, LinkState, Parked, Route
from ftactors.host.router import RouterHost


def _up(rid: str = "r1", interval: int = 10, misses: int = 3, now: int = 0) -> Links:
    links = Links(LinkSettings(interval, misses))
    assert links.want_link(rid)
    links.on_up(rid, now)
    return links


def test_a_link_is_opened_once_and_routes_follow_its_state() -> None:
    links = Links()
    assert links.route("r1") == Route.RAY  # no link yet: a Ray call
    assert links.want_link("r1") and not links.want_link("r1")
    assert links.route("r1") == Route.RAY  # still connecting
    links.on_up("r1", 0)
    assert links.route("r1") == Route.WIRE
    assert links.route("r1", fits_wire=False) == Route.RAY  # holds an ObjectRef: the object store tracks it
    assert links.on_closed("r1", "reset")
    assert links.route("r1") == Route.NONE


def test_an_unreachable_port_falls_back_to_ray_calls_and_is_not_a_failure() -> None:
    links = Links()
    links.want_link("r1")
    assert links.on_unreachable("r1", "refused")  # warn once
    assert not links.on_unreachable("r1", "refused")
    assert links.state("r1") == LinkState.FALLBACK and links.route("r1") == Route.RAY
    assert not links.on_closed("r1", "whatever")  # a link it never had cannot close
    assert links.tick(1000).heartbeats == ()  # no heartbeats without a link


def test_a_closed_link_is_a_suspicion_at_once_and_only_once() -> None:
    links = _up()
    assert links.on_closed("r1", "the replica closed the connection")
    assert not links.on_closed("r1", "again")
    assert links.counts["close_suspicions"] == 1


def test_a_link_closing_while_it_opens_is_a_suspicion() -> None:
    links = Links()
    links.want_link("r1")
    assert links.on_closed("r1", "reset during the handshake")
    links.on_up("r1", 5)  # a late handshake result does not reopen it
    assert links.state("r1") == LinkState.CLOSED


def test_heartbeats_only_on_idle_links_and_suspicion_after_the_misses() -> None:
    links = _up(interval=10, misses=3)
    for now in range(1, 10):
        assert links.tick(now) == LinkActions()  # heard at 0: idle for less than an interval
    assert links.tick(10).heartbeats == ("r1",)
    # answered: the replica lives, misses reset, and traffic keeps the link from needing heartbeats
    links.on_heard("r1", 12)
    for now in range(13, 22):
        assert links.tick(now).heartbeats == ()
    beats: List[int] = []
    suspected_at = None
    for now in range(22, 80):
        acts = links.tick(now)
        beats += [now] * len(acts.heartbeats)
        if acts.suspects:
            suspected_at = now
            break
    assert beats == [22, 32, 42]  # one per interval while unanswered
    assert suspected_at == 52 == 12 + links.settings.suspicion_bound_ticks  # the third miss
    assert links.state("r1") == LinkState.CLOSED  # nothing was pending on it
    assert not links.on_closed("r1", "late close")  # suspected once


def test_answers_count_as_liveness() -> None:
    links = _up(interval=5, misses=1)
    links.on_sent("r1")
    for now in range(1, 40):
        links.on_sent("r1")
        assert not links.on_answer("r1", now)
        assert links.tick(now).heartbeats == ()


def test_a_router_that_did_not_run_excuses_its_links() -> None:
    links = _up(interval=10, misses=1)
    assert links.tick(1).suspects == ()
    acts = links.tick(500)  # the router's loop was starved for 499 ticks
    assert acts.suspects == () and acts.heartbeats == ()


def test_a_router_starved_for_no_longer_than_an_interval_does_not_count_that_time_against_a_heartbeat() -> None:
    # simulator seed 113 with starved routers and direct links: a heartbeat went out, the router got
    # no CPU for an interval, and its first tick on waking counted the answer it had not read yet as a
    # miss: both members of the group suspected at once
    links = _up(interval=8, misses=1)
    for now in range(1, 8):
        assert links.tick(now) == LinkActions()
    assert links.tick(8).heartbeats == ("r1",)
    acts = links.tick(16)  # starved for ticks 9..15: the answer (at 10) waits unread
    assert acts.suspects == () and acts.close == ()
    links.on_heard("r1", 16)  # read after the tick
    assert links.state("r1") == LinkState.UP
    # the router's running time still counts: an unanswered heartbeat is a miss an interval later
    assert links.tick(24).heartbeats == ("r1",)
    assert links.tick(31).suspects == ()
    assert links.tick(32).suspects == ("r1",)


def test_a_retiring_link_closes_once_its_pending_answers_came() -> None:
    links = _up()
    links.on_sent("r1")
    links.on_sent("r1")
    assert not links.retire("r1")
    assert links.state("r1") == LinkState.RETIRING and links.route("r1") == Route.NONE
    assert links.on_parked("r1")[0] == Parked.FETCH  # a deposed replica's late output is fetched, then fenced
    assert not links.on_answer("r1", 1)
    assert links.on_answer("r1", 2)  # drained: close it
    assert not links.on_closed("r1", "closed by the router")  # not a failure


def test_a_retiring_link_waits_for_its_answers_however_long_and_sends_no_heartbeats() -> None:
    links = _up(interval=4, misses=2)
    links.on_sent("r1")
    links.retire("r1")
    for now in range(1, 400):
        assert links.tick(now) == LinkActions()  # a hung deposed replica's late output is fenced, not lost
    assert links.on_answer("r1", 400)


def test_a_suspected_link_keeps_its_pending_answers_for_fencing() -> None:
    links = _up(interval=4, misses=1)
    links.on_sent("r1")
    acts = [links.tick(now) for now in range(1, 9)]
    assert [a.suspects for a in acts if a.suspects] == [("r1",)] and not any(a.close for a in acts)
    assert links.state("r1") == LinkState.RETIRING and links.route("r1") == Route.NONE
    assert not links.retire("r1")  # the core retires it: still waiting for its output
    assert links.on_answer("r1", 50)  # the resumed replica answered: closed now


def test_a_retired_idle_link_closes_at_once() -> None:
    links = _up()
    assert links.retire("r1")
    assert not Links().retire("never-linked")


def test_a_parked_answer_on_a_closed_link_is_not_fetched() -> None:
    links = _up()
    links.on_closed("r1", "gone")
    assert links.on_parked("r1") == (Parked.DROP, 0)


def test_answers_after_a_parked_one_wait_for_its_fetch_and_go_in_link_order() -> None:
    """Seed 456 of the simulator: the primary's answer holding positions 2-3 was parked; its next
    answer (position 4, a reply) reached the core first and was released; the primary crashed before
    the fetch, so positions 2-3 were never known and the next primary gave position 4 to another call
    (I2). A replica's answers now reach the core in the order they came on its link."""
    links = _up()
    assert links.on_wire_answer("r1", "a1") == ("a1",)
    decision, t2 = links.on_parked("r1")
    assert decision == Parked.FETCH
    assert links.on_wire_answer("r1", "a3") == ()  # held behind the parked a2
    _, t4 = links.on_parked("r1")
    assert links.on_wire_answer("r1", "a5") == ()
    assert links.on_fetched("r1", t4, "a4") == ()  # a2 still missing
    assert links.on_fetched("r1", t2, "a2") == ("a2", "a3", "a4", "a5")
    assert links.on_wire_answer("r1", "a6") == ("a6",)


def test_a_lost_parked_fetch_drops_what_came_after_it() -> None:
    links = _up()
    _, t1 = links.on_parked("r1")
    assert links.on_wire_answer("r1", "a2") == ()
    links.on_fetch_lost("r1", t1)  # the replica died: a2 never reaches the core (as if it never came)
    assert links.counts["answers_dropped"] == 1
    assert links.on_wire_answer("r1", "a3") == ("a3",)


@pytest.mark.parametrize("kw", [dict(heartbeat_interval_ticks=0), dict(heartbeat_misses_max=0),
                                dict(links_max=0), dict(heartbeat_misses_max=True)])
def test_bad_link_settings_raise_a_config_error(kw: dict) -> None:
    with pytest.raises(ConfigError):
        LinkSettings(**kw)


class _IO:
    """The RouterIO calls the link decisions lead to."""

    def __init__(self) -> None:
        self.now = 0
        self.calls: List[Tuple[str, str]] = []

    def ticks(self) -> int:
        return self.now

    def wall_s(self) -> float:
        return self.now / 100

    def heartbeat(self, rid: str) -> None:
        self.calls.append(("heartbeat", rid))

    def close_link(self, rid: str) -> None:
        self.calls.append(("close", rid))

    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: self.calls.append((name, str(a[0]) if a else ""))


def test_the_router_host_fails_a_replica_whose_link_closed_or_missed_its_heartbeats() -> None:
    io = _IO()
    host = RouterHost("g", CoreConfig(failure_timeout_ticks=1000, heartbeat_ticks=500), io, "e1", ("a", "b", "c"),
                      link_settings=LinkSettings(heartbeat_interval_ticks=5, heartbeat_misses_max=2))
    for rid in ("a", "b", "c"):
        host.links.want_link(rid)
        host.on_link_up(rid)
    host.on_link_closed("c", "reset")  # a crash: at once
    core = host.core
    assert core is not None and "c" not in core.members
    suspected = None
    for now in range(1, 40):
        io.now = now
        host.on_link_heard("b")  # b answers its heartbeats, a does not (hung)
        host.tick()
        if "a" not in core.members:
            suspected = now
            break
    assert suspected == 15  # (misses + 1) * interval after it was last heard
    assert ("close", "a") in io.calls and "b" in core.members


@pytest.mark.parametrize("parked_outcome", ["fetched", "lost"])
def test_a_primary_answer_by_ray_call_waits_for_a_parked_answer_that_came_before_it(parked_outcome: str) -> None:
    """Simulator seed 315 with a router crash while a backup is paused (``p_router_crash_paused``):
    the primary's answer to a Deliver sent by a Ray call (the link's fallback: a message holding an
    object reference) reached the core ahead of its earlier answer parked on the link, so the router
    released and applied them out of order (``I4: store-r2 executes c0#12 at 36 ...``). A member's
    Ray-call answer now waits, like its link answers, until its earlier parked answers were fetched
    (then it follows them) or known lost (then it is dropped with them: the replica is failed)."""
    io = _IO()
    host = RouterHost("g", CoreConfig(failure_timeout_ticks=1000, heartbeat_ticks=500), io, "e1", ("a", "b", "c"))
    core = host.core
    assert core is not None
    seen: List[Delivered] = []
    core.on_delivered = seen.append  # type: ignore[method-assign]
    host.links.want_link("a")
    host.on_link_up("a")
    decision, ticket = host.on_link_parked("a")
    host.on_link_answer("a")
    assert decision == Parked.FETCH
    by_ray = Delivered("a", core.view, acked_position=2)
    host.on_delivered(by_ray)  # its Deliver went after the parked one's: it waits for it
    assert seen == []
    other = Delivered("b", core.view, acked_position=2)
    host.on_delivered(other)  # another member's answers do not wait for a's
    assert seen == [other]
    parked = Delivered("a", core.view, acked_position=1)
    if parked_outcome == "fetched":
        host.on_parked_fetched("a", ticket, parked)
        assert seen == [other, parked, by_ray]
    else:
        host.on_parked_lost("a", ticket)
        assert seen == [other]
    assert host.links.counts["ray_answers_held"] == 1
    later = Delivered("a", core.view, acked_position=3)
    host.on_delivered(later)  # nothing parked any more: at once
    assert seen[-1] == later


def test_a_quiet_member_whose_link_is_up_is_pinged_on_its_link_not_with_a_ray_call() -> None:
    """An idle group: the core pings each member quiet for ``heartbeat_ticks``. In Ray a ping was an
    actor call (about 1.3 ms of the router's CPU each, four a second per member: with the ticks,
    most of an idle router's 3.8% CPU), though a member with a direct link answers a heartbeat on
    it for a few microseconds, and that answer is what the core needs (``on_link_heard``). A member
    without a link is still pinged with a Ray call."""
    io = _IO()
    host = RouterHost("g", CoreConfig(failure_timeout_ticks=1000, heartbeat_ticks=10), io, "e1", ("a", "b", "c"),
                      link_settings=LinkSettings(heartbeat_interval_ticks=500, heartbeat_misses_max=2))
    for rid in ("a", "b"):
        host.links.want_link(rid)
        host.on_link_up(rid)
    for now in range(1, 12):
        io.now = now
        host.tick()
    assert sorted(c for c in io.calls if c[0] in ("heartbeat", "ping")) == [("heartbeat", "a"), ("heartbeat", "b"),
                                                                          ("ping", "c")]
    io.calls.clear()
    host.on_link_heard("a")  # a's answer: a lives for the core; b is silent
    core = host.core
    assert core is not None
    for now in range(12, 1200):
        io.now = now
        host.on_link_heard("a")
        host.on_pong("c")
        host.tick()
        if "b" not in core.members:
            break
    assert "b" not in core.members and {"a", "c"} <= set(core.members)  # a silent link is still failed

"""A group's end in the simulator (docs/faults.md rows 86 and 89): a group collected with its router
(``RouterHost.end`` names the replicas Ray stops), a router gone for good (the replicas' orphan rule,
``OrphanWatch``, stops them), and a router restarting slower than the orphan timeout (no replica exits).
Invariants I13 (no replica of an ended group is leaked) and I14 (no orphan exit while the router exists),
and plants that show each can fail."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import List, Optional, Tuple

import pytest

from ftactors.host.replica import OrphanWatch
from ftactors.host.router import RouterHost
from ftactors.testing import InvariantViolation, SimOptions, Simulator, draw_options
from ftactors.testing import cluster
from ftactors.testing.cluster import KILL_TICKS_MAX, SPAWN_TICKS_MAX


def ended_options(**kw: object) -> SimOptions:
    """No random faults (the test injects them); the replicas run the orphan rule."""
    base = SimOptions(seed=1, replicas=3, clients=2, ops_per_client=6, p_crash=0, p_pause=0, p_router_crash=0,
                      p_drop=0, p_dup=0, p_resources=0, safety_ticks=100, orphan_timeout_ticks=10,
                      stale_lookup_ticks=5)
    return replace(base, **kw)  # type: ignore[arg-type]


def answered(sim: Simulator) -> Simulator:
    """Run until every call is answered and the group is quiet (the final checks pass)."""
    sim.run()
    assert len(sim.history) == 12 and not sim.gone
    return sim


def test_a_group_collected_while_a_replacement_is_spawning_stops_the_replacement_too() -> None:
    sim = answered(Simulator(ended_options()))
    router = sim.routers["store"]
    assert sim.crash_replica("store", "store-r2")  # a backup dies: the router asks for a replacement
    sim.run_until(lambda: router.core is not None and router.core.spawning == {"store-r3"}, 100)
    assert "store-r3" not in sim.replicas["store"]  # Ray is still creating it: it has no name yet
    ended_at = sim.now
    sim.end_group("store", "collect")  # the last handle dropped: Ray collects the router
    sim.run_until(lambda: "store-r3" in sim.replicas["store"], SPAWN_TICKS_MAX + 1)
    r3 = sim.replicas["store"]["store-r3"]  # Ray started it all the same; nobody will ever call it
    assert sim.counts["spawned_after_end"] == 1 and r3.alive
    sim.run_until(lambda: not sim.replicas["store"]["store-r0"].alive, KILL_TICKS_MAX)  # killed with the group
    sim.run_until_ended()  # I13
    assert not r3.alive and sim.counts["orphan_exits"] == 1  # its orphan watch: the router's name is gone
    assert r3.orphan is not None and r3.orphan.asked >= 1
    assert sim.now - ended_at <= sim.end_ticks_max


def test_the_replacement_leaked_before_row_89_its_watch_waiting_for_a_first_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "SPAWNED_WATCH_FROM_START", False)  # the Ray replica before row 89
    with pytest.raises(InvariantViolation, match=r"I13: \['store-r3'\] still run 27 ticks after their group "
                                                 r"ended \(ended; bound 26\)"):
        test_a_group_collected_while_a_replacement_is_spawning_stops_the_replacement_too()


def test_a_replacement_started_just_before_the_group_is_collected_is_named_by_the_router_host() -> None:
    sim = answered(Simulator(ended_options()))
    router = sim.routers["store"]
    assert sim.crash_replica("store", "store-r2")
    sim.run_until(lambda: router.core is not None and "store-r3" in router.core.joining, 100)
    r3 = sim.replicas["store"]["store-r3"]
    assert sim.now - r3.born < sim.options.stale_lookup_ticks  # the control plane does not list it yet
    sim.end_group("store", "collect")  # the router host names it (joining): Ray stops it by name
    sim.run_until(lambda: not r3.alive, KILL_TICKS_MAX)
    assert r3.orphan is not None and r3.orphan.asked == 0 and sim.counts["orphan_exits"] == 0
    sim.run_until_ended()


def test_a_router_gone_for_good_leaves_its_replicas_to_their_orphan_watch() -> None:
    sim = answered(Simulator(ended_options()))
    gone_at = sim.now
    sim.end_group("store", "gone")  # its process killed for good: no end, no restart
    sim.run_until_ended()
    assert sim.counts["orphan_exits"] == 3
    # each asked once unheard orphan_timeout_ticks, and exited once the name's lookup was no longer stale
    assert sim.now >= gone_at + sim.options.stale_lookup_ticks
    assert sim.now - gone_at <= sim.end_ticks_max


class _SlowRestart(random.Random):
    """The router's restart delay: 40 ticks (``Simulator._crash_router`` draws it)."""

    def randint(self, a: int, b: int) -> int:
        return 40


def test_a_replica_whose_router_restarts_slower_than_the_orphan_timeout_does_not_exit() -> None:
    sim = Simulator(ended_options(orphan_timeout_ticks=2))
    sim.run_until(lambda: len(sim.history) >= 3, 200)
    router = sim.routers["store"]
    assert sim._crash_router("store", _SlowRestart())
    lookups = sim.counts["orphan_lookups"]
    sim.run_until(lambda: router.host is not None, 41)  # 40 ticks down: each replica asks, many times
    assert sim.counts["orphan_lookups"] - lookups >= 3 * 10
    assert all(h.alive for h in sim.replicas["store"].values()) and sim.counts["orphan_exits"] == 0
    result = sim.finish()  # the rebuilt router goes on with every replica
    assert result.ops == 12 and sim.counts["router_rebuilds"] == 1


def test_a_replica_reading_an_unanswered_lookup_as_gone_is_caught_while_its_router_restarts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_answer_is_gone(self: OrphanWatch, now: int, router_exists: Optional[bool]) -> bool:
        self.asked += 1
        if router_exists:
            self.heard(now)
        return not router_exists

    monkeypatch.setattr(OrphanWatch, "decide", no_answer_is_gone)
    with pytest.raises(InvariantViolation, match=r"I14: store-r\d exited by the orphan rule at tick \d+ while its "
                                                 r"router exists \(restarting, incarnation 2\)"):
        test_a_replica_whose_router_restarts_slower_than_the_orphan_timeout_does_not_exit()


def _failures(seeds: range) -> List[Tuple[int, str]]:
    """Run the seeds that draw a group's end; the failures."""
    out = []
    for seed in seeds:
        opts = draw_options(seed)
        if not opts.group_end:
            continue
        try:
            Simulator(opts).run()
        except InvariantViolation as exc:
            out.append((seed, str(exc)))
    return out


def test_an_end_naming_only_the_members_and_the_listed_names_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def members_and_names(self: RouterHost, held: object = (), named: object = ()) -> List[str]:
        self.closed = True
        members = list(self.core.members) if self.core is not None else []
        return list(dict.fromkeys(members + sorted(named)))  # type: ignore[call-overload]

    monkeypatch.setattr(RouterHost, "end", members_and_names)
    failures = _failures(range(20, 30))
    assert failures and failures[0][1].startswith("I13: store's end at tick"), failures


def test_an_orphan_watch_that_never_asks_the_control_plane_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def silence_alone(self: OrphanWatch, now: int, router_exists: Optional[bool]) -> bool:
        self.asked += 1
        return True

    monkeypatch.setattr(OrphanWatch, "decide", silence_alone)
    failures = _failures(range(0, 10))
    assert failures and failures[0][1].startswith("I14: "), failures

"""A group's end, decided by the hosts (docs/faults.md rows 86 and 89): the router host's ``end`` (which
replicas to stop when the group is collected with its router) and the replica host's orphan rule
(``OrphanWatch``: a replica exits when its router is gone for good, never while it exists). The Ray
shells (``_RouterLoop.end``, ``_Replica._orphan_watch``) and the simulator run these.
"""

from __future__ import annotations

from typing import List, Optional

import pytest

from ftactors.core import ClientCore, CoreConfig, Phase
from ftactors.host.replica import OrphanWatch
from ftactors.host.router import RouterHost
from tests.test_host_router import MEMBERS, FakeIO, Replicas, run
from tests.test_host_spares import Processes, drive
from tests.test_host_spares import setup as setup_spares

# ------------------------------------------------------------------ the router host's end


def test_a_group_ended_with_a_replacement_spawning_stops_the_replacement_too() -> None:
    cfg = CoreConfig(min_replicas=3)
    io = FakeIO()
    host, reps = RouterHost("g", cfg, io, "e1", MEMBERS, counts_every_ticks=50), Replicas(cfg)
    run(host, io, reps, 5)
    reps.alive.discard("g-r1")  # a backup dies: the core asks for a replacement
    host.submit(ClientCore("c").request("g", "add", payload=1), waiter="caller")
    run(host, io, reps, 30)
    core = host.core
    assert core is not None and core.phase == Phase.NORMAL and core.spawning == {"g-r3"}
    assert io.calls("spawn") == [("spawn", "g-r3")]  # asked for; not started yet (Ray still creates it)
    # the group's last handle is dropped: Ray collects the router, which stops every replica
    stop = host.end(held=["g-r0", "g-r2"], named=["g-r2", "g-r0", "g-r1"])
    assert stop == ["g-r0", "g-r2", "g-r3", "g-r1"]  # held, the spawning one, then one known by name only
    io.log.clear()
    run(host, io, reps, 5)
    assert io.calls("deliver") == [] and io.calls("spawn") == []  # ended: nothing more is sent or started


def test_a_group_ended_stops_its_joining_replica_and_its_spares() -> None:
    host, io, reps = setup_spares(spares=2)
    drive(host, io, reps, 30)
    assert list(host.spares.ready) == ["g-r3", "g-r4"]
    reps.alive.discard("g-r2")  # a member dies; a spare takes its place, the pool starts another
    drive(host, io, reps, 3)
    core = host.core
    assert core is not None
    joining, starting = set(core.joining), set(host.spares.starting)
    stop = host.end()
    assert set(stop) >= set(core.members) | joining | starting | set(host.spares.ready)
    assert set(stop) >= {"g-r0", "g-r1", "g-r3", "g-r4"} and len(stop) == len(set(stop))


def test_a_router_ended_before_it_started_stops_the_replicas_it_knows_by_name() -> None:
    io = FakeIO()
    host = RouterHost("g", CoreConfig(), io, "e2", None)  # restarted, not rebuilt yet
    assert host.end(held=["g-r1"], named=["g-r4", "g-r1"]) == ["g-r1", "g-r4"]


def test_an_ended_spare_pool_starts_no_spare() -> None:
    host, io, _ = setup_spares(spares=1)
    host.end()
    reps = Processes(CoreConfig(min_replicas=3))
    drive(host, io, reps, 30)
    assert io.calls("spawn") == []


# ------------------------------------------------------------------ the replica host's orphan rule


def _watch_run(watch: OrphanWatch, answers: List[Optional[bool]], until: int,
               heard_at: tuple = ()) -> Optional[int]:
    """Check every tick up to ``until``; the control plane answers from ``answers`` in turn (the last
    one repeats). Returns the tick the replica exits at, or None."""
    for now in range(1, until + 1):
        if now in heard_at:
            watch.heard(now)
        if watch.due(now):
            answer = answers[min(watch.asked, len(answers) - 1)]
            if watch.decide(now, answer):
                return now
    return None


def test_a_replica_whose_router_is_gone_exits_once_unheard_for_the_timeout() -> None:
    watch = OrphanWatch(timeout_ticks=10, started_tick=0)
    assert _watch_run(watch, [False], 100, heard_at=(4,)) == 14  # heard at 4, asked at 14: gone


def test_a_replica_whose_router_restarts_slower_than_the_timeout_does_not_exit() -> None:
    watch = OrphanWatch(timeout_ticks=10, started_tick=0)
    # the router crashed at 0 and takes 35 ticks to restart: its name resolves throughout, once with no
    # answer (the control plane unreachable): the replica asks again, then counts again from each "exists"
    assert _watch_run(watch, [True, None, True, True], 35) is None
    assert watch.asked == 4 and watch.heard_tick == 31
    assert _watch_run(watch, [True], 35, heard_at=(35,)) is None  # the new incarnation called


def test_a_replica_the_router_never_called_counts_from_its_start() -> None:
    watch = OrphanWatch(timeout_ticks=10, started_tick=7)  # created after its router ended
    assert not watch.due(16) and watch.due(17)
    assert watch.decide(17, False)


def test_an_orphan_watch_needs_a_positive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_ticks"):
        OrphanWatch(timeout_ticks=0, started_tick=0)

"""Warm spares (``spares=``): the router host keeps replica processes started but not members, and a
failed member's replacement takes one instead of starting a process. Transcripts over the fake I/O
of ``test_host_router``; the spare pool's own decisions in ``Spares``."""

from __future__ import annotations

from typing import Optional, Tuple

import pytest

from ftactors.core import ClientCore, CoreConfig, Phase, ReplicaCore
from ftactors.host.router import RouterHost
from ftactors.host.spares import SPARES_MAX, SpareSettings, Spares
from tests.test_host_router import MEMBERS, FakeIO, Replicas, run


class Processes(Replicas):
    """The replicas of ``test_host_router`` plus the processes the host starts: each spawn is up
    (constructed, not a member) when :meth:`start` is called, and joins by state transfer."""

    def __init__(self, cfg: CoreConfig) -> None:
        super().__init__(cfg)
        self.cfg = cfg
        self.started = 0  # processes started after the group's creation

    def start(self, host: RouterHost, io: FakeIO) -> None:
        """Every process the host asked for (``spawn``) and not started yet is up now."""
        for _, rid in io.calls("spawn"):
            if rid not in self.cores:
                self.cores[rid] = ReplicaCore("g", rid, self.cfg, "reception", None)
                self.state[rid] = 0
                self.alive.add(rid)
                self.started += 1
                host.on_spawned(rid)


def setup(spares: int = 1, respawn_ticks: int = 10,
          cfg: Optional[CoreConfig] = None) -> Tuple[RouterHost, FakeIO, Processes]:
    cfg = cfg or CoreConfig(min_replicas=3)
    io = FakeIO()
    host = RouterHost("g", cfg, io, "e1", MEMBERS, counts_every_ticks=50,
                      spare_settings=SpareSettings(spares, respawn_ticks, heartbeat_ticks=4, timeout_ticks=12))
    return host, io, Processes(cfg)


def drive(host: RouterHost, io: FakeIO, reps: Processes, ticks: int) -> None:
    for _ in range(ticks):
        run(host, io, reps, 1)
        reps.start(host, io)


def test_a_group_with_spares_starts_them_once_and_they_get_pings_but_no_deliver() -> None:
    host, io, reps = setup(spares=2)
    drive(host, io, reps, 30)
    assert io.calls("spawn") == [("spawn", "g-r3"), ("spawn", "g-r4")]
    assert list(host.spares.ready) == ["g-r3", "g-r4"]
    core = host.core
    assert core is not None and core.members == list(MEMBERS) and not core.joining
    assert not [c for c in io.calls("deliver") if c[1] in ("g-r3", "g-r4")]  # not members: no Deliver
    assert ("ping", "g-r3") in io.log  # pinged (its death is noticed; its orphan watch is fed)


def test_a_failed_primary_is_replaced_by_the_spare_without_starting_a_process() -> None:
    host, io, reps = setup(spares=1, respawn_ticks=30)
    drive(host, io, reps, 20)
    assert list(host.spares.ready) == ["g-r3"] and reps.started == 1
    client = ClientCore("c")
    for k in range(3):
        host.submit(client.request("g", "add", payload=k + 1), waiter=k)
        drive(host, io, reps, 3)
    spawned_before = len(io.calls("spawn"))
    reps.alive.discard("g-r0")  # the primary dies
    host.on_failure("g-r0")
    drive(host, io, reps, 20)
    core = host.core
    assert core is not None and core.phase == Phase.NORMAL
    # the spare joined by state transfer; no process was started for the replacement
    assert core.members == ["g-r1", "g-r2", "g-r3"]
    assert len(io.calls("spawn")) == spawned_before
    assert host.spares.counts["promoted"] == 1 and not host.spares.ready
    host.submit(client.request("g", "add", payload=10), waiter="after")
    drive(host, io, reps, 5)
    assert io.answered["after"].outcome.value == 16
    assert reps.state["g-r3"] == 16  # the spare holds the group's state now
    # the next spare starts respawn_ticks after the promotion, not during the failover
    drive(host, io, reps, 30)
    assert io.calls("spawn")[spawned_before:] == [("spawn", "g-r5")]
    assert list(host.spares.ready) == ["g-r5"]


def test_without_a_ready_spare_the_replacement_is_started_as_before() -> None:
    host, io, reps = setup(spares=0)
    drive(host, io, reps, 10)
    assert io.calls("spawn") == []
    reps.alive.discard("g-r2")
    host.on_failure("g-r2")
    drive(host, io, reps, 20)
    assert io.calls("spawn") == [("spawn", "g-r3")]
    core = host.core
    assert core is not None and core.members == ["g-r0", "g-r1", "g-r3"]


def test_a_spare_that_dies_is_replaced_after_the_delay_and_the_group_is_untouched() -> None:
    host, io, reps = setup(spares=1, respawn_ticks=8)
    drive(host, io, reps, 10)
    core = host.core
    assert core is not None
    view = core.view
    reps.alive.discard("g-r3")  # the spare's process dies: its next ping fails
    drive(host, io, reps, 6)
    assert host.spares.counts["lost"] == 1 and ("retire", "g-r3") in io.log
    assert core.view == view and core.members == list(MEMBERS) and core.counts["failovers"] == 0
    spawned = [c[1] for c in io.calls("spawn")]
    assert spawned == ["g-r3"]  # not at once: respawn_ticks later
    drive(host, io, reps, 12)
    assert [c[1] for c in io.calls("spawn")] == ["g-r3", "g-r4"] and list(host.spares.ready) == ["g-r4"]


def test_a_silent_spare_is_stopped_and_replaced() -> None:
    host, io, reps = setup(spares=1, respawn_ticks=0)
    drive(host, io, reps, 5)
    assert list(host.spares.ready) == ["g-r3"]
    # hung: pings go unanswered (neither pong nor failure)
    for _ in range(20):
        io.now += 1
        host.tick()
        io.pinged = [r for r in io.pinged if r != "g-r3"]
        reps.answer(host, io)
        host.process()
        reps.start(host, io)
    assert ("retire", "g-r3") in io.log and host.spares.counts["lost"] == 1
    assert "g-r4" in host.spares.ready


def test_a_spare_that_fails_to_start_is_retried_after_the_delay() -> None:
    host, io, reps = setup(spares=1, respawn_ticks=5)
    run(host, io, reps, 1)
    assert io.calls("spawn") == [("spawn", "g-r3")]
    host.on_spawn_failed("g-r3")
    core = host.core
    assert core is not None and core.phase == Phase.NORMAL and not core.spawning
    run(host, io, reps, 3)
    assert io.calls("spawn") == [("spawn", "g-r3")]
    run(host, io, reps, 3)
    assert io.calls("spawn") == [("spawn", "g-r3"), ("spawn", "g-r4")]


def test_no_spare_starts_while_a_recovery_or_a_join_runs() -> None:
    host, io, reps = setup(spares=1, respawn_ticks=0, cfg=CoreConfig(min_replicas=3, query_on_failover=True))
    reps.alive.discard("g-r0")
    host.on_failure("g-r0")  # before the first tick: the pool has not started its spare yet
    host.process()
    core = host.core
    assert core is not None and core.phase == Phase.RECOVERING
    assert io.calls("spawn") == []
    drive(host, io, reps, 30)
    # the replacement was started first (no spare was ready), the spare once the join was over
    assert [c[1] for c in io.calls("spawn")] == ["g-r3", "g-r4"]
    assert core.members == ["g-r1", "g-r2", "g-r3"] and list(host.spares.ready) == ["g-r4"]


def test_spare_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="spares"):
        SpareSettings(spares=-1)
    with pytest.raises(ValueError, match="spares"):
        SpareSettings(spares=SPARES_MAX + 1)
    with pytest.raises(ValueError, match="respawn_ticks"):
        SpareSettings(spares=1, respawn_ticks=-1)
    with pytest.raises(ValueError, match="heartbeat_ticks"):
        SpareSettings(spares=1, heartbeat_ticks=5, timeout_ticks=5)


def test_the_pool_hands_out_the_oldest_spare_and_refuses_what_is_not_its_own() -> None:
    pool = Spares(SpareSettings(spares=2, respawn_ticks=7))
    assert pool.missing(0) == 2
    pool.starts("a")
    pool.starts("b")
    assert pool.missing(0) == 0
    assert not pool.started("x", 1) and not pool.heard("x", 1) and not pool.failed("x", 1)
    assert pool.started("b", 1) and pool.started("a", 2)
    assert pool.take(3) == "b" and pool.missing(5) == 0 and pool.missing(10) == 1
    assert pool.take(4) == "a" and pool.take(4) is None


def test_the_spares_setting_is_validated_and_converted_to_ticks() -> None:
    from ftactors.core.errors import ConfigError
    from ftactors.runtime.settings import load_settings

    assert load_settings().spare_settings().spares == 0  # off by default
    s = load_settings(spares=2, spare_respawn_delay_s=0.5, heartbeat_s=0.25, failure_timeout_s=2.0)
    assert s.spare_settings() == SpareSettings(spares=2, respawn_ticks=50, heartbeat_ticks=25, timeout_ticks=200)
    assert load_settings(spares=1, spare_respawn_delay_s=0).spare_settings().respawn_ticks == 0
    with pytest.raises(ConfigError, match="spares"):
        load_settings(spares=-1)
    with pytest.raises(ConfigError, match="spares"):
        load_settings(spares=SPARES_MAX + 1)
    with pytest.raises(ConfigError, match="spare_respawn_delay_s"):
        load_settings(spares=1, spare_respawn_delay_s=-1.0)

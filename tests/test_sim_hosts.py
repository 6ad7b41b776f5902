"""The simulator runs the replica host's own turn-taking (``ftactors.host.ReplicaTurns``), over a
router->replica link that reorders Delivers as Ray does: planting the Ray host's old rule makes
seeds fail, and the same seeds pass with the rule the runtime uses."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import pytest

from ftactors.host import ReplicaTurns, Verdict
from ftactors.testing import Simulator, draw_options
from ftactors.testing.hosts import InvariantViolation


def _old_arrive(self: ReplicaTurns, epoch: str, seq: int) -> Verdict:
    """The Ray replica host before the fix: a Deliver of a router incarnation it has not seen
    yet counted only if it was that incarnation's first (seq 1); any other was dropped."""
    if epoch != self.epoch:
        if seq != 1:
            return Verdict.STALE
        self.epoch, self.next_seq = epoch, 1
    if seq < self.next_seq:
        return Verdict.STALE
    return Verdict.NOW if seq == self.next_seq else Verdict.LATER


def _first_failing_seed(seeds: range) -> Optional[int]:
    for seed in seeds:
        opts = replace(draw_options(seed), p_reorder=0.3, p_router_crash=0.015, faults=True)
        try:
            Simulator(opts).run()
        except InvariantViolation:
            return seed
    return None


def test_the_old_rule_for_a_new_router_s_first_deliver_fails_seeds_and_the_new_rule_passes(monkeypatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(ReplicaTurns, "arrive", _old_arrive)
        seed = _first_failing_seed(range(400))
    assert seed is not None, "the simulator did not see a new router's Delivers dropped as stale"
    opts = replace(draw_options(seed), p_reorder=0.3, p_router_crash=0.015, faults=True)
    result = Simulator(opts).run()
    assert result.ops > 0
    assert result.counts["delivers_reordered"] > 0


@pytest.mark.parametrize("seed", range(40))
def test_reordered_delivers_and_router_restarts_keep_every_invariant(seed: int) -> None:
    opts = replace(draw_options(seed), p_reorder=0.3, p_router_crash=0.01, faults=True)
    Simulator(opts).run()


def test_the_simulator_runs_the_very_host_classes_the_ray_actors_run() -> None:
    """The simulator's router and replicas are the shared hosts (``ftactors.host``) over simulated
    I/O, not copies of their loops: a crash replaces the router host, the restart rebuilds one."""
    from ftactors.host import ReplicaHost as SharedReplicaHost
    from ftactors.host import RouterHost as SharedRouterHost

    sim = Simulator(replace(draw_options(3), faults=False))
    router = sim.routers["store"]
    assert type(router.host) is SharedRouterHost
    assert all(type(h.loop) is SharedReplicaHost for h in sim.replicas["store"].values())
    for _ in range(30):
        sim.step()
    before = router.host

    def step_until(cond) -> None:
        for _ in range(500):
            if cond():
                return
            sim.step()
        raise AssertionError("not within 500 ticks")

    step_until(lambda: sim.crash_router("store"))
    assert router.host is None
    step_until(lambda: router.host is not None)
    assert router.host is not before and router.host.epoch == "0000000002"
    step_until(lambda: sim.stable("store"))  # the rebuilt host recovers and serves
    assert router.core is not None and router.core.view > 1

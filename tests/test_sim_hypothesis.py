"""Hypothesis drives the simulator: operations, steps and faults in any order; invariants after each."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ftactors.core import SCHEDULERS
from ftactors.testing import SimOptions, Simulator
from ftactors.testing.options import STYLES

GROUPS = st.sampled_from(["store", "front"])


class ReplicatedSystem(RuleBasedStateMachine):
    """A nested (front -> store) system; Hypothesis picks operations, faults and timing."""

    sim: Simulator

    @initialize(seed=st.integers(0, 2**32 - 1), style=st.sampled_from(STYLES),
                scheduling=st.sampled_from(sorted(SCHEDULERS)), replicas=st.integers(2, 4))
    def build(self, seed: int, style: str, scheduling: str, replicas: int) -> None:
        opts = SimOptions(seed=seed, style=style, scheduling=scheduling, replicas=replicas, model="kv",
                          nested=True, clients=2, ops_per_client=0, p_crash=0, p_pause=0, p_router_crash=0,
                          p_drop=0.05, p_dup=0.05, safety_ticks=10**6)
        self.sim = Simulator(opts)

    @rule(client=st.sampled_from(["c0", "c1"]), group=GROUPS, key=st.sampled_from(["x", "y"]),
          value=st.integers(0, 9), read=st.booleans())
    def operation(self, client: str, group: str, key: str, value: int, read: bool) -> None:
        method, args = ("get", (key,)) if read else ("put", (key, value))
        if group == "front":
            method, args = "fwd", (method, args)
        self.sim.add_operation(client, group, method, args)

    @rule(ticks=st.integers(1, 25))
    def run_for(self, ticks: int) -> None:
        for _ in range(ticks):
            self.sim.step()

    @rule(group=GROUPS, rank=st.integers(0, 4))
    def crash_replica(self, group: str, rank: int) -> None:
        core = self.sim.routers[group].core
        if core is not None and core.members:
            self.sim.crash_replica(group, core.members[rank % len(core.members)])

    @rule(group=GROUPS, ticks=st.integers(1, 60))
    def pause_primary(self, group: str, ticks: int) -> None:
        core = self.sim.routers[group].core
        if core is not None and core.members:
            self.sim.pause_replica(group, core.members[0], ticks=ticks)

    @rule(group=GROUPS)
    def crash_router(self, group: str) -> None:
        self.sim.crash_router(group)

    @invariant()
    def agreement(self) -> None:
        """I1, I4 on every group after every rule (``step`` checks only the groups that executed)."""
        self.sim.checker.check_all()

    def teardown(self) -> None:
        if hasattr(self, "sim"):
            self.sim.finish()  # liveness phase and every final invariant


TestReplicatedSystem = ReplicatedSystem.TestCase
TestReplicatedSystem.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])

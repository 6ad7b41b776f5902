"""Integration (real Ray): ``replies_wait_for_backup`` (docs/faults.md, row 65): an acknowledged call survives
its primary's SIGKILL followed at once by its router's, before the new primary replayed the order."""

from __future__ import annotations

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import converged, wait_for
from tests.test_ray_failover import Counter, Load, check_exactly_once

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_a_primary_then_router_sigkill_under_load_lose_nothing_with_replies_wait_for_backup(ray_local, style):
    h = ftactors.replicated(replicas=3, style=style, checkpoint_every=20,
                            replies_wait_for_backup=True)(Counter).remote()
    try:
        with Load(h) as load:
            load.wait_calls(50)
            old = chaos.kill_replica(h, "primary")
            old_pid = chaos.kill_router(h)  # at once: the failover has not even started
            load.wait_calls(50)
            assert chaos.router_pid(h) != old_pid
            assert ftactors.describe(h).primary.replica_id != old.replica_id
        check_exactly_once(h, load)  # every acknowledged call took effect once, at its reply's position
        ray.get(h.add.remote("final"))
        wait_for(lambda: converged(h, 3), timeout_s=90, what="three equal replicas after both kills")
    finally:
        ftactors.shutdown(h)

"""Warm spares (``spares=1``) on Ray: a killed primary's replacement is the spare's process, already
started, so no worker process starts during the failover; a spare's death does not touch the group;
spares stop with ``ftactors.shutdown`` and exit when their router is gone."""

from __future__ import annotations

import os
import signal

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import converged, wait_for
from tests.test_ray_failover import Counter, Load, check_exactly_once

pytestmark = pytest.mark.ray


def _spares(h) -> dict:
    return ftactors.describe(h).spares


def _alive(name: str, ns: str) -> bool:
    try:
        ray.get_actor(name, namespace=ns)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_a_killed_primary_is_replaced_by_the_warm_spare_process(ray_local, style):
    h = ftactors.replicated(replicas=3, style=style, checkpoint_every=20, spares=1,
                            spare_respawn_delay_s=1.0)(Counter).remote()
    try:
        ray.get(h.add.remote("first"))
        spares = wait_for(lambda: _spares(h), timeout_s=60, what="a warm spare ready")
        (spare, spare_pid), = spares.items()
        members = [r.replica_id for r in ftactors.describe(h).replicas]
        assert spare not in members and spare_pid > 0
        with Load(h) as load:
            load.wait_calls(50)
            old = chaos.kill_replica(h, "primary")
            load.wait_calls(100)
        check_exactly_once(h, load)
        wait_for(lambda: converged(h, 3), timeout_s=60, what="back to 3 equal replicas")
        info = ftactors.describe(h)
        replicas = {r.replica_id: r.pid for r in info.replicas}
        assert old.replica_id not in replicas
        # the replacement is the spare, in the process it had before the kill: no new worker started
        assert set(replicas) - set(members) == {spare}
        assert replicas[spare] == spare_pid
        assert info.counts["spare_promoted"] == 1
        state = ray.get(h.read.remote())
        assert state["tokens"][0] == "first" and state["n"] == len(state["tokens"])
        # a new spare starts after the respawn delay
        again = wait_for(lambda: _spares(h), timeout_s=60, what="a new spare")
        assert spare not in again and not set(again) & set(replicas)
    finally:
        ftactors.shutdown(h)


def test_a_dead_spare_is_replaced_without_touching_the_group_and_shutdown_stops_spares(ray_local):
    from ftactors.runtime.api import group_namespace
    from ftactors.runtime.replica_actor import replica_actor_name

    h = ftactors.replicated(replicas=2, spares=1, spare_respawn_delay_s=0.5)(Counter).remote()
    ns = group_namespace()
    try:
        ray.get(h.add.remote("a"))
        (spare, pid), = wait_for(lambda: _spares(h), timeout_s=60, what="a warm spare ready").items()
        before = ftactors.describe(h)
        os.kill(pid, signal.SIGKILL)
        new = wait_for(lambda: {r: p for r, p in _spares(h).items() if r != spare}, timeout_s=60,
                       what="a spare replacing the dead one")
        after = ftactors.describe(h)
        assert after.view == before.view and after.counts["failovers"] == 0
        assert [r.replica_id for r in after.replicas] == [r.replica_id for r in before.replicas]
        assert after.counts["spare_lost"] == 1
        assert ray.get(h.add.remote("b")) == 2
        (spare2,) = new
    finally:
        ftactors.shutdown(h)
    wait_for(lambda: not _alive(replica_actor_name(h._group, spare2), ns), timeout_s=30,
             what="the spare stopped by ftactors.shutdown")


def test_a_spare_exits_when_its_router_is_gone(ray_local):
    from ftactors.runtime.api import group_namespace
    from ftactors.runtime.replica_actor import replica_actor_name

    h = ftactors.replicated(replicas=2, spares=1, orphan_timeout_s=1.0)(Counter).remote()
    ns = group_namespace()
    ray.get(h.add.remote("a"))
    (spare, _), = wait_for(lambda: _spares(h), timeout_s=60, what="a warm spare ready").items()
    assert _alive(replica_actor_name(h._group, spare), ns)
    members = [r.replica_id for r in ftactors.describe(h).replicas]
    ray.kill(h._router, no_restart=True)  # what the driver's exit does to the router it owns
    wait_for(lambda: not _alive(replica_actor_name(h._group, spare), ns), timeout_s=30, interval_s=0.2,
             what="the orphaned spare to exit")
    for rid in members:  # owned by this driver
        try:
            ray.kill(ray.get_actor(replica_actor_name(h._group, rid), namespace=ns), no_restart=True)
        except ValueError:
            pass


class SlowThird:
    """Its third replica on this node (a warm spare: the first two are the group's) takes 5 s to construct:
    the window in which its router may end before calling it (docs/faults.md row 89)."""

    def __init__(self, marks: str) -> None:
        import time
        n = 0
        while True:  # the n-th constructor on this node claims marks.<n>
            try:
                os.close(os.open(f"{marks}.{n}", os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                n += 1
        if n >= 2:
            time.sleep(5.0)
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def test_a_spare_whose_router_is_gone_while_it_is_constructed_exits(ray_local, tmp_path):
    from ftactors.runtime.api import group_namespace
    from ftactors.runtime.replica_actor import replica_actor_name

    h = ftactors.replicated(replicas=2, spares=1, orphan_timeout_s=1.0)(SlowThird).remote(str(tmp_path / "mark"))
    ns = group_namespace()
    assert ray.get(h.add.remote(1)) == 1
    members = [r.replica_id for r in ftactors.describe(h).replicas]
    spare_id = members[0].rsplit("-r", 1)[0] + "-r2"  # the next replica the router starts
    spare = replica_actor_name(h._group, spare_id)
    wait_for(lambda: (tmp_path / "mark.2").exists(), timeout_s=60, what="the spare constructing")
    ray.kill(h._router, no_restart=True)  # gone for good before it called the spare (ready())
    try:
        wait_for(lambda: _alive(spare, ns), timeout_s=30, interval_s=0.2, what="the spare's name")
        wait_for(lambda: not _alive(spare, ns), timeout_s=30, interval_s=0.2,
                 what="the spare its router never called to exit")
    finally:
        for rid in members + [spare_id]:
            try:
                ray.kill(ray.get_actor(replica_actor_name(h._group, rid), namespace=ns), no_restart=True)
            except ValueError:
                pass


def test_a_restarted_router_stops_the_old_spare_and_starts_its_own(ray_local):
    from ftactors.runtime.api import group_namespace
    from ftactors.runtime.replica_actor import replica_actor_name

    h = ftactors.replicated(replicas=2, spares=1)(Counter).remote()
    ns = group_namespace()
    try:
        ray.get(h.add.remote("a"))
        (old, _), = wait_for(lambda: _spares(h), timeout_s=60, what="a warm spare ready").items()
        members = [r.replica_id for r in ftactors.describe(h).replicas]
        chaos.kill_router(h)
        assert ray.get(h.add.remote("b"), timeout=60) == 2
        # the rebuilt router does not know the old incarnation's spare (in no view): it stops it
        wait_for(lambda: not _alive(replica_actor_name(h._group, old), ns), timeout_s=30,
                 what="the old incarnation's spare stopped")
        new = wait_for(lambda: _spares(h), timeout_s=60, what="the restarted router's own spare")
        assert old not in new
        info = ftactors.describe(h)
        assert [r.replica_id for r in info.replicas] == members
        assert ray.get(h.read.remote())["tokens"] == ["a", "b"]
    finally:
        ftactors.shutdown(h)

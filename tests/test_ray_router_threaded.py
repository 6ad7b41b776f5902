"""Integration: the threaded router shell (``router_actor: threaded``) keeps the router's behaviour
(real Ray). The async shell, the default, is exercised by every other Ray test."""

from __future__ import annotations

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import converged, wait_for
from tests.test_ray_failover import Counter, Load, check_exactly_once

pytestmark = pytest.mark.ray


class Notes:
    def __init__(self) -> None:
        self.notes: list = []

    def note(self, s: str) -> int:
        self.notes.append(s)
        return len(self.notes)

    def all(self) -> list:
        return list(self.notes)


def test_one_callers_pipelined_calls_run_in_submission_order_through_a_threaded_router(ray_local):
    # Ray starts a threaded actor's tasks on its threads in no fixed order: the core restores it
    h = ftactors.replicated(replicas=2, router_actor="threaded")(Notes).remote()
    try:
        ray.get([h.note.remote(str(i)) for i in range(300)])
        assert ray.get(h.all.remote()) == [str(i) for i in range(300)]
        assert ftactors.describe(h).counts["requests"] >= 301
    finally:
        ftactors.shutdown(h)


def test_a_threaded_router_survives_a_primary_kill_then_its_own_kill_under_load(ray_local):
    h = ftactors.replicated(replicas=3, router_actor="threaded")(Counter).remote()
    try:
        with Load(h) as load:
            load.wait_calls(50)
            chaos.kill_replica(h, "primary")
            load.wait_calls(50)
            wait_for(lambda: converged(h, 3), timeout_s=90, what="three equal replicas after the primary kill")
            old_pid = chaos.kill_router(h)
            load.wait_calls(50)
            assert chaos.router_pid(h) != old_pid
        check_exactly_once(h, load)
        wait_for(lambda: converged(h, 3), timeout_s=90, what="three equal replicas after the router kill")
    finally:
        ftactors.shutdown(h)

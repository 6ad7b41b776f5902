"""Integration: the primary's scheduling criteria are visible on real Ray (claims 5, 39)."""

from __future__ import annotations

import asyncio

import pytest
import ray

import ftactors
from tests.conftest import converged, wait_for

pytestmark = pytest.mark.ray


@ray.remote
class Gate:
    """Holds callers until opened (a signal actor: no sleeps in the test)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.waiting = 0

    async def wait(self) -> None:
        self.waiting += 1
        await self.event.wait()

    def open(self) -> None:
        self.event.set()

    def waiters(self) -> int:
        return self.waiting


class Journal:
    def __init__(self) -> None:
        self.entries: list = []

    def hold(self, gate) -> None:
        ray.get(gate.wait.remote())

    def write(self, item: str) -> None:
        self.entries.append(item)

    def read(self) -> list:
        return list(self.entries)


def queued_at_primary(handle, n: int) -> bool:
    info = ray.get(handle._router.describe.remote())
    primary = info["replicas"][info["members"][0]]
    return primary.get("pending", 0) >= n


@pytest.mark.parametrize("scheduling", ["priority", "deadline"])
def test_waiting_calls_run_in_the_chosen_order(ray_local, scheduling):
    h = ftactors.replicated(replicas=2, scheduling=scheduling)(Journal).remote()
    gate = Gate.remote()
    try:
        held = h.hold.remote(gate)
        wait_for(lambda: ray.get(gate.waiters.remote()) >= 1, what="the primary to block")
        if scheduling == "priority":
            refs = [h.write.options(priority=p).remote(name) for p, name in [(1, "low"), (9, "high"), (5, "mid")]]
        else:
            refs = [h.write.options(deadline_s=d).remote(name) for d, name in [(30, "late"), (1, "soon"), (10, "mid")]]
        wait_for(lambda: queued_at_primary(h, 3), what="the three calls to queue at the primary")
        ray.get(gate.open.remote())
        ray.get([held, *refs])
        expected = ["high", "mid", "low"] if scheduling == "priority" else ["soon", "mid", "late"]
        assert ray.get(h.read.remote()) == expected
        # the backup followed the announced order, not the order it received the calls in
        wait_for(lambda: converged(h, 2), what="the backup to reach the same state")
    finally:
        ftactors.shutdown(h)


def test_call_waits_for_its_resource(ray_local):
    h = ftactors.replicated(replicas=2, scheduling="resources")(Journal).remote()
    try:
        ftactors.set_unavailable(h, "gpu")
        gpu_call = h.write.options(resources=("gpu",)).remote("needs-gpu")
        assert ray.get(h.write.remote("plain")) is None
        ready, _ = ray.wait([gpu_call], timeout=0.5)
        assert not ready, "a call ran while its resource was unavailable"
        assert ray.get(h.read.remote()) == ["plain"]
        ftactors.set_unavailable(h)  # everything available again
        ray.get(gpu_call, timeout=30)
        assert ray.get(h.read.remote()) == ["plain", "needs-gpu"]
    finally:
        ftactors.shutdown(h)

"""Integration: the holes of issue 10 that only a real Ray showed, each as a transcript.

* the router dies while the primary runs a long call: the call still completes, once;
* one-way calls in flight when the router dies: each takes effect exactly once;
* calls that arrive while the primary is busy all enter its scheduler (priority holds
  across batches, not only within one);
* a method raising ``SystemExit``, ``KeyboardInterrupt`` or ``CancelledError`` fails that
  call with a clear error, on every replica alike, and the group lives on.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import List

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import wait_for

pytestmark = pytest.mark.ray


class Jobs:
    """Records every call's token in execution order."""

    def __init__(self) -> None:
        self.done: List[str] = []

    def add(self, token: str) -> int:
        self.done.append(token)
        return len(self.done)

    def read(self) -> List[str]:
        return list(self.done)

    def busy(self, token: str, seconds: float, marker: str) -> int:
        """Long method: touches ``marker`` when it starts (every replica does, the primary first)."""
        with open(marker, "a"):
            pass
        time.sleep(seconds)
        return self.add(token)

    def exit(self, code: int) -> None:
        self.done.append(f"exit{code}")
        raise SystemExit(code)

    def interrupt(self) -> None:
        raise KeyboardInterrupt("from the method")

    async def cancelled(self) -> None:
        await asyncio.sleep(0)
        raise asyncio.CancelledError()


def replicas_agree(handle, expected: List[str], replicas: int) -> bool:
    """Every replica is a member, answered, and holds exactly ``expected``."""
    info = ftactors.describe(handle)
    if len(info.replicas) != replicas or info.phase != "normal":
        return False
    digests = {r.state_digest for r in info.replicas}
    executed = {r.executed for r in info.replicas}
    if "" in digests or len(digests) != 1 or len(executed) != 1 or min(executed) < 0:
        return False
    return ray.get(handle.read.remote(), timeout=30) == expected


def test_router_killed_while_the_primary_runs_a_long_call(ray_local, tmp_path):
    h = ftactors.replicated(replicas=3)(Jobs).remote()
    try:
        assert ray.get(h.add.remote("warm"), timeout=30) == 1
        marker = str(tmp_path / "started")
        ref = h.busy.remote("long", 3.0, marker)
        wait_for(lambda: os.path.exists(marker), what="the primary to start the long call")
        chaos.kill_router(h)
        # Ray restarts the router and retries the invoke; the result of the execution that
        # the dead router started must reach the new one
        assert ray.get(ref, timeout=60) == 2
        assert ray.get(h.add.remote("after"), timeout=60) == 3
        wait_for(lambda: replicas_agree(h, ["warm", "long", "after"], 3), timeout_s=60,
                 what="every replica to hold each call once")
    finally:
        ftactors.shutdown(h)


def test_one_way_calls_survive_a_router_kill(ray_local):
    h = ftactors.replicated(replicas=3)(Jobs).remote()
    try:
        ray.get(h.add.remote("warm"), timeout=30)
        tokens = [f"o{i}" for i in range(400)]
        for i, token in enumerate(tokens):
            assert h.add.options(oneway=True).remote(token) is None
            if i == 200:
                chaos.kill_router(h)
        applied = wait_for(lambda: (lambda got: got if set(tokens) <= set(got) else None)(
            ray.get(h.read.remote(), timeout=30)), timeout_s=120, what="all 400 one-way calls applied")
        assert len(applied) == len(set(applied)), "a one-way call took effect twice"
        assert applied[0] == "warm" and len(applied) == 401
        # one caller's calls keep their order (reception scheduling, per-source FIFO)
        assert applied[1:] == tokens
        wait_for(lambda: replicas_agree(h, applied, 3), timeout_s=60, what="replicas to agree")
    finally:
        ftactors.shutdown(h)


def test_calls_that_queue_while_the_primary_is_busy_run_in_priority_order(ray_local, tmp_path):
    h = ftactors.replicated(replicas=2, scheduling="priority")(Jobs).remote()
    try:
        marker = str(tmp_path / "started")
        busy = h.busy.remote("busy", 2.0, marker)
        wait_for(lambda: os.path.exists(marker), what="the primary to start the long call")
        priorities = list(range(30))
        random.Random(4).shuffle(priorities)
        refs = [h.add.options(priority=p).remote(f"p{p}") for p in priorities]
        ray.get([busy, *refs], timeout=60)
        done = ray.get(h.read.remote(), timeout=30)
        assert done[0] == "busy"
        assert done[1:] == [f"p{p}" for p in sorted(priorities, reverse=True)], done
    finally:
        ftactors.shutdown(h)


@pytest.mark.parametrize("method, args, what", [
    ("exit", (3,), "SystemExit"),
    ("interrupt", (), "KeyboardInterrupt"),
    ("cancelled", (), "CancelledError"),
])
def test_a_method_that_raises_system_exit_fails_the_call_not_the_group(ray_local, method, args, what):
    h = ftactors.replicated(replicas=3)(Jobs).remote()
    try:
        assert ray.get(h.add.remote("a"), timeout=30) == 1
        before = ftactors.describe(h)
        with pytest.raises(ftactors.MethodAbortedError) as err:
            ray.get(getattr(h, method).remote(*args), timeout=60)
        assert what in str(err.value) and f"Jobs.{method}()" in str(err.value)
        assert err.value.original_type == what
        assert ray.get(h.add.remote("b"), timeout=60) == (3 if method == "exit" else 2)
        expected = ["a", "exit3", "b"] if method == "exit" else ["a", "b"]
        wait_for(lambda: replicas_agree(h, expected, 3), timeout_s=60, what="replicas to agree")
        after = ftactors.describe(h)
        assert after.view == before.view, "a replica was lost to the method's exit"
        assert after.counts.get("failovers", 0) == before.counts.get("failovers", 0)
    finally:
        ftactors.shutdown(h)

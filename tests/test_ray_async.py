"""Integration: async replicated methods that await nested calls, timers and the determinism
helpers behave exactly as sync methods do (issue 12, first part).

A coroutine runs on the replica's private event loop thread, not on the thread that executes
the call: the call context must follow it there, or a nested call from a coroutine becomes a
plain call made by every replica (taking effect up to once per replica), and ``ftactors.now()``
/ ``ftactors.random()`` are drawn afresh by each replica.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import ray

import ftactors
from tests.conftest import wait_for

pytestmark = pytest.mark.ray

CALLS = 40


class Counter:
    """The callee group: a plain counter."""

    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n

    def value(self) -> int:
        return self.n


class AsyncCaller:
    """The calling group: async methods awaiting nested calls to the counter."""

    def __init__(self, counter) -> None:
        self.counter = counter
        self.got: list = []
        self.stamps: list = []

    async def work(self, i: int) -> int:
        value = await self.counter.inc.remote()
        self.got.append((i, value))
        return value

    async def twice(self, i: int) -> tuple:
        first = await self.counter.inc.remote()
        await asyncio.sleep(0)  # the coroutine yields to the loop between the two nested calls
        second = await self.counter.inc.remote()
        self.got.append((i, first, second))
        return first, second

    async def stamp(self) -> tuple:
        await asyncio.sleep(0)
        value = (ftactors.now(), ftactors.random())
        self.stamps.append(value)
        return value

    def calls(self) -> list:
        return list(self.got)


def build(style: str):
    opts = dict(replicas=3, style=style, checkpoint_every=10)
    counter = ftactors.replicated(**opts)(Counter).remote()
    caller = ftactors.replicated(**opts)(AsyncCaller).remote(counter)
    return counter, caller


def agree(handle) -> bool:
    """Three replicas, none joining, every state digest known and equal, equal executed counts."""
    info = ftactors.describe(handle)
    if len(info.replicas) != 3 or info.joining or info.phase != "normal":
        return False
    digests = {r.state_digest for r in info.replicas}
    return len(digests) == 1 and "" not in digests and len({r.executed for r in info.replicas}) == 1


def check_once(counter, caller, replies: list) -> None:
    """Each of the ``CALLS`` work calls incremented the counter once and got its own value."""
    assert sorted(replies) == list(range(1, CALLS + 1)), f"replies {replies}"
    assert ray.get(counter.value.remote(), timeout=60) == CALLS, "a nested call took effect more than once"
    got = dict(ray.get(caller.calls.remote(), timeout=60))
    assert got == {i: replies[i] for i in range(CALLS)}, "the caller's state does not match its replies"
    wait_for(lambda: agree(caller), timeout_s=90, what="the caller's replicas to agree by digest")
    wait_for(lambda: agree(counter), timeout_s=90, what="the counter's replicas to agree by digest")


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_nested_call_awaited_by_a_coroutine_takes_effect_once(ray_local, style):
    counter, caller = build(style)
    try:
        replies = ray.get([caller.work.remote(i) for i in range(CALLS)], timeout=120)
        assert replies == list(range(1, CALLS + 1))
        check_once(counter, caller, replies)
    finally:
        ftactors.shutdown(caller)
        ftactors.shutdown(counter)


@pytest.mark.parametrize("victim", ["caller", "callee"])
@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_primary_kill_in_either_group_keeps_async_nested_calls_exactly_once(ray_local, style, victim):
    counter, caller = build(style)
    try:
        # 15 done: a passive caller's new primary restores the checkpoint at 10 and replays
        # 11..15, whose nested calls must find the counter's replies, not call it again
        refs = ray.get([caller.work.remote(i) for i in range(15)], timeout=120)
        refs = [ray.put(v) for v in refs]
        refs += [caller.work.remote(i) for i in range(15, 20)]  # in flight during the kill
        target = caller if victim == "caller" else counter
        pid = ftactors.describe(target).primary.pid
        os.kill(pid, signal.SIGKILL)
        refs += [caller.work.remote(i) for i in range(20, CALLS)]
        replies = ray.get(refs, timeout=180)
        wait_for(lambda: ftactors.describe(target).primary.pid != pid, what="a new primary")
        check_once(counter, caller, replies)
    finally:
        ftactors.shutdown(caller)
        ftactors.shutdown(counter)


def test_coroutine_yielding_between_two_nested_calls_and_drawing_values_stays_deterministic(ray_local):
    counter, caller = build("semi-active")
    try:
        pairs = ray.get([caller.twice.remote(i) for i in range(10)], timeout=120)
        assert pairs == [(2 * i + 1, 2 * i + 2) for i in range(10)]
        assert ray.get(counter.value.remote(), timeout=60) == 20
        stamps = ray.get([caller.stamp.remote() for _ in range(10)], timeout=120)
        assert len({r for _, r in stamps}) == 10
        # every replica recorded the primary's now()/random() values: the digests agree
        wait_for(lambda: agree(caller), timeout_s=90, what="the caller's replicas to agree by digest")
        wait_for(lambda: agree(counter), timeout_s=90, what="the counter's replicas to agree by digest")
    finally:
        ftactors.shutdown(caller)
        ftactors.shutdown(counter)

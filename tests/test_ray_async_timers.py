"""Integration: async methods sleeping on timers (``asyncio.sleep``) among other calls (issue 12).

A timer firing is an event outside the coroutine, like a nested reply: the primary resumes the
sleeping call when it fires, in its own order with the other calls' steps, and announces the
resume; backups (and a new primary replaying the order) resume it at that position, firing the
timer at once. So the calls' interleaving, which shows in the group's state, is equal on every
replica. With a primary killed while calls sleep, each call still takes effect once; in passive
style the new primary restores a checkpoint taken between calls and replays the announced steps
after it, timer wakes included.
"""

from __future__ import annotations

import asyncio

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import wait_for
from tests.test_ray_async import Counter, agree

pytestmark = pytest.mark.ray

NAPS = 12
NOTES = 12
TIMEOUT_S = 120


class Sleeper:
    """The calling group: async calls that sleep, then call the counter; sync calls in between."""

    def __init__(self, counter) -> None:
        self.counter = counter
        self.log: list = []  # every step's effect, in the order the steps ran

    async def nap(self, i: int, delay_s: float) -> int:
        self.log.append(("slept", i))
        await asyncio.sleep(delay_s)
        self.log.append(("woke", i))
        value = await self.counter.inc.remote()
        self.log.append(("done", i, value))
        return value

    def note(self, i: int) -> int:
        self.log.append(("note", i))
        return len(self.log)

    def entries(self) -> list:
        return list(self.log)


def check_each_once(counter, sleeper, replies: list) -> None:
    """Every nap slept, woke and called the counter once; every note ran once; replicas agree."""
    assert sorted(replies) == list(range(1, NAPS + 1)), f"nap replies {replies}"
    assert ray.get(counter.value.remote(), timeout=TIMEOUT_S) == NAPS, "a nested call took effect twice"
    log = ray.get(sleeper.entries.remote(), timeout=TIMEOUT_S)
    want = sorted([("slept", i) for i in range(NAPS)] + [("woke", i) for i in range(NAPS)]
                  + [("done", i, replies[i]) for i in range(NAPS)] + [("note", i) for i in range(NOTES)])
    assert sorted(log) == want, "a step was lost or ran twice"
    for i in range(NAPS):  # each call's own steps in its order
        assert log.index(("slept", i)) < log.index(("woke", i)) < log.index(("done", i, replies[i]))
    wait_for(lambda: agree(sleeper), timeout_s=90, what="the sleeper's replicas to agree by digest")
    wait_for(lambda: agree(counter), timeout_s=90, what="the counter's replicas to agree by digest")


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_sleeping_calls_interleave_alike_and_survive_a_primary_kill(ray_local, style):
    opts = dict(replicas=3, style=style, checkpoint_every=4, failure_timeout_s=2.0)
    counter = ftactors.replicated(**opts)(Counter).remote()
    sleeper = ftactors.replicated(**opts)(Sleeper).remote(counter)
    try:
        half = NAPS // 2
        # sleeps of different lengths: they wake in another order than they started, among the notes
        naps = [sleeper.nap.remote(i, 0.05 * (half - i)) for i in range(half)]
        notes = [sleeper.note.remote(i) for i in range(NOTES // 2)]
        ray.get(naps[-1], timeout=TIMEOUT_S)  # the shortest sleep is over: the others may still sleep
        pid = chaos.kill_replica(sleeper, "primary").pid
        naps += [sleeper.nap.remote(i, 0.05 * (i - half)) for i in range(half, NAPS)]
        notes += [sleeper.note.remote(i) for i in range(NOTES // 2, NOTES)]
        replies = ray.get(naps, timeout=TIMEOUT_S)
        ray.get(notes, timeout=TIMEOUT_S)
        wait_for(lambda: ftactors.describe(sleeper).primary.pid != pid, what="a new primary")
        check_each_once(counter, sleeper, replies)
    finally:
        ftactors.shutdown(sleeper)
        ftactors.shutdown(counter)

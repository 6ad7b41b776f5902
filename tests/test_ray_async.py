"""Integration: async replicated methods that await nested calls, timers and the determinism
helpers behave exactly as sync methods do (issue 12, first part).

A coroutine runs on its call's own event loop, stepped by the replica: the call context must
follow it there, or a nested call from a coroutine becomes a plain call made by every replica
(taking effect up to once per replica), and ``ftactors.now()`` / ``ftactors.random()`` are drawn
afresh by each replica. Calls interleave, as in a Ray async actor, in the order the primary
announces (re-entrant calls: ``tests/test_ray_reentrant.py``).
"""

from __future__ import annotations

import asyncio

import pytest
import ray

import ftactors
from ftactors import chaos
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

    async def gathered(self) -> list:
        async def one() -> tuple:  # runs in a task of its own, which copies the call's context
            return await self.counter.inc.remote(), ftactors.random()

        pair = sorted(await asyncio.gather(one(), one()))
        self.stamps.append(pair)
        return [value for value, _ in pair]

    late_errors: list = []  # a class attribute: outside the state digest

    async def leave_a_task(self) -> None:
        async def late() -> None:
            try:
                await asyncio.sleep(0.2)  # the call has returned by then
                self.counter.inc.remote()
            except asyncio.CancelledError:
                AsyncCaller.late_errors.append("cancelled when the method returned")
                raise

        asyncio.get_running_loop().create_task(late())

    def lingering_errors(self) -> list:
        return list(AsyncCaller.late_errors)

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
        # the 40 coroutines run concurrently, as in a Ray async actor: each got its own value
        assert sorted(replies) == list(range(1, CALLS + 1))
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
        pid = chaos.kill_replica(target, "primary").pid
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
        # the ten coroutines interleave: each got two increasing values, together 1..20 once each
        assert all(first < second for first, second in pairs)
        assert sorted(v for pair in pairs for v in pair) == list(range(1, 21))
        assert ray.get(counter.value.remote(), timeout=60) == 20
        stamps = ray.get([caller.stamp.remote() for _ in range(10)], timeout=120)
        assert len({r for _, r in stamps}) == 10
        # nested calls and random() from tasks the coroutine creates (asyncio.gather)
        gathered = ray.get([caller.gathered.remote() for _ in range(5)], timeout=120)
        assert sorted(v for pair in gathered for v in pair) == list(range(21, 31))
        assert ray.get(counter.value.remote(), timeout=60) == 30
        # a task left running when its call returns is cancelled then, on every replica alike
        ray.get(caller.leave_a_task.remote(), timeout=60)
        errors = wait_for(lambda: ray.get(caller.lingering_errors.remote(), timeout=60), what="the late task")
        assert errors == ["cancelled when the method returned"]
        assert ray.get(counter.value.remote(), timeout=60) == 30
        # every replica recorded the primary's now()/random() values: the digests agree
        wait_for(lambda: agree(caller), timeout_s=90, what="the caller's replicas to agree by digest")
        wait_for(lambda: agree(counter), timeout_s=90, what="the counter's replicas to agree by digest")
    finally:
        ftactors.shutdown(caller)
        ftactors.shutdown(counter)


# ------------------------------------------------- plain Ray calls from replicated methods


@ray.remote(num_cpus=0)
class Tally:
    """A plain Ray actor: it counts the calls it gets, from whichever replica."""

    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n

    def get(self) -> int:
        return self.n


class UsesPlainActor:
    def __init__(self, tally) -> None:
        self.tally = tally
        self.bumps = 0

    async def bump(self) -> int:
        await self.tally.add.remote()  # a plain Ray actor call: made by every replica
        self.bumps += 1
        return self.bumps

    def warned(self) -> list:
        from ftactors.runtime import context

        return sorted(context._warned)


def test_plain_ray_call_from_a_replicated_method_runs_once_per_replica_and_is_warned_about_once(ray_local):
    tally = Tally.remote()
    h = ftactors.replicated(replicas=3)(UsesPlainActor).remote(tally)
    try:
        assert ray.get([h.bump.remote() for _ in range(3)], timeout=60) == [1, 2, 3]
        # the rule README states: each replica makes the plain call (3 calls x 3 replicas)
        wait_for(lambda: ray.get(tally.get.remote()) == 9, what="every replica's plain calls")
        # the primary warned once for the method, not once per call
        assert ray.get(h.warned.remote(), timeout=60) == [(h.group, "bump")]
    finally:
        ftactors.shutdown(h)


def test_plain_call_warning_is_logged_once_per_method_and_never_for_ftactors_own_calls(ray_local, caplog):
    from types import SimpleNamespace

    from ftactors.runtime import context

    context.watch_plain_calls()  # in this process, as a replica does in its own

    @ray.remote(num_cpus=0)
    def plain() -> int:
        return 1

    def call_as(method: str, **fields) -> list:
        ex = SimpleNamespace(request=SimpleNamespace(method=method))
        ctx = context.CallContext(replica=SimpleNamespace(spec=SimpleNamespace(group="G-test")), replay=(),
                                  choosing=fields.pop("choosing", True), execute=ex, **fields)
        caplog.clear()
        context.set_current(ctx)
        try:
            ray.get([plain.remote(), plain.options(num_cpus=0).remote()], timeout=60)
        finally:
            context.set_current(None)
        return [r.getMessage() for r in caplog.records if r.name == "ftactors"]

    with caplog.at_level("WARNING", logger="ftactors"):
        first = call_as("m1")
        assert len(first) == 1 and "[G-test] replicated method m1()" in first[0] and "plain Ray task" in first[0]
        assert call_as("m1") == []  # once per (group, method)
        assert call_as("m2", internal=True) == []  # ftactors' own nested call to a router
        assert call_as("m3", choosing=False) == []  # a backup: the primary warns
        assert ray.get(plain.remote()) == 1 and caplog.records == []  # outside replicated calls: nothing

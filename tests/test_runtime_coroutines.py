"""The Ray host's coroutine stepping without Ray: outside events enter a call's loop only when a
step admits them, so replaying the primary's announced wakes reproduces its interleaving."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, Dict, List, Tuple

from ftactors.core import MsgId
from ftactors.runtime.coroutines import Coroutines


async def _wrap(awaitable: Any, ctx: Any) -> Any:
    return await awaitable


def _sleep(timeout_s: float) -> None:
    time.sleep(timeout_s)


async def _call(name: str, reply: "concurrent.futures.Future[int]", trace: List[str]) -> int:
    trace.append(f"{name} start")
    value = await asyncio.wrap_future(reply)  # a nested reply, completed from another thread
    trace.append(f"{name} got {value}")
    await asyncio.sleep(0.02)  # a timer
    trace.append(f"{name} slept")
    return value


def _primary(order: Tuple[int, ...]) -> Tuple[List[str], List[Tuple[MsgId, Any]]]:
    """Two calls; their replies complete in ``order``; the primary resumes what is ready first."""
    trace: List[str] = []
    replies = {i: concurrent.futures.Future() for i in (1, 2)}
    steps = Coroutines(lambda: None, 8)
    ids = {i: MsgId("c", i) for i in (1, 2)}
    for i in (1, 2):
        assert not steps.start(ids[i], _call(f"c{i}", replies[i], trace), None, _wrap).done
    for i in order:
        replies[i].set_result(10 * i)
    announced: List[Tuple[MsgId, Any]] = []
    while len(steps):
        ready = steps.ready()
        if not ready:
            time.sleep(0.005)
            continue
        result = steps.resume(ready[0], None, _sleep)
        announced.append((ready[0], result.wake))
    return trace, announced


def _backup(order: Tuple[int, ...], announced: List[Tuple[MsgId, Any]]) -> List[str]:
    trace: List[str] = []
    replies: Dict[int, "concurrent.futures.Future[int]"] = {i: concurrent.futures.Future() for i in (1, 2)}
    steps = Coroutines(lambda: None, 8)
    for i in (1, 2):
        steps.start(MsgId("c", i), _call(f"c{i}", replies[i], trace), None, _wrap)
    for i in order:
        replies[i].set_result(10 * i)
    for mid, wake in announced:
        steps.resume(mid, wake, _sleep)
    assert len(steps) == 0
    return trace


def test_backup_replaying_announced_wakes_interleaves_like_the_primary_whatever_its_arrival_order() -> None:
    trace, announced = _primary((2, 1))
    assert trace.index("c2 got 20") < trace.index("c1 got 10")  # the primary took c2's reply first
    assert sorted(wake[0] for _, wake in announced) == ["f", "f", "t", "t"]  # one event per resume
    assert _backup((1, 2), announced) == trace  # its replies came the other way round


def test_timers_fire_at_once_on_replay_and_events_keep_stable_names() -> None:
    trace, announced = _primary((1, 2))
    t0 = time.monotonic()
    assert _backup((1, 2), announced) == trace
    assert time.monotonic() - t0 < 0.5
    assert {wake for _, wake in announced} >= {("f", 1), ("t", 1)}


def test_a_task_left_running_is_cancelled_when_its_call_returns() -> None:
    events: List[str] = []

    async def method() -> str:
        async def late() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                events.append("cancelled")
                raise

        asyncio.get_running_loop().create_task(late())
        await asyncio.sleep(0)
        return "done"

    steps = Coroutines(lambda: None, 8)
    result = steps.start(MsgId("c", 1), method(), None, _wrap)
    assert result.done and result.value == "done" and events == ["cancelled"] and len(steps) == 0

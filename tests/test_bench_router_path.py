"""The router path harness (``ftactors.bench.router_path``) drives the real shell, host and core."""

import asyncio

import pytest

from ftactors.bench.router_path import MEMBERS, Harness, measure


@pytest.mark.parametrize("tcp", [False, True])
def test_every_call_released_once_with_its_value_and_the_backups_follow(tcp: bool) -> None:
    h = Harness(tick_every=5, tcp=tcp)

    async def go() -> None:
        try:
            await h.start()
            await h.run(200)  # asserts each reply's value and that none comes twice
            for _ in range(20):  # the backups' batches go out every relay_after_s of ticks
                h.now += 1
                h.r.host.tick()
                await asyncio.sleep(0)
            await _until(lambda: all(h.replicas[m].executed == h.calls for m in MEMBERS))
        finally:
            h.close()

    asyncio.run(go())
    assert sorted(h.replies) == list(range(1, h.calls + 1))
    assert all(v == 2 * i for i, v in h.replies.items())
    assert h.r.host.waiters == {}


async def _until(cond, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        assert loop.time() < end, "the backups did not execute every call"
        await asyncio.sleep(0.01)


def test_measure_reports_cpu_per_call_in_memory_and_on_tcp() -> None:
    for tcp in (False, True):
        per = measure(calls=50, repeats=2, warmup=10, tcp=tcp)
        assert len(per) == 2 and all(x > 0 for x in per)

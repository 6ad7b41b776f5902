"""The router's clock, on an event loop without Ray (no Ray cluster needed)."""

from __future__ import annotations


def test_the_routers_clock_keeps_ticking_when_one_tick_raises(caplog):
    """docs/faults.md, issue 10: one tick raised (uvloop refused a heartbeat's write) and ended
    ``_tick_loop``: the router's core never ticked again, so copies and announcements waiting for
    ``relay_after_s`` / ``null_message_after_s`` never went to the backups, failure detection
    stopped, and the backups stayed behind for good while callers were still answered. One tick's
    error is logged; the clock goes on."""
    import asyncio
    import logging
    from types import SimpleNamespace

    from ftactors.runtime.router_actor import _RouterLoop

    ticks = []
    loop_self = SimpleNamespace(_closed=False, _metrics=None, settings=SimpleNamespace(tick_s=0.001), group="g",
                                _tick_errors=0)

    def tick():
        ticks.append(1)
        if len(ticks) == 2:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        if len(ticks) == 5:
            loop_self._closed = True

    loop_self.host = SimpleNamespace(tick=tick, core=None)
    caplog.set_level(logging.ERROR, logger="ftactors")
    asyncio.run(asyncio.wait_for(_RouterLoop._tick_loop(loop_self), timeout=5))
    assert len(ticks) == 5
    assert any("tick failed" in r.getMessage() and "TCPTransport" in r.getMessage() for r in caplog.records)


def test_a_steps_delivers_start_after_the_callers_it_released_are_woken():
    """docs/benchmarks.md, issue 11: the host writes a step's Delivers before it releases its
    replies. Started there, the Delivers' tasks (pickling, the link's write) ran before the woken
    caller's coroutine, so after the primary's answer the backups' Delivers sat on the reply's path.
    They now start after the callers the step released, in the core's order, whether the step ran
    from a kick (``_process``) or from a tick (``RouterHost.tick`` runs ``process`` itself)."""
    import asyncio
    from types import SimpleNamespace

    from ftactors.runtime.router_actor import _FutureWaiter, _RayIO, _RouterLoop

    order = []
    loop_self = SimpleNamespace(_kick_scheduled=True, _closed=False, _sends=[], _direct=True, handles={"b1": "h1"})
    loop_self._is_started = lambda: True
    loop_self._start_sends = lambda: _RouterLoop._start_sends(loop_self)

    async def send_direct(rid, handle, msg, epoch, seq):
        order.append(("deliver", rid, handle, msg, seq))

    async def deliver(rid, sent):
        await sent

    loop_self._send_direct = send_direct
    loop_self._deliver = deliver
    io = _RayIO(loop_self)

    async def step(run, first_seq):
        waiter = _FutureWaiter(asyncio.get_running_loop().create_future())

        async def caller():
            order.append(("reply", await waiter.fut))

        woken = asyncio.ensure_future(caller())
        await asyncio.sleep(0)  # the caller waits on its future

        def process():  # as RouterHost.process: the step's Delivers, then its released replies
            io.deliver("b1", "copy", "e", first_seq)
            io.deliver("b1", "copy", "e", first_seq + 1)
            io.answer(first_seq, [waiter])

        loop_self.host = SimpleNamespace(process=process)
        run()
        await woken
        while len(order) < 3:
            await asyncio.sleep(0)

    async def main():
        await step(lambda: _RouterLoop._process(loop_self), 1)  # a kick
        assert order == [("reply", 1), ("deliver", "b1", "h1", "copy", 1), ("deliver", "b1", "h1", "copy", 2)]
        order.clear()
        await step(lambda: loop_self.host.process(), 3)  # a tick
        assert order == [("reply", 3), ("deliver", "b1", "h1", "copy", 3), ("deliver", "b1", "h1", "copy", 4)]

    asyncio.run(asyncio.wait_for(main(), timeout=5))
    assert loop_self._sends == []

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

"""The threaded router's hand-over from Ray's threads to its loop thread (no Ray cluster needed)."""

from __future__ import annotations

import threading
import time

import pytest

from ftactors.core import Kind, MsgId, Request
from ftactors.runtime.router_actor import _Inbox, _Waiter


def _req(source: str, seq: int) -> Request:
    return Request(kind=Kind.SYNC_REQUEST, msg_id=MsgId(source, seq), group="g", method="m")


def test_the_loop_is_woken_once_for_the_requests_queued_before_it_drains():
    wakes = []
    inbox = _Inbox(lambda: wakes.append(1))
    for i in range(1, 4):
        inbox.put(_req("c", i), False, _Waiter())
    assert len(wakes) == 1
    assert [r.msg_id.seq for r, _, _ in inbox.take()] == [1, 2, 3]
    inbox.put(_req("c", 4), False, _Waiter())
    assert len(wakes) == 2, "a request queued after a drain wakes the loop again"


def test_a_waiting_thread_gets_the_error_it_was_failed_with_and_only_it():
    w = _Waiter()
    threading.Timer(0.01, w.fail, args=(RuntimeError("lost"),)).start()
    with pytest.raises(RuntimeError, match="lost"):
        w.wait()
    w.answer(None)  # ignored: it was settled
    assert w.error is not None and w.reply is None


def test_a_waiting_thread_gets_its_reply():
    w = _Waiter()
    threading.Timer(0.01, w.answer, args=("reply",)).start()
    assert w.wait() == "reply"


def _put_later(inbox: _Inbox, req: Request) -> threading.Thread:
    t = threading.Thread(target=inbox.put, args=(req, False, _Waiter()), daemon=True)
    t.start()
    return t


def test_a_request_that_overtook_its_predecessor_waits_for_it():
    inbox = _Inbox(lambda: None, reorder_wait_s=5.0)
    inbox.put(_req("c", 1), False, _Waiter())
    late = _put_later(inbox, _req("c", 3))  # Ray's thread for 3 ran before the one for 2
    wait_until = time.monotonic() + 5
    while not inbox._waiting:
        assert time.monotonic() < wait_until, "3 did not wait for 2"
        time.sleep(0.001)
    inbox.put(_req("c", 2), False, _Waiter())
    late.join(5)
    assert [r.msg_id.seq for r, _, _ in inbox.take()] == [1, 2, 3]
    assert (inbox.reordered, inbox.gave_up) == (1, 0)


def test_a_missing_predecessor_holds_a_request_up_only_for_the_reorder_wait():
    inbox = _Inbox(lambda: None, reorder_wait_s=0.05)
    inbox.put(_req("c", 1), False, _Waiter())
    t0 = time.monotonic()
    inbox.put(_req("c", 5), False, _Waiter())  # 2-4 answered before a router restart: never retried
    assert 0.04 <= time.monotonic() - t0 < 2.0
    inbox.put(_req("c", 6), False, _Waiter())  # the caller's order goes on from there at once
    assert [r.msg_id.seq for r, _, _ in inbox.take()] == [1, 5, 6]
    assert inbox.gave_up == 1


def test_other_callers_retries_and_copies_do_not_wait():
    inbox = _Inbox(lambda: None, reorder_wait_s=5.0)
    t0 = time.monotonic()
    inbox.put(_req("a", 1), False, _Waiter())
    inbox.put(_req("a", 9), True, _Waiter())  # a backup's reply copy needs no order
    inbox.put(_req("b", 7), False, _Waiter())  # a caller first seen by this router
    inbox.put(_req("a", 1), False, _Waiter())  # Ray's retry of a call
    inbox.put(_req("a", 2), False, _Waiter())
    assert time.monotonic() - t0 < 1.0
    assert [r.msg_id.seq for r, _, _ in inbox.take()] == [1, 9, 7, 1, 2]


def test_the_inbox_remembers_at_most_sources_max_callers():
    inbox = _Inbox(lambda: None, reorder_wait_s=5.0, sources_max=3)
    for i in range(10):
        inbox.put(_req(f"c{i}", 1), False, _Waiter())
    assert len(inbox._next_seq) == 3
    t0 = time.monotonic()
    inbox.put(_req("c0", 4), False, _Waiter())  # forgotten: no wait for 2 and 3
    assert time.monotonic() - t0 < 1.0


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

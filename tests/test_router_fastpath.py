"""The router's call path without its loop hops (issue 11): a Deliver written in the host's own step
(``DirectLink.send``) and a caller's request as plain values (``flat_request`` / ``request_of``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, List, Tuple

import msgpack
import pytest

from ftactors.core import Announcement, Kind, MsgId, RemoteProtocolError, Request
from ftactors.runtime import wire
from ftactors.runtime.router_actor import flat_request, request_of

SECRET = b"s" * 32
FRAME_MAX = 4096


class _Record:
    """A handler that records what ran and echoes it."""

    def __init__(self) -> None:
        self.ran: List[Any] = []

    def __call__(self, call_id: int, seq: int, epoch: str, body: bytes) -> Tuple[int, bytes]:
        msg = wire.loads(body)
        self.ran.append(msg)
        return wire.KIND_DELIVERED, wire.dumps(("ok", msg))


@pytest.fixture
def server() -> Any:
    handler = _Record()
    srv = wire.WireServer("127.0.0.1", None, SECRET, handler, FRAME_MAX, handshake_timeout_s=1.0)
    srv.record = handler  # type: ignore[attr-defined]
    yield srv
    srv.close()


def _blocking_poll(cond: Any, timeout_s: float = 5.0) -> bool:
    """Poll ``cond`` without yielding to the event loop (the test's loop does not run meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_sent_deliver_leaves_before_the_loop_takes_another_step(server: Any) -> None:
    """``send`` + ``flush`` write the frame at once: the replica runs it while the router's loop is
    still in the same step (``deliver``, a coroutine, would queue it for the loop's next step)."""
    async def go() -> Any:
        link = wire.DirectLink(server.address, SECRET, FRAME_MAX, connect_timeout_s=2.0)
        assert await link.connect() and link.is_open
        try:
            call_id, fut = link.send("first", "e1", 1)
            link.flush()
            arrived = _blocking_poll(lambda: server.record.ran == ["first"])  # no await: same step
            return arrived, wire.DirectLink.answer_of(call_id, await fut), await link.deliver("second", "e1", 2)
        finally:
            link.close()

    arrived, first, second = asyncio.run(go())
    assert arrived, "the Deliver waited for the loop's next step"
    assert first == ("ok", "first") and second == ("ok", "second")


def test_send_raises_at_once_when_the_message_cannot_go(server: Any) -> None:
    async def go() -> None:
        link = wire.DirectLink(server.address, SECRET, FRAME_MAX, connect_timeout_s=2.0)
        with pytest.raises(wire.LinkClosedError):  # not opened yet: deliver() opens it, send() does not
            link.send("x", "e1", 1)
        assert await link.connect()
        with pytest.raises(wire.NotOnWireError):
            link.send(b"x" * FRAME_MAX, "e1", 1)
        link.close()
        assert not link.is_open
        with pytest.raises(wire.LinkClosedError):
            link.send("x", "e1", 2)

    asyncio.run(go())
    assert server.record.ran == []


def _request(**kw: Any) -> Request:
    fields = dict(kind=Kind.SYNC_REQUEST, msg_id=MsgId("c1.0", 7), group="g", method="inc",
                  payload=b"\x80\x05args", priority=2, deadline_tick=1234, resources=("gpu",), ack_below=3,
                  size_bytes=9)
    fields.update(kw)
    return Request(**fields)  # type: ignore[arg-type]


def test_a_flat_request_comes_back_equal_through_msgpack_lists() -> None:
    """Ray packs a tuple of plain values with msgpack, which gives lists back."""
    req = _request()
    flat = flat_request(req)
    assert flat is not None
    back = request_of(msgpack.unpackb(msgpack.packb(flat), use_list=True))
    assert back == req and isinstance(back.resources, tuple)
    assert request_of(req) is req  # a Request (a nested call's, a copy's) is taken as it is


def test_a_flat_request_keeps_its_carried_announcements() -> None:
    ann = Announcement(group="g", view=1, position=4, msg_id=MsgId("c1.0", 6))
    req = _request(peer_announcements=(ann,))
    assert request_of(list(flat_request(req) or ())) == req


def test_requests_that_do_not_go_flat() -> None:
    """A nested call's (source view, calling paths) and arguments in the object store keep the
    Request, which Ray pickles (its ObjectRefs tracked)."""
    assert flat_request(_request(source_view=2)) is None
    assert flat_request(_request(holds=(((1, 2), 1, 2),))) is None
    assert flat_request(_request(payload=object())) is None


@pytest.mark.parametrize("bad", [
    None, "inc", (), (1, "c", 1, "g", "inc", b"", 0, None, (), 0, ()),  # not a request, too short
    (99, "c", 1, "g", "inc", b"", 0, None, [], 0, [], 0),  # no such kind
    (1, "c", 1, "g", "", b"", 0, None, [], 0, [], 0),  # no method
    (1, "c", 1, "g", "inc", b"", "high", None, [], 0, [], 0),  # priority not an int
    (1, "c", 1, "g", "inc", b"", 0, None, "gpu", 0, [], 0),  # resources not a sequence
    (1, "c", 1, "g", "inc", b"", 0, None, [], 0, [], -1),  # negative size
])
def test_a_malformed_flat_request_is_a_protocol_error(bad: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        request_of(bad)

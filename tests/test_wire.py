"""The direct data plane's framing and authentication, without Ray (ftactors.runtime.wire)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from typing import Any, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftactors.runtime import wire

SECRET = b"k" * 32
FRAME_MAX = 4096


def _poll(cond: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class _Echo:
    """A handler that records what ran and answers (seq, epoch, the message)."""

    def __init__(self) -> None:
        self.ran: List[Tuple[int, str, Any]] = []

    def __call__(self, call_id: int, seq: int, epoch: str, body: bytes) -> Tuple[int, bytes]:
        msg = wire.loads(body)
        self.ran.append((seq, epoch, msg))
        if msg == "park":
            return wire.KIND_PARKED, b""
        if msg == "raise":
            raise RuntimeError("deliver failed")
        return wire.KIND_DELIVERED, wire.dumps((seq, epoch, msg))


@pytest.fixture
def server() -> Any:
    handler = _Echo()
    srv = wire.WireServer("127.0.0.1", None, SECRET, handler, FRAME_MAX, handshake_timeout_s=1.0)
    srv.handler_log = handler  # type: ignore[attr-defined]
    yield srv
    srv.close()


def _deliver_all(address: Tuple[str, int], secret: bytes, msgs: List[Any]) -> List[Any]:
    async def go() -> List[Any]:
        link = wire.DirectLink(address, secret, FRAME_MAX, connect_timeout_s=2.0)
        try:
            return await asyncio.gather(*(link.deliver(m, "e1", i + 1) for i, m in enumerate(msgs)),
                                        return_exceptions=True)
        finally:
            link.close()
    return asyncio.run(go())


def _authenticated_socket(address: Tuple[str, int], secret: bytes = SECRET) -> Tuple[socket.socket, bytes]:
    """A raw connection that passed the handshake; returns it and every byte exchanged."""
    s = socket.create_connection(address, timeout=2.0)
    hello = s.recv(len(wire.MAGIC) + wire.NONCE_BYTES, socket.MSG_WAITALL)
    nonce_s, nonce_c = hello[len(wire.MAGIC):], os.urandom(wire.NONCE_BYTES)
    sent = nonce_c + wire.proof(secret, b"c", nonce_s, nonce_c)
    s.sendall(sent)
    mac = s.recv(wire.MAC_BYTES, socket.MSG_WAITALL)
    assert mac == wire.proof(secret, b"s", nonce_s, nonce_c)
    return s, hello + sent + mac


def test_delivers_round_trip_in_order_of_calls(server: Any) -> None:
    out = _deliver_all(server.address, SECRET, ["a", {"b": 2}, b"c" * 100])
    assert out == [(1, "e1", "a"), (2, "e1", {"b": 2}), (3, "e1", b"c" * 100)]
    assert server.address[0] == "127.0.0.1"


def test_parked_and_failed_answers_are_typed(server: Any) -> None:
    parked, failed = _deliver_all(server.address, SECRET, ["park", "raise"])
    assert isinstance(parked, wire.ParkedError) and parked.call_id == 1
    assert isinstance(failed, wire.RemoteDeliverError) and "deliver failed" in str(failed)


def test_wrong_secret_is_refused_and_nothing_runs(server: Any) -> None:
    (out,) = _deliver_all(server.address, b"x" * 32, ["inc"])
    assert isinstance(out, wire.LinkClosedError)
    _poll(lambda: server.dropped["handshake failed"] == 1)
    assert server.handler_log.ran == []
    assert _deliver_all(server.address, SECRET, ["after"]) == [(1, "e1", "after")]


def test_the_secret_never_travels(server: Any) -> None:
    s, exchanged = _authenticated_socket(server.address)
    s.close()
    assert SECRET not in exchanged and len(exchanged) == 8 + 32 + 32 + 32 + 32


def test_a_client_refuses_a_server_without_the_secret() -> None:
    srv = wire.WireServer("127.0.0.1", None, b"other" * 8, _Echo(), FRAME_MAX)
    try:
        (out,) = _deliver_all(srv.address, SECRET, ["inc"])
        assert isinstance(out, wire.LinkClosedError)
    finally:
        srv.close()


@pytest.mark.parametrize("frame,fault", [
    (struct.pack("!I", FRAME_MAX + 1) + b"x" * 10, "bad frame"),                 # oversized
    (struct.pack("!I", 100) + b"x" * 10, "bad frame"),                          # truncated, then closed
    (struct.pack("!I", 5) + b"\x09" * 5, "bad frame"),                          # unknown kind
    (wire.encode_deliver(1, 1, "e", b"not a pickle"), "bad body"),              # garbage body
])
def test_bad_frames_drop_the_connection_and_nothing_runs(server: Any, frame: bytes, fault: str) -> None:
    s, _ = _authenticated_socket(server.address)
    s.sendall(frame)
    s.shutdown(socket.SHUT_WR)
    _poll(lambda: server.dropped[fault] == 1)
    assert server.handler_log.ran == []
    s.close()
    assert _deliver_all(server.address, SECRET, ["ok"]) == [(1, "e1", "ok")]


def test_a_silent_peer_is_dropped_after_the_handshake_timeout(server: Any) -> None:
    s = socket.create_connection(server.address)
    _poll(lambda: server.dropped["handshake failed"] == 1)
    s.close()


def test_an_object_ref_never_goes_on_the_wire() -> None:
    import ray

    with pytest.raises(wire.NotOnWireError):
        wire.dumps(("x", [ray.ObjectRef(b"0" * 28)]))


def test_an_object_ref_in_a_request_is_refused_by_the_fast_pickler_too() -> None:
    import ray

    from ftactors.core import Deliver, Kind, MsgId, Request

    req = Request(kind=Kind.SYNC_REQUEST, msg_id=MsgId("c", 1), group="g", method="m",
                  payload=ray.ObjectRef(b"1" * 28))
    with pytest.raises(wire.NotOnWireError):
        wire.dumps(Deliver(view=1, requests=(req,)))


def test_every_core_message_comes_back_equal_from_the_wire() -> None:
    from ftactors.core import Announcement, Checkpoint, Deliver, Delivered, Kind, MsgId, NewView, Outcome, Reply, Request

    mid = MsgId("c", 3)
    ann = Announcement("g", 2, 7, mid, nondet=(1.5, "x"), resume=1)
    rep = Reply(mid, "g", 2, 7, Outcome(False, ValueError("no")), announcements=(ann,))
    cp = Checkpoint("g", 2, 7, state=b"state", dedup={"c": 3}, digest="d")
    req = Request(kind=Kind.SYNC_REQUEST, msg_id=mid, group="g", method="m", payload=b"args", priority=2,
                  deadline_tick=9, resources=("gpu",), ack_below=2, source_view=1, peer_announcements=(ann,))
    deliver = Deliver(view=2, requests=(req,), announcements=(ann,), reply_copies=(rep,),
                      new_view=NewView(2, ("r0", "r1")), checkpoint=cp, snapshot_wanted=True)
    delivered = Delivered("r0", 2, replies=(rep,), announcements=(ann,), acked_position=7, checkpoint=cp,
                          digests=((7, "d"),), suspended=1)
    for msg in (deliver, delivered):
        back = wire.loads(wire.dumps(msg))
        assert type(back) is type(msg)
        assert repr(back) == repr(msg)  # the exception inside compares by identity; its repr does not


def test_a_class_defined_where_the_replica_cannot_import_it_goes_by_value() -> None:
    class Local:  # a local class: not picklable by reference
        def __init__(self) -> None:
            self.v = 5

    import cloudpickle

    body = wire.dumps(Local())
    assert cloudpickle.loads(body).v == 5


def test_an_oversized_message_is_not_sent(server: Any) -> None:
    (out,) = _deliver_all(server.address, SECRET, [b"z" * FRAME_MAX])
    assert isinstance(out, wire.NotOnWireError)
    assert server.handler_log.ran == []


def test_a_closed_server_fails_pending_delivers_at_once() -> None:
    release = threading.Event()

    def slow(call_id: int, seq: int, epoch: str, body: bytes) -> Tuple[int, bytes]:
        release.wait(5)
        return wire.KIND_DELIVERED, wire.dumps("late")

    srv = wire.WireServer("127.0.0.1", None, SECRET, slow, FRAME_MAX)

    async def go() -> Any:
        link = wire.DirectLink(srv.address, SECRET, FRAME_MAX)
        task = asyncio.ensure_future(link.deliver("m", "e", 1))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        srv.close()
        with pytest.raises(wire.LinkClosedError):
            await task
        return time.monotonic() - t0

    try:
        assert asyncio.run(go()) < 1.0
    finally:
        release.set()


def test_port_range_takes_the_first_free_port_and_fails_when_none_is() -> None:
    for _ in range(20):
        a = wire.bind_in_range("127.0.0.1", None)
        port = a.getsockname()[1]
        try:
            try:
                b = wire.bind_in_range("127.0.0.1", (port, port + 1))
            except wire.WireError:
                continue  # another process holds port + 1 (a shared machine): try another pair
            assert b.getsockname()[1] == port + 1  # the taken first port is skipped
            b.close()
            with pytest.raises(wire.WireError, match="no free port"):
                wire.bind_in_range("127.0.0.1", (port, port))
            return
        finally:
            a.close()
    pytest.fail("found no two adjacent free ports in 20 tries")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), auth=st.booleans())
def test_fuzz_random_bytes_never_run_anything(server: Any, data: bytes, auth: bool) -> None:
    if auth:
        s, _ = _authenticated_socket(server.address)
        s.sendall(data)
    else:
        s = socket.create_connection(server.address, timeout=2.0)
        s.recv(len(wire.MAGIC) + wire.NONCE_BYTES, socket.MSG_WAITALL)
        s.sendall(data)
    s.close()
    # nothing unauthenticated runs; authenticated garbage runs only if it is a well-formed Deliver
    # of a pickle, which random bytes are not in practice
    time.sleep(0.005)
    assert server.handler_log.ran == []


def test_port_range_setting_and_the_nodes_default(monkeypatch: Any) -> None:
    from ftactors.core.errors import ConfigError
    from ftactors.runtime.replica_actor import port_range_from_env
    from ftactors.runtime.settings import load_settings

    assert load_settings(port_range=(20000, 20099)).port_range == (20000, 20099)
    with pytest.raises(ConfigError, match="port_range"):
        load_settings(port_range=(20099, 20000))
    with pytest.raises(ConfigError, match="data_plane"):
        load_settings(data_plane="zmq")
    monkeypatch.setenv("FTACTORS_PORT_RANGE", "21000-21009")
    assert port_range_from_env() == (21000, 21009)
    monkeypatch.setenv("FTACTORS_PORT_RANGE", "nonsense")
    assert port_range_from_env() is None
    monkeypatch.delenv("FTACTORS_PORT_RANGE")
    assert port_range_from_env() is None


def test_connect_reports_an_unreachable_replica_without_raising() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there

    async def go() -> Tuple[bool, Any]:
        link = wire.DirectLink(("127.0.0.1", port), SECRET, FRAME_MAX, connect_timeout_s=1.0)
        return await link.connect(), link.closed

    ok, why = asyncio.run(go())
    assert not ok and "could not connect" in why


def test_heartbeats_are_answered_while_a_deliver_runs_and_a_close_is_reported() -> None:
    """A heartbeat is answered by the connection's reader thread at once, while the replica's
    Deliver still runs (a long method does not look hung); closing the link calls ``on_close``."""
    release = threading.Event()

    def slow(call_id: int, seq: int, epoch: str, body: bytes) -> Tuple[int, bytes]:
        release.wait(5)
        return wire.KIND_DELIVERED, wire.dumps("done")

    srv = wire.WireServer("127.0.0.1", None, SECRET, slow, FRAME_MAX)

    async def go() -> Tuple[int, int, bool]:
        link = wire.DirectLink(srv.address, SECRET, FRAME_MAX)
        heard: List[float] = []
        closed: List[str] = []
        link.on_heard = lambda: heard.append(time.monotonic())
        link.on_close = lambda: closed.append(str(link.closed))
        task = asyncio.ensure_future(link.deliver("m", "e", 1))
        await asyncio.sleep(0.1)
        for _ in range(3):
            assert link.heartbeat()
            await asyncio.sleep(0.05)
        answered_while_running = len(heard)
        release.set()
        assert await task == "done"
        link.close("test")
        return answered_while_running, srv.heartbeats, bool(closed) and not link.heartbeat()

    try:
        answered, served, closed_reported = asyncio.run(go())
        assert answered == 3 and served == 3 and closed_reported
    finally:
        release.set()
        srv.close()


def test_a_malformed_heartbeat_drops_the_connection(server: Any) -> None:
    s, _ = _authenticated_socket(server.address)
    try:
        s.sendall(struct.pack("!I", 3) + bytes((wire.KIND_HEARTBEAT,)) + b"xx")
        _poll(lambda: server.dropped.get("bad frame", 0) >= 1)
    finally:
        s.close()


def test_a_heartbeat_or_deliver_on_a_connection_the_loop_already_closed_closes_the_link_instead_of_raising(
        server: Any) -> None:
    """docs/faults.md, issue 10's chaos remove-node run: the replica's node went away, uvloop closed
    the transport, and the router's next heartbeat came before the link's reader saw the close.
    uvloop raises on a write to a closed transport (asyncio's own loop ignores it): the exception
    left ``_RouterLoop._tick_loop``, the router's clock stopped, and the backups, whose copies wait
    for a tick to go out, never caught up. A write that finds the connection gone closes the link
    (``on_close``: a suspicion, as a close seen by the reader is) and never raises."""
    uvloop = pytest.importorskip("uvloop")

    async def go() -> Tuple[List[str], Any, Any, bool]:
        link = wire.DirectLink(server.address, SECRET, FRAME_MAX)
        closed: List[str] = []
        link.on_close = lambda: closed.append(str(link.closed))
        assert await link.deliver("m", "e", 1) == (1, "e", "m")
        writer = link._writer
        assert writer is not None
        writer.transport.abort()  # as when the peer's process is gone: the loop closes the transport
        beats = []
        for _ in range(5):  # the read loop has not reported the close yet when the next beat is due
            beats.append(link.heartbeat())
            await asyncio.sleep(0)
        try:
            late = await asyncio.wait_for(link.deliver("m2", "e", 2), timeout=2.0)
        except wire.LinkClosedError as exc:
            late = exc
        return closed, beats, late, link.heartbeat()

    closed, beats, late, beat_after = uvloop.run(go())
    assert len(closed) == 1, closed  # reported once, whoever saw it first
    assert beats[-1] is False and not beat_after  # no beat raised; none goes out once it is seen closed
    assert isinstance(late, wire.LinkClosedError)


def test_the_fast_path_pickles_core_messages_without_cloudpickle_through_a_plain_dict(monkeypatch: Any) -> None:
    """``wire.dumps`` pickles a Deliver with the C pickler and a plain-dict dispatch table (its lookup
    per object stays in C; a ChainMap cost a Python call per object): cloudpickle is never reached."""
    import dataclasses

    import ray

    from ftactors.core import Announcement, Deliver, Kind, MsgId, Request
    from ftactors.core import messages

    table = wire._fast_table()
    assert type(table) is dict
    classes = [c for c in vars(messages).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
               and c.__module__ == messages.__name__]
    assert classes and all(c in table for c in classes) and Kind in table and ray.ObjectRef in table

    class NoCloudpickle:
        def __init__(self, *a: Any, **k: Any) -> None:
            raise AssertionError("the fast path fell back to cloudpickle")
    monkeypatch.setattr(wire, "_RefGuard", NoCloudpickle)
    mid = MsgId("c", 1)
    msg = Deliver(view=3, requests=(Request(kind=Kind.ASYNC_REQUEST, msg_id=mid, group="g", method="m",
                                            payload=b"x", holds=(((), 1, 1),)),),
                  announcements=(Announcement("g", 3, 1, mid),))
    body = wire.dumps(msg)
    # one global for every message and the kind (``_build`` and a code each): no class by name
    assert body.count(b"_build") == 1 and b"Request" not in body and b"ASYNC_REQUEST" not in body
    back = wire.loads(body)
    assert back == msg and back.requests[0].kind is Kind.ASYNC_REQUEST


def test_every_core_message_and_kind_round_trips_by_code_and_an_unknown_code_is_a_bad_body() -> None:
    """The codes are the classes' order by name (every process of one installation agrees); a body
    naming a code no class has is a bad body, not a crash."""
    import pickle

    from ftactors.core import Kind, MsgId, Outcome, Reply

    codes = wire._codes()
    assert sorted(codes.values()) == list(range(len(codes))) and codes[Kind] == len(codes) - 1
    for kind in Kind:
        assert wire.loads(wire.dumps(kind)) is kind
    rep = Reply(MsgId("c", 2), "g", 1, 4, Outcome(True, {"v": [1, 2]}))
    assert wire.loads(wire.dumps(rep)) == rep

    class Unknown:
        def __reduce__(self) -> Any:
            return wire._build, (len(codes), "x")
    with pytest.raises(wire.FrameError, match="KeyError"):
        wire.loads(pickle.dumps(Unknown(), protocol=5))


def test_a_reducer_registered_after_the_table_was_built_is_used() -> None:
    import copyreg

    class Late:
        pass

    wire._fast_table()
    copyreg.pickle(Late, lambda obj: (str, ("late",)))
    try:
        assert wire.loads(wire.dumps(Late())) == "late"
    finally:
        del copyreg.dispatch_table[Late]


def test_a_forged_request_body_is_a_bad_body_and_nothing_runs(server: Any) -> None:
    """A body that unpickles to a message with invalid fields fails in the message's constructor
    (messages pickle through it): the replica drops the connection, and nothing runs."""
    import pickle

    from ftactors.core import Kind, MsgId, Request

    class Forge:
        def __reduce__(self) -> Any:
            return Request, (Kind.REPLY, MsgId("c", 1), "g", "m")  # REPLY is not a request kind
    with pytest.raises(wire.FrameError, match="RemoteProtocolError"):
        wire.loads(pickle.dumps(Forge(), protocol=5))
    s, _ = _authenticated_socket(server.address)
    s.sendall(wire.encode_deliver(1, 1, "e", pickle.dumps(Forge(), protocol=5)))
    _poll(lambda: server.dropped["bad body"] == 1)
    assert server.handler_log.ran == []
    s.close()


def test_send_answers_each_call_through_its_callback_once_and_a_close_fails_the_rest(server: Any) -> None:
    """``DirectLink.send`` (the router's path on an open link): no future; the read loop calls back
    with each answer frame, once, to its own call; a deferred flush (``flush_soon=False``) goes out at ``flush``; a close
    fails what is pending with LinkClosedError; a closed or unopened link and an oversized message
    raise at once."""
    got: List[Tuple[int, Any, Any]] = []

    def on_answer(call_id: int, frame: Any, error: Any) -> None:
        got.append((call_id, None if frame is None else wire.DirectLink.answer_of(call_id, frame), error))

    async def go() -> None:
        link = wire.DirectLink(server.address, SECRET, FRAME_MAX, connect_timeout_s=2.0)
        with pytest.raises(wire.LinkClosedError):
            link.send("early", "e1", 1, on_answer)  # not open yet: deliver() opens it
        assert await link.connect()
        ids = [link.send("a", "e1", 1, on_answer), link.send("b", "e1", 2, on_answer, flush_soon=False)]
        deferred = link.send("c", "e1", 3, on_answer, flush_soon=False)
        with pytest.raises(wire.NotOnWireError):
            link.send(b"z" * FRAME_MAX, "e1", 4, on_answer)
        link.flush()  # a no-op: "a" scheduled a flush that wrote all three
        for _ in range(500):
            if len(got) == 3:
                break
            await asyncio.sleep(0.01)
        # each answer to its own call (the replica's pool may answer them in any order)
        assert sorted(got) == [(ids[0], (1, "e1", "a"), None), (ids[1], (2, "e1", "b"), None),
                               (deferred, (3, "e1", "c"), None)]
        late = link.send("d", "e1", 5, on_answer, flush_soon=False)  # never flushed: pending at the close
        link.close("closed by the test")
        assert got[3][0] == late and got[3][1] is None and isinstance(got[3][2], wire.LinkClosedError)
        with pytest.raises(wire.LinkClosedError):
            link.send("e", "e1", 6, on_answer)

    asyncio.run(go())
    assert len(got) == 4
    assert sorted(m for _, _, m in server.handler_log.ran) == ["a", "b", "c"]


def test_answers_are_taken_whole_however_the_transport_splits_them() -> None:
    """``DirectLink._received`` (the protocol's bytes): frames cut anywhere or several in one read
    come out whole and in order; an answer over ``frame_bytes_max`` closes the link."""
    frames = (wire.encode_answer(wire.KIND_DELIVERED, 1, wire.dumps("one"))
              + wire.encode_answer(wire.KIND_HEARTBEAT_ACK, 7)
              + wire.encode_answer(wire.KIND_DELIVERED, 2, wire.dumps("two")))
    for cut in (1, 3, 5, 11, len(frames)):
        got: List[Tuple[int, Any]] = []
        heard: List[int] = []
        link = wire.DirectLink(("127.0.0.1", 1), SECRET, FRAME_MAX)
        link.on_heard = lambda: heard.append(1)
        for call_id in (1, 2):
            link._pending[call_id] = lambda cid, frame, error: got.append((cid, wire.DirectLink.answer_of(cid, frame)))
        for at in range(0, len(frames), cut):
            link._received(frames[at:at + cut])
        assert got == [(1, "one"), (2, "two")] and len(heard) == 3 and link.closed is None, cut
        assert not link._inbuf
    link = wire.DirectLink(("127.0.0.1", 1), SECRET, FRAME_MAX)
    link._received(struct.pack("!I", FRAME_MAX + 1))
    assert link.closed is not None and "over frame_bytes_max" in link.closed


def _fresh_dumps(obj: Any) -> bytes:
    """What ``wire.dumps`` wrote before it kept a pickler per thread: a new one for each body."""
    import io
    import pickle

    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=5)
    p.dispatch_table = wire._fast_table()
    p.dump(obj)
    return buf.getvalue()


def test_the_kept_pickler_writes_each_body_as_a_new_one_would_after_failures_and_nested_bodies() -> None:
    """``dumps`` keeps one pickler per thread (issue 11): each body is the bytes a new pickler writes,
    whatever came before it (a body refused for an ObjectRef, one that fell back to cloudpickle, a
    large one), and a reducer that pickles a body itself while the pickler is busy gets its own."""
    import ray

    from ftactors.core import Deliver, Kind, MsgId, Request

    def deliver(i: int) -> Deliver:
        return Deliver(view=1, requests=(Request(kind=Kind.SYNC_REQUEST, msg_id=MsgId("c", i), group="g",
                                                 method="m", payload=b"a" * i),))

    class Nested:
        def __reduce__(self) -> Any:
            return bytes, (wire.dumps(deliver(7)),)  # pickles a body while the outer one is being pickled

    with pytest.raises(wire.NotOnWireError):
        wire.dumps(("x", [ray.ObjectRef(b"0" * 28)]))
    assert wire.dumps(deliver(1)) == _fresh_dumps(deliver(1))
    assert callable(wire.loads(wire.dumps(lambda: 1)))  # by value, through cloudpickle
    assert wire.dumps(deliver(2)) == _fresh_dumps(deliver(2))
    assert wire.loads(wire.dumps(deliver(200_000))) == deliver(200_000)  # frames written out mid-body
    outer = wire.loads(wire.dumps(("outer", Nested(), deliver(3))))
    assert outer[0] == "outer" and wire.loads(outer[1]) == deliver(7) and outer[2] == deliver(3)
    shared = ("s", "s")
    assert wire.dumps([shared, shared]) == _fresh_dumps([shared, shared])  # the memo starts empty each time


def test_threads_pickle_bodies_at_once_each_with_its_own_pickler() -> None:
    from ftactors.core import MsgId, Outcome, Reply

    bad: List[Any] = []

    def work(t: int) -> None:
        for i in range(1, 300):
            rep = Reply(MsgId(f"c{t}", i), "g", 1, i, Outcome(True, [t, i] * i))
            if wire.loads(wire.dumps(rep)) != rep:
                bad.append((t, i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert bad == []

"""The direct data plane: authenticated TCP links between a group's router and its replicas.

Ray stays the control plane (it places, names, restarts and kills the actors); the per-call
traffic between the router and the replicas, Deliver out and Delivered back, travels over
one TCP connection per replica that the router opens to the replica's :class:`WireServer`.

Connection set-up (no secret on the wire; the per-group secret comes in the group spec)::

    server -> client   MAGIC + nonce_s                       (8 + 32 bytes)
    client -> server   nonce_c + HMAC(secret, "c" nonce_s nonce_c)   (32 + 32)
    server -> client   HMAC(secret, "s" nonce_s nonce_c)              (32)

Then frames, each a 4-byte big-endian length and a body of at most ``frame_bytes_max``:

    DELIVER    router -> replica   kind 1, call id, link seq, epoch, pickled Deliver
    DELIVERED  replica -> router   kind 2, call id, pickled Delivered
    PARKED     replica -> router   kind 3, call id: the answer holds an ObjectRef or is too large;
                                   the router fetches it with a Ray call (``_Replica.parked``)
    ERROR      replica -> router   kind 4, call id, the error's text
    HEARTBEAT  router -> replica   kind 5, beat number: sent on a link silent for heartbeat_interval_s
    BEAT_ACK   replica -> router   kind 6, beat number: written by the connection's reader thread at
                                   once (a running method does not hold it up; a stopped or cut-off
                                   process misses it, and heartbeat_misses_max misses are a suspicion)

A peer that fails the handshake, sends a truncated, oversized or unknown frame, or a body that
is not a Deliver is disconnected and logged once per kind of fault; nothing it sent executes.
A message that holds an ObjectRef never goes on the wire: it takes the Ray call, so the object
store keeps tracking the reference (large arguments and checkpoints stay in the object store).
"""

from __future__ import annotations

import asyncio
import collections
import copyreg
import dataclasses
import hashlib
import hmac
import io
import logging
import operator
import os
import pickle
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

# Ray's own cloudpickle, not the package: a class pickled by value (a driver script's exception or
# value type) keeps one tracker id through the replicas, the router and Ray's return to the caller,
# so the caller unpickles it as its own class (docs/faults.md row 57).
from ray import cloudpickle

log = logging.getLogger("ftactors")

MAGIC = b"FTAWIRE1"
NONCE_BYTES = 32
MAC_BYTES = 32
_LEN = struct.Struct("!I")
_DELIVER = struct.Struct("!BQQB")  # kind, call id, link seq, epoch length
_ANSWER = struct.Struct("!BQ")  # kind, call id

KIND_DELIVER = 1
KIND_DELIVERED = 2
KIND_PARKED = 3
KIND_ERROR = 4
KIND_HEARTBEAT = 5
KIND_HEARTBEAT_ACK = 6
_ANSWER_KINDS = frozenset({KIND_DELIVERED, KIND_PARKED, KIND_ERROR, KIND_HEARTBEAT_ACK})


class WireError(Exception):
    """Base of the data plane's errors."""


class AuthError(WireError):
    """The peer failed the challenge-response (or is not speaking this protocol)."""


class FrameError(WireError):
    """A truncated, oversized or malformed frame."""


class LinkClosedError(WireError):
    """The connection is closed: the replica is suspected at once."""


class NotOnWireError(WireError):
    """The message holds an ObjectRef or is larger than a frame: it takes the Ray call."""


class ParkedError(WireError):
    """The replica parked its answer (see ``KIND_PARKED``); fetch it by call id with a Ray call.

    Args:
        call_id: the call whose answer is parked.
    """

    def __init__(self, call_id: int) -> None:
        super().__init__(f"answer {call_id} parked")
        self.call_id = call_id


class RemoteDeliverError(WireError):
    """The replica's ``deliver`` raised (the text of its exception)."""


# --------------------------------------------------------------------------- pieces


def new_secret() -> bytes:
    """A fresh per-group secret (32 random bytes)."""
    import secrets

    return secrets.token_bytes(32)


def proof(secret: bytes, side: bytes, nonce_s: bytes, nonce_c: bytes) -> bytes:
    """The HMAC-SHA256 one side of the handshake shows: ``side`` is ``b"c"`` or ``b"s"``."""
    return hmac.new(secret, b"ftactors-wire-" + side + nonce_s + nonce_c, hashlib.sha256).digest()


class _RefGuard(cloudpickle.Pickler):
    """cloudpickle that refuses ObjectRefs (they must travel through Ray to stay tracked)."""

    def persistent_id(self, obj: Any) -> Any:
        if _is_ref(obj):
            raise NotOnWireError("holds an ObjectRef")
        return None


_REF_TYPES: Tuple[type, ...] = ()


def _is_ref(obj: Any) -> bool:
    global _REF_TYPES
    if not _REF_TYPES:
        try:
            import ray

            _REF_TYPES = (ray.ObjectRef,)
        except ImportError:  # pragma: no cover - ray is a dependency
            _REF_TYPES = (type(None.__class__),)
    return isinstance(obj, _REF_TYPES)


def _refuse_ref(obj: Any) -> Any:
    raise NotOnWireError("holds an ObjectRef")


#: the wire codes of the core messages' classes and of ``Kind`` (:func:`_codes`): what :func:`_build` calls
_BUILD: Dict[int, Callable[..., Any]] = {}


def _codes() -> Dict[type, int]:
    """Number the core messages' classes (by name, so every process of one installation agrees) and
    ``Kind`` after them, and fill :data:`_BUILD` with what rebuilds each.

    Returns:
        Each class's code.
    """
    from ftactors.core import messages

    classes = sorted((cls for cls in vars(messages).values()
                      if isinstance(cls, type) and dataclasses.is_dataclass(cls)
                      and cls.__module__ == messages.__name__ and all(f.init for f in dataclasses.fields(cls))),
                     key=lambda cls: cls.__name__)
    codes: Dict[type, int] = {cls: code for code, cls in enumerate(classes)}
    build: Dict[int, Callable[..., Any]] = dict(enumerate(classes))
    codes[messages.Kind] = len(classes)
    build[len(classes)] = {kind.value: kind for kind in messages.Kind}.__getitem__
    _BUILD.update(build)
    return codes


def _build(code: int, *fields: Any) -> Any:
    """Rebuild a core message from the wire: its class's code and its fields' values, through its
    constructor (a forged or corrupted body meets the same checks as a message built in code); a
    ``Kind`` from its value. An unknown code raises ``KeyError`` (:func:`loads`: a bad body)."""
    if not _BUILD:
        _codes()
    return _BUILD[code](*fields)


def _message_reducer(cls: type, code: int) -> Callable[[Any], Any]:
    """Pickle a core message as ``_build(code, *fields)``.

    A frozen slotted dataclass pickles through ``dataclasses``' Python ``__getstate__`` and
    ``__setstate__``, which look its fields up for every object; this is about 4x faster to pickle
    and 2x faster to unpickle. The fields are read by one ``operator.attrgetter`` (C), not a loop.
    The class goes as a small int: the body names one global, ``_build``, where naming each class
    cost the pickler an import lookup per class and the unpickler another (about 2.5 us each).
    """
    names = tuple(f.name for f in dataclasses.fields(cls))
    if len(names) == 1:  # attrgetter of one name returns the value, not a 1-tuple
        one = operator.attrgetter(names[0])

        def reduce_one(obj: Any) -> Any:
            return _build, (code, one(obj))

        return reduce_one
    get = operator.attrgetter(*names)

    def reduce(obj: Any) -> Any:
        return _build, (code, *get(obj))

    return reduce


def _kind_reducer(code: int) -> Callable[[Any], Any]:
    """Pickle a ``Kind`` as ``_build(code, value)``: a dict lookup on load, where ``Enum``'s own
    reduction calls ``Kind(1)`` through the enum's metaclass and a global needs an import lookup."""

    def reduce(kind: Any) -> Any:
        return _build, (code, kind.value)

    return reduce


#: (the size of ``copyreg.dispatch_table`` it was built from, the table); rebuilt if that changes
_FAST_TABLE: List[Any] = []


def _fast_table() -> Dict[type, Any]:
    """``copyreg``'s reducers, the core messages' own, and one for ObjectRefs that refuses them.

    A plain dict, so that the C pickler's lookup for each object it pickles stays in C (a
    ``ChainMap`` costs a Python ``__getitem__`` per object). It is a copy of ``copyreg``'s table,
    rebuilt whenever that table's size changes (a library registering a reducer later).
    """
    if not _FAST_TABLE or _FAST_TABLE[0] != len(copyreg.dispatch_table):
        from ftactors.core import messages

        _is_ref(None)  # resolves _REF_TYPES
        table: Dict[type, Any] = dict(copyreg.dispatch_table)
        for cls, code in _codes().items():
            table[cls] = _kind_reducer(code) if cls is messages.Kind else _message_reducer(cls, code)
        for t in _REF_TYPES:
            table[t] = _refuse_ref
        _FAST_TABLE[:] = [len(copyreg.dispatch_table), table]
    return _FAST_TABLE[1]


def dumps(obj: Any) -> bytes:
    """Pickle (protocol 5) a message body.

    The C pickler first: an ObjectRef is refused through its dispatch table, which costs a dict
    lookup in C per object where a ``persistent_id`` hook costs a Python call, and the core's
    messages pickle as their fields (:func:`_message_reducer`): a Deliver of 5 requests pickles in
    about 55 us against 220-250 us with cloudpickle and the hook, and unpickles in 37 us against 85.
    What the C pickler cannot pickle by reference (a class defined in ``__main__``, a lambda) goes
    through cloudpickle, with the same refusal of ObjectRefs.

    Raises:
        NotOnWireError: ``obj`` holds an ObjectRef.
    """
    table = _fast_table()
    mine: Optional[_ThreadPickler] = getattr(_PICKLERS, "p", None)
    if mine is None:
        mine = _PICKLERS.p = _ThreadPickler()
    if mine.busy:  # a reducer that pickles a body itself (nested): a pickler of its own
        buf = io.BytesIO()
        fast = pickle.Pickler(buf, protocol=5)
        fast.dispatch_table = table
    else:
        buf, fast = mine.buf, mine.pickler
        if fast.dispatch_table is not table:
            fast.dispatch_table = table
        mine.busy = True
    try:
        fast.dump(obj)
        return buf.getvalue()
    except NotOnWireError:
        raise
    except Exception:  # not picklable by reference: by value, as cloudpickle does
        pass
    finally:
        if fast is mine.pickler:
            mine.reset()
    buf = io.BytesIO()
    _RefGuard(buf, protocol=5).dump(obj)
    return buf.getvalue()


class _ThreadPickler:
    """One thread's pickler for :func:`dumps`, kept between bodies: making a ``Pickler`` and its
    ``BytesIO`` for each body was about a fifth of a one-request Deliver's pickling (issue 11). It
    keeps nothing of a body once written: its memo is cleared and its buffer emptied after each."""

    __slots__ = ("buf", "pickler", "busy")

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.pickler = pickle.Pickler(self.buf, protocol=5)
        self.pickler.dispatch_table = _fast_table()
        self.busy = False  # in a dump (a nested dumps on this thread takes a pickler of its own)

    def reset(self) -> None:
        """Forget the body just pickled (or the part written before it failed)."""
        self.pickler.clear_memo()
        self.buf.seek(0)
        self.buf.truncate()
        self.busy = False


#: each thread's :class:`_ThreadPickler` (the router's loop, a replica's wire workers, Ray's threads)
_PICKLERS = threading.local()


def loads(body: bytes) -> Any:
    """Unpickle a body from an authenticated peer.

    Raises:
        FrameError: the body is not a pickle.
    """
    try:
        return pickle.loads(body)
    except Exception as exc:
        raise FrameError(f"undecodable body: {type(exc).__name__}") from None


def encode_deliver(call_id: int, seq: int, epoch: str, body: bytes) -> bytes:
    """A DELIVER frame, its length prefix included."""
    e = epoch.encode()
    if len(e) > 255:
        raise ValueError("epoch longer than 255 bytes")
    head = _DELIVER.pack(KIND_DELIVER, call_id, seq, len(e)) + e
    return _LEN.pack(len(head) + len(body)) + head + body


def decode_deliver(frame: bytes) -> Tuple[int, int, str, bytes]:
    """(call id, link seq, epoch, body) of a DELIVER frame body (without its length prefix).

    Raises:
        FrameError: not a well-formed DELIVER frame.
    """
    if len(frame) < _DELIVER.size:
        raise FrameError("short frame")
    kind, call_id, seq, elen = _DELIVER.unpack_from(frame)
    if kind != KIND_DELIVER:
        raise FrameError(f"unexpected frame kind {kind}")
    end = _DELIVER.size + elen
    if len(frame) < end:
        raise FrameError("short frame")
    try:
        epoch = frame[_DELIVER.size:end].decode()
    except UnicodeDecodeError:
        raise FrameError("bad epoch") from None
    return call_id, seq, epoch, frame[end:]


def encode_heartbeat(beat: int) -> bytes:
    """A HEARTBEAT frame, its length prefix included."""
    return _LEN.pack(_ANSWER.size) + _ANSWER.pack(KIND_HEARTBEAT, beat)


def encode_answer(kind: int, call_id: int, body: bytes = b"") -> bytes:
    """A DELIVERED, PARKED or ERROR frame, its length prefix included."""
    assert kind in _ANSWER_KINDS, kind
    return _LEN.pack(_ANSWER.size + len(body)) + _ANSWER.pack(kind, call_id) + body


def decode_answer(frame: bytes) -> Tuple[int, int, bytes]:
    """(kind, call id, body) of an answer frame body.

    Raises:
        FrameError: not a well-formed answer frame.
    """
    if len(frame) < _ANSWER.size:
        raise FrameError("short frame")
    kind, call_id = _ANSWER.unpack_from(frame)
    if kind not in _ANSWER_KINDS:
        raise FrameError(f"unexpected frame kind {kind}")
    return kind, call_id, frame[_ANSWER.size:]


class _LogOnce:
    """Warn once per kind of fault (a fuzzer or a scanner must not flood the log)."""

    KINDS_MAX = 64

    def __init__(self, where: str) -> None:
        self.where = where
        self.seen: Set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, kind: str, detail: str) -> None:
        with self.lock:
            first = kind not in self.seen and len(self.seen) < self.KINDS_MAX
            self.seen.add(kind)
        if first:
            log.warning("%s: dropped a connection (%s: %s); further ones like it are not logged",
                        self.where, kind, detail)
        else:
            log.debug("%s: dropped a connection (%s: %s)", self.where, kind, detail)


# --------------------------------------------------------------------------- replica side

#: (call id, link seq, epoch, body) -> (answer kind, answer body)
Handler = Callable[[int, int, str, bytes], Tuple[int, bytes]]


def bind_in_range(host: str, port_range: Optional[Tuple[int, int]]) -> socket.socket:
    """A listening TCP socket on ``host`` at the first free port of ``port_range`` (any port if None).

    Raises:
        WireError: no port of the range is free.
    """
    ports: List[int] = [0] if port_range is None else list(range(port_range[0], port_range[1] + 1))
    for port in ports:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            s.close()
            continue
        s.listen(16)
        return s
    raise WireError(f"no free port on {host} in {port_range[0]}-{port_range[1]}")  # type: ignore[index]


class WireServer:
    """A replica's listening socket: authenticates the router's connections and serves their frames.

    Each connection has a reader thread; each DELIVER runs ``handler`` on a worker of a bounded
    pool (a Deliver may wait for an earlier one, or stand by while another drives), and its answer
    is written back on the same connection.

    Args:
        host: the node's IP to bind (never 0.0.0.0).
        port_range: (first, last) ports to try, or None for any free port.
        secret: the group's secret.
        handler: runs one Deliver (see :data:`Handler`).
        frame_bytes_max: larger frames drop the connection.
        workers_max: Delivers running at once.
        connections_max: connections held at once (more are refused).
        handshake_timeout_s: a peer that does not finish the handshake in this time is dropped.
        name: for log lines.

    Raises:
        WireError: no free port in the range.
    """

    def __init__(self, host: str, port_range: Optional[Tuple[int, int]], secret: bytes, handler: Handler,
                 frame_bytes_max: int, workers_max: int = 16, connections_max: int = 16,
                 handshake_timeout_s: float = 5.0, name: str = "ftactors wire") -> None:
        assert secret, "a wire server needs a secret"
        self.secret, self.handler, self.frame_bytes_max = secret, handler, frame_bytes_max
        self.connections_max, self.handshake_timeout_s = connections_max, handshake_timeout_s
        self.name = name
        self._sock = bind_in_range(host, port_range)
        self.address: Tuple[str, int] = (host, self._sock.getsockname()[1])
        self._pool = ThreadPoolExecutor(max_workers=workers_max, thread_name_prefix="ftactors-wire")
        self._conns: Set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.drop_log = _LogOnce(name)
        self.dropped: Dict[str, int] = collections.Counter()  # kind of fault -> connections dropped
        self.served = 0  # Delivers run
        self.heartbeats = 0  # heartbeats answered
        threading.Thread(target=self._accept_loop, daemon=True, name="ftactors-wire-accept").start()

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closed = True
        for s in [self._sock, *list(self._conns)]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._pool.shutdown(wait=False)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            with self._lock:
                full = len(self._conns) >= self.connections_max
                if not full:
                    self._conns.add(conn)
            if full:
                self._drop("too many connections", f"{len(self._conns)} open", conn)
                continue
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                             name="ftactors-wire-conn").start()

    def _drop(self, kind: str, detail: str, conn: socket.socket) -> None:
        self.dropped[kind] += 1
        self.drop_log(kind, detail)
        try:
            conn.close()
        except OSError:
            pass

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = conn.makefile("rb")
            try:
                self._handshake(conn, f)
            except (AuthError, ConnectionError, OSError) as exc:
                self._drop("handshake failed", f"{peer}: {exc}", conn)
                return
            conn.settimeout(None)
            write_lock = threading.Lock()
            while not self._closed:
                try:
                    frame = self._read_frame(f)
                    if frame[:1] == bytes((KIND_HEARTBEAT,)):
                        self._beat(conn, write_lock, frame)
                        continue
                    call_id, seq, epoch, body = decode_deliver(frame)
                except ConnectionError:
                    conn.close()
                    return
                except (FrameError, OSError) as exc:
                    self._drop("bad frame", f"{peer}: {exc}", conn)
                    return
                self._pool.submit(self._run, conn, write_lock, call_id, seq, epoch, body)
        finally:
            with self._lock:
                self._conns.discard(conn)

    def _handshake(self, conn: socket.socket, f: Any) -> None:
        conn.settimeout(self.handshake_timeout_s)
        nonce_s = os.urandom(NONCE_BYTES)
        conn.sendall(MAGIC + nonce_s)
        answer = _read_exact(f, NONCE_BYTES + MAC_BYTES)
        nonce_c, mac = answer[:NONCE_BYTES], answer[NONCE_BYTES:]
        if not hmac.compare_digest(mac, proof(self.secret, b"c", nonce_s, nonce_c)):
            raise AuthError("wrong proof")
        conn.sendall(proof(self.secret, b"s", nonce_s, nonce_c))

    def _beat(self, conn: socket.socket, write_lock: threading.Lock, frame: bytes) -> None:
        """Answer a heartbeat at once, from the reader thread.

        Raises:
            FrameError: a malformed heartbeat.
            OSError: the router is gone.
        """
        if len(frame) != _ANSWER.size:
            raise FrameError("bad heartbeat")
        _, beat = _ANSWER.unpack(frame)
        self.heartbeats += 1
        with write_lock:
            conn.sendall(encode_answer(KIND_HEARTBEAT_ACK, beat))

    def _read_frame(self, f: Any) -> bytes:
        head = f.read(_LEN.size)
        if not head:
            raise ConnectionError("closed")
        if len(head) < _LEN.size:
            raise FrameError("truncated length")
        (n,) = _LEN.unpack(head)
        if n > self.frame_bytes_max:
            raise FrameError(f"frame of {n} bytes over frame_bytes_max {self.frame_bytes_max}")
        frame = f.read(n)
        if len(frame) < n:
            raise FrameError(f"truncated frame ({len(frame)} of {n} bytes)")
        return bytes(frame)

    def _run(self, conn: socket.socket, write_lock: threading.Lock, call_id: int, seq: int, epoch: str,
             body: bytes) -> None:
        try:
            kind, out = self.handler(call_id, seq, epoch, body)
        except FrameError as exc:  # not a Deliver: the peer misbehaves
            self._drop("bad body", str(exc), conn)
            return
        except Exception as exc:
            kind, out = KIND_ERROR, repr(exc).encode()[:4096]
        self.served += 1
        frame = encode_answer(kind, call_id, out)
        try:
            with write_lock:
                conn.sendall(frame)
        except OSError:  # the router is gone; it resends what it needs to its next connection
            pass


def _read_exact(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise ConnectionError("closed during the handshake")
    return bytes(data)


# --------------------------------------------------------------------------- router side


class _AnswerProtocol(asyncio.Protocol):
    """A link's connection once authenticated: its bytes go to ``DirectLink._received``."""

    def __init__(self, link: "DirectLink") -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link._received(data)

    def eof_received(self) -> Optional[bool]:
        return False  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.link.close("the replica closed the connection")


#: ``DirectLink.send``'s callback: (call id, the answer frame (kind, body) or None, the error or None)
OnAnswer = Callable[[int, Optional[Tuple[int, bytes]], Optional[BaseException]], None]


class DirectLink:
    """The router's connection to one replica (asyncio, on the router's event loop).

    ``deliver(msg, epoch, seq)`` sends one Deliver and returns its Delivered. Frames written in
    one step of the event loop go out in one write. When the connection closes every pending and
    later ``deliver`` raises :class:`LinkClosedError` and ``on_close`` runs (the router's links
    decide what it means: :mod:`ftactors.host.links`). ``heartbeat()`` sends a heartbeat; every
    frame that comes back (an answer, a heartbeat's) calls ``on_heard``.

    Args:
        address: the replica's (host, port).
        secret: the group's secret.
        frame_bytes_max: a larger Deliver raises :class:`NotOnWireError` (it takes the Ray call).
        connect_timeout_s: for connecting and the handshake.
        pending_max: Delivers awaiting their answer at once (an assertion: the core bounds them).
    """

    def __init__(self, address: Tuple[str, int], secret: bytes, frame_bytes_max: int,
                 connect_timeout_s: float = 5.0, pending_max: int = 100_000) -> None:
        self.address, self.secret, self.frame_bytes_max = address, secret, frame_bytes_max
        self.connect_timeout_s, self.pending_max = connect_timeout_s, pending_max
        self._writer: Optional[asyncio.StreamWriter] = None
        self._connecting: Optional[asyncio.Future] = None
        self._pending: Dict[int, Any] = {}  # call id -> a future (deliver) or a callback (send)
        self._out: List[bytes] = []
        self._flush_soon = False  # a _flush is scheduled
        self._next_id = 0
        self.closed: Optional[str] = None  # why, once closed
        self._inbuf = bytearray()  # answer bytes read, not yet a whole frame
        #: called once closed
        self.on_close: Optional[Callable[[], None]] = None
        self.on_heard: Optional[Callable[[], None]] = None  # a frame came from the replica
        self._beats = 0

    async def deliver(self, msg: Any, epoch: str, seq: int) -> Any:
        """Send ``msg`` (a Deliver) as link batch ``seq`` of router incarnation ``epoch``.

        Returns:
            The replica's Delivered.

        Raises:
            NotOnWireError: ``msg`` holds an ObjectRef or is over ``frame_bytes_max``: send it with Ray.
            ParkedError: the answer is parked at the replica: fetch it with Ray.
            LinkClosedError: the connection is closed (or could not be opened).
            RemoteDeliverError: the replica's ``deliver`` raised.
        """
        body = dumps(msg)
        if len(body) + 64 > self.frame_bytes_max:
            raise NotOnWireError(f"{len(body)} bytes")
        if self._writer is None:
            await self._connect()
        if self.closed is not None:
            raise LinkClosedError(self.closed)
        call_id, fut = self._queue(body, epoch, seq)
        return self.answer_of(call_id, await fut)

    def send(self, msg: Any, epoch: str, seq: int, on_answer: "OnAnswer", flush_soon: bool = True) -> int:
        """``deliver`` without a future or an await, on an open link: queue ``msg`` now (it goes out
        in this step of the event loop's write, or at the caller's :meth:`flush`); the link calls
        ``on_answer(call_id, frame, None)`` with its answer frame ``(kind, body)`` as it reads it (see
        :meth:`answer_of`), or ``close`` calls ``on_answer(call_id, None, LinkClosedError)``. Exactly
        once either way; it must not raise.

        Args:
            flush_soon: False: the caller calls :meth:`flush` before its step of the event loop ends.

        Returns:
            The call id.

        Raises:
            NotOnWireError: as ``deliver``.
            LinkClosedError: the link is closed, or not open yet (use ``deliver``).
        """
        body = dumps(msg)
        if len(body) + 64 > self.frame_bytes_max:
            raise NotOnWireError(f"{len(body)} bytes")
        if self._writer is None or self.closed is not None:
            raise LinkClosedError(self.closed or "not open")
        return self._queue(body, epoch, seq, on_answer, flush_soon)[0]

    def _queue(self, body: bytes, epoch: str, seq: int, on_answer: Optional["OnAnswer"] = None,
               flush_soon: bool = True) -> Tuple[int, "asyncio.Future[Tuple[int, bytes]]"]:
        self._next_id += 1
        call_id = self._next_id
        fut: Any = None
        if on_answer is None:
            fut = asyncio.get_running_loop().create_future()
        self._pending[call_id] = fut if on_answer is None else on_answer
        assert len(self._pending) <= self.pending_max, "the core bounds the batches in flight"
        if not self._out and flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(encode_deliver(call_id, seq, epoch, body))
        return call_id, fut

    @staticmethod
    def answer_of(call_id: int, frame: Tuple[int, bytes]) -> Any:
        """The Delivered in answer frame ``(kind, body)`` of call ``call_id``.

        Raises:
            ParkedError: the answer is parked at the replica.
            RemoteDeliverError: the replica's ``deliver`` raised.
            FrameError: the body is not a pickle.
        """
        kind, out = frame
        if kind == KIND_DELIVERED:
            return loads(out)
        if kind == KIND_PARKED:
            raise ParkedError(call_id)
        raise RemoteDeliverError(out.decode(errors="replace"))

    def heartbeat(self) -> bool:
        """Send a heartbeat now (the replica's reader answers it at once).

        Returns:
            Whether it went out (False: not open, or closed).
        """
        if self._writer is None or self.closed is not None:
            return False
        self._beats += 1
        return self._write(encode_heartbeat(self._beats))

    def _write(self, data: bytes) -> bool:
        """Write ``data`` on the open connection; a connection the loop already closed (the replica's
        process or node is gone, and the link has not read its close yet) closes the link instead of
        raising: uvloop raises ``RuntimeError`` on such a write, which would end the caller (the
        router's tick loop, docs/faults.md row 41).

        Returns:
            Whether it went out (False: the link is closed now, ``on_close`` was called).
        """
        writer = self._writer
        assert writer is not None
        try:
            if writer.transport.is_closing():
                raise ConnectionResetError("the transport is closed")
            writer.write(data)
        except (RuntimeError, OSError) as exc:
            self.close(f"the connection to the replica was lost ({type(exc).__name__})")
            return False
        return True

    def close(self, why: str = "closed by the router") -> None:
        """Close the connection; pending Delivers raise :class:`LinkClosedError`."""
        if self.closed is None:
            self.closed = why
            if self.on_close is not None:
                self.on_close()
        if self._writer is not None:
            try:
                self._writer.close()
            except (RuntimeError, OSError):  # the loop closed it already
                pass
        pending, self._pending = self._pending, {}
        for call_id, fut in pending.items():
            if not isinstance(fut, asyncio.Future):  # send()'s callback
                fut(call_id, None, LinkClosedError(self.closed))
            elif not fut.done():
                fut.set_exception(LinkClosedError(self.closed))

    def flush(self) -> None:
        """Write what ``send(..., flush_soon=False)`` queued (unless a flush is scheduled: it writes)."""
        if self._out and not self._flush_soon:
            self._flush()

    def _flush(self) -> None:
        self._flush_soon = False
        out, self._out = self._out, []
        if self._writer is not None and self.closed is None and out:
            self._write(b"".join(out))  # a lost connection closes the link: its Delivers raise LinkClosedError

    async def connect(self) -> bool:
        """Open the connection now (``deliver`` opens it otherwise).

        Returns:
            Whether it is open; if not, ``closed`` says why.
        """
        await self._connect()
        return self.closed is None

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        await asyncio.shield(self._connecting)

    async def _open(self) -> None:
        try:
            r, w = await asyncio.wait_for(self._handshake(), timeout=self.connect_timeout_s)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, AuthError) as exc:
            self.close(f"could not connect to {self.address}: {exc!r}")
            return
        self._writer = w
        # the answers from here on: taken as the transport reads them (a protocol), where a reader
        # task took a step of the loop to wake for each; the replica sends nothing unasked
        buffered = r._buffer  # type: ignore[attr-defined]  # what came with the handshake's last read
        w.transport.set_protocol(_AnswerProtocol(self))
        if buffered:
            self._received(bytes(buffered))

    async def _handshake(self) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.open_connection(*self.address)
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        hello = await r.readexactly(len(MAGIC) + NONCE_BYTES)
        if hello[:len(MAGIC)] != MAGIC:
            w.close()
            raise AuthError("not an ftactors wire server")
        nonce_s, nonce_c = hello[len(MAGIC):], os.urandom(NONCE_BYTES)
        w.write(nonce_c + proof(self.secret, b"c", nonce_s, nonce_c))
        mac = await r.readexactly(MAC_BYTES)
        if not hmac.compare_digest(mac, proof(self.secret, b"s", nonce_s, nonce_c)):
            w.close()
            raise AuthError("the replica does not hold the group's secret")
        return r, w

    def _received(self, data: bytes) -> None:
        """Bytes from the replica (``_AnswerProtocol.data_received``): each whole answer frame is taken
        at once, in order (a ``send`` callback is called here, a ``deliver`` future's result set)."""
        buf = self._inbuf
        buf += data
        at, size = 0, len(buf)
        try:
            while self.closed is None and size - at >= _LEN.size:
                (n,) = _LEN.unpack_from(buf, at)
                if n > self.frame_bytes_max:
                    raise FrameError(f"answer of {n} bytes over frame_bytes_max")
                if size - at - _LEN.size < n:
                    break
                kind, call_id, body = decode_answer(bytes(buf[at + _LEN.size:at + _LEN.size + n]))
                at += _LEN.size + n
                if self.on_heard is not None:
                    self.on_heard()
                if kind == KIND_HEARTBEAT_ACK:
                    continue
                fut = self._pending.pop(call_id, None)
                if fut is None:
                    continue
                if not isinstance(fut, asyncio.Future):  # send()'s callback, at once
                    try:
                        fut(call_id, (kind, body), None)
                    except Exception:  # a bug of the callback's: this link's later answers still come
                        log.exception("ftactors wire %s: an answer's callback raised", self.address)
                elif not fut.done():
                    fut.set_result((kind, body))
        except FrameError as exc:
            why = f"bad frame from the replica: {exc}"
            log.warning("ftactors wire %s: %s", self.address, why)
            self.close(why)
        finally:
            del buf[:at]

"""Gate 1 of the direct data plane (issue 11): transport and serializer primitives.

Two processes on this machine: the driver sends 100-byte envelopes to an echo process
that decodes each one and encodes it back. Measured for each transport and each
serializer: the round trip of one message at a time (median and p99), the rate of
pipelined messages, and the CPU time both processes spend per message.

    python -m ftactors.bench.transport               # a table
    python -m ftactors.bench.transport --json out.json

Transports: ``asyncio`` (asyncio TCP streams, 4-byte length prefix), ``socket`` (blocking
TCP sockets, one thread per direction), ``zmq`` (a pyzmq PAIR socket over TCP; skipped when
pyzmq is not installed). Serializers: ``pickle5`` (pickle protocol 5), ``msgpack``,
``msgspec`` (msgspec's msgpack; skipped when not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import pickle
import socket
import statistics
import struct
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

_LEN = struct.Struct("!I")
#: the envelope: (kind, view, seq, epoch, payload); about 100 bytes once encoded
ENVELOPE = (3, 7, 123456, "00000001764633000000-abcdef12", b"x" * 48)


def serializers() -> Dict[str, Tuple[Callable[[Any], bytes], Callable[[bytes], Any]]]:
    """The serializers installed here: name -> (encode, decode)."""
    out: Dict[str, Tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = {
        "pickle5": (lambda o: pickle.dumps(o, protocol=5), pickle.loads)}
    try:
        import msgpack

        out["msgpack"] = (msgpack.packb, lambda b: msgpack.unpackb(b, use_list=False))
    except ImportError:
        pass
    try:
        import msgspec

        enc, dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
        out["msgspec"] = (enc.encode, dec.decode)
    except ImportError:
        pass
    return out


def transports() -> List[str]:
    """The transports installed here."""
    names = ["asyncio", "socket"]
    try:
        import zmq  # noqa: F401

        names.append("zmq")
    except ImportError:
        pass
    return names


# ------------------------------------------------------------------ the echo process

def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def _echo_main(transport: str, ser: str, port_q: Any) -> None:
    """Serve one connection: decode each message, encode it back."""
    enc, dec = serializers()[ser]
    if transport == "zmq":
        import zmq

        ctx = zmq.Context()
        s = ctx.socket(zmq.PAIR)
        port = s.bind_to_random_port("tcp://127.0.0.1")
        port_q.put(port)
        while True:
            data = s.recv()
            if data == b"":
                return
            s.send(enc(dec(data)))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port_q.put(lsock.getsockname()[1])
    if transport == "asyncio":
        asyncio.run(_echo_asyncio(lsock, enc, dec))
        return
    conn, _ = lsock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            (n,) = _LEN.unpack(_recv_exact(conn, 4))
            out = enc(dec(_recv_exact(conn, n)))
            conn.sendall(_LEN.pack(len(out)) + out)
    except ConnectionError:
        return


async def _echo_asyncio(lsock: socket.socket, enc: Callable, dec: Callable) -> None:
    done = asyncio.Event()

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                (n,) = _LEN.unpack(await r.readexactly(4))
                out = enc(dec(await r.readexactly(n)))
                w.write(_LEN.pack(len(out)) + out)
                if w.transport.get_write_buffer_size() > 1 << 16:
                    await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            done.set()

    server = await asyncio.start_server(serve, sock=lsock)
    await done.wait()
    server.close()


# ------------------------------------------------------------------ the driver side

class _Client:
    """One connection to the echo process: ``one()`` a round trip, ``many(n)`` n pipelined."""

    def __init__(self, transport: str, port: int, enc: Callable, dec: Callable) -> None:
        self.transport, self.enc, self.dec = transport, enc, dec
        if transport == "zmq":
            import zmq

            self.ctx = zmq.Context()
            self.z = self.ctx.socket(zmq.PAIR)
            self.z.connect(f"tcp://127.0.0.1:{port}")
        elif transport == "asyncio":
            self.loop = asyncio.new_event_loop()
            self.r, self.w = self.loop.run_until_complete(asyncio.open_connection("127.0.0.1", port))
            self.w.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            self.s = socket.create_connection(("127.0.0.1", port))
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def one(self) -> None:
        self.many(1)

    def many(self, n: int) -> None:
        if self.transport == "zmq":  # a zmq socket is not thread-safe: a window of 256 in flight
            sent = 0
            for _ in range(min(n, 256)):
                self.z.send(self.enc(ENVELOPE))
                sent += 1
            for _ in range(n):
                self.dec(self.z.recv())
                if sent < n:
                    self.z.send(self.enc(ENVELOPE))
                    sent += 1
        elif self.transport == "asyncio":
            self.loop.run_until_complete(self._many_async(n))
        else:
            def send_all() -> None:
                for _ in range(n):
                    out = self.enc(ENVELOPE)
                    self.s.sendall(_LEN.pack(len(out)) + out)
            t = threading.Thread(target=send_all) if n > 1 else None
            if t:
                t.start()
            else:
                send_all()
            for _ in range(n):
                (m,) = _LEN.unpack(_recv_exact(self.s, 4))
                self.dec(_recv_exact(self.s, m))
            if t:
                t.join()

    async def _many_async(self, n: int) -> None:
        async def send() -> None:
            for i in range(n):
                out = self.enc(ENVELOPE)
                self.w.write(_LEN.pack(len(out)) + out)
                if i % 64 == 63:
                    await self.w.drain()
            await self.w.drain()
        task = asyncio.ensure_future(send())
        for _ in range(n):
            (m,) = _LEN.unpack(await self.r.readexactly(4))
            self.dec(await self.r.readexactly(m))
        await task

    def close(self) -> None:
        if self.transport == "zmq":
            self.z.send(b"")
            self.z.close(linger=100)
            self.ctx.term()
        elif self.transport == "asyncio":
            self.w.close()
            self.loop.close()
        else:
            self.s.close()


def measure(transport: str, ser: str, k: int = 2000, n: int = 20000) -> Dict[str, Any]:
    """One transport with one serializer.

    Args:
        transport: ``asyncio``, ``socket`` or ``zmq``.
        ser: ``pickle5``, ``msgpack`` or ``msgspec``.
        k: sequential round trips.
        n: pipelined messages.

    Returns:
        The figures: ``rtt_median_us``, ``rtt_p99_us``, ``cpu_us_per_rtt`` (both processes),
        ``pipelined_msgs_s``, ``cpu_us_per_msg_pipelined`` and the encoded size.
    """
    import psutil

    enc, dec = serializers()[ser]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_echo_main, args=(transport, ser, q), daemon=True)
    proc.start()
    port = q.get(timeout=30)
    child = psutil.Process(proc.pid)
    me = psutil.Process()
    cli = _Client(transport, port, enc, dec)
    try:
        for _ in range(200):
            cli.one()

        def cpu() -> float:
            a, b = me.cpu_times(), child.cpu_times()
            return a.user + a.system + b.user + b.system

        c0 = cpu()
        rtts = []
        for _ in range(k):
            t0 = time.perf_counter()
            cli.one()
            rtts.append(time.perf_counter() - t0)
        c1 = cpu()
        t0 = time.perf_counter()
        cli.many(n)
        wall = time.perf_counter() - t0
        c2 = cpu()
    finally:
        cli.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    rtts.sort()
    return {"transport": transport, "serializer": ser, "bytes": len(enc(ENVELOPE)),
            "rtt_median_us": round(1e6 * statistics.median(rtts), 1),
            "rtt_p99_us": round(1e6 * rtts[int(0.99 * len(rtts))], 1),
            "cpu_us_per_rtt": round(1e6 * (c1 - c0) / k, 1),
            "pipelined_msgs_s": round(n / wall), "cpu_us_per_msg_pipelined": round(1e6 * (c2 - c1) / n, 1)}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ftactors.bench.transport", description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=2000, help="sequential round trips")
    ap.add_argument("--n", type=int, default=20000, help="pipelined messages")
    ap.add_argument("--json", metavar="PATH", help="write the rows here")
    a = ap.parse_args(argv)
    rows = []
    print("| transport | serializer | bytes | round trip median us | p99 us | CPU us per round trip "
          "| pipelined msgs/s | CPU us per pipelined msg |")
    print("|---|---|---|---|---|---|---|---|")
    for t in transports():
        for s in serializers():
            r = measure(t, s, a.k, a.n)
            rows.append(r)
            print(f"| {t} | {s} | {r['bytes']} | {r['rtt_median_us']} | {r['rtt_p99_us']} | {r['cpu_us_per_rtt']} "
                  f"| {r['pipelined_msgs_s']:,} | {r['cpu_us_per_msg_pipelined']} |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "load": os.getloadavg()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

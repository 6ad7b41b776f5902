"""Gate 2 of the direct data plane (issue 11): a no-op relay against a plain Ray actor.

driver --Ray call--> relay actor --TCP--> echo process --TCP--> relay actor --> driver,
for a threaded relay actor (sync methods, ``max_concurrency``) and an async one, measured in
the same rounds as a plain Ray actor that answers the call itself. This is the least a
router in front of replicas on their own connections can cost.

    python -m ftactors.bench.relay [--rounds 3] [--k 200] [--n 1000] [--json PATH]
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from ftactors.bench.rounds import RoundsCli

_HDR = struct.Struct("!IQ")  # body length, call id


def _recv_exact(f: Any, n: int) -> bytes:
    data = f.read(n)
    if len(data) < n:
        raise ConnectionError("closed")
    return data


def echo_main(port_q: Any) -> None:
    """The echo process: each connection's frames come back as they are (a thread per connection)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port_q.put(lsock.getsockname()[1])

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = conn.makefile("rb")
        try:
            while True:
                hdr = _recv_exact(f, _HDR.size)
                n, _ = _HDR.unpack(hdr)
                conn.sendall(hdr + _recv_exact(f, n))
        except (ConnectionError, OSError):
            conn.close()

    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def start_echo() -> Any:
    """Start the echo process; returns (process, port)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=echo_main, args=(q,), daemon=True)
    proc.start()
    return proc, q.get(timeout=30)


class PlainActor:
    def call(self, x: Any) -> Any:
        return x


class ThreadedRelay:
    """A threaded actor: each call is sent on one shared socket; a reader thread answers it."""

    def __init__(self, port: int) -> None:
        import pickle

        self._pickle = pickle
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()
        self.waiting: Dict[int, List[Any]] = {}
        self.next_id = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        f = self.s.makefile("rb")
        while True:
            n, cid = _HDR.unpack(_recv_exact(f, _HDR.size))
            body = _recv_exact(f, n)
            slot = self.waiting.pop(cid)
            slot[1] = body
            slot[0].set()

    def call(self, x: Any) -> Any:
        body = self._pickle.dumps(x, protocol=5)
        slot: List[Any] = [threading.Event(), None]
        with self.lock:
            self.next_id += 1
            cid = self.next_id
            self.waiting[cid] = slot
            self.s.sendall(_HDR.pack(len(body), cid) + body)
        slot[0].wait()
        return self._pickle.loads(slot[1])


class AsyncRelay:
    """An async actor: each call is sent on one asyncio stream; a reader task answers it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.w: Any = None
        self.waiting: Dict[int, Any] = {}
        self.next_id = 0

    async def _connect(self) -> None:
        r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        self.w.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        asyncio.get_running_loop().create_task(self._reader(r))

    async def _reader(self, r: Any) -> None:
        import pickle

        while True:
            n, cid = _HDR.unpack(await r.readexactly(_HDR.size))
            body = await r.readexactly(n)
            self.waiting.pop(cid).set_result(pickle.loads(body))

    async def call(self, x: Any) -> Any:
        import pickle

        if self.w is None:
            await self._connect()
        body = pickle.dumps(x, protocol=5)
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = fut
        self.w.write(_HDR.pack(len(body), self.next_id) + body)
        return await fut


def measure(rounds: int = 3, k: int = 200, n: int = 1000) -> Dict[str, Any]:
    """Latency and pipelined throughput of each system, with ratios to the plain actor of the same round.

    Args:
        rounds: alternating rounds.
        k: sequential calls per system per round.
        n: pipelined calls per system per round.

    Returns:
        ``{"rounds": [...], "summary": {system: {...}}}``.
    """
    import ray

    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    proc, port = start_echo()
    try:
        systems: Dict[str, Any] = {
            "ray-plain": ray.remote(PlainActor).remote(),
            "relay-threaded": ray.remote(ThreadedRelay).options(max_concurrency=32).remote(port),
            "relay-async": ray.remote(AsyncRelay).remote(port),
        }
        for h in systems.values():
            ray.get([h.call.remote(i) for i in range(200)])
        out: List[Dict[str, Any]] = []
        for rnd in range(rounds):
            row: Dict[str, Any] = {}
            for name, h in systems.items():
                lat = []
                for i in range(k):
                    t0 = time.perf_counter()
                    ray.get(h.call.remote(i))
                    lat.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ray.get([h.call.remote(i) for i in range(n)])
                row[name] = {"latency_median_ms": 1000 * statistics.median(lat),
                             "throughput_calls_s": n / (time.perf_counter() - t0)}
            for name, r in row.items():
                r["latency_ratio"] = r["latency_median_ms"] / row["ray-plain"]["latency_median_ms"]
                r["throughput_ratio"] = r["throughput_calls_s"] / row["ray-plain"]["throughput_calls_s"]
            out.append(row)
        summary = {name: {key: round(statistics.median(r[name][key] for r in out), 3)
                          for key in out[0][name]} for name in systems}
        return {"rounds": out, "summary": summary, "load": os.getloadavg()}
    finally:
        ray.shutdown()
        proc.kill()


CLI = RoundsCli("ftactors.bench.relay", __doc__.splitlines()[0], rounds=3, k=200, n=1000)


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (:class:`ftactors.bench.rounds.RoundsCli`): measure, print the table.

    Returns:
        0.
    """
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())

"""The router's CPU per sequential call (issue 11's latency gate), in process, without Ray.

The real router shell (``runtime.router_actor._RouterLoop``: ``areply``, ``_RayIO.deliver``,
``_send_direct``, the kick) with its real ``RouterHost`` and ``RouterCore`` of a 3-member
semi-active group, on an asyncio loop, with the runtime's default settings. Its Delivers go on real
direct links (``runtime.wire.DirectLink``: frames, futures, the read loop), each to a real
``ReplicaCore`` that answers in link order. The caller submits one call at a time and awaits its
reply; the router's clock ticks every ``tick_every`` calls (not on the wall clock). The event
loop's thread is timed (``time.thread_time``), less what the replicas spent.

By default a link's connection is in memory: the link writes its frames to the replica, which
answers at once, to the link's protocol in the loop's next step (the replica's CPU, timed apart,
is subtracted),
so the figure is the router's Python and its event-loop hops, without the kernel's socket costs
(the same for any router: about 130 us per call on loopback TCP under load, most of it ``send``).
``--tcp`` uses loopback TCP connections to in-process ``WireServer``\\ s instead, the replicas on
their threads (one worker each: their Delivers run in link order).

    python -m ftactors.bench.router_path [--calls 3000] [--repeats 5] [--tcp] [--profile]

``--profile`` runs once more under cProfile and prints the functions by their own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import threading
import time
from typing import Any, Dict, List, Optional, Tuple
from unittest import mock

from ftactors.core import ClientCore, Deliver, Delivered, Execute, NewView, Outcome, ReplicaCore, Snapshot
from ftactors.runtime import wire
from ftactors.runtime.settings import ReplicationSettings
from ftactors.spec import GroupSpec

GROUP = "bench"
MEMBERS = ("r0", "r1", "r2")


class _Replica:
    """One member: a ``ReplicaCore`` answering the Delivers of its link, in link order."""

    def __init__(self, rid: str, spec: GroupSpec) -> None:
        self.core = ReplicaCore(GROUP, rid, spec.config, "reception", NewView(1, MEMBERS))
        self.lock = threading.Lock()
        self.executed = 0

    def handle(self, call_id: int, seq: int, epoch: str, body: bytes) -> Tuple[int, bytes]:
        msg = wire.loads(body)
        assert isinstance(msg, Deliver), msg
        with self.lock:
            self.core.deliver(msg)
            while (effect := self.core.next_effect()) is not None:
                if isinstance(effect, Execute):
                    self.executed += 1
                    self.core.executed(effect.request.msg_id, Outcome(True, 2 * effect.request.payload))
                elif isinstance(effect, Snapshot):
                    self.core.snapshot_taken(effect.position, None, "d")
            answer: Delivered = self.core.take_delivered()
        return wire.KIND_DELIVERED, wire.dumps(answer)


class _MemoryTransport:
    """What the link asks of ``StreamWriter.transport``: ``is_closing``, and ``set_protocol`` (the
    link's answers go to the protocol, each in a later step of the loop, as a socket's would)."""

    def __init__(self) -> None:
        self.closing = False
        self.protocol: Any = None

    def is_closing(self) -> bool:
        return self.closing

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


class _MemoryWriter:
    """A link's connection in memory: each frame written is answered at once by the replica, into
    the link's reader (a heartbeat as ``WireServer._beat`` answers it)."""

    def __init__(self, replica: _Replica, reader: asyncio.StreamReader) -> None:
        self.replica, self.reader = replica, reader
        self.transport = _MemoryTransport()
        self.replica_s = 0.0  # the replica's thread CPU, in this thread

    def write(self, data: bytes) -> None:
        view, at = memoryview(data), 0
        while at < len(data):
            (n,) = wire._LEN.unpack_from(view, at)
            frame = bytes(view[at + wire._LEN.size:at + wire._LEN.size + n])
            at += wire._LEN.size + n
            t = time.thread_time()
            if frame[0] == wire.KIND_HEARTBEAT:
                _, beat = wire._ANSWER.unpack(frame)
                out = wire.encode_answer(wire.KIND_HEARTBEAT_ACK, beat)
            else:
                call_id, seq, epoch, body = wire.decode_deliver(frame)
                kind, answer = self.replica.handle(call_id, seq, epoch, body)
                out = wire.encode_answer(kind, call_id, answer)
            self.replica_s += time.thread_time() - t
            if self.transport.protocol is not None:
                asyncio.get_running_loop().call_soon(self.transport.protocol.data_received, out)
            else:  # a link that reads with a StreamReader
                self.reader.feed_data(out)

    def close(self) -> None:
        if self.transport.closing:
            return
        self.transport.closing = True
        if self.transport.protocol is not None:
            asyncio.get_running_loop().call_soon(self.transport.protocol.connection_lost, None)
        else:
            self.reader.feed_eof()


class Harness:
    """A router shell with three in-process replicas on direct links (see the module's docstring).

    Args:
        tick_every: calls between two router ticks.
        tcp: loopback TCP to ``WireServer``\\ s (else connections in memory).
    """

    def __init__(self, tick_every: int = 5, tcp: bool = False) -> None:
        from ftactors.runtime import router_actor

        self.settings = ReplicationSettings.model_validate({})  # the defaults
        self.spec = GroupSpec(group=GROUP, config=self.settings.core_config(), settings=self.settings.model_dump(),
                              secret=wire.new_secret())
        self.tick_every = tick_every
        self.replicas = {rid: _Replica(rid, self.spec) for rid in MEMBERS}
        self.servers = {rid: wire.WireServer("127.0.0.1", None, self.spec.secret, rep.handle,
                                             self.settings.frame_bytes_max, workers_max=1)
                        for rid, rep in self.replicas.items()} if tcp else {}
        self.writers: List[_MemoryWriter] = []
        context = mock.Mock(was_current_actor_reconstructed=False)
        with mock.patch.object(router_actor.ray, "get_runtime_context", return_value=context):
            self.r = router_actor._RouterLoop(self.spec, MEMBERS, {})
        if not tcp:
            harness = self

            class MemoryLink(wire.DirectLink):
                async def _handshake(self) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
                    reader = asyncio.StreamReader()
                    w = _MemoryWriter(harness.replicas[harness._addr_rid[self.address]], reader)
                    harness.writers.append(w)
                    return reader, w  # type: ignore[return-value]

            self._patch: Any = mock.patch.object(router_actor, "DirectLink", MemoryLink)
            self._patch.start()
            self._addr_rid = {("memory", i): rid for i, rid in enumerate(MEMBERS)}
        assert self.r._direct, "the harness needs the direct data plane"
        self.now = 0
        self.r._ticks = lambda: self.now  # type: ignore[method-assign]  # the clock: ticks of the harness
        self.r.handles = {rid: None for rid in MEMBERS}  # no Ray call is made: every Deliver fits a frame
        self.r._wire_addrs = ({rid: s.address for rid, s in self.servers.items()} if tcp
                              else {rid: addr for addr, rid in self._addr_rid.items()})
        self.client = ClientCore("bench-caller")
        self.calls = 0
        self.replies: Dict[int, Any] = {}

    async def start(self) -> None:
        """Mark the shell started (its Ray start-up is skipped) and open the links with a first call."""
        self.r._started = asyncio.Event()
        self.r._started.set()
        await self.run(self.tick_every)

    async def run(self, calls: int) -> None:
        """``calls`` sequential calls, a tick every ``tick_every``.

        Raises:
            AssertionError: a reply is wrong or came twice.
        """
        r, client = self.r, self.client
        for _ in range(calls):
            i = self.calls = self.calls + 1
            rep = await r.areply(client.request(GROUP, "double", payload=i, track=False), False)
            assert rep is not None and rep.outcome.ok and rep.outcome.value == 2 * i, (i, rep)
            assert i not in self.replies, f"call {i} answered twice"
            self.replies[i] = rep.outcome.value
            if i % self.tick_every == 0:
                self.now += 1
                r.host.tick()

    def close(self) -> None:
        """Close the router (on its loop), its links and the servers."""
        self.r._closed = True
        self.r.host.closed = True
        for rid in MEMBERS:
            self.r._close_link(rid)
        for s in self.servers.values():
            s.close()
        if self.writers:
            self._patch.stop()

    def replica_s(self) -> float:
        """The replicas' CPU so far in this thread (in-memory connections), in seconds."""
        return sum(w.replica_s for w in self.writers)


def measure(calls: int, repeats: int, tick_every: int = 5, warmup: int = 300,
            profile: Optional[cProfile.Profile] = None, tcp: bool = False) -> List[float]:
    """Thread CPU per call of the router's event loop, once per repeat (one harness for all).

    Args:
        calls: calls per repeat.
        repeats: repeats.
        tick_every: calls between two router ticks.
        warmup: calls before the first repeat.
        profile: run the repeats under this profiler.
        tcp: loopback TCP connections (else in memory).

    Returns:
        Microseconds of the loop thread's CPU per call, one per repeat.
    """
    h = Harness(tick_every, tcp)

    async def go() -> List[float]:
        try:
            await h.start()
            await h.run(warmup)
            out = []
            for _ in range(repeats):
                t = time.thread_time() - h.replica_s()
                if profile is not None:
                    profile.enable()
                await h.run(calls)
                if profile is not None:
                    profile.disable()
                out.append(1e6 * (time.thread_time() - h.replica_s() - t) / calls)
            return out
        finally:
            h.close()

    return asyncio.run(go())


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: print the CPU per call (each repeat and the minimum)."""
    p = argparse.ArgumentParser(prog="python -m ftactors.bench.router_path", description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=3000, help="calls per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tick-every", type=int, default=5, help="calls between two router ticks")
    p.add_argument("--tcp", action="store_true", help="loopback TCP to WireServers (replicas on threads)")
    p.add_argument("--profile", action="store_true", help="then profile one repeat (cProfile, by own time)")
    p.add_argument("--top", type=int, default=30, help="functions the profile prints")
    args = p.parse_args(argv)
    per = measure(args.calls, args.repeats, args.tick_every, tcp=args.tcp)
    print("router loop thread CPU per call (us): " + ", ".join(f"{x:.1f}" for x in per) + f"; min {min(per):.1f}")
    if args.profile:
        prof = cProfile.Profile()
        measure(args.calls, 1, args.tick_every, profile=prof, tcp=args.tcp)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

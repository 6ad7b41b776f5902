"""The primary's CPU per Deliver, in process (issue 11): ``_Replica._wire_deliver`` in a hot loop.

A real replica host (the class underlying the Ray actor, built in this process with
``data_plane="ray"``: no wire server, no Ray session) is the primary of a 3-member view. A router core
with the runtime's default settings submits one sync call at a time (``Counter.inc(1)``), as the
router does for a sequential caller; every Deliver it sends the primary (the request, with the
announcements, acknowledgements and digests a steady router sends) is encoded with
``ftactors.runtime.wire`` and handed to ``_wire_deliver``, whose answer is decoded and given back to
the router core. The backups are bare replica cores (not timed). The clock is the router's tick
counter, advanced every ``--calls-per-tick`` calls (a sequential caller at about 2 ms a call makes
5 calls per 10 ms tick), shared by the replica, so a run is deterministic.

Timed: the thread CPU time of the ``_wire_deliver`` calls only (``wire.loads``, the host, the core,
the method, ``wire.dumps``), per Deliver to the primary; the minimum of ``--repeats`` runs of
``--calls`` calls each, after ``--warmup`` calls.

    python -m ftactors.bench.primary_path [--calls 3000] [--repeats 9] [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from typing import Any, Dict, List, Optional

from ray import cloudpickle

from ftactors.bench.router_ab import Counter  # the benchmark's application: a counter
from ftactors.core import ClientCore, Deliver, Delivered, Execute, NewView, Outcome, ReplicaCore, RouterCore, Snapshot
from ftactors.runtime import wire
from ftactors.runtime.replica_actor import _Replica, state_digest
from ftactors.runtime.settings import ReplicationSettings
from ftactors.spec import GroupSpec

GROUP = "bench"
EPOCH = "00000000000000000001-bench"


def _drive_backup(core: ReplicaCore, msg: Deliver, values: Dict[Any, Any]) -> Delivered:
    """A backup's core, without a host: executes each call with the primary's value (and takes the
    digest the primary takes, so the router sees no divergence)."""
    core.deliver(msg)
    while (effect := core.next_effect()) is not None:
        if isinstance(effect, Execute):
            core.executed(effect.request.msg_id, Outcome(True, values.get(effect.request.msg_id)))
        elif isinstance(effect, Snapshot):  # every call is inc(1): the counter is at its position
            counter = Counter()
            counter.n = effect.position
            core.snapshot_taken(effect.position, None, state_digest(counter))
    return core.take_delivered()


class PrimaryPath:
    """A router core, a ``_Replica`` as primary and two backup cores, stepping sequential calls.

    Args:
        calls_per_tick: calls per tick of the shared clock.
    """

    def __init__(self, calls_per_tick: int = 5) -> None:
        settings = ReplicationSettings.model_validate({"data_plane": "ray", "orphan_timeout_s": 1e9})
        self.config = settings.core_config()
        self.members = tuple(f"{GROUP}-r{i}" for i in range(3))
        spec = GroupSpec(group=GROUP, config=self.config, scheduling=settings.scheduling,
                         settings=settings.model_dump(), cls_bytes=cloudpickle.dumps(Counter),
                         init_bytes=cloudpickle.dumps(((), {})))
        self.replica = _Replica(spec, self.members[0], NewView(1, self.members))
        self.now = 0
        self.replica._ticks = lambda: self.now  # type: ignore[method-assign]  # the shared clock
        self.router = RouterCore(GROUP, self.config, self.members)
        self.backups = {rid: ReplicaCore(GROUP, rid, self.config, settings.scheduling, NewView(1, self.members))
                        for rid in self.members[1:]}
        self.client = ClientCore("bench-caller")
        self.calls_per_tick = calls_per_tick
        self.seq: Dict[str, int] = {}
        self.calls = 0
        self.delivers = 0  # Delivers to the primary
        self.cpu_ns = 0  # thread CPU time inside _wire_deliver
        self.values: Dict[Any, Any] = {}  # msg_id -> the value the primary's reply carried
        self.expected = 0  # the counter's value
        self.profiler: Optional[cProfile.Profile] = None  # profiles the _wire_deliver calls only

    def _send(self, rid: str, msg: Deliver) -> Delivered:
        seq = self.seq[rid] = self.seq.get(rid, 0) + 1
        if rid != self.router.primary:
            return _drive_backup(self.backups[rid], msg, self.values)
        body = wire.dumps(msg)
        if self.profiler is not None:
            self.profiler.enable()
        t = time.thread_time_ns()
        kind, out = self.replica._wire_deliver(seq, seq, EPOCH, body)
        self.cpu_ns += time.thread_time_ns() - t
        if self.profiler is not None:
            self.profiler.disable()
        self.delivers += 1
        if kind != wire.KIND_DELIVERED:
            raise RuntimeError(f"the primary parked its answer to Deliver {seq}")
        answer = wire.loads(out)
        for rep in answer.replies:
            self.values[rep.msg_id] = rep.outcome.value
        return answer

    def _process(self) -> List[Any]:
        released: List[Any] = []
        while True:
            ready = self.router.ready()
            if not (ready.sends or ready.released or ready.pings):
                return released
            released.extend(ready.released)
            for rid in ready.pings:
                self.router.on_pong(rid)
            for rid, msg in ready.sends:
                self.router.on_delivered(self._send(rid, msg))

    def call(self) -> None:
        """One sequential call ``inc(1)``, through to its released reply.

        Raises:
            RuntimeError: the reply is not the counter's next value.
        """
        if self.calls % self.calls_per_tick == 0:
            self.now += 1
            self.router.tick(self.now)
            self._process()
        self.calls += 1
        self.expected += 1
        req = self.client.request(GROUP, "inc", payload=cloudpickle.dumps(((1,), {})), track=False)
        self.router.submit(req)
        for _ in range(100):
            released = self._process()
            if released:
                break
            self.now += 1  # nothing left to send: the reply waits for the clock
            self.router.tick(self.now)
        else:
            raise RuntimeError(f"call {self.calls} got no reply")
        (reply,) = released
        if reply.msg_id != req.msg_id or not reply.outcome.ok or reply.outcome.value != self.expected:
            raise RuntimeError(f"call {self.calls}: {reply!r}, expected the value {self.expected}")

    def run(self, calls: int) -> Dict[str, float]:
        """``calls`` sequential calls; the primary's CPU per Deliver and per call over them."""
        cpu0, d0 = self.cpu_ns, self.delivers
        for _ in range(calls):
            self.call()
        delivers = self.delivers - d0
        return {"calls": calls, "delivers": delivers, "us_per_deliver": (self.cpu_ns - cpu0) / 1e3 / delivers,
                "us_per_call": (self.cpu_ns - cpu0) / 1e3 / calls}


def measure(calls: int = 3000, repeats: int = 9, warmup: int = 500, calls_per_tick: int = 5,
            profile: Optional[str] = None) -> Dict[str, Any]:
    """The primary's CPU per Deliver: the minimum of ``repeats`` runs of ``calls`` calls.

    Args:
        calls: calls per run.
        repeats: runs (the minimum is the figure).
        warmup: calls before the first run.
        calls_per_tick: calls per tick of the clock.
        profile: a file name: profile the ``_wire_deliver`` calls of one more run with cProfile,
            write its stats there.

    Returns:
        ``{"us_per_deliver": min, "us_per_call": min, "runs": [...], "delivers_per_call": ...}``.
    """
    path = PrimaryPath(calls_per_tick)
    path.run(warmup)
    runs = [path.run(calls) for _ in range(repeats)]
    if profile:
        path.profiler = cProfile.Profile(time.thread_time)  # CPU time: a shared machine preempts
        path.run(calls)
        path.profiler.dump_stats(profile)
        path.profiler = None
    return {"us_per_deliver": min(r["us_per_deliver"] for r in runs),
            "us_per_call": min(r["us_per_call"] for r in runs),
            "delivers_per_call": runs[-1]["delivers"] / calls, "runs": runs}


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: print the figures; ``--profile`` also prints cProfile's top functions by tottime."""
    p = argparse.ArgumentParser(prog="python -m ftactors.bench.primary_path", description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=3000, help="calls per run")
    p.add_argument("--repeats", type=int, default=9, help="runs; the minimum is the figure")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--calls-per-tick", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="profile one more run (cProfile, by tottime)")
    p.add_argument("--top", type=int, default=40, help="functions --profile prints")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    stats_file = "/tmp/primary_path.prof" if args.profile else None
    res = measure(args.calls, args.repeats, args.warmup, args.calls_per_tick, stats_file)
    print(f"primary, per Deliver: {res['us_per_deliver']:.1f} us thread CPU (min of {args.repeats} x "
          f"{args.calls} calls); per call {res['us_per_call']:.1f} us; {res['delivers_per_call']:.2f} Delivers a call")
    if stats_file:
        pstats.Stats(stats_file, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

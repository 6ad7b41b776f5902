"""Measure re-entrant async calls round a ring of three replicated groups (A -> B -> C -> A).

    python -m ftactors.testing.ringbench [--hops 6] [--tokens 60] [--rounds 30]

Prints the latency of one token going ``hops`` hops round the ring (every group re-entered
while its first call waits), the throughput of ``tokens`` tokens at once, and the routers'
counters over that run (Deliver polls kept at primaries with suspended calls, null messages).
Starts its own local Ray.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any, Dict, List, Optional


class RingNode:
    """One group of the ring: passes the token on and returns the path."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.next: Any = None
        self.visits = 0

    def link(self, nxt: Any) -> None:
        self.next = nxt

    async def hop(self, hops: int) -> str:
        self.visits += 1
        if hops == 0:
            return self.name
        return self.name + await self.next.hop.remote(hops - 1)


KEYS = ("requests", "delivers", "polls", "null_messages", "announcements_piggybacked", "announcements_in_null")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the measurement; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m ftactors.testing.ringbench", description=__doc__.split("\n")[0])
    parser.add_argument("--hops", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    import ray

    import ftactors

    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    cls = ftactors.replicated(replicas=3)(RingNode)
    nodes = [cls.remote(n) for n in "ABC"]
    ray.get([n.link.remote(nodes[(i + 1) % 3]) for i, n in enumerate(nodes)], timeout=120)
    ray.get(nodes[0].hop.remote(args.hops), timeout=60)
    lat = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        ray.get(nodes[0].hop.remote(args.hops), timeout=60)
        lat.append(time.perf_counter() - t0)

    def counts() -> List[Dict[str, int]]:
        return [ftactors.describe(n).counts for n in nodes]

    before = counts()
    t0 = time.perf_counter()
    ray.get([nodes[i % 3].hop.remote(args.hops) for i in range(args.tokens)], timeout=300)
    took_s = time.perf_counter() - t0
    after = counts()
    calls = args.tokens * (args.hops + 1)
    total = {k: sum(b.get(k, 0) - a.get(k, 0) for a, b in zip(before, after)) for k in KEYS}
    print(f"one token, {args.hops} hops round A->B->C->A: median {1000 * statistics.median(lat):.1f} ms, "
          f"worst {1000 * max(lat):.1f} ms ({args.rounds} rounds)")
    print(f"{args.tokens} tokens at once: {calls} calls in {took_s:.2f} s = {calls / took_s:.0f} calls/s")
    print(f"routers, over those calls: {total}; per call: polls {total['polls'] / calls:.2f}, "
          f"null messages {total['null_messages'] / calls:.3f}")
    for n in nodes:
        ftactors.shutdown(n)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Re-entrant async calls: three replicated actors pass tokens round a ring A -> B -> C -> A.

Each ``hop`` awaits the next group's ``hop`` (a nested replicated call), so every group is
re-entered while its first call still waits: a replica starts the re-entrant call and resumes
the waiting one when its reply arrives, in the order its primary chose and announced. Several
tokens go round at once; the primary of B is SIGKILLed midway. Every token's path is complete,
every group saw each visit once, and each group's replicas agree on their state.

    python examples/async_ring.py [--quick]
"""

import os
import sys

import ray

import ftactors
from ftactors.campaign import (  # kill_replica: checks the pid first
    kill_replica,
    wait_until,
)

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


@ftactors.replicated(replicas=3)
class Station:
    def __init__(self, name: str) -> None:
        self.name = name
        self.next = None
        self.visits = {}             # token -> visits seen here

    def link(self, nxt) -> None:
        self.next = nxt              # a ReplicatedHandle

    async def hop(self, token: int, hops: int) -> str:
        self.visits[token] = self.visits.get(token, 0) + 1
        if hops == 0:
            return self.name
        rest = await self.next.hop.remote(token, hops - 1)   # re-enters this group further on
        return self.name + rest

    def seen(self) -> dict:
        return dict(self.visits)


def agree(handle) -> bool:
    info = ftactors.describe(handle)
    return len(info.replicas) == 3 and info.disagreement(3) is None


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    ring = [Station.remote(n) for n in "ABC"]
    ray.get([s.link.remote(ring[(i + 1) % 3]) for i, s in enumerate(ring)], timeout=120)
    tokens, hops = (9, 8) if QUICK else (60, 11)
    refs = [ring[0].hop.remote(t, hops) for t in range(tokens // 2)]
    ray.get(refs[0], timeout=120)
    print(f"B's primary {kill_replica(ring[1], 'primary').replica_id} killed")
    refs += [ring[0].hop.remote(t, hops) for t in range(tokens // 2, tokens)]
    paths = ray.get(refs, timeout=180)
    want = "".join("ABC"[i % 3] for i in range(hops + 1))
    ok = all(p == want for p in paths)
    print(f"{tokens} tokens went {hops} hops round the ring: {paths[0]}")
    for i, station in enumerate(ring):
        seen = ray.get(station.seen.remote(), timeout=60)
        per_token = sum(1 for k in range(hops + 1) if k % 3 == i)
        if seen != {t: per_token for t in range(tokens)}:
            print(f"{'ABC'[i]}: visits {seen}, expected {per_token} per token")
            ok = False
        if not wait_until(lambda s=station: agree(s), timeout_s=120):
            print(f"{'ABC'[i]}: replicas do not agree: {ftactors.describe(station).disagreement(3)}")
            ok = False
    print("OK: every token completed, every visit applied once; replicas agree" if ok else "FAILED")
    for station in ring:
        ftactors.shutdown(station)
    ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

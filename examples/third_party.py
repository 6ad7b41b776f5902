"""Replicate classes you cannot change: a third-party Ray actor and a stdlib class.

``vendor/lru_cache.py`` stands for an installed package: an ``@ray.remote`` LRU cache
that knows nothing about ftactors. ``ftactors.replicated(replicas=2)(LRUCache)`` makes it
fault tolerant as it is (its Ray options, here ``num_cpus=0``, apply to every replica).
The same works for ``collections.Counter``.

    python examples/third_party.py [--quick]
"""

import collections
import os
import sys

import ray

import ftactors
from ftactors.chaos import kill_replica

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vendor.lru_cache import LRUCache  # noqa: E402  (a "third-party" class)

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    # No change to LRUCache. scheduling="sequence" runs each caller's calls in the order it sent
    # them (as a plain Ray actor does); it matters here because puts are pipelined and an LRU's
    # evictions depend on their order.
    ReplicatedLRU = ftactors.replicated(replicas=2, scheduling="sequence")(LRUCache)
    cache = ReplicatedLRU.remote(50)
    n = 100 if QUICK else 1000
    ray.get([cache.put.remote(f"k{i}", i * i) for i in range(n)])
    victim = kill_replica(cache, "primary")
    print(f"LRUCache: {n} puts, killed the primary {victim.replica_id}")
    hits = ray.get([cache.get.remote(f"k{i}") for i in range(n - 50, n)])
    keys = ray.get(cache.keys.remote())
    stats = ray.get(cache.stats.remote())
    ok_cache = hits == [i * i for i in range(n - 50, n)] and sorted(keys) == sorted(f"k{i}" for i in range(n - 50, n))
    if not ok_cache:
        print(f"unexpected: hits={hits[:5]}... keys={keys[:5]}...")
    print(f"LRUCache after failover: {stats}")

    words = ftactors.replicated(replicas=2)(collections.Counter).remote()
    ray.get(words.update.remote("the quick brown fox jumps over the lazy dog".split()))
    kill_replica(words, "primary")
    ray.get(words.update.remote(["the", "fox"]))
    top = ray.get(words.most_common.remote(2))
    print(f"collections.Counter after failover: most_common(2) = {top}")
    ok_counter = top == [("the", 3), ("fox", 2)]

    ftactors.shutdown(cache)
    ftactors.shutdown(words)
    ray.shutdown()
    ok = ok_cache and ok_counter
    print("OK: third-party and stdlib classes replicated unchanged" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

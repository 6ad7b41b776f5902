"""A replicated key-value store: puts, compare-and-set, deletes; state survives a primary kill.

    python examples/kv_store.py [--quick]
"""

import os
import sys

import ray

import ftactors
from ftactors.chaos import kill_replica

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


@ftactors.replicated(replicas=3)
class KVStore:
    def __init__(self) -> None:
        self.data = {}
        self.version = 0

    def put(self, key, value) -> int:
        self.data[key] = value
        self.version += 1
        return self.version

    def get(self, key, default=None):
        return self.data.get(key, default)

    def cas(self, key, expected, new) -> bool:
        """Compare-and-set: store ``new`` only if the current value is ``expected``."""
        if self.data.get(key) != expected:
            return False
        self.data[key] = new
        self.version += 1
        return True

    def delete(self, key) -> bool:
        self.version += 1
        return self.data.pop(key, None) is not None

    def items(self) -> dict:
        return dict(self.data)


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    kv = KVStore.remote()
    n = 100 if QUICK else 1000
    ray.get([kv.put.remote(f"k{i}", i) for i in range(n)])
    print(f"{n} keys written; primary is {ftactors.describe(kv).primary.replica_id}")

    victim = kill_replica(kv, "primary")
    print(f"killed the primary {victim.replica_id} (pid {victim.pid})")
    # compare-and-set increments: exactly once each, even across the failover
    assert all(ray.get([kv.cas.remote(f"k{i}", i, i + 1) for i in range(0, n, 2)]))
    ray.get([kv.delete.remote(f"k{i}") for i in range(1, n, 10)])

    expected = {f"k{i}": (i + 1 if i % 2 == 0 else i) for i in range(n) if not (i % 10 == 1)}
    got = ray.get(kv.items.remote())
    info = ftactors.describe(kv)
    print(f"new primary {info.primary.replica_id}, view {info.view}; {len(got)} keys")
    ok = got == expected
    print("OK: every put, cas and delete took effect once" if ok else "FAILED: store differs from expected")
    ftactors.shutdown(kv)
    ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

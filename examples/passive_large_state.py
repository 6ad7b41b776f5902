"""Passive replication of a large state (tens of MB).

The backups do not execute calls: they keep the primary's periodic checkpoints and a
log of the calls since. When the primary dies, a backup restores the last checkpoint,
replays the log, and carries on. Here the state is a 32 MB bytearray (16 MB with
--quick); every call rewrites one block; the final content is checked against a local
model.

    python examples/passive_large_state.py [--quick]
"""

import hashlib
import os
import sys

import ray

import ftactors
from ftactors.chaos import kill_replica

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"
SIZE_MB = 16 if QUICK else 32
BLOCK = 64 * 1024


@ftactors.replicated(replicas=3, style="passive", checkpoint_every=25)
class BlockStore:
    def __init__(self, size_mb: int) -> None:
        self.blob = bytearray(size_mb * 1024 * 1024)
        self.writes = 0

    def write(self, block: int, byte: int) -> int:
        start = (block * BLOCK) % len(self.blob)
        self.blob[start:start + BLOCK] = bytes([byte]) * BLOCK
        self.writes += 1
        return self.writes

    def digest(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()

    def __ftactors_digest__(self):
        # what ftactors compares between replicas: cheaper than walking 32 MB of state
        return (self.writes, hashlib.sha256(self.blob).hexdigest())


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    store = BlockStore.remote(SIZE_MB)
    model = bytearray(SIZE_MB * 1024 * 1024)
    n = 60 if QUICK else 300
    refs = []
    for i in range(n):
        block, byte = (i * 7919) % (len(model) // BLOCK), i % 251 + 1
        model[block * BLOCK:(block + 1) * BLOCK] = bytes([byte]) * BLOCK
        refs.append(store.write.remote(block, byte))
        if i == n // 2:
            ray.get(refs)
            victim = kill_replica(store, "primary")
            print(f"{SIZE_MB} MB state; killed the primary {victim.replica_id} after {i + 1} writes")
    ray.get(refs, timeout=300)
    same = ray.get(store.digest.remote()) == hashlib.sha256(model).hexdigest()
    info = ftactors.describe(store)
    print(f"{n} writes; new primary {info.primary.replica_id}, view {info.view}, "
          f"checkpoints {info.counts['checkpoints']}")
    print("OK: the state after failover equals the local model" if same else "FAILED: state differs")
    ftactors.shutdown(store)
    ray.shutdown()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Nested invocation: a replicated frontend calls a replicated store (handle passed to its constructor).

Kill the frontend's primary, then the store's: every document is stored once, and the
frontend's semi-active backups never call the store a second time.

    python examples/nested_pipeline.py [--quick]
"""

import os
import sys

import ray

import ftactors
from ftactors.chaos import kill_replica

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


@ftactors.replicated(replicas=3)
class Store:
    def __init__(self) -> None:
        self.docs = {}
        self.writes = 0

    def save(self, doc_id: str, words: int) -> int:
        self.writes += 1
        self.docs[doc_id] = words
        return self.writes

    def summary(self) -> dict:
        return {"docs": len(self.docs), "writes": self.writes, "words": sum(self.docs.values())}


@ftactors.replicated(replicas=3)
class Frontend:
    def __init__(self, store) -> None:
        self.store = store          # a ReplicatedHandle: nested calls take effect once
        self.ingested = 0

    def ingest(self, doc_id: str, text: str) -> int:
        words = len(text.split())
        position = ray.get(self.store.save.remote(doc_id, words))
        self.ingested += 1
        return position


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    store = Store.remote()
    front = Frontend.remote(store)
    n = 30 if QUICK else 200
    text = "the quick brown fox jumps over the lazy dog"
    refs = [front.ingest.remote(f"doc{i}", text) for i in range(n // 3)]
    print(f"frontend primary {kill_replica(front, 'primary').replica_id} killed")
    refs += [front.ingest.remote(f"doc{i}", text) for i in range(n // 3, 2 * n // 3)]
    print(f"store primary {kill_replica(store, 'primary').replica_id} killed")
    refs += [front.ingest.remote(f"doc{i}", text) for i in range(2 * n // 3, n)]
    positions = ray.get(refs, timeout=120)
    summary = ray.get(store.summary.remote())
    print(f"{n} documents ingested; store: {summary}")
    ok = sorted(positions) == list(range(1, n + 1)) and summary == {"docs": n, "writes": n, "words": 9 * n}
    print("OK: every document stored exactly once" if ok else "FAILED")
    ftactors.shutdown(front)
    ftactors.shutdown(store)
    ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Async methods: a replicated frontend whose ``async def`` methods await a replicated store.

Each ``ingest`` awaits two nested calls to the store (the document, then an index entry), yields
to the event loop between them and stamps the document with ``ftactors.now()``. The frontend's
primary is killed midway: every document and index entry is still stored once, and the
frontend's replicas agree on their state (same digest), timestamps included.

    python examples/async_pipeline.py [--quick]
"""

import asyncio
import os
import sys

import ray

import ftactors
from ftactors.chaos import kill_replica, wait_until

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


@ftactors.replicated(replicas=3)
class Store:
    def __init__(self) -> None:
        self.docs = {}
        self.index = {}

    def save(self, doc_id: str, words: int) -> int:
        self.docs[doc_id] = words
        return len(self.docs)

    def index_word(self, word: str, doc_id: str) -> int:
        self.index.setdefault(word, []).append(doc_id)
        return len(self.index[word])

    def summary(self) -> dict:
        return {"docs": len(self.docs), "words": sum(self.docs.values()),
                "indexed": sum(len(v) for v in self.index.values())}


@ftactors.replicated(replicas=3)
class Frontend:
    def __init__(self, store) -> None:
        self.store = store          # a ReplicatedHandle: awaited nested calls take effect once
        self.stamped = {}

    async def ingest(self, doc_id: str, text: str) -> int:
        words = text.split()
        position = await self.store.save.remote(doc_id, len(words))
        await asyncio.sleep(0)      # yield to the loop: the call's context follows the coroutine
        await self.store.index_word.remote(words[0], doc_id)
        self.stamped[doc_id] = ftactors.now()  # drawn by the primary, replayed by the backups
        return position


def agree(handle) -> bool:
    info = ftactors.describe(handle)
    digests = {r.state_digest for r in info.replicas}
    return (len(info.replicas) == 3 and not info.joining and len(digests) == 1 and "" not in digests
            and len({r.executed for r in info.replicas}) == 1)


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    store = Store.remote()
    front = Frontend.remote(store)
    n = 20 if QUICK else 200
    text = "the quick brown fox jumps over the lazy dog"
    refs = [front.ingest.remote(f"doc{i}", text) for i in range(n // 2)]
    ray.get(refs[:3], timeout=120)
    print(f"frontend primary {kill_replica(front, 'primary').replica_id} killed")
    refs += [front.ingest.remote(f"doc{i}", text) for i in range(n // 2, n)]
    positions = ray.get(refs, timeout=180)
    summary = ray.get(store.summary.remote())
    print(f"{n} documents ingested by async methods; store: {summary}")
    ok = sorted(positions) == list(range(1, n + 1)) and summary == {"docs": n, "words": 9 * n, "indexed": n}
    ray.get(front.ingest.remote("last", text), timeout=120)  # the backups catch up with it
    for handle in (front, store):
        if not wait_until(lambda h=handle: agree(h), timeout_s=90):
            replicas = [(r.replica_id, r.executed, r.state_digest) for r in ftactors.describe(handle).replicas]
            print(f"{handle.group}: replicas do not agree: {replicas}")
            ok = False
    print("OK: every awaited nested call took effect once; replicas agree" if ok else "FAILED")
    ftactors.shutdown(front)
    ftactors.shutdown(store)
    ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

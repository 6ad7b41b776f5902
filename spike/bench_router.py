"""Latency/throughput of router designs vs a plain sync actor, same session.

usage: python bench_router.py [variant ...]
variant names: a, a_nobackup, b:K:sched:wait, c:K:sched:wait
"""
import sys
import time

import ray

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import (AsyncReplica, BatchRouter, PerCallRouter, Plain, SyncReplica, ThreadedBatchRouter,
                    init, measure)


def make(variant):
    if variant == "plain":
        a = Plain.remote()
        ray.get(a.pid.remote())
        return (lambda i: a.inc.remote(1)), [a], None
    if variant.startswith("a"):
        p = SyncReplica.remote()
        bs = [] if variant == "a_nobackup" else [SyncReplica.remote() for _ in range(2)]
        r = PerCallRouter.remote(p, bs)
        ray.get([x.pid.remote() for x in [p, r, *bs]])
        return (lambda i: r.invoke.remote(1)), [p, r, *bs], None
    if variant.startswith("t:"):
        K = int(variant.split(":")[1])
        p = SyncReplica.remote()
        bs = [SyncReplica.remote() for _ in range(2)]
        r = ThreadedBatchRouter.remote(p, bs, K=K)
        ray.get([x.pid.remote() for x in [p, r, *bs]])
        return (lambda i: r.invoke.remote(1)), [p, r, *bs], r
    kind, K, sched, wait = variant.split(":")
    cls = SyncReplica if kind == "b" else AsyncReplica
    p = cls.remote()
    bs = [cls.remote() for _ in range(2)]
    r = BatchRouter.remote(p, bs, K=int(K), sched=sched, wait=wait)
    ray.get([x.pid.remote() for x in [p, r, *bs]])
    return (lambda i: r.invoke.remote(1)), [p, r, *bs], r


def main():
    variants = sys.argv[1:] or ["a", "b:1:soon:await"]
    init()
    rows = []
    base = []
    for v in ["plain"] + variants + ["plain"]:
        call, actors, router = make(v)
        lat, p99, tp = measure(call)
        st = ray.get(router.stats.remote()) if router is not None else None
        for a in actors:
            ray.kill(a)
        if v == "plain":
            base.append((lat, p99, tp))
        rows.append((v, lat, p99, tp, st))
        print(f"{v:24s} lat_med={lat:8.0f}us p99={p99:8.0f}us tput={tp:8.0f}/s {st or ''}", flush=True)
    blat = sum(b[0] for b in base) / len(base)
    btp = sum(b[2] for b in base) / len(base)
    print("\n| variant | median lat (us) | p99 (us) | lat ratio vs plain | tput (calls/s) | tput ratio vs plain | msgs/batch |")
    print("|---|---|---|---|---|---|---|")
    for v, lat, p99, tp, st in rows:
        mpb = f"{st['msgs']/max(1,st['batches']):.1f}" if st else "-"
        print(f"| {v} | {lat:.0f} | {p99:.0f} | {lat/blat:.2f}x | {tp:.0f} | {tp/btp:.2f} | {mpb} |")
    ray.shutdown()


if __name__ == "__main__":
    main()

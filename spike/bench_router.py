"""Latency/throughput of router designs vs a plain sync actor, same session.

usage: python bench_router.py [variant ...]
variant names: a, a_nobackup, b:K:sched:wait, c:K:sched:wait
"""
import sys
import time

import ray

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import (AsyncNoop, AsyncReplica, BatchRouter, PerCallRouter, Plain, SyncReplica, ThreadedBatchRouter,
                    init, measure)


import os
NOTE = os.environ.get("NOTE") == "1"


def _o(cls):
    return cls.options(enable_task_events=False) if NOTE else cls


def make(variant):
    if variant == "plain":
        a = _o(Plain).remote()
        ray.get(a.pid.remote())
        return (lambda i: a.inc.remote(1)), [a], None
    mc = None
    if "@" in variant:
        variant, mc = variant.split("@")
        mc = int(mc)
    if variant == "anoop":
        a = _o(AsyncNoop).remote()
        ray.get(a.pid.remote())
        return (lambda i: a.invoke.remote(1)), [a], None
    if variant.startswith("a"):
        p = _o(SyncReplica).remote()
        bs = [] if variant == "a_nobackup" else [_o(SyncReplica).remote() for _ in range(2)]
        r = _o(PerCallRouter).remote(p, bs)
        ray.get([x.pid.remote() for x in [p, r, *bs]])
        return (lambda i: r.invoke.remote(1)), [p, r, *bs], None
    if variant.startswith("t:"):
        K = int(variant.split(":")[1])
        p = _o(SyncReplica).remote()
        bs = [_o(SyncReplica).remote() for _ in range(2)]
        r = _o(ThreadedBatchRouter).remote(p, bs, K=K)
        ray.get([x.pid.remote() for x in [p, r, *bs]])
        return (lambda i: r.invoke.remote(1)), [p, r, *bs], r
    kind, K, sched, wait, *rest = variant.split(":")
    bmode = rest[0] if rest else "eager"
    cls = SyncReplica if kind == "b" else AsyncReplica
    p = _o(cls).remote()
    bs = [_o(cls).remote() for _ in range(2)]
    opts = dict(enable_task_events=False) if NOTE else {}
    if mc:
        opts["max_concurrency"] = mc
    R = BatchRouter.options(**opts) if opts else BatchRouter
    r = R.remote(p, bs, K=int(K), sched=sched, wait=wait, bmode=bmode)
    ray.get([x.pid.remote() for x in [p, r, *bs]])
    return (lambda i: r.invoke.remote(1)), [p, r, *bs], r


def main():
    import statistics as st
    args = [a for a in sys.argv[1:] if not a.startswith("rounds=")]
    rounds = int(([a for a in sys.argv[1:] if a.startswith("rounds=")] or ["rounds=3"])[0].split("=")[1])
    variants = ["plain"] + (args or ["a", "b:1:soon:await"])
    init()
    made = {v: make(v) for v in variants}
    res = {v: [] for v in variants}
    ratios = {v: [] for v in variants}
    for rd in range(rounds):
        load = os.getloadavg()[0]
        for v in variants:
            call, actors, router = made[v]
            lat, p99, tp = measure(call, tp_reps=1)
            res[v].append((lat, p99, tp))
            print(f"round {rd} load={load:.1f} {v:24s} lat_med={lat:8.0f}us p99={p99:8.0f}us tput={tp:8.0f}/s", flush=True)
        b = res["plain"][-1]
        for v in variants:
            r = res[v][-1]
            ratios[v].append((r[0] / b[0], r[2] / b[2]))
    stats = {v: (ray.get(made[v][2].stats.remote()) if made[v][2] is not None else None) for v in variants}
    print(f"\nNOTE(enable_task_events=False)={NOTE}; {rounds} rounds; ratios are per-round vs plain measured in the same round, median over rounds")
    print("| variant | median lat (us) | p99 (us) | lat ratio (x plain) | tput (calls/s) | tput ratio | msgs/primary batch |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        lat = st.median(r[0] for r in res[v]); p99 = st.median(r[1] for r in res[v]); tp = st.median(r[2] for r in res[v])
        lr = st.median(r[0] for r in ratios[v]); tr = st.median(r[1] for r in ratios[v])
        s_ = stats[v]
        mpb = f"{s_['msgs']/max(1,s_['batches']):.1f}" if s_ else "-"
        print(f"| {v} | {lat:.0f} | {p99:.0f} | {lr:.2f} | {tp:.0f} | {tp and tr:.2f} | {mpb} |")
    ray.shutdown()


if __name__ == "__main__":
    main()

"""CPU cost per call per process during the pipelined-throughput phase (2 cores => CPU bound?)."""
import os
import sys
import time

import psutil
import ray

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_router import make
from common import init


def cpu(p):
    try:
        t = p.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def main():
    init()
    for v in ["plain"] + sys.argv[1:]:
        call, actors, router = make(v)
        pids = {"driver": os.getpid()}
        for idx, a in enumerate(actors):
            pids[f"actor{idx}"] = ray.get(a.pid.remote())
        others = [p for p in psutil.process_iter(["name", "cmdline"]) if p.pid not in pids.values()
                  and any(k in " ".join(p.info["cmdline"] or []) for k in ("raylet", "gcs_server", "ray"))]
        procs = {k: psutil.Process(v) for k, v in pids.items()}
        for _ in range(2):
            ray.get([call(i) for i in range(2000)])
        c0 = {k: cpu(p) for k, p in procs.items()}
        o0 = sum(cpu(p) for p in others)
        s0 = psutil.cpu_times()
        n = 6000
        t = time.perf_counter()
        ray.get([call(i) for i in range(n)])
        el = time.perf_counter() - t
        c1 = {k: cpu(p) for k, p in procs.items()}
        o1 = sum(cpu(p) for p in others)
        s1 = psutil.cpu_times()
        busy = (s1.user - s0.user) + (s1.system - s0.system)
        per = {k: round((c1[k] - c0[k]) / n * 1e6) for k in procs}
        print(f"{v:22s} tput={n/el:6.0f}/s  machine busy={busy/el:4.2f} cores  us CPU/call: {per} ray-daemons={round((o1-o0)/n*1e6)}", flush=True)
        for a in actors:
            ray.kill(a)
    ray.shutdown()


main()

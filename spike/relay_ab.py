"""A/B of replication settings: sync latency and pipelined throughput against a plain actor, in one session.

Usage: .venv/bin/python spike/relay_ab.py '{"old": {"relay_after_s": 0.01, "null_message_after_s": 0.02, "heartbeat_s": 0.1}, "new": {}}'
(ROUNDS=5 in the environment sets the rounds; each round measures every variant in turn.)
"""
import time, statistics, sys, os, json
import ray, ftactors

@ray.remote
class Plain:
    def __init__(self): self.n = 0
    def inc(self, x=1):
        self.n += x; return self.n

class C:
    def __init__(self): self.n = 0
    def inc(self, x=1):
        self.n += x; return self.n

def lat(h, n=300):
    xs = []
    for _ in range(n):
        t = time.perf_counter(); ray.get(h.inc.remote(1)); xs.append(time.perf_counter() - t)
    return statistics.median(xs) * 1e3

def tput(h, n=1500):
    t = time.perf_counter(); ray.get([h.inc.remote(1) for _ in range(n)]); return n / (time.perf_counter() - t)

ray.init(address="local", num_cpus=4, include_dashboard=False)
variants = json.loads(sys.argv[1])
hs = {"plain": Plain.remote()}
for name, opts in variants.items():
    hs[name] = ftactors.replicated(replicas=3, **opts)(ray.remote(C)).remote()
for h in hs.values():
    ray.get([h.inc.remote(1) for _ in range(300)])
L = {k: [] for k in hs}; T = {k: [] for k in hs}
for r in range(int(os.environ.get("ROUNDS", "4"))):
    for k, h in hs.items():
        L[k].append(lat(h)); T[k].append(tput(h))
for k in hs:
    lr = statistics.median([a / b for a, b in zip(L[k], L["plain"])])
    tr = statistics.median([a / b for a, b in zip(T[k], T["plain"])])
    print(f"{k:10s} lat {statistics.median(L[k]):6.2f} ms x{lr:4.2f}  tput {statistics.median(T[k]):6.0f}/s x{tr:4.2f}", flush=True)
ray.shutdown()

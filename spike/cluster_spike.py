"""Multi-node facts with ray.cluster_utils.Cluster (head + 2 workers, num_cpus=1 each).

usage: python cluster_spike.py [fasthc] [preinit]
  fasthc : set RAY_health_check_period_ms=500 RAY_health_check_failure_threshold=3
           RAY_health_check_timeout_ms=1000 before starting the cluster
  preinit: do a local ray.init()/shutdown() first (leaves RAY_AUTH_MODE=token in os.environ)
"""
import asyncio
import os
import signal
import subprocess
import sys
import time

import psutil

FAST = "fasthc" in sys.argv
if FAST:
    os.environ.update(RAY_health_check_period_ms="500", RAY_health_check_failure_threshold="3",
                      RAY_health_check_timeout_ms="1000")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray.util.placement_group import placement_group, remove_placement_group  # noqa: E402
from ray.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,  # noqa: E402
                                            PlacementGroupSchedulingStrategy)


@ray.remote(num_cpus=0)
class Rep:
    def where(self):
        return ray.get_runtime_context().get_node_id(), os.getpid()

    def deliver(self, batch, sleep=0.0):
        time.sleep(sleep)
        return batch


@ray.remote(num_cpus=0, max_concurrency=100)
class Router:
    def __init__(self, p):
        self.p = p

    def where(self):
        return ray.get_runtime_context().get_node_id(), os.getpid()

    async def call(self, sleep):
        t0 = time.time()
        try:
            await self.p.deliver.remote([1], sleep)
            return ("ok", t0, time.time())
        except BaseException as e:  # noqa
            return (type(e).__module__ + "." + type(e).__qualname__, t0, time.time(), str(e)[:160])


def node_procs(node):
    pids = []
    for key in ("raylet",):
        for pi in node.all_processes.get(key, []):
            pids.append(pi.process.pid)
    allp = []
    for pid in pids:
        p = psutil.Process(pid)
        allp.append(p)
        allp.extend(p.children(recursive=True))
    return allp


def main():
    print("FAST health check:", FAST, "| RAY_AUTH_MODE before:", os.environ.get("RAY_AUTH_MODE"))
    if "preinit" in sys.argv:
        ray.init(include_dashboard=False)
        ray.shutdown()
        print("after local ray.init/shutdown RAY_AUTH_MODE =", os.environ.get("RAY_AUTH_MODE"))
    t = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    t_head = time.time() - t
    w1 = cluster.add_node(num_cpus=1)
    w2 = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    t_nodes = time.time() - t
    ray.init(address=cluster.address)
    t_init = time.time() - t
    print(f"Cluster start: head {t_head:.1f}s, +2 workers & wait_for_nodes {t_nodes:.1f}s, +ray.init(address) {t_init:.1f}s")
    print("driver RAY_AUTH_MODE =", os.environ.get("RAY_AUTH_MODE"))

    # second driver in a subprocess, with and without RAY_AUTH_MODE=token
    for mode in (None, "token", "disabled"):
        env = dict(os.environ)
        env.pop("RAY_AUTH_MODE", None)
        if mode:
            env["RAY_AUTH_MODE"] = mode
        code = ("import ray;ray.init(address=%r);print('nodes',len(ray.nodes()));"
                "print(ray.get(ray.remote(lambda:1).remote()))" % cluster.address)
        try:
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=40)
            last = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()][-2:]
            print(f"2nd driver RAY_AUTH_MODE={mode}: rc={r.returncode} {last}")
        except subprocess.TimeoutExpired:
            print(f"2nd driver RAY_AUTH_MODE={mode}: TIMEOUT 40s")

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    head_id = cluster.head_node.node_id
    w1_id, w2_id = w1.node_id, w2.node_id
    print("alive nodes:", len(nodes))

    # (a) NodeAffinity hard
    acts = [Rep.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)).remote()
            for nid in (head_id, w1_id, w2_id)]
    wh = ray.get([a.where.remote() for a in acts])
    print("NodeAffinity soft=False distinct nodes:", len({w[0] for w in wh}) == 3, [w[0][:8] for w in wh])
    for a in acts:
        ray.kill(a)
    # (b) STRICT_SPREAD placement group
    pg = placement_group([{"CPU": 0.5}] * 3, strategy="STRICT_SPREAD")
    ray.get(pg.ready(), timeout=30)
    acts = [Rep.options(num_cpus=0.5, scheduling_strategy=PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=i)).remote() for i in range(3)]
    wh = ray.get([a.where.remote() for a in acts])
    print("STRICT_SPREAD pg distinct nodes:", len({w[0] for w in wh}) == 3, [w[0][:8] for w in wh])
    for a in acts:
        ray.kill(a)
    remove_placement_group(pg)
    # NodeAffinity to a non-existent/dead node with soft=False -> ?

    # (c) remove_node(w1, allow_graceful=False) while router (head) awaits primary (w1)
    prim = Rep.options(scheduling_strategy=NodeAffinitySchedulingStrategy(w1_id, soft=False)).remote()
    router = Router.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head_id, soft=False)).remote(prim)
    ray.get([prim.where.remote(), router.where.remote()])
    ref = router.call.remote(30)
    dref = prim.deliver.remote([1], 30)
    time.sleep(0.5)
    tk = time.time()
    cluster.remove_node(w1, allow_graceful=False)
    t_rm = time.time() - tk
    res = ray.get(ref, timeout=90)
    print(f"remove_node(allow_graceful=False) took {t_rm:.2f}s; router await -> {res[0]} after {res[2]-tk:.2f}s")
    if len(res) > 3:
        print("   msg:", res[3].replace("\n", " "))
    try:
        ray.get(dref, timeout=90)
    except BaseException as e:  # noqa
        print(f"   driver ray.get on primary -> {type(e).__qualname__} after {time.time()-tk:.2f}s")
    t0 = time.time()
    while any(n["NodeID"] == w1_id and n["Alive"] for n in ray.nodes()) and time.time() - t0 < 60:
        time.sleep(0.1)
    print(f"   GCS marks node dead after {time.time()-tk:.2f}s")

    # (d) SIGSTOP all processes of w2 (hung / partitioned node); router awaits primary on w2
    prim2 = Rep.options(scheduling_strategy=NodeAffinitySchedulingStrategy(w2_id, soft=False)).remote()
    router2 = Router.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head_id, soft=False)).remote(prim2)
    ray.get([prim2.where.remote(), router2.where.remote()])
    ref = router2.call.remote(0.0)
    ray.get(ref)
    procs = node_procs(w2)
    tk = time.time()
    for p in procs:
        p.send_signal(signal.SIGSTOP)
    try:
        ref = router2.call.remote(0.0)
        ready, _ = ray.wait([ref], timeout=75)
        if ready:
            res = ray.get(ref)
            print(f"SIGSTOP node ({len(procs)} procs): router await -> {res[0]} after {res[2]-tk:.2f}s")
            if len(res) > 3:
                print("   msg:", res[3].replace("\n", " "))
        else:
            print(f"SIGSTOP node: router await still pending after {time.time()-tk:.1f}s")
        t0 = time.time()
        while any(n["NodeID"] == w2_id and n["Alive"] for n in ray.nodes()) and time.time() - t0 < 5:
            time.sleep(0.1)
        print(f"   GCS node alive flag false after {time.time()-tk:.2f}s" if time.time() - t0 < 5 else "   node still alive in GCS")
    finally:
        for p in procs:
            try:
                p.send_signal(signal.SIGCONT)
            except psutil.Error:
                pass
    ray.shutdown()
    cluster.shutdown()


main()

"""Failure facts: (i) primary SIGKILL seen by awaiting async router, (ii) router restart with
task retries, (iii) SIGSTOP + asyncio.wait_for timeout."""
import asyncio
import os
import signal
import sys
import time

import ray

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import init

INIT_LOG = "/tmp/spike_router_init.log"


@ray.remote(num_cpus=0, max_concurrency=4)
class Primary:
    def pid(self):
        return os.getpid()

    def deliver(self, batch, sleep=0.0):
        time.sleep(sleep)
        return [x + 1 for x in batch]


@ray.remote(num_cpus=0, max_concurrency=1000)
class Router:
    def __init__(self, primary, token):
        self.p = primary
        with open(INIT_LOG, "a") as f:
            f.write(f"{token} {os.getpid()} {time.time():.3f}\n")

    def pid(self):
        return os.getpid()

    async def call_and_report(self, sleep):
        ref = self.p.deliver.remote([1], sleep)
        t0 = time.time()
        try:
            r = await ref
            return ("ok", r, t0, time.time())
        except BaseException as e:  # noqa
            return (type(e).__module__ + "." + type(e).__qualname__,
                    [c.__name__ for c in type(e).__mro__][:6], t0, time.time(), str(e)[:300])

    async def call_again(self):
        t0 = time.time()
        try:
            r = await self.p.deliver.remote([1])
            return ("ok", r)
        except BaseException as e:  # noqa
            return (type(e).__qualname__, time.time() - t0)

    async def with_timeout(self, sleep, timeout, how):
        ref = self.p.deliver.remote([1], sleep)
        t0 = time.time()
        try:
            if how == "wait_for_ref":
                r = await asyncio.wait_for(ref, timeout)
            else:
                r = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)
            return ("ok", r, time.time() - t0)
        except BaseException as e:  # noqa
            return (type(e).__module__ + "." + type(e).__qualname__, None, time.time() - t0)

    async def invoke(self, x):
        await asyncio.sleep(0.5)
        return await self.p.deliver.remote([x])


def fact_i():
    print("=== (i) primary SIGKILL while router awaits", flush=True)
    p = Primary.remote()
    r = Router.remote(p, "i")
    ppid = ray.get(p.pid.remote())
    ref = r.call_and_report.remote(3.0)
    time.sleep(0.5)
    tk = time.time()
    os.kill(ppid, signal.SIGKILL)
    res = ray.get(ref, timeout=60)
    print("exception:", res[0])
    print("mro:", res[1])
    print(f"kill -> exception seen in router: {res[3]-tk:.3f}s")
    print("msg:", res[4] if len(res) > 4 else "")
    print("subsequent call:", ray.get(r.call_again.remote(), timeout=30))
    # driver-side view
    try:
        ray.get(p.pid.remote(), timeout=30)
    except BaseException as e:  # noqa
        print("driver call on dead actor ->", type(e).__module__ + "." + type(e).__qualname__)
    ray.kill(r)


def fact_i_restart():
    print("=== (i-b) primary with max_restarts=1 (no task retries) SIGKILL while router awaits", flush=True)
    p = Primary.options(max_restarts=1).remote()
    r = Router.remote(p, "ib")
    ppid = ray.get(p.pid.remote())
    ref = r.call_and_report.remote(3.0)
    time.sleep(0.5)
    tk = time.time()
    os.kill(ppid, signal.SIGKILL)
    res = ray.get(ref, timeout=60)
    print("exception:", res[0], f"after {res[3]-tk:.3f}s")
    print("msg:", res[4] if len(res) > 4 else "")
    t = time.time()
    print("subsequent call:", ray.get(r.call_again.remote(), timeout=30), f"{time.time()-t:.2f}s")
    ray.kill(p)
    ray.kill(r)


def fact_ii():
    print("=== (ii) router max_restarts=-1 max_task_retries=-1, kill router with 20 calls in flight", flush=True)
    if os.path.exists(INIT_LOG):
        os.remove(INIT_LOG)
    p = Primary.remote()
    r = Router.options(max_restarts=-1, max_task_retries=-1).remote(p, "TOKEN-ii")
    rpid = ray.get(r.pid.remote())
    refs = [r.invoke.remote(i) for i in range(20)]
    time.sleep(0.2)
    tk = time.time()
    os.kill(rpid, signal.SIGKILL)
    done, notdone = [], []
    try:
        vals = ray.get(refs, timeout=60)
        print(f"all 20 resolved after kill in {time.time()-tk:.2f}s; values ok={vals == [[i+1] for i in range(20)]}")
    except BaseException as e:  # noqa
        print("ray.get raised", type(e).__qualname__, str(e)[:300])
    newpid = ray.get(r.pid.remote())
    print("router pid before/after:", rpid, newpid)
    print("init log (token pid time):")
    print(open(INIT_LOG).read())
    ray.kill(r)
    ray.kill(p)


def fact_ii_no_retry():
    print("=== (ii-b) router max_restarts=-1, max_task_retries=0", flush=True)
    p = Primary.remote()
    r = Router.options(max_restarts=-1, max_task_retries=0).remote(p, "TOKEN-iib")
    rpid = ray.get(r.pid.remote())
    refs = [r.invoke.remote(i) for i in range(20)]
    time.sleep(0.2)
    tk = time.time()
    os.kill(rpid, signal.SIGKILL)
    errs = {}
    for ref in refs:
        try:
            ray.get(ref, timeout=60)
            errs["ok"] = errs.get("ok", 0) + 1
        except BaseException as e:  # noqa
            n = type(e).__module__ + "." + type(e).__qualname__
            errs[n] = errs.get(n, 0) + 1
    print(f"outcomes {errs} ({time.time()-tk:.2f}s)")
    t = time.time()
    print("new call after restart:", ray.get(r.invoke.remote(7), timeout=30), f"{time.time()-t:.2f}s")
    ray.kill(r)
    ray.kill(p)


def fact_iii():
    print("=== (iii) SIGSTOP primary", flush=True)
    p = Primary.remote()
    r = Router.remote(p, "iii")
    ppid = ray.get(p.pid.remote())
    os.kill(ppid, signal.SIGSTOP)
    try:
        ref = r.call_and_report.remote(0.0)
        ready, _ = ray.wait([ref], timeout=8)
        print("plain await after 8s: ", "HANGS (not ready)" if not ready else ray.get(ref))
        for how in ["wait_for_ref", "wait_for_wrap_future"]:
            res = ray.get(r.with_timeout.remote(0.0, 1.0, how), timeout=30)
            print(f"asyncio.wait_for({how}, 1.0) ->", res)
        ray.get(r.pid.remote(), timeout=5)
        print("router remains responsive: yes")
    finally:
        os.kill(ppid, signal.SIGCONT)
    t = time.time()
    print("after SIGCONT, hanging call completes:", ray.get(ref, timeout=30)[0], f"{time.time()-t:.2f}s")
    # wait_for on a healthy ref that completes in time
    print("wait_for healthy:", ray.get(r.with_timeout.remote(0.1, 2.0, "wait_for_ref")))
    print("wait_for slow (cancels await; does the task keep running?):",
          ray.get(r.with_timeout.remote(2.0, 0.5, "wait_for_ref")))
    ray.kill(r)
    ray.kill(p)


if __name__ == "__main__":
    init()
    which = sys.argv[1:] or ["i", "ib", "ii", "iib", "iii"]
    fns = dict(i=fact_i, ib=fact_i_restart, ii=fact_ii, iib=fact_ii_no_retry, iii=fact_iii)
    for w in which:
        t = time.time()
        fns[w]()
        print(f"[{w} took {time.time()-t:.1f}s]", flush=True)
    ray.shutdown()

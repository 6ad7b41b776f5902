"""Break down where router latency goes: plain sync / async / threaded actors and 1-hop forwarders."""
import asyncio
import sys

import ray

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import Plain, init, measure


@ray.remote(num_cpus=0)
class AsyncPlain:
    def __init__(self):
        self.v = 0

    async def inc(self, x):
        self.v += x
        return self.v


@ray.remote(num_cpus=0, max_concurrency=4)
class Threaded:
    def __init__(self):
        self.v = 0

    def inc(self, x):
        self.v += x
        return self.v


@ray.remote(num_cpus=0)
class SyncFwd:
    def __init__(self, p):
        self.p = p

    def inc(self, x):
        return ray.get(self.p.inc.remote(x))


@ray.remote(num_cpus=0, max_concurrency=1000)
class AsyncFwd:
    def __init__(self, p):
        self.p = p

    async def inc(self, x):
        return await self.p.inc.remote(x)


@ray.remote(num_cpus=0, max_concurrency=1000)
class AsyncNoop:
    async def inc(self, x):
        return x


@ray.remote(num_cpus=0, max_concurrency=1000)
class AsyncFwdRef:
    """Returns the primary's ObjectRef unawaited -> client gets result via ref chaining? (returns nested ref)"""

    def __init__(self, p):
        self.p = p

    async def inc(self, x):
        return await asyncio.wrap_future(self.p.inc.remote(x).future())


def main():
    init()
    cases = {}

    def plain():
        a = Plain.remote(); return a, [a]

    def aplain():
        a = AsyncPlain.remote(); return a, [a]

    def anoop():
        a = AsyncNoop.remote(); return a, [a]

    def thr():
        a = Threaded.remote(); return a, [a]

    def sfwd():
        p = Plain.remote(); r = SyncFwd.remote(p); return r, [p, r]

    def afwd():
        p = Plain.remote(); r = AsyncFwd.remote(p); return r, [p, r]

    def afwd_t():
        p = Threaded.remote(); r = AsyncFwd.remote(p); return r, [p, r]

    def afwdwrap():
        p = Plain.remote(); r = AsyncFwdRef.remote(p); return r, [p, r]

    order = [("plain sync", plain), ("async actor (mc=1000)", anoop), ("async actor default", aplain),
             ("threaded mc=4", thr), ("sync fwd -> plain (ray.get)", sfwd),
             ("async fwd -> plain (await)", afwd), ("async fwd -> threaded", afwd_t),
             ("async fwd -> plain (wrap_future)", afwdwrap), ("plain sync", plain)]
    rows = []
    for name, f in order:
        a, actors = f()
        ray.get(a.inc.remote(0))
        lat, p99, tp = measure(lambda i: a.inc.remote(1))
        for x in actors:
            ray.kill(x)
        rows.append((name, lat, p99, tp))
        print(name, round(lat), round(p99), round(tp), flush=True)
    blat = (rows[0][1] + rows[-1][1]) / 2
    btp = (rows[0][3] + rows[-1][3]) / 2
    print("\n| actor | median lat (us) | p99 (us) | lat ratio | tput (calls/s) | tput ratio |\n|---|---|---|---|---|---|")
    for n, l, p, t in rows:
        print(f"| {n} | {l:.0f} | {p:.0f} | {l/blat:.2f}x | {t:.0f} | {t/btp:.2f} |")
    ray.shutdown()


main()

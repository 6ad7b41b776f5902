"""API facts: metrics Counter in actor w/o dashboard, ActorPool with a custom handle-like object,
pickling a custom object holding actor handles into a task, `await ref` in the driver."""
import asyncio
import sys
import time

import ray

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import Plain, init


@ray.remote(num_cpus=0)
class MetricActor:
    def __init__(self):
        from ray.util.metrics import Counter, Gauge, Histogram
        self.c = Counter("ftactors_spike_calls", description="d", tag_keys=("group",))
        self.c.set_default_tags({"group": "g1"})
        self.g = Gauge("ftactors_spike_gauge", description="d")
        self.h = Histogram("ftactors_spike_hist", description="d", boundaries=[1, 10, 100])

    def bump(self):
        self.c.inc()
        self.c.inc(2.0, tags={"group": "g2"})
        self.g.set(3)
        self.h.observe(5)
        return "ok"


class MethodProxy:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *a, **k):
        return self._fn(*a, **k)


class ReplicatedHandle:
    """Custom object: looks like an actor handle; `.inc.remote(x)` routes to primary, copies to backups."""

    def __init__(self, primary, backups):
        self.primary = primary
        self.backups = backups

    def __getattr__(self, name):
        if name.startswith("_") or name in ("primary", "backups"):
            raise AttributeError(name)

        def call(*a, **k):
            for b in self.backups:
                getattr(b, name).remote(*a, **k)
            return getattr(self.primary, name).remote(*a, **k)

        return MethodProxy(call)


@ray.remote(num_cpus=0)
def use_handle(h, n):
    return [ray.get(h.inc.remote(1)) for _ in range(n)]


def main():
    init()
    # 1. metrics
    m = MetricActor.remote()
    try:
        print("metrics Counter/Gauge/Histogram inside actor (include_dashboard=False):", ray.get(m.bump.remote()))
    except Exception as e:  # noqa
        print("metrics FAILED:", type(e).__qualname__, e)
    # 2. ActorPool with custom objects
    from ray.util import ActorPool
    hs = [ReplicatedHandle(Plain.remote(), [Plain.remote()]) for _ in range(2)]
    pool = ActorPool(hs)
    out = list(pool.map(lambda a, v: a.inc.remote(v), [1, 2, 3, 4]))
    print("ActorPool over custom handle-like objects:", out)
    # 3. pickle custom object holding handles into a task
    h = ReplicatedHandle(Plain.remote(), [Plain.remote(), Plain.remote()])
    print("custom object passed to a task, used there:", ray.get(use_handle.remote(h, 3)),
          "primary:", ray.get(h.primary.inc.remote(0)), "backup:", ray.get(h.backups[0].inc.remote(0)))
    import cloudpickle
    blob = cloudpickle.dumps(h)
    print("cloudpickle.dumps(custom obj) bytes:", len(blob))
    # 4. await ref in driver
    async def drv():
        a = Plain.remote()
        r = await a.inc.remote(5)
        rs = await asyncio.gather(*[a.inc.remote(1) for _ in range(10)])
        r2 = await asyncio.wait_for(a.inc.remote(1), 5)
        return r, rs[-1], r2
    print("await ref in driver asyncio.run():", asyncio.run(drv()))
    ray.shutdown()


main()

"""Shared actors for the ftactors runtime spike."""
import asyncio
import os
import statistics
import threading
import time

import ray


def init(**kw):
    kw.setdefault("include_dashboard", False)
    kw.setdefault("num_cpus", 8)
    kw.setdefault("log_to_driver", True)
    ray.init(**kw)


@ray.remote(num_cpus=0)
class Plain:
    def __init__(self):
        self.v = 0

    def inc(self, x):
        self.v += x
        return self.v

    def pid(self):
        return os.getpid()


@ray.remote(num_cpus=0, max_concurrency=4)
class SyncReplica:
    """Threaded replica: executes a batch in a loop under a lock."""

    def __init__(self):
        self.v = 0
        self.lock = threading.Lock()

    def deliver(self, batch):
        out = []
        with self.lock:
            for x in batch:
                self.v += x
                out.append(self.v)
        return out

    def pid(self):
        return os.getpid()

    def sleep(self, s):
        time.sleep(s)
        return s


@ray.remote(num_cpus=0)
class AsyncReplica:
    def __init__(self):
        self.v = 0

    async def deliver(self, batch):
        out = []
        for x in batch:
            self.v += x
            out.append(self.v)
        return out

    def pid(self):
        return os.getpid()


@ray.remote(num_cpus=0, max_concurrency=1000)
class PerCallRouter:
    """Variant (a): per-call await of primary, per-call fire-and-forget to backups."""

    def __init__(self, primary, backups):
        self.p = primary
        self.b = backups

    async def invoke(self, msg):
        for b in self.b:
            b.deliver.remote([msg])
        res = await self.p.deliver.remote([msg])
        return res[0]

    def pid(self):
        return os.getpid()


@ray.remote(num_cpus=0, max_concurrency=1000)
class BatchRouter:
    """Variant (b)/(c): batching router.

    K        : max outstanding primary.deliver calls
    sched    : 'immediate' (flush inside invoke) or 'soon' (loop.call_soon coalescing)
    wait     : 'await' (task awaiting the ObjectRef), 'wrap' (asyncio.wrap_future(ref.future())),
               'oncomp' (ref._on_completed callback + call_soon_threadsafe)
    """

    def __init__(self, primary, backups, K=1, sched="soon", wait="await", bmode="eager"):
        self.bmode = bmode
        self.p = primary
        self.b = backups
        self.K = K
        self.sched = sched
        self.wait = wait
        self.pending = []  # (msg, fut)
        self.outstanding = 0
        self.scheduled = False
        self.bpending = [[] for _ in backups]
        self.boutstanding = [False for _ in backups]
        self.nbatches = 0
        self.nmsgs = 0
        self.bbatches = 0

    def stats(self):
        return dict(batches=self.nbatches, msgs=self.nmsgs, backup_batches=self.bbatches)

    async def invoke(self, msg):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending.append((msg, fut))
        for i in range(len(self.b)):
            self.bpending[i].append(msg)
        if self.sched == "immediate":
            self._flush()
        elif not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return await fut

    # ---------------- primary path
    def _flush(self):
        self.scheduled = False
        if self.pending and self.outstanding < self.K:
            batch = self.pending
            self.pending = []
            self.outstanding += 1
            self.nbatches += 1
            self.nmsgs += len(batch)
            ref = self.p.deliver.remote([m for m, _ in batch])
            self._track(ref, lambda res, exc, batch=batch: self._primary_done(batch, res, exc))
        if self.bmode == "eager" or self.outstanding == 0:
            for i in range(len(self.b)):
                self._flush_backup(i)

    def _primary_done(self, batch, res, exc):
        self.outstanding -= 1
        if exc is not None:
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
        else:
            for (_, f), r in zip(batch, res):
                if not f.done():
                    f.set_result(r)
        if self.pending:
            self._flush()
        if self.bmode == "after":
            # backups are relayed only after the primary answered (off the latency path)
            asyncio.get_running_loop().call_soon(self._flush_all_backups)

    def _flush_all_backups(self):
        for i in range(len(self.b)):
            self._flush_backup(i)

    # ---------------- backup path (group commit, 1 outstanding each)
    def _flush_backup(self, i):
        if self.boutstanding[i] or not self.bpending[i]:
            return
        batch = self.bpending[i]
        self.bpending[i] = []
        self.boutstanding[i] = True
        self.bbatches += 1
        ref = self.b[i].deliver.remote(batch)
        self._track(ref, lambda res, exc, i=i: self._backup_done(i))

    def _backup_done(self, i):
        self.boutstanding[i] = False
        self._flush_backup(i)

    # ---------------- completion mechanisms
    def _track(self, ref, cb):
        if self.wait == "await":
            asyncio.get_running_loop().create_task(self._awaiter(ref, cb))
        elif self.wait == "wrap":
            f = asyncio.wrap_future(ref.future())

            def done(f, cb=cb):
                try:
                    cb(f.result(), None)
                except BaseException as e:  # noqa
                    cb(None, e)

            f.add_done_callback(done)
        elif self.wait == "oncomp":
            loop = asyncio.get_running_loop()

            def on_done(result, cb=cb, loop=loop):
                if isinstance(result, BaseException):
                    loop.call_soon_threadsafe(cb, None, result)
                else:
                    loop.call_soon_threadsafe(cb, result, None)

            ref._on_completed(on_done)
        else:
            raise ValueError(self.wait)

    async def _awaiter(self, ref, cb):
        try:
            res = await ref
        except BaseException as e:  # noqa
            cb(None, e)
            return
        cb(res, None)

    def pid(self):
        return os.getpid()


def measure(call, n_lat=500, n_warm=50, n_tp=2000, tp_reps=3):
    """call(i) -> ObjectRef. Returns (median latency us, p99 us, throughput calls/s)."""
    for i in range(n_warm):
        ray.get(call(i))
    lats = []
    for i in range(n_lat):
        t = time.perf_counter()
        ray.get(call(i))
        lats.append(time.perf_counter() - t)
    lats.sort()
    tps = []
    for _ in range(tp_reps):
        t = time.perf_counter()
        refs = [call(i) for i in range(n_tp)]
        ray.get(refs)
        tps.append(n_tp / (time.perf_counter() - t))
    return (statistics.median(lats) * 1e6, lats[int(0.99 * len(lats))] * 1e6, statistics.median(tps))


@ray.remote(num_cpus=0, max_concurrency=1000)
class ThreadedBatchRouter:
    """Variant (t): sync invoke on a threaded actor. K flusher threads pull everything
    pending, send one primary.deliver(batch), block in ray.get, resolve per-call slots.
    One relay thread per backup does group commit (1 outstanding)."""

    class Slot:
        __slots__ = ("ev", "res", "exc")

        def __init__(self):
            self.ev = threading.Event()
            self.res = None
            self.exc = None

    def __init__(self, primary, backups, K=1):
        self.p = primary
        self.b = backups
        self.cv = threading.Condition()
        self.pending = []
        self.bcv = [threading.Condition() for _ in backups]
        self.bpending = [[] for _ in backups]
        self.nbatches = 0
        self.nmsgs = 0
        self.bbatches = 0
        for _ in range(K):
            threading.Thread(target=self._flusher, daemon=True).start()
        for i in range(len(backups)):
            threading.Thread(target=self._relay, args=(i,), daemon=True).start()

    def stats(self):
        return dict(batches=self.nbatches, msgs=self.nmsgs, backup_batches=self.bbatches)

    def invoke(self, msg):
        s = ThreadedBatchRouter.Slot()
        with self.cv:
            self.pending.append((msg, s))
            self.cv.notify()
        for i, cv in enumerate(self.bcv):
            with cv:
                self.bpending[i].append(msg)
                cv.notify()
        s.ev.wait()
        if s.exc is not None:
            raise s.exc
        return s.res

    def _flusher(self):
        while True:
            with self.cv:
                while not self.pending:
                    self.cv.wait()
                batch = self.pending
                self.pending = []
            self.nbatches += 1
            self.nmsgs += len(batch)
            try:
                res = ray.get(self.p.deliver.remote([m for m, _ in batch]))
                for (_, s), r in zip(batch, res):
                    s.res = r
                    s.ev.set()
            except BaseException as e:  # noqa
                for _, s in batch:
                    s.exc = e
                    s.ev.set()

    def _relay(self, i):
        cv = self.bcv[i]
        while True:
            with cv:
                while not self.bpending[i]:
                    cv.wait()
                batch = self.bpending[i]
                self.bpending[i] = []
            self.bbatches += 1
            try:
                ray.get(self.b[i].deliver.remote(batch))
            except BaseException:  # noqa
                pass

    def pid(self):
        return os.getpid()


@ray.remote(num_cpus=0, max_concurrency=1000)
class AsyncNoop:
    """Ceiling for any async router: async actor that just returns."""

    async def invoke(self, x):
        return x

    def pid(self):
        return os.getpid()

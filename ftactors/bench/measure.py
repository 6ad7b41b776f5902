"""The measurements. Timings are wall clock (time.perf_counter) in the driver."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import psutil
import ray

from ftactors.bench.systems import Bench, FtActors, System


def _pct(xs: List[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[k]


def sync_latencies(system: System, k: int, method: str = "inc", args: tuple = (1,)) -> List[float]:
    """``k`` sequential calls; their latencies in ms."""
    out = []
    for _ in range(k):
        t = time.perf_counter()
        system.call(method, *args)
        out.append((time.perf_counter() - t) * 1000)
    return out


def throughput(system: System, n: int, method: str = "inc", args: tuple = (1,)) -> float:
    """``n`` calls in flight at once; completed calls per second."""
    t = time.perf_counter()
    system.pipelined(method, [args] * n)
    return n / (time.perf_counter() - t)


@dataclass
class RoundResults:
    latencies: Dict[str, List[float]] = field(default_factory=dict)      # all samples, ms
    medians: Dict[str, List[float]] = field(default_factory=dict)        # per round
    p99s: Dict[str, List[float]] = field(default_factory=dict)
    tputs: Dict[str, List[float]] = field(default_factory=dict)
    lat_ratios: Dict[str, List[float]] = field(default_factory=dict)     # per round, vs reference
    tput_ratios: Dict[str, List[float]] = field(default_factory=dict)
    loadavg: List[float] = field(default_factory=list)


def rounds(systems: List[System], n_rounds: int, k: int, n: int, reference: str = "ray-plain",
           log: Callable[[str], None] = print, method: str = "inc", args: tuple = (1,)) -> RoundResults:
    """Alternate the systems in rounds; each ratio is taken against the reference in the same round.

    The order rotates from round to round so that no system is always measured first.
    """
    res = RoundResults()
    for s in systems:
        sync_latencies(s, max(5, k // 10), method, args)  # warm-up
    for rd in range(n_rounds):
        res.loadavg.append(psutil.getloadavg()[0])
        order = systems[rd % len(systems):] + systems[: rd % len(systems)]
        this: Dict[str, tuple] = {}
        for s in order:
            lat = sync_latencies(s, k, method, args)
            tp = throughput(s, n, method, args) if n else float("nan")
            res.latencies.setdefault(s.name, []).extend(lat)
            med, p99 = statistics.median(lat), _pct(lat, 0.99)
            res.medians.setdefault(s.name, []).append(med)
            res.p99s.setdefault(s.name, []).append(p99)
            res.tputs.setdefault(s.name, []).append(tp)
            this[s.name] = (med, tp)
            log(f"  round {rd + 1}/{n_rounds} {s.name:22s} median {med:7.2f} ms  p99 {p99:7.2f} ms  "
                f"{tp:8.0f} calls/s")
        ref = this.get(reference)
        if ref:
            for name, (med, tp) in this.items():
                res.lat_ratios.setdefault(name, []).append(med / ref[0])
                res.tput_ratios.setdefault(name, []).append(tp / ref[1] if ref[1] else float("nan"))
    return res


# ------------------------------------------------------------------ failover


class Load:
    """Threads issuing ``add(token)`` synchronous calls with unique tokens until stopped."""

    def __init__(self, system: System, threads: int = 3) -> None:
        self.system = system
        self.acked: List[tuple] = []           # (token, value, completion time)
        self.errors: List[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, worker: int) -> None:
        client = self.system.client()
        i = 0
        while not self._stop.is_set():
            token = f"w{worker}-{i}"
            try:
                value = client.call("add", token)
                self.acked.append((token, value, time.monotonic()))
            except BaseException as exc:
                self.errors.append(exc)
                time.sleep(0.01)
            i += 1

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)

    def wait_calls(self, count: int, timeout: float = 60.0) -> bool:
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


def pause_after(completions: List[float], kill_t: float, until: float) -> float:
    """The longest gap between consecutive completions (all callers) that ends after the kill,
    counting from the last completion before it, up to ``until``. Seconds."""
    before = [t for t in completions if t <= kill_t]
    after = [t for t in completions if kill_t < t <= until]
    if not after:
        return until - (before[-1] if before else kill_t)
    seq = ([before[-1]] if before else [kill_t]) + after
    return max(b - a for a, b in zip(seq, seq[1:]))


def failover(system: System, kills: int, log: Callable[[str], None] = print, threads: int = 3,
             calls_between: int = 30, recover_timeout: float = 90.0) -> Dict[str, Any]:
    """Kill the primary (leader) ``kills`` times under load; pauses, lost, run twice, state."""
    kill_times: List[float] = []
    recovered_at: List[float] = []
    with Load(system, threads) as load:
        load.wait_calls(calls_between)
        for i in range(kills):
            system.kill_primary()
            kill_times.append(time.monotonic())
            deadline = time.monotonic() + recover_timeout
            while not system.recovered():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{system.name}: not recovered {recover_timeout}s after kill {i + 1}")
                time.sleep(0.1)
            recovered_at.append(time.monotonic())
            if not load.wait_calls(calls_between):
                raise RuntimeError(f"{system.name}: callers stalled for 60 s after kill {i + 1} "
                                   f"({len(load.errors)} errors: {load.errors[-1:]!r})")
        load.wait_calls(calls_between)
    completions = sorted(t for _, _, t in load.acked)
    pauses = []
    for i, kt in enumerate(kill_times):
        until = kill_times[i + 1] if i + 1 < len(kill_times) else completions[-1]
        pauses.append(pause_after(completions, kt, until) * 1000)
    # the same gap, counted only until the members were whole again (before a warm spare restarts)
    back = getattr(system, "members_back", [])
    to_members = [pause_after(completions, kt, b) * 1000 for kt, b in zip(kill_times, back)]
    state = system.read()
    tokens = state["tokens"]
    in_state = set(tokens)
    acked = {t for t, _, _ in load.acked}
    runs = system.run_counts(tokens)
    lost = len(acked - in_state)
    duplicated = sum(1 for c in runs.values() if c > 1)
    values = [v for _, v, _ in load.acked]
    out = {
        "kills": kills,
        "calls": len(load.acked),
        "errors": len(load.errors),
        "error_kinds": sorted({type(e).__name__ for e in load.errors}),
        "pauses_ms": pauses,
        "pause_median_ms": statistics.median(pauses) if pauses else None,
        "pause_max_ms": max(pauses) if pauses else None,
        "pauses_to_members_ms": [round(x, 1) for x in to_members] or None,
        "recovery_s_median": statistics.median(r - k for r, k in zip(recovered_at, kill_times)),
        "lost": lost,
        "duplicated": duplicated,
        "replies_repeated": len(values) - len(set(values)),
        "state_kept": lost == 0 and state["n"] >= len(acked),
        "retries": getattr(system, "retries", 0),
        "failover_done_ms": [round(x, 1) for x in getattr(system, "failover_done_ms", [])] or None,
    }
    log(f"  {system.name:22s} {kills} kills: pause median {out['pause_median_ms']:.0f} ms, "
        f"worst {out['pause_max_ms']:.0f} ms; {out['calls']} calls, {lost} lost, {duplicated} run twice, "
        f"{out['errors']} errors, state {'kept' if out['state_kept'] else 'LOST'}")
    log(f"  {system.name:22s} pauses {[round(p) for p in pauses]} ms; counted until the members were whole: "
        f"{[round(p) for p in to_members]} ms")
    return out


# ------------------------------------------------------------------ messages


#: the counters (per call) of messages an unreplicated system would not send
EXTRA_MESSAGE_COUNTS = ("null_messages", "backend_null_messages", "nested_pulls")


def messages_under_load(system: FtActors, seconds: float, window: int = 50, threads: int = 2,
                        idle_s: float = 1.0) -> Dict[str, Any]:
    """ftactors' own counters per call, read twice while pipelined load runs; then idle rates."""
    stop = threading.Event()
    done = [0]

    def run() -> None:
        while not stop.is_set():
            system.pipelined("inc", [(1,)] * window)
            done[0] += window

    ts = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    time.sleep(min(1.0, seconds / 3))
    a = system.stats()
    time.sleep(seconds)
    b = system.stats()
    stop.set()
    for t in ts:
        t.join(timeout=120)
    calls = b["requests"] - a["requests"]
    per_call = {k: (b[k] - a[k]) / calls if calls else None for k in sorted(b)}
    time.sleep(0.5)
    c = system.stats()
    time.sleep(idle_s)
    d = system.stats()
    idle = {k: (d[k] - c[k]) / idle_s for k in ("null_messages", "heartbeats", "delivers")}
    # Ray tasks per application call: the invoke, plus the router's deliver batches.
    ray_tasks = 1 + (b["delivers"] - a["delivers"]) / calls if calls else None
    # extra: null messages (of a nested system's backend too) and reply copies pulled by backups
    extra = None if not calls else sum(per_call.get(k) or 0.0 for k in EXTRA_MESSAGE_COUNTS)
    return {"calls": calls, "per_call": per_call, "idle_per_s": idle, "ray_tasks_per_call": ray_tasks,
            "extra_messages_per_call": extra}


# ------------------------------------------------------------------ memory


def rss_mib(pids: List[int]) -> Dict[int, float]:
    out = {}
    for p in pids:
        try:
            out[p] = psutil.Process(p).memory_info().rss / 2**20
        except psutil.Error:
            pass
    return out


def memory_run(system: FtActors, seconds: float, window: int = 200, warmup_calls: int = 2000,
               log: Callable[[str], None] = print, calls_max: Optional[int] = None) -> Dict[str, Any]:
    """RSS of the group's processes after a warm-up and after pipelined calls.

    Args:
        system: the ftactors group to drive.
        seconds: how long to call, unless ``calls_max`` is given.
        window: calls in flight per batch.
        warmup_calls: calls before the first RSS sample.
        log: progress sink.
        calls_max: if set, call exactly this many times (rounded up to ``window``) and ignore ``seconds``.

    Returns:
        RSS before and after (MiB), growth per call, and samples over time.
    """
    for _ in range(max(1, warmup_calls // window)):
        system.pipelined("inc", [(1,)] * window)
    pids = system.pids()
    before = rss_mib(pids)
    samples = [(0.0, sum(before.values()))]
    calls, t0 = 0, time.monotonic()
    period_s = max(1.0, seconds / 20) if calls_max is None else 10.0
    next_sample = t0 + period_s

    def more() -> bool:
        return calls < calls_max if calls_max is not None else time.monotonic() - t0 < seconds

    while more():
        system.pipelined("inc", [(1,)] * window)
        calls += window
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - t0, sum(rss_mib(pids).values())))
            next_sample += period_s
            if calls_max is not None:
                log(f"  memory: {calls} calls, RSS {samples[-1][1]:.0f} MiB")
    after = rss_mib(pids)
    elapsed = time.monotonic() - t0
    tb, ta = sum(before.values()), sum(after.get(p, 0.0) for p in before)
    out = {"system": system.name, "calls": calls, "seconds": round(elapsed, 1), "processes": len(before),
           "rss_before_mib": round(tb, 1), "rss_after_mib": round(ta, 1), "growth_mib": round(ta - tb, 1),
           "growth_bytes_per_call": round((ta - tb) * 2**20 / calls, 1) if calls else None,
           "rss_by_pid_mib": {str(p): [round(before[p], 1), round(after.get(p, 0.0), 1)] for p in before},
           "samples": [(round(t, 1), round(m, 1)) for t, m in samples]}
    log(f"  memory {system.name}: {calls} calls in {elapsed:.0f}s; RSS {tb:.0f} -> {ta:.0f} MiB "
        f"({ta - tb:+.0f} MiB over {len(before)} processes)")
    return out


def median_or_none(xs: Optional[List[float]]) -> Optional[float]:
    return statistics.median(xs) if xs else None


def _first_replies(make: Callable[[], Any], count: int, concurrent: bool) -> Dict[str, Any]:
    """Create ``count`` actors (or groups) with ``make()`` and time each one's first reply.

    Args:
        make: creates one actor or group; it has ``inc.remote(1)``.
        count: how many.
        concurrent: create them all, then wait for every first reply; else one after the other.

    Returns:
        ``first_reply_ms`` per item (from its ``.remote()``), ``remote_ms`` (the ``.remote()`` calls
        alone), ``total_s``, and the handles (to stop afterwards).
    """
    t0 = time.perf_counter()
    handles, remote_ms, first_ms = [], [], []
    if concurrent:
        starts = []
        for _ in range(count):
            t = time.perf_counter()
            handles.append(make())
            remote_ms.append(1000 * (time.perf_counter() - t))
            starts.append(t)
        refs = [h.inc.remote(1) for h in handles]
        for t, ref in zip(starts, refs):
            ray.get(ref)
            first_ms.append(1000 * (time.perf_counter() - t))  # upper bound: waited in order
    else:
        for _ in range(count):
            t = time.perf_counter()
            h = make()
            remote_ms.append(1000 * (time.perf_counter() - t))
            ray.get(h.inc.remote(1))
            first_ms.append(1000 * (time.perf_counter() - t))
            handles.append(h)
    return {"first_reply_ms": [round(x, 1) for x in first_ms], "remote_ms": [round(x, 2) for x in remote_ms],
            "total_s": round(time.perf_counter() - t0, 2), "handles": handles}


def creation(groups: int, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Creating groups against creating plain actors, one after the other and concurrently.

    ``groups`` ftactors groups (3 replicas each) against ``3 * groups`` plain actors: the same
    number of actors holding the user's class. Each system's actors are stopped before the next.

    Returns:
        Per system and mode: median and worst first reply (ms from ``.remote()``), median
        ``.remote()`` time and total time.
    """
    import ftactors

    plain_cls = ray.remote(num_cpus=0)(Bench)
    group_cls = ftactors.replicated(replicas=3)(ray.remote(num_cpus=0)(Bench))
    out: Dict[str, Any] = {}
    for name, make, count in (("ray-plain", plain_cls.remote, 3 * groups),
                              ("ftactors-semi-active", group_cls.remote, groups)):
        for mode in ("sequential", "concurrent"):
            r = _first_replies(make, count, mode == "concurrent")
            first = r.pop("first_reply_ms")
            row = {"count": count, "first_reply_ms_median": round(statistics.median(first), 1),
                   "first_reply_ms_max": round(max(first), 1),
                   "remote_ms_median": round(statistics.median(r["remote_ms"]), 2), "total_s": r["total_s"]}
            out[f"{name}/{mode}"] = row
            log(f"  {name} {mode}: {count} created, first reply median {row['first_reply_ms_median']} ms, "
                f"worst {row['first_reply_ms_max']} ms, .remote() {row['remote_ms_median']} ms, "
                f"all in {row['total_s']} s")
            for h in r["handles"]:
                if name == "ray-plain":
                    ray.kill(h)
                else:
                    ftactors.shutdown(h)
    return out


def cpu_profile(system: System, n: int, method: str = "inc", args: tuple = (1,)) -> Dict[str, Any]:
    """CPU per call of each process during ``n`` pipelined calls (user + system time, psutil).

    Args:
        system: a started system; its ``pids()`` name its own processes (for ftactors and the bare
            relay: the replicas, primary first, then the router).
        n: pipelined calls.

    Returns:
        ``{"calls_s": rate, "us_per_call": {process: us}}``, with the driver, Ray's raylet and GCS
        server, and ``total``.
    """
    import os

    pids = system.pids()
    names = (["actor"] if len(pids) == 1 else
             ["primary"] + [f"backup-{i}" for i in range(1, len(pids) - 1)] + ["router"])
    procs: Dict[str, psutil.Process] = {name: psutil.Process(pid) for name, pid in zip(names, pids)}
    procs["driver"] = psutil.Process(os.getpid())
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("raylet", "gcs_server"):
            procs[p.info["name"]] = p

    def cpu() -> Dict[str, float]:
        out = {}
        for name, p in procs.items():
            try:
                t = p.cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = float("nan")
        return out

    system.pipelined(method, [args] * min(n, 200))  # warm
    before, t0 = cpu(), time.perf_counter()
    system.pipelined(method, [args] * n)
    wall = time.perf_counter() - t0
    after = cpu()
    per = {name: round(1e6 * (after[name] - before[name]) / n, 1) for name in procs}
    per["total"] = round(sum(v for v in per.values() if v == v), 1)
    return {"calls_s": round(n / wall), "us_per_call": per}

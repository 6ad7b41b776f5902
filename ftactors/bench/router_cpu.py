"""Where the router's and the primary's CPU goes per call (issue 11), by thread and by code.

One semi-active group (3 replicas) under pipelined load from the driver (windows of ``window``
calls, for ``seconds``). Two measurements, one after the other:

1. **By thread** (no profiler attached): each thread's user+system time from ``/proc`` (psutil)
   over the run, divided by the calls completed, grouped by the thread's name (Ray names its C++
   threads: the gRPC, io_service and event-loop threads; the actor's own main thread runs the
   tasks). Threads without a Python frame are invisible to py-spy: this is the only view of them.
2. **By code** (``py-spy record --nonblocking --format raw``, if py-spy is installed): the samples
   of the router's and the primary's Python threads, each counted for the first frame from the leaf
   up that is ftactors' own code (``ours``), Ray's Python code (``ray``), or else ``other`` (the
   standard library or a package called from neither, e.g. asyncio's loop itself), with the leaf
   functions that take the most samples.

    python -m ftactors.bench.router_cpu [--seconds 8] [--window 300] [--rate 200] [--json PATH]
    python -m ftactors.bench.router_cpu --serialization   # the per-call (de)serialisations alone, no Ray

``--serialization`` times, in this process, what each call costs in pickling: the caller's
``Request`` through cloudpickle (Ray's serializer for a task's arguments) and back, and a Deliver
and a Delivered of 5 calls through ``ftactors.runtime.wire`` (the minimum of 60 repeats of 300).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple

from ftactors.bench.router_ab import Counter  # the benchmark's application: a counter


def _thread_names(pid: int) -> Dict[int, str]:
    names = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names[int(tid)] = f.read().strip()
        except OSError:
            pass
    return names


def _thread_cpu(pid: int) -> Dict[int, float]:
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def _python_thread_names(spy: str, pid: int) -> Dict[int, str]:
    """Thread id -> Python thread name, from ``py-spy dump`` (lines ``Thread 8500 (idle): "name"``)."""
    text = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', text, re.M)}


def _group(name: str) -> str:
    """Ray numbers its threads' names (``grpc_global_tim``, ``worker.io``...): strip digits."""
    return name.rstrip("0123456789-_ ") or name


def classify(stack: List[str]) -> Tuple[str, str]:
    """The category of one py-spy stack (root first) and its leaf function.

    Args:
        stack: frames as py-spy writes them, ``function (file:line)``, root first.

    Returns:
        (``ours`` | ``ray`` | ``other``, the leaf frame without its line number).
    """
    leaf = stack[-1].rsplit(":", 1)[0] + ")" if stack else "(no Python frame)"
    for frame in reversed(stack):
        file = frame.rpartition(" (")[2].rsplit(":", 1)[0]
        if "ftactors/bench/" in file:
            continue
        if file.startswith("ftactors/") or "/ftactors/" in file or ("/" not in file and file in _OURS):
            return "ours", leaf
        if file.startswith("ray/") or "/ray/" in file:
            return "ray", leaf
    return "other", leaf


#: ftactors' module file names: py-spy writes a path relative to its package's directory, or just the name
_OURS = frozenset(f for _, _, files in os.walk(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                  for f in files if f.endswith(".py"))


def parse_raw(path: str, names: Optional[Dict[int, str]] = None) -> Dict[str, Any]:
    """Summarise a ``py-spy record --threads --format raw`` file.

    Args:
        path: the file.
        names: Python thread names by thread id (``py-spy dump``), to name the threads.

    Returns:
        ``{"samples": n, "by_category": {category: share}, "by_thread": {thread: share},
        "top_ours": [(leaf, share)...], "top_all": [(leaf, share)...]}``, shares of all samples.
    """
    cats: typing.Counter[str] = collections.Counter()
    threads: typing.Counter[str] = collections.Counter()
    ours: typing.Counter[str] = collections.Counter()
    leaves: typing.Counter[str] = collections.Counter()
    total = 0
    names = names or {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            frames, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            parts = frames.split(";")
            thread, stack = parts[0], [p for p in parts[1:] if p]
            tid = thread.rpartition("(")[2].rstrip(")")
            thread = names.get(int(tid, 16) if tid.startswith("0x") else -1, thread) if tid else thread
            cat, leaf = classify(stack)
            total += n
            cats[cat] += n
            threads[thread] += n
            leaves[leaf] += n
            if cat == "ours":
                ours[leaf] += n
    share = (lambda c: c / total) if total else (lambda c: 0.0)
    return {"samples": total,
            "by_category": {k: share(v) for k, v in cats.items()},
            "by_thread": {k: share(v) for k, v in threads.most_common(8)},
            "top_ours": [(k, share(v)) for k, v in ours.most_common(12)],
            "top_all": [(k, share(v)) for k, v in leaves.most_common(12)]}


def measure(seconds: float = 8.0, window: int = 300, rate: int = 200) -> Dict[str, Any]:
    """Run the load twice (by thread, then under py-spy) and summarise both.

    Args:
        seconds: length of each run.
        window: calls pipelined at once.
        rate: py-spy's samples per second.

    Returns:
        ``{"load": ..., "threads": {process: {"calls_s", "cpu_us_per_call", "by_thread": {name: us}}},
        "pyspy": {process: parse_raw(...)}}``.
    """
    import ray

    import ftactors
    from ftactors import chaos

    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    h = ftactors.replicated(replicas=3)(Counter).remote()
    try:
        for _ in range(5):
            ray.get([h.inc.remote(1) for _ in range(window)])
        pids = {"router": chaos.router_pid(h), "primary": chaos.pick(h, "primary").pid}
        stop = threading.Event()
        done = [0]

        def load() -> None:
            while not stop.is_set():
                ray.get([h.inc.remote(1) for _ in range(window)])
                done[0] += window

        out: Dict[str, Any] = {"load_before": os.getloadavg(), "threads": {}, "pyspy": {}}
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        has_spy = os.path.exists(spy)
        pynames = {p: _python_thread_names(spy, pid) if has_spy else {} for p, pid in pids.items()}
        # 1: by thread, nothing attached
        before = {p: _thread_cpu(pid) for p, pid in pids.items()}
        t = threading.Thread(target=load)
        t0 = time.perf_counter()
        t.start()
        time.sleep(seconds)  # a measurement window, not a wait for a condition
        stop.set()
        t.join()
        dt = time.perf_counter() - t0
        calls = done[0]
        for p, pid in pids.items():
            after, names = _thread_cpu(pid), _thread_names(pid)
            by: Dict[str, float] = collections.defaultdict(float)
            for tid, c in after.items():
                label = pynames[p].get(tid) or _group(names.get(tid, str(tid)))
                by[label] += c - before[p].get(tid, 0.0)
            out["threads"][p] = {"calls": calls, "calls_s": calls / dt,
                                 "cpu_us_per_call": 1e6 * sum(by.values()) / max(calls, 1),
                                 "by_thread": {k: 1e6 * v / max(calls, 1) for k, v in
                                               sorted(by.items(), key=lambda kv: -kv[1]) if v > 0}}
        # 2: by code, under py-spy
        if has_spy:
            tmp = tempfile.mkdtemp(prefix="ftactors-router-cpu-")
            stop.clear()
            t = threading.Thread(target=load)
            t.start()
            procs = {p: subprocess.Popen([spy, "record", "--threads", "--nonblocking", "-r", str(rate), "-d", str(int(seconds)),
                                          "--format", "raw", "-o", os.path.join(tmp, f"{p}.txt"), "--pid",
                                          str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for p, pid in pids.items()}
            for p, proc in procs.items():
                proc.wait()
            stop.set()
            t.join()
            for p in pids:
                path = os.path.join(tmp, f"{p}.txt")
                if os.path.exists(path):
                    out["pyspy"][p] = parse_raw(path, pynames[p])
            shutil.rmtree(tmp, ignore_errors=True)
        out["load_after"] = os.getloadavg()
        return out
    finally:
        ftactors.shutdown(h)
        ray.shutdown()


def serialization(repeats: int = 60, number: int = 300) -> Dict[str, float]:
    """Microseconds per (de)serialisation of the messages one call makes (see the module's doc).

    Returns:
        {what: us}.
    """
    import pickle
    import timeit

    import cloudpickle

    from ftactors.core.messages import Announcement, Deliver, Delivered, Kind, MsgId, Outcome, Reply, Request
    from ftactors.runtime import wire

    payload = cloudpickle.dumps(((1,), {}))

    def req(i: int) -> Request:
        return Request(Kind.SYNC_REQUEST, MsgId("client-abc123", i), "g", "inc", payload=payload,
                       size_bytes=len(payload), ack_below=max(i - 3, 0))

    one = req(17)
    anns = tuple(Announcement("g", 1, i, MsgId("client-abc123", i)) for i in range(1, 6))
    deliver = Deliver(view=1, requests=tuple(req(i) for i in range(1, 6)), announcements=anns)
    delivered = Delivered("r1", 1, replies=tuple(Reply(MsgId("client-abc123", i), "g", 1, i, Outcome(True, i),
                                                       (anns[i - 1],)) for i in range(1, 6)),
                          announcements=anns, acked_position=5)
    body = cloudpickle.dumps(one)
    cases: Dict[str, Callable[[], Any]] = {"Request, cloudpickle.dumps (the caller)": lambda: cloudpickle.dumps(one),
                                           "Request, pickle.loads (the router)": lambda: pickle.loads(body)}
    msg: Any
    for name, msg in (("Deliver of 5", deliver), ("Delivered of 5", delivered)):
        b = wire.dumps(msg)
        assert wire.loads(b) == msg
        cases[f"{name}, wire.dumps"] = functools.partial(wire.dumps, msg)
        cases[f"{name}, wire.loads"] = functools.partial(wire.loads, b)
    return {k: 1e6 * min(timeit.repeat(f, number=number, repeat=repeats)) / number for k, f in cases.items()}


def render(res: Dict[str, Any]) -> str:
    """The results as text tables."""
    lines = [f"load average before {res['load_before']}, after {res['load_after']}"]
    for p, r in res["threads"].items():
        lines.append(f"\n{p}: {r['calls_s']:.0f} calls/s, {r['cpu_us_per_call']:.0f} us CPU per call, by thread:")
        lines += [f"  {name:24s} {us:7.0f} us" for name, us in r["by_thread"].items() if us >= 1]
    for p, r in res["pyspy"].items():
        lines.append(f"\n{p}: py-spy, {r['samples']} samples of Python threads; by category: " +
                     ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["by_category"].items())))
        lines.append("  by thread: " + ", ".join(f"{k} {v:.0%}" for k, v in r["by_thread"].items()))
        lines.append("  leaf functions, all:")
        lines += [f"    {v:5.1%} {k}" for k, v in r["top_all"]]
        lines.append("  leaf functions under ftactors' code:")
        lines += [f"    {v:5.1%} {k}" for k, v in r["top_ours"]]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: measure, print, optionally write JSON.

    Returns:
        0.
    """
    ap = argparse.ArgumentParser(prog="python -m ftactors.bench.router_cpu", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--json", default=None)
    ap.add_argument("--serialization", action="store_true", help="time the per-call (de)serialisations only")
    a = ap.parse_args(argv)
    if a.serialization:
        for k, v in serialization().items():
            print(f"{k:45s} {v:7.2f} us")
        return 0
    res = measure(a.seconds, a.window, a.rate)
    print(render(res))
    if a.json:
        os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

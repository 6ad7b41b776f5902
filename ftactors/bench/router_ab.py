"""The router (an async Ray actor) against a plain Ray actor, in one Ray session (issue 11).

A semi-active group (``async``) and a plain Ray actor, measured in alternating rounds: sync latency
(``k`` calls), pipelined throughput (``n`` calls) and the router process's CPU per pipelined call
(psutil user+system time). Until 2026-12-03 it also measured the threaded router shell, then
removed (``docs/benchmarks.md``, 2026-12-02).

    python -m ftactors.bench.router_ab [--rounds 5] [--k 200] [--n 2000] [--json PATH]
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional

from ftactors.bench.rounds import RoundsCli


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, x: int) -> int:
        self.n += x
        return self.n


def measure(rounds: int = 5, k: int = 200, n: int = 2000) -> Dict[str, Any]:
    """Per-round latency, throughput and router CPU of the router; medians and ratios to plain.

    Returns:
        ``{"rounds": {system: {"lat": [...ms], "tput": [...calls/s], "cpu": [...us/call]}},
        "summary": {system: {...}}, "load": os.getloadavg()}``.
    """
    import psutil
    import ray

    import ftactors
    from ftactors import chaos

    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    groups: Dict[str, Any] = {}
    try:
        plain: Any = ray.remote(Counter).remote()
        groups["async"] = ftactors.replicated(replicas=3)(Counter).remote()
        systems = {"plain": plain, **groups}
        for h in systems.values():
            ray.get([h.inc.remote(1) for _ in range(500)])
        procs = {name: psutil.Process(chaos.router_pid(h)) for name, h in groups.items()}
        procs["plain"] = psutil.Process(ray.get(plain.__ray_call__.remote(lambda self: os.getpid())))
        res: Dict[str, Dict[str, List[float]]] = {name: {"lat": [], "tput": [], "cpu": []} for name in systems}
        names = list(systems)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                h = systems[name]
                lat = []
                for _ in range(k):
                    t0 = time.perf_counter()
                    ray.get(h.inc.remote(1))
                    lat.append(time.perf_counter() - t0)
                c0, t0 = sum(procs[name].cpu_times()[:2]), time.perf_counter()
                ray.get([h.inc.remote(1) for _ in range(n)])
                dt, c1 = time.perf_counter() - t0, sum(procs[name].cpu_times()[:2])
                res[name]["lat"].append(1000 * statistics.median(lat))
                res[name]["tput"].append(n / dt)
                res[name]["cpu"].append(1e6 * (c1 - c0) / n)
        summary = {nm: {
            "latency_median_ms": statistics.median(res[nm]["lat"]),
            "latency_ratio": statistics.median(a / b for a, b in zip(res[nm]["lat"], res["plain"]["lat"])),
            "throughput_calls_s": statistics.median(res[nm]["tput"]),
            "throughput_ratio": statistics.median(a / b for a, b in zip(res[nm]["tput"], res["plain"]["tput"])),
            "cpu_us_per_call": statistics.median(res[nm]["cpu"]),
            "cpu_range_us": (min(res[nm]["cpu"]), max(res[nm]["cpu"])),
        } for nm in names}
        return {"rounds": res, "summary": summary, "load": os.getloadavg()}
    finally:
        for h in groups.values():
            ftactors.shutdown(h)
        ray.shutdown()


def _cpu_cell(r: Dict[str, Any]) -> str:
    lo, hi = r["cpu_range_us"]
    return f"{r['cpu_us_per_call']:.0f} ({lo:.0f}-{hi:.0f})"


CLI = RoundsCli("ftactors.bench.router_ab", __doc__.splitlines()[0], rounds=5, k=200, n=2000, name_header="router",
                extra_columns=(("router CPU us/call (range)", _cpu_cell),),
                footer=lambda res: f"load average {res['load']}")


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (:class:`ftactors.bench.rounds.RoundsCli`): measure, print the table.

    Returns:
        0.
    """
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())

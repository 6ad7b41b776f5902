"""A replicated call against the bare relay, in one Ray session (issue 11's latency gate).

A plain Ray actor, the bare relay (``ftactors.bench.systems.BareRelay``: a router forwarding each call
over ftactors' direct links to a primary and two backups, no protocol), a semi-active and a passive
group (three replicas each), measured in alternating rounds: sync latency (``k`` sequential calls), pipelined throughput (``n``
calls) and the CPU per sequential call of each process (the caller, the router, the primary; psutil
user+system time). Ratios are to the plain actor of the same round; ``x relay`` to the relay's.
``--styles semi-active`` leaves the passive group out of the session (each group's idle processes share
the 2 cores with the others' calls).

    python -m ftactors.bench.latency_ab [--rounds 4] [--k 300] [--n 2000] [--styles semi-active,passive] [--json PATH]
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from ftactors.bench.rounds import RoundsCli

#: the replicated styles measured against the plain actor and the relay (``--styles``)
STYLES = ("semi-active", "passive")
#: the systems, in the order of the first round (later rounds rotate it)
SYSTEMS = ("plain", "relay") + STYLES


def _cpu_s(procs: Dict[str, Any]) -> Dict[str, float]:
    return {role: sum(p.cpu_times()[:2]) for role, p in procs.items()}


def measure(rounds: int = 4, k: int = 300, n: int = 2000, styles: Sequence[str] = STYLES) -> Dict[str, Any]:
    """Per-round latency, throughput and CPU per sequential call of each system; medians and ratios.

    Args:
        rounds: rounds, each running every system once (the order rotating).
        k: sequential calls per system per round.
        n: pipelined calls per system per round.
        styles: the replicated styles to start and measure (some of :data:`STYLES`).

    Returns:
        ``{"rounds": {system: {"lat": [...ms], "tput": [...calls/s], "cpu": {process: [...us]}}},
        "summary": {system: {...}}, "load": os.getloadavg()}``.
    """
    import psutil
    import ray

    import ftactors
    from ftactors.bench import systems as S

    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    started: List[Any] = []
    try:
        plain, relay = S.RayPlain(), S.BareRelay()
        names = ("plain", "relay") + tuple(style for style in STYLES if style in styles)
        systems: Dict[str, Any] = {"plain": plain, "relay": relay,
                                   **{style: S.FtActors(style) for style in names[2:]}}
        for s in systems.values():
            s.start()
            started.append(s)

        def primary(group: Any) -> Any:
            return next(r.actor for r in ftactors.describe(group.h).replicas if r.role == "primary")

        def pid(actor: Any) -> int:
            return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid())))

        procs = {"plain": {"actor": psutil.Process(plain.pids()[0])},
                 "relay": {"router": psutil.Process(pid(relay.router)), "primary": psutil.Process(pid(relay.execs[0]))},
                 **{name: {"router": psutil.Process(pid(g.h._router)), "primary": psutil.Process(pid(primary(g)))}
                    for name, g in systems.items() if name in STYLES}}
        for p in procs.values():
            p["caller"] = psutil.Process()
        for system in systems.values():
            for _ in range(300):
                system.call("inc", 1)
        res: Dict[str, Dict[str, Any]] = {name: {"lat": [], "tput": [], "cpu": {}} for name in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                s = systems[name]
                lat = []
                c0 = _cpu_s(procs[name])
                for _ in range(k):
                    t0 = time.perf_counter()
                    s.call("inc", 1)
                    lat.append(time.perf_counter() - t0)
                c1 = _cpu_s(procs[name])
                t0 = time.perf_counter()
                s.pipelined("inc", [(1,)] * n)
                res[name]["tput"].append(n / (time.perf_counter() - t0))
                res[name]["lat"].append(1000 * statistics.median(lat))
                for role in c0:
                    res[name]["cpu"].setdefault(role, []).append(1e6 * (c1[role] - c0[role]) / k)

        def ratio(name: str, of: str, key: str) -> float:
            return statistics.median(a / b for a, b in zip(res[name][key], res[of][key]))

        summary = {name: {
            "latency_median_ms": statistics.median(res[name]["lat"]),
            "latency_ratio": ratio(name, "plain", "lat"),
            "throughput_calls_s": statistics.median(res[name]["tput"]),
            "throughput_ratio": ratio(name, "plain", "tput"),
            "latency_x_relay": ratio(name, "relay", "lat"),
            "throughput_x_relay": ratio(name, "relay", "tput"),
            "cpu_us_per_call": {role: statistics.median(v) for role, v in res[name]["cpu"].items()},
        } for name in names}
        return {"rounds": res, "summary": summary, "load": os.getloadavg()}
    finally:
        for s in started:
            s.stop()
        ray.shutdown()


def _cpu_cell(r: Dict[str, Any]) -> str:
    return ", ".join(f"{role} {us:.0f}" for role, us in r["cpu_us_per_call"].items())


def _footer(res: Dict[str, Any]) -> str:
    """The load and each group's per-round latency against the relay's (semi-active first)."""
    def per_round(name: str) -> List[float]:
        return [round(a / b, 3) for a, b in zip(res["rounds"][name]["lat"], res["rounds"]["relay"]["lat"])]
    text = f"load average {tuple(round(x, 1) for x in res['load'])}; rounds x relay:"
    for i, style in enumerate(s for s in STYLES if s in res["rounds"]):
        text += f" {per_round(style)}" if i == 0 and style == STYLES[0] else f"{';' if i else ''} {style}: {per_round(style)}"
    return text


CLI = RoundsCli("ftactors.bench.latency_ab", __doc__.splitlines()[0], rounds=4, k=300, n=2000,
                extra_columns=(("latency x relay", lambda r: f"{r['latency_x_relay']:.3f}"),
                               ("calls/s x relay", lambda r: f"{r['throughput_x_relay']:.2f}"),
                               ("CPU us per sequential call", _cpu_cell)),
                footer=_footer, styles=STYLES)


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (:class:`ftactors.bench.rounds.RoundsCli`): measure, print the table.

    Returns:
        0.
    """
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())

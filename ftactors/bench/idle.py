"""What an idle group costs: the CPU of each of its processes while nobody calls it, against a plain
Ray actor idling in the same session (Ray's own share: its core worker's threads).

A group that serves nobody still runs its router's clock (``tick_s``), the links' heartbeats and the
core's pings of quiet members, and saves the router's counters on the members when they change.

    python -m ftactors.bench.idle [--seconds 10] [--style semi-active] [--replicas 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional


def measure(seconds: float = 10.0, style: str = "semi-active", replicas: int = 3) -> Dict[str, float]:
    """Start a group and a plain actor, call each a little, let both idle and read their processes' CPU.

    Args:
        seconds: how long they idle while measured (after a 2 s settling pause).
        style: the group's replication style.
        replicas: the group's size.

    Returns:
        Each process's share of one core, in percent: ``router``, ``primary``, ``backup-1``...,
        ``plain`` (the plain actor), and ``group`` (the sum of the group's).
    """
    import psutil
    import ray

    import ftactors
    from ftactors.bench import systems as S

    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    started: List[Any] = []
    try:
        group, plain = S.FtActors(style, replicas=replicas), S.RayPlain()
        for system in (group, plain):
            system.start()
            started.append(system)
        for _ in range(20):
            group.call("inc", 1)
            plain.call("inc", 1)

        def pid(actor: Any) -> int:
            return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid())))

        procs = {"router": psutil.Process(pid(group.h._router))}
        backups = 0
        for info in ftactors.describe(group.h).replicas:
            if info.role == "primary":
                procs["primary"] = psutil.Process(pid(info.actor))
            else:
                backups += 1
                procs[f"backup-{backups}"] = psutil.Process(pid(info.actor))
        procs["plain"] = psutil.Process(plain.pids()[0])
        time.sleep(2.0)
        before = {role: sum(p.cpu_times()[:2]) for role, p in procs.items()}
        began = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - began
        out = {role: 100.0 * (sum(p.cpu_times()[:2]) - before[role]) / elapsed for role, p in procs.items()}
        out["group"] = sum(v for role, v in out.items() if role != "plain")
        return out
    finally:
        for system in started:
            system.stop()
        ray.shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    """The command line: print each process's idle CPU share (and write it as JSON with ``--json``).

    Returns:
        0.
    """
    parser = argparse.ArgumentParser(prog="python -m ftactors.bench.idle", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--style", choices=("semi-active", "passive"), default="semi-active")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    shares = measure(args.seconds, args.style, args.replicas)
    for role, share in shares.items():
        print(f"{role:10s} {share:5.2f}% of a core")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "style": args.style, "replicas": args.replicas,
                       "cpu_percent": shares, "load": os.getloadavg()}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

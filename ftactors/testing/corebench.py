"""Micro-benchmark of the protocol core: CPU per message at the router, primary and backup.

Drives the pure state machines directly (no Ray, no network, no serialisation),
so the figures are the core's own cost, to compare with a Ray call (~0.8 ms on
the 2-core reference machine).

    python -m ftactors.testing.corebench --messages 20000 --batch 32
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List

from ftactors.core import (
    ClientCore,
    CoreConfig,
    Deliver,
    Delivered,
    Execute,
    NewView,
    Outcome,
    ReplicaCore,
    RouterCore,
    Snapshot,
)


def _drive(core: ReplicaCore, msg: Deliver) -> Delivered:
    core.deliver(msg)
    while (effect := core.next_effect()) is not None:
        if isinstance(effect, Execute):
            core.executed(effect.request.msg_id, Outcome(True, effect.position))
        elif isinstance(effect, Snapshot):
            core.snapshot_taken(effect.position, None, "d")
    return core.take_delivered()


def run(messages: int, batch: int, style: str = "semi-active") -> Dict[str, float]:
    """Push ``messages`` requests through a router, a primary and two backups, in batches.

    Returns:
        Microseconds of CPU per message spent in each role, and the total.
    """
    cfg = CoreConfig(style=style, relay_delay_ticks=0, checkpoint_every_messages=10_000)
    members = ("g-r0", "g-r1", "g-r2")
    router = RouterCore("g", cfg, members)
    reps = {m: ReplicaCore("g", m, cfg, "reception", NewView(1, members)) for m in members}
    client = ClientCore("c")
    spent = {"router": 0.0, "primary": 0.0, "backup": 0.0}
    done, tick = 0, 0
    while done < messages:
        t = time.process_time()
        for _ in range(min(batch, messages - done)):
            router.submit(client.request("g", "m", payload=b"x", track=False))
        tick += 1
        router.tick(tick)
        ready = router.ready()
        spent["router"] += time.process_time() - t
        answers: List[Delivered] = []
        for rid, msg in ready.sends:
            t = time.process_time()
            answers.append(_drive(reps[rid], msg))
            spent["primary" if rid == router.primary else "backup"] += time.process_time() - t
        t = time.process_time()
        for ans in answers:
            router.on_delivered(ans)
        released = len(router.ready().released)
        done += released
        spent["router"] += time.process_time() - t
        if tick > 4 * messages + 100:
            raise RuntimeError(f"core stalled: {done} of {messages} replies after {tick} steps")
    backups = len(members) - 1
    per = {k: 1e6 * v / messages for k, v in spent.items()}
    per["backup"] /= backups
    per["total"] = per["router"] + per["primary"] + per["backup"] * backups
    return per


def main(argv: List[str] | None = None) -> int:
    """Command line: print the figures as a table and optionally as JSON."""
    p = argparse.ArgumentParser(prog="python -m ftactors.testing.corebench", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=32, help="requests per router step (1 = no batching)")
    p.add_argument("--style", choices=("semi-active", "passive"), default="semi-active")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    per = run(args.messages, args.batch, args.style)
    for role, us in per.items():
        print(f"{role:8s} {us:8.1f} us CPU per message")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"messages": args.messages, "batch": args.batch, "style": args.style, "us_per_message": per},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

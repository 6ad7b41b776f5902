"""Command line: ``python -m ftactors.testing --seeds 10000 [--start N] [--style S] [--replay SEED] [-v]
[--output-to-deliverer]``.

Runs a swarm of seeded simulations and prints a summary line; exits 1 if any
seed failed, printing each failing seed with its replay command.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ftactors.core import SCHEDULERS
from ftactors.testing.options import STYLES, draw_options, force_replies_wait
from ftactors.testing.swarm import Failure, run_swarm


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ftactors.testing", description="ftactors deterministic fault simulator")
    p.add_argument("--seeds", type=int, default=1000, help="number of seeds to run")
    p.add_argument("--start", type=int, default=0, help="first seed")
    p.add_argument("--style", choices=STYLES, help="force a replication style")
    p.add_argument("--scheduling", choices=sorted(SCHEDULERS), help="force a scheduler")
    p.add_argument("--replay", type=int, metavar="SEED", help="run only this seed")
    p.add_argument("--output-to-deliverer", action="store_true",
                   help="replicas send an execution's output to the router incarnation that started it "
                        "(the Ray host before issue 10's fix)")
    p.add_argument("--spares", type=int, metavar="N",
                   help="force N warm spare replicas per router (default: drawn, see SimOptions.spares)")
    p.add_argument("--replies-wait-for-backup", action="store_true",
                   help="force the setting replies_wait_for_backup on, with a router crash drawn right after a "
                        "primary crash (default: drawn, see SimOptions.replies_wait_for_backup)")
    p.add_argument("--stop-after", type=int, default=0, help="stop after this many failures (per job)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="worker processes (one per core at most is useful); failures print as each ends")
    p.add_argument("-v", "--verbose", action="store_true", help="print options and tracebacks")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 if every seed passed, 1 otherwise.
    """
    args = _parser().parse_args(argv)
    start, seeds = (args.replay, 1) if args.replay is not None else (args.start, args.seeds)

    def report(f: Failure) -> None:
        print(f"FAIL seed={f.seed}: {f.error}")
        print(f"  options: {f.options.describe()}")
        print(f"  replay:  {f.replay_command()}")
        if args.verbose:
            print(f.detail)

    if args.verbose and args.replay is not None:
        opts = draw_options(args.replay, args.style, args.scheduling)
        print((force_replies_wait(opts) if args.replies_wait_for_backup else opts).describe())
    summary = run_swarm(seeds, start, args.style, args.scheduling, on_failure=report, stop_after=args.stop_after,
                        output_to_deliverer=args.output_to_deliverer, spares=args.spares, jobs=args.jobs,
                        replies_wait=args.replies_wait_for_backup)
    print(summary.line())
    print(summary.feature_line())
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())

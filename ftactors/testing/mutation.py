"""Mutation score of ``ftactors/core`` (issue 10), with mutmut 3 on a fixed sample.

    python -m ftactors.testing.mutation            # generate, run the sample, print the score
    python -m ftactors.testing.mutation --list     # only print the sampled mutant names

mutmut is configured in ``pyproject.toml`` (``[tool.mutmut]``): it mutates
router.py and the router's parts (routing/), replica.py, dedup.py, scheduler.py
and client.py, and judges each
mutant with the core tests plus ``tests/test_sim_fixed_seeds.py`` (96 fixed
simulator seeds). mutmut has no sampling option, so this script samples: a
mutant is in the sample when the SHA-256 of its name is 0 modulo ``--every``
(8 by default, about one mutant in eight, spread over every file and function).
The choice depends only on the mutant's name, so the same code gives the same
sample on every machine. The sampled mutants are then run by name, which makes
mutmut rerun them even when it has cached results.

Prints ``N mutants, K killed, S survived, score P%`` and the survivors.
Run it from the repository root with the ``dev`` extra installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
#: the mutated files, under ``ftactors/core/`` (as ``only_mutate`` in pyproject.toml)
FILES = ("router.py", "routing/intake.py", "routing/log.py", "routing/links.py", "routing/recovery.py",
         "routing/outbox.py", "replica.py", "dedup.py", "scheduler.py", "client.py")
#: mutmut exit codes that mean a test (or a time limit, or the type checker) caught the mutant
KILLED_CODES = {1, 3, 24, -24, 36, 37, 152, 255}
MINIMUM_SAMPLE = 200


def in_sample(name: str, every: int) -> bool:
    """Whether the mutant ``name`` is in the deterministic sample (about one in ``every``)."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % every == 0


def exit_codes(root: Path = ROOT) -> Dict[str, Optional[int]]:
    """Every generated mutant of the mutated files with mutmut's last exit code (None: not run)."""
    codes: Dict[str, Optional[int]] = {}
    for name in FILES:
        meta = root / "mutants" / "ftactors" / "core" / f"{name}.meta"
        with open(meta) as f:
            codes.update(json.load(f)["exit_code_by_key"])
    return codes


def mutmut(*args: str, root: Path = ROOT) -> int:
    """Run ``mutmut`` with ``args`` in ``root``; returns its exit status."""
    return subprocess.call([sys.executable, "-m", "mutmut", *args], cwd=root)


def generate(root: Path = ROOT) -> None:
    """Create (or refresh) ``mutants/`` and mutmut's test statistics.

    mutmut 3 has no generate-only command: this runs the first mutant of each
    dedup.py function, which generates every mutant on the way. The cached map of
    which tests call which function is deleted first: mutmut refreshes it only for
    new test names, so an edited test would otherwise keep its old map.
    """
    (root / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    mutmut("run", "ftactors.core.dedup.*__mutmut_1", root=root)


def score(codes: Dict[str, Optional[int]], sample: List[str]) -> Tuple[int, List[str], str]:
    """The number killed, the survivors and the one-line summary of ``sample``."""
    survivors = [n for n in sample if codes.get(n) not in KILLED_CODES]
    killed = len(sample) - len(survivors)
    pct = 100.0 * killed / len(sample) if sample else 0.0
    line = f"{len(sample)} mutants, {killed} killed, {len(survivors)} survived, score {pct:.1f}%"
    return killed, survivors, line


def main(argv: Optional[List[str]] = None) -> int:
    """Run the sampled mutation test and print the score; 1 if it is below ``--minimum``."""
    p = argparse.ArgumentParser(prog="python -m ftactors.testing.mutation", description=__doc__.split("\n")[0])
    p.add_argument("--every", type=int, default=8, help="sample one mutant in this many (by name hash)")
    p.add_argument("--minimum", type=float, default=85.0, help="fail below this score (percent)")
    p.add_argument("--list", action="store_true", help="only print the sample's mutant names")
    p.add_argument("--no-run", action="store_true", help="report mutmut's stored results without running")
    args = p.parse_args(argv)

    if not args.no_run:
        generate()
    sample = sorted(n for n in exit_codes() if in_sample(n, args.every))
    if len(sample) < MINIMUM_SAMPLE:
        print(f"only {len(sample)} mutants sampled (< {MINIMUM_SAMPLE}): lower --every", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(sample))
        return 0
    if not args.no_run:
        mutmut("run", *sample)
    killed, survivors, line = score(exit_codes(), sample)
    for name in survivors:
        print(f"survived: {name}")
    print(line)
    return 0 if 100.0 * killed / len(sample) >= args.minimum else 1


if __name__ == "__main__":
    sys.exit(main())

"""A chaos campaign module for ``ftactors chaos``: a replicated ledger and its invariants.

    ftactors chaos examples/chaos_target.py --duration-s 20 --fault-every-s 4 --seed 1
    ftactors chaos examples/chaos_target.py --faults kill-primary,pause-primary --faults-max 3
    python examples/chaos_target.py          # the same as the first line, shorter

The contract (see ``ftactors.chaos``): the module defines ``CHAOS``, a
``Campaign`` naming

* ``target``: a class decorated with ``@ftactors.replicated(...)``;
* ``workload(handle, rng, op_index)``: issues one operation and returns its
  ObjectRef (or a value); ``rng`` is the client's seeded ``random.Random``,
  ``op_index`` is unique across clients;
* ``check(handle, history)``: after the run, returns a list of invariant
  violations (strings); ``history`` holds one ``Op`` per call
  (``index``, ``client``, ``start_s``, ``end_s``, ``value``, ``error``, ``ok``);
* ``args``/``kwargs`` for the constructor, ``clients`` (threads).
"""

from __future__ import annotations

import sys
from typing import Dict, List

import ray

import ftactors
from ftactors.chaos import Campaign, audit_tokens


@ftactors.replicated(replicas=3, style="semi-active", heartbeat_s=0.1, failure_timeout_s=1.0)
class Ledger:
    """Appends entries; each entry carries a unique token so losses and duplicates are visible."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: List[str] = []
        self.sums: Dict[str, int] = {}

    def append(self, token: str, key: str, amount: int) -> int:
        self.entries.append(token)
        self.sums[key] = self.sums.get(key, 0) + amount
        return len(self.entries)

    def snapshot(self) -> dict:
        return {"entries": list(self.entries), "sums": dict(self.sums)}


def workload(handle, rng, op_index):
    """One append; the token is derived from op_index, so check() can find it."""
    key = rng.choice("abcde")
    return handle.append.remote(f"op{op_index}", key, rng.randint(1, 9))


def check(handle, history) -> List[str]:
    """Every acknowledged append is there once, at the position its reply named."""
    entries = ray.get(handle.snapshot.remote())["entries"]
    return audit_tokens({f"op{op.index}": op.value for op in history if op.ok}, entries,
                        positions=True).violations("appends")


CHAOS = Campaign(target=Ledger, workload=workload, check=check, args=("main",), clients=3)


if __name__ == "__main__":
    from ftactors.cli import main

    import os

    quick = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"
    argv = ["chaos", __file__, *(["--faults-max", "2", "--fault-every-s", "2"] if quick
                                 else ["--duration-s", "15", "--fault-every-s", "4"])]
    if os.environ.get("RAY_ADDRESS"):
        argv += ["--address", os.environ["RAY_ADDRESS"]]
    sys.exit(main(argv + [a for a in sys.argv[1:] if a != "--quick"]))

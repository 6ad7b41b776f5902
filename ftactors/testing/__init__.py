"""Deterministic, seeded fault simulation of ftactors (TigerBeetle VOPR style).

One ``int`` seed decides a whole run: options (swarm testing), message delays,
losses, duplicates, crashes, pauses and router restarts. The protocol cores
never see the random generator. Invariants I1-I6 are checked after every step.

    python -m ftactors.testing --seeds 10000          # a swarm
    python -m ftactors.testing --replay 1234 -v       # one seed, verbosely
"""

from ftactors.testing.cluster import RunResult, Simulator
from ftactors.testing.hosts import InvariantViolation
from ftactors.testing.linearizability import check_history
from ftactors.testing.models import (
    MODELS,
    Bank,
    Counter,
    Frontend,
    KeyValue,
    Model,
    NestedCall,
)
from ftactors.testing.options import SimOptions, draw_options
from ftactors.testing.swarm import Failure, SwarmSummary, run_seed, run_swarm

__all__ = [
    "MODELS",
    "Bank",
    "Counter",
    "Failure",
    "Frontend",
    "InvariantViolation",
    "KeyValue",
    "Model",
    "NestedCall",
    "RunResult",
    "SimOptions",
    "Simulator",
    "SwarmSummary",
    "check_history",
    "draw_options",
    "run_seed",
    "run_swarm",
]

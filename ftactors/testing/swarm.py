"""Swarm runs: many seeds, each with its own options, and a replayable report.

A failing seed prints itself and a one-line command that replays it exactly.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional

from ftactors.testing.cluster import RunResult, Simulator
from ftactors.testing.hosts import InvariantViolation
from ftactors.testing.options import SimOptions, draw_options


@dataclass(frozen=True, slots=True)
class Failure:
    """One failing seed.

    Args:
        seed: the seed.
        options: the options drawn from it.
        error: the invariant (or crash) message.
        detail: the traceback, for ``-v``.
    """

    seed: int
    options: SimOptions
    error: str
    detail: str

    def replay_command(self) -> str:
        """The one-line command that replays this seed."""
        return (f"python -m ftactors.testing --replay {self.seed} --style {self.options.style} "
                f"--scheduling {self.options.scheduling} -v"
                + (" --output-to-deliverer" if self.options.output_to_deliverer else "")
                + (f" --spares {self.options.spares}" if self.options.spares else ""))


#: the workload's corners, as counted by the simulator: (label in the summary, counter)
FEATURES = (
    ("one-way calls", "oneway_calls"),
    ("raised", "raised"),
    ("aborted", "aborted"),
    ("nondet draws", "nondet_draws"),
    ("nondet replays", "nondet_replays"),
    ("gathered tasks", "gathered_tasks"),
    ("by-ref args", "byref_args"),
    ("bound wraps", "bound_wraps"),
    ("long methods", "long_methods"),
    ("nested calls", "nested_sends"),
    ("suspensions", "suspensions"),
    ("resumes", "resumes"),
    ("re-entrant starts", "reentrant_starts"),
    ("timers", "timers"),
    ("timer wakes", "timer_resumes"),
    ("held delivers", "holds"),
    ("direct-link runs", "direct_runs"),
    ("links up", "link_up"),
    ("link-close suspicions", "link_close_suspicions"),
    ("heartbeat suspicions", "link_heartbeat_suspicions"),
    ("heartbeat misses", "link_heartbeat_misses"),
    ("parked fetched", "link_parked_fetched"),
    ("link fallbacks", "link_fallbacks"),
    ("by-ref on Ray", "link_byref_on_ray"),
    ("retired links", "link_retired"),
    ("partitions", "partitions"),
    ("spare runs", "spare_runs"),
    ("spares started", "spare_started"),
    ("spares promoted", "spare_promoted"),
    ("spares lost", "spare_lost"),
    ("caller overtakes", "caller_overtakes"),
    ("router starvations", "router_starvations"),
)


@dataclass(slots=True)
class SwarmSummary:
    """Totals of a swarm run.

    ``counts`` adds up every passing seed's simulator counters (faults, retries, and the
    workload's features: see :data:`FEATURES`).
    """

    seeds: int = 0
    ops: int = 0
    ticks: int = 0
    seconds: float = 0.0
    failures: List[Failure] = field(default_factory=list)
    counts: "Counter[str]" = field(default_factory=Counter)

    def features(self) -> Dict[str, int]:
        """How often each corner of the workload occurred (passing seeds)."""
        return {label: self.counts[key] for label, key in FEATURES}

    def feature_line(self) -> str:
        """The per-feature counts, one line."""
        return "features: " + ", ".join(f"{label} {n}" for label, n in self.features().items())

    def line(self) -> str:
        """The one-line summary."""
        rate = self.seeds / self.seconds if self.seconds else 0.0
        return (f"{self.seeds} seeds, {len(self.failures)} failed, {self.ops} ops, {self.ticks} ticks "
                f"in {self.seconds:.1f}s ({rate:.0f} seeds/s)")


def run_seed(seed: int, style: Optional[str] = None, scheduling: Optional[str] = None,
             options: Optional[SimOptions] = None) -> RunResult:
    """Run one seed to the end.

    Args:
        seed: the seed.
        style: force a replication style.
        scheduling: force a scheduler.
        options: explicit options (overrides the drawn ones).

    Returns:
        The run's summary.

    Raises:
        InvariantViolation: an invariant broke.
    """
    return Simulator(options or draw_options(seed, style, scheduling)).run()


def run_swarm(seeds: int, start: int = 0, style: Optional[str] = None, scheduling: Optional[str] = None,
              on_failure: Optional[Callable[[Failure], None]] = None, stop_after: int = 0,
              output_to_deliverer: bool = False, spares: Optional[int] = None) -> SwarmSummary:
    """Run ``seeds`` consecutive seeds from ``start``.

    Args:
        seeds: how many.
        start: the first seed.
        style: force a replication style.
        scheduling: force a scheduler.
        on_failure: called with each failure as it happens.
        stop_after: stop after this many failures (0: never).
        output_to_deliverer: model the Ray replica host before issue 10's fix (see SimOptions).
        spares: force this many warm spares per router (None: drawn per seed).

    Returns:
        The totals and failures.
    """
    summary = SwarmSummary()
    began = time.perf_counter()
    for seed in range(start, start + seeds):
        opts = draw_options(seed, style, scheduling)
        if output_to_deliverer:
            opts = replace(opts, output_to_deliverer=True)
        if spares is not None:
            opts = replace(opts, spares=spares)
        try:
            result = Simulator(opts).run()
        except Exception as exc:  # an invariant, or the core's own assertion: both fail the seed
            kind = "" if isinstance(exc, InvariantViolation) else f"{type(exc).__name__}: "
            failure = Failure(seed, opts, f"{kind}{exc}", traceback.format_exc())
            summary.failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
            if stop_after and len(summary.failures) >= stop_after:
                summary.seeds += 1
                break
        else:
            summary.ops += result.ops
            summary.ticks += result.ticks
            summary.counts.update(result.counts)
        summary.seeds += 1
    summary.seconds = time.perf_counter() - began
    return summary

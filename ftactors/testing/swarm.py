"""Swarm runs: many seeds, each with its own options, and a replayable report.

A failing seed prints itself and a one-line command that replays it exactly.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence

from ftactors.testing.cluster import RunResult, Simulator
from ftactors.testing.hosts import InvariantViolation
from ftactors.testing.options import SimOptions, draw_options, force_replies_wait


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
                + (f" --spares {self.options.spares}" if self.options.spares else "")
                + (" --replies-wait-for-backup" if self.options.replies_wait_for_backup else ""))


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
    ("answered early", "answered_early"),
    ("direct-link runs", "direct_runs"),
    ("links up", "link_up"),
    ("link-close suspicions", "link_close_suspicions"),
    ("heartbeat suspicions", "link_heartbeat_suspicions"),
    ("heartbeat misses", "link_heartbeat_misses"),
    ("parked fetched", "link_parked_fetched"),
    ("Ray answers held", "link_ray_answers_held"),
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
    ("router crashes while paused", "router_crashes_paused"),
    ("router crashes in a failover", "router_crashes_failover"),
    ("oneway nested", "oneway_nested_sent"),
    ("oneway nested crashes", "oneway_nested_crashes"),
    ("oneway nested re-sent", "oneway_nested_resent"),
    ("cancels", "cancels"),
    ("cancels abandoned", "cancels_abandoned"),
    ("cancels taken", "cancels_taken"),
    ("cancels ran", "cancels_ran"),
    ("cancels settled once ran", "cancels_settled_ran"),
    ("groups ended", "groups_ended"),
    ("orphan lookups", "orphan_lookups"),
    ("orphan exits", "orphan_exits"),
    ("spawned after an end", "spawned_after_end"),
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


#: The most worker processes a swarm run uses (``jobs``): one per core is the useful most.
JOBS_MAX = 64


def run_swarm(seeds: int, start: int = 0, style: Optional[str] = None, scheduling: Optional[str] = None,
              on_failure: Optional[Callable[[Failure], None]] = None, stop_after: int = 0,
              output_to_deliverer: bool = False, spares: Optional[int] = None, jobs: int = 1,
              replies_wait: bool = False) -> SwarmSummary:
    """Run ``seeds`` consecutive seeds from ``start``.

    Args:
        seeds: how many.
        start: the first seed.
        style: force a replication style.
        scheduling: force a scheduler.
        on_failure: called with each failure as it happens (with ``jobs`` > 1: as each worker ends).
        stop_after: stop after this many failures (0: never; with ``jobs`` > 1: per worker).
        output_to_deliverer: model the Ray replica host before issue 10's fix (see SimOptions).
        spares: force this many warm spares per router (None: drawn per seed).
        replies_wait: force ``replies_wait_for_backup`` on, with the router crash after a primary
            crash (``options.force_replies_wait``); else drawn per seed.
        jobs: worker processes; worker k runs seeds ``start + k``, ``start + k + jobs``, ... Every
            seed runs exactly as it would alone (a seed's run depends on its seed only).

    Returns:
        The totals and failures (failures in seed order).

    Raises:
        ValueError: ``jobs`` is not within 1..``JOBS_MAX``.
    """
    if not 1 <= jobs <= JOBS_MAX:
        raise ValueError(f"jobs must be within 1..{JOBS_MAX}, got {jobs}")
    began = time.perf_counter()
    every = range(start, start + seeds)
    args = (style, scheduling, stop_after, output_to_deliverer, spares, replies_wait)
    if jobs == 1 or seeds < 2:
        summary = _run_seeds(every, *args, on_failure=on_failure)
    else:
        summary = SwarmSummary()
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads (Ray's)
        with ProcessPoolExecutor(max_workers=min(jobs, seeds), mp_context=ctx) as pool:
            parts = [pool.submit(_run_seeds, every[k::jobs], *args) for k in range(min(jobs, seeds))]
            for part in as_completed(parts):
                done = part.result()
                summary.seeds += done.seeds
                summary.ops += done.ops
                summary.ticks += done.ticks
                summary.counts.update(done.counts)
                summary.failures.extend(done.failures)
                for failure in done.failures:
                    if on_failure is not None:
                        on_failure(failure)
        summary.failures.sort(key=lambda f: f.seed)
    summary.seconds = time.perf_counter() - began
    return summary


def _run_seeds(seeds: Sequence[int], style: Optional[str], scheduling: Optional[str], stop_after: int,
               output_to_deliverer: bool, spares: Optional[int], replies_wait: bool = False,
               on_failure: Optional[Callable[[Failure], None]] = None) -> SwarmSummary:
    """Run ``seeds`` in this process (see :func:`run_swarm`)."""
    summary = SwarmSummary()
    for seed in seeds:
        opts = draw_options(seed, style, scheduling)
        if output_to_deliverer:
            opts = replace(opts, output_to_deliverer=True)
        if spares is not None:
            opts = replace(opts, spares=spares)
        if replies_wait:
            opts = force_replies_wait(opts)
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
    return summary

"""The swarm: >= 2,000 seeds across both styles and all six schedulers, and replay determinism."""

from __future__ import annotations

from dataclasses import replace

import os

import pytest

from ftactors.core import SCHEDULERS
from ftactors.testing import Simulator, draw_options, run_seed, run_swarm
from ftactors.testing.options import STYLES

#: 2 styles x 6 schedulers x 170 = 2,040 seeds
SEEDS_PER_CELL = 170
CELLS = [(style, sched) for style in STYLES for sched in sorted(SCHEDULERS)]
#: worker processes per swarm run: the swarm is pure CPU and runs alone in the test session
JOBS = max(1, min(2, os.cpu_count() or 1))


@pytest.mark.parametrize("style,scheduling", CELLS)
def test_swarm_cell_has_no_failing_seed(style: str, scheduling: str) -> None:
    start = 100_000 + 1_000 * CELLS.index((style, scheduling))
    summary = run_swarm(SEEDS_PER_CELL, start=start, style=style, scheduling=scheduling, jobs=JOBS)
    report = "\n".join(f"seed {f.seed}: {f.error}\n  replay: {f.replay_command()}" for f in summary.failures)
    assert not summary.failures, report
    assert summary.seeds == SEEDS_PER_CELL
    assert summary.ops >= SEEDS_PER_CELL * 3  # every seed completed its operations


def test_same_seed_replays_identically() -> None:
    first, second = run_seed(4242), run_seed(4242)
    assert first == second
    assert first.ops > 0


def test_a_swarm_split_over_processes_runs_every_seed_as_one_process_does() -> None:
    alone = run_swarm(12, start=7_000, style="passive")
    split = run_swarm(12, start=7_000, style="passive", jobs=3)
    assert (split.seeds, split.ops, split.ticks) == (alone.seeds, alone.ops, alone.ticks)
    assert split.counts == alone.counts and alone.ops > 0
    assert [f.seed for f in split.failures] == [f.seed for f in alone.failures]


def test_forcing_style_does_not_change_the_other_choices() -> None:
    free = draw_options(77)
    forced = draw_options(77, style="passive", scheduling="fair")
    assert (forced.style, forced.scheduling) == ("passive", "fair")
    assert (free.replicas, free.model, free.nested, free.p_crash) == \
        (forced.replicas, forced.model, forced.nested, forced.p_crash)


def test_swarm_exercises_every_fault_repair_and_workload_feature() -> None:
    """The swarm is not vacuous: crashes, pauses, router restarts, re-replication all happen, and so
    does every corner of the workload: one-way calls (acknowledged, resubmitted to a restarted
    router), methods that raise and abort, now()/random() drawn and replayed (per task in gathered
    sub-tasks), one-way nested calls (a primary crashed while one is on its way, its successor
    sending it again: "oneway nested"), arguments by reference (fetched by the router over several ticks, some fetches
    failing), async steps (suspended on a nested call, resumed, a Deliver held for a resume), cancelled
    calls (given up by the router, or taken and run: ``cancels*`` in ``FEATURES``), and
    every evicting bound wrapped several times (its oldest entry evicted while full)."""
    summary = run_swarm(300, jobs=JOBS)
    assert not summary.failures, [f.error for f in summary.failures]
    total = summary.counts
    for what in ("crashes", "pauses", "router_crashes", "router_rebuilds", "spawned", "dropped", "duplicated",
                 "client_retries", "nested_sends", "nested_pulls", "fenced_submits",
                 "oneway_calls", "oneway_acks", "client_resubmits", "raised", "aborted", "nondet_draws",
                 "nondet_replays", "byref_args", "byref_fetches", "suspensions", "resumes", "holds",
                 "gathers", "gathered_tasks", "byref_fetches_delayed", "arguments_lost_at_router",
                 "oneway_nested_sent", "oneway_nested_taken", "oneway_nested_crashes", "oneway_nested_resent"):
        assert total[what] > 0, f"no {what} in 300 seeds: {dict(total)}"
    assert all(n > 0 for n in summary.features().values()), summary.feature_line()
    for bound in ("reply_cache_max", "sources_max", "retain_executed_max", "carried_announcements_max"):
        assert total[f"wraps:{bound}"] >= 3, f"{bound} wrapped {total[f'wraps:{bound}']} times in 300 seeds"
    for bound in ("batch_max", "primary_inflight_max", "backup_inflight_max"):
        assert total[f"full:{bound}"] > 0, f"{bound} never reached in 300 seeds"
    assert summary.ops / summary.seeds >= 100


def test_options_cover_replica_counts_and_models() -> None:
    drawn = [draw_options(s) for s in range(200)]
    assert {o.replicas for o in drawn} == {2, 3, 4, 5}
    assert {o.model for o in drawn} == {"counter", "bank", "kv"}
    assert {o.nested for o in drawn} == {True, False}
    assert {o.faults for o in drawn} == {True, False}


def test_fault_free_run_has_no_failover_traffic() -> None:
    seed = next(s for s in range(100) if not draw_options(s).faults and not draw_options(s).replace_backup)
    sim = Simulator(replace(draw_options(seed), group_end=""))  # the orphan rule runs; the groups do not end
    sim.run()
    for router in sim.routers.values():
        assert router.core is not None
        counts = router.core.counts
        assert counts["failovers"] == counts["view_changes"] == counts["recovery_messages"] == 0


def test_seed_4075_a_long_method_across_a_router_restart() -> None:
    """Issue 10 item 2 as a seed: a long method ran when the router crashed. With the Ray host's
    output routing of the time (to the incarnation that started the execution) its announcement
    was lost and the backups stalled (I6, before the core fix). The simulated host now keeps
    output made after the router changed for the current incarnation, and the rebuilt router
    asks its primary for order it missed: both ways pass."""
    opts = replace(draw_options(4075), fetch_ticks_max=0, spares=0)  # as drawn before fetches took time, spares
    assert opts.p_long and opts.p_router_crash and not opts.nested
    lossy = Simulator(replace(opts, output_to_deliverer=True))
    lossy.run()
    assert lossy.counts["outputs_lost_to_dead_router"] > 0 and lossy.counts["router_rebuilds"] > 0
    result = Simulator(opts).run()
    assert result.counts["long_methods"] > 0 and result.counts["router_crashes"] > 0

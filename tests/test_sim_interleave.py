"""The interleaving simulator: coroutines of one group resume in the primary's announced order on
every replica, across a primary crash, and a planted resume-order bug is caught as a divergence."""

from __future__ import annotations

import pytest

from ftactors.testing.hosts import InvariantViolation
from ftactors.testing.interleave import InterleaveSim, run_seeds


@pytest.mark.parametrize("options", [dict(), dict(messages=30), dict(replicas=2), dict(crash=False)])
def test_replicas_resume_coroutines_in_the_announced_order(options):
    results = run_seeds(150, **options)
    # the workload really interleaves: messages start while others wait (re-entrance), and resume
    assert sum(r.overlaps for r in results) > 150 and sum(r.resumes for r in results) > 1000
    if options.get("crash", True):
        assert sum(r.crashed for r in results) > 50  # a new primary replays the announced order, then chooses


def test_same_seed_same_run():
    assert InterleaveSim(7).run() == InterleaveSim(7).run()


def test_backups_resuming_in_arrival_order_are_caught_as_divergence():
    caught = []
    for seed in range(40):
        try:
            InterleaveSim(seed, resume_in_arrival_order=True).run()
        except InvariantViolation as exc:
            caught.append(str(exc))
    assert caught, "the planted resume-order bug went unnoticed"
    assert all(msg.startswith("divergence: seed") for msg in caught), caught[:3]
    assert len(caught) >= 30, f"caught in {len(caught)} of 40 seeds"


def test_command_line_names_the_seed_that_replays_a_violation(capsys):
    from ftactors.testing.interleave import main

    assert main(["--seeds", "20"]) == 0
    assert main(["--seeds", "20", "--planted-bug"]) == 1
    out = capsys.readouterr().out
    assert "divergence" in out and "replay: python -m ftactors.testing.interleave --seeds 1 --start" in out

"""A fixed, fast seed set of the simulator: the mutation test command's simulator part.

96 seeds (2 styles x 6 schedulers x 8 seeds), always the same ones, so a
mutant of ``ftactors/core`` is judged against the same runs every time. Each
seed must finish every client operation with no invariant broken.
"""

from __future__ import annotations

import pytest

from ftactors.core import SCHEDULERS
from ftactors.testing import run_seed
from ftactors.testing.options import STYLES

SEEDS_PER_CELL = 8
CELLS = [(style, sched) for style in STYLES for sched in sorted(SCHEDULERS)]


@pytest.mark.parametrize("style,scheduling", CELLS)
def test_fixed_seeds_pass(style: str, scheduling: str) -> None:
    """Every fixed seed of the cell completes its operations without a violation."""
    start = 7_000 + 100 * CELLS.index((style, scheduling))
    for seed in range(start, start + SEEDS_PER_CELL):
        result = run_seed(seed, style, scheduling)  # raises on an invariant violation
        assert result.ops >= 3, f"seed {seed} ({style}, {scheduling}) completed only {result.ops} ops"


@pytest.mark.parametrize("seed", [394, 489])
def test_a_new_primary_is_sent_the_requests_of_the_order_it_replays_first(seed: int) -> None:
    """Found by the small bounds of the workload (``batch_max=1``): after a failover the new primary
    received the requests it lacked in the router's reception order, one per Deliver, gave the
    announced order up after ``recovery_timeout_ticks`` and put another call at an acknowledged
    position (``I4: store-r3 executes c1#5 at 12, where the acknowledged c3#4 is``)."""
    result = run_seed(seed)
    assert result.counts["crashes"] > 0 and result.ops >= 100

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

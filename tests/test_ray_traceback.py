"""A replicated method's exception shows where it was raised, as with a Ray actor (first-day pass)."""

from __future__ import annotations

import traceback

import pytest
import ray

import ftactors


class Ledger:
    def __init__(self) -> None:
        self.rows: list = []

    def post(self, amount: int) -> int:
        return self._check(amount)

    def _check(self, amount: int) -> int:
        if amount < 0:
            raise ValueError(f"negative amount {amount}")
        self.rows.append(amount)
        return len(self.rows)

    async def apost(self, amount: int) -> int:
        return self._check(amount)


@pytest.mark.parametrize("method", ["post", "apost"])
def test_a_methods_exception_shows_the_methods_file_and_line_as_with_ray(ray_local, method):
    """Ray's error for a failed actor task names the method's frames (``File ..., line N, in _check``);
    a replicated group's showed only the router re-raising the replica's outcome, so the user could
    not see where their method failed. The exception now carries a note of the replica's frames,
    printed under it (Ray's header stays the first line)."""
    plain = ray.remote(Ledger).remote()
    group = ftactors.replicated(replicas=2)(ray.remote(Ledger)).remote()
    try:
        for handle in (plain, group):
            with pytest.raises(ValueError, match="negative amount -5") as info:
                ray.get(getattr(handle, method).remote(-5), timeout=60)
            shown = str(info.value) + "".join(traceback.format_exception(info.value))
            assert "in _check" in shown and 'raise ValueError(f"negative amount {amount}")' in shown, shown
            assert isinstance(info.value, ValueError)
            assert "ray::Ledger." in str(info.value).strip().splitlines()[0], "Ray's header first"
        assert ray.get(group.post.remote(3), timeout=60) == 1  # the group goes on
    finally:
        ftactors.shutdown(group)

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


def test_a_class_its_workers_cannot_import_fails_its_calls_with_the_import_error(ray_local, tmp_path, monkeypatch):
    """A class from a module only the driver has (a first-day mistake: a local file, no ``runtime_env``).
    A plain Ray actor's call fails with the import error (``ModuleNotFoundError`` in its message); a
    replicated group's failed with ``GroupLostError: all replicas of the group failed``, naming no
    module, and each replica's process printed a C++ abort to the console."""
    (tmp_path / "onlyhere.py").write_text("class Onlyhere:\n    def ping(self):\n        return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from onlyhere import Onlyhere  # type: ignore[import-not-found]

    plain = ray.remote(Onlyhere).remote()
    with pytest.raises(ray.exceptions.RayError, match="No module named 'onlyhere'"):
        ray.get(plain.ping.remote(), timeout=60)
    group = ftactors.replicated(replicas=2)(ray.remote(Onlyhere)).remote()
    try:
        with pytest.raises(Exception, match="No module named 'onlyhere'") as info:
            ray.get(group.ping.remote(), timeout=60)
        assert "runtime_env" in str(info.value)  # what to do about it
        with pytest.raises(Exception, match="No module named 'onlyhere'"):  # the group stays, each call says so
            ray.get(group.ping.remote(), timeout=60)
    finally:
        ftactors.shutdown(group)

"""Integration: creating a group is like creating a Ray actor (real Ray).

``Cls.remote()`` returns a handle at once; the group starts in the background and its first call
waits for it; a constructor that raises surfaces at the first call, with its own type.
"""

from __future__ import annotations

import os
import time

import pytest
import ray

import ftactors
from tests.actors import Broken

pytestmark = pytest.mark.ray


class Gated:
    """Its constructor waits until a file exists: a group whose start the test controls."""

    def __init__(self, gate: str) -> None:
        while not os.path.exists(gate):
            time.sleep(0.01)
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n


def test_remote_returns_before_the_replicas_are_up_and_the_first_call_waits(ray_local, tmp_path):
    gate = tmp_path / "gate"
    h = ftactors.replicated(replicas=3)(Gated).remote(str(gate))  # would hang here if it waited
    first = h.inc.remote()
    ready, _ = ray.wait([first], timeout=0.5)
    assert not ready, "a call answered before the replicas' constructors ran"
    gate.touch()
    assert ray.get(first, timeout=60) == 1
    assert ray.get(h.inc.remote(), timeout=60) == 2
    info = ftactors.describe(h)
    assert len(info.replicas) == 3 and all(r.node_id for r in info.replicas)
    ftactors.shutdown(h)


def test_a_constructor_that_raises_surfaces_at_the_first_call_with_its_type(ray_local):
    h = ftactors.replicated(replicas=2)(Broken).remote(-1)
    for _ in range(2):  # every call gets it, not only the first
        with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
            ray.get(h.ping.remote(), timeout=60)
    ftactors.shutdown(h)
    ok = ftactors.replicated(replicas=2)(Broken).remote(1)
    assert ray.get(ok.ping.remote(), timeout=60) == "pong"
    ftactors.shutdown(ok)

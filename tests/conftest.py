"""Shared fixtures: one local Ray session per module, multi-node clusters on demand."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import pytest

# Fast failure detection for multi-node tests (see configs/cluster.yaml for the explanation).
os.environ.setdefault("RAY_health_check_period_ms", "500")
os.environ.setdefault("RAY_health_check_failure_threshold", "3")
os.environ.setdefault("RAY_health_check_timeout_ms", "1000")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the condition may raise while the system settles
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


class NotYet:
    """A falsy poll result that says why (``wait_for`` shows it when it times out).

    Args:
        why: what is still missing.
    """

    def __init__(self, why: str) -> None:
        self.why = why

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"NotYet({self.why!r})"


def converged(handle: Any, replicas: int) -> Any:
    """Whether a group has exactly ``replicas`` members, every one reachable and caught up, with
    equal, known state digests (semi-active); see :meth:`ftactors.GroupInfo.disagreement`.

    Args:
        handle: the group's handle.
        replicas: the number of members expected.

    Returns:
        True, or a falsy :class:`NotYet` naming what is missing: an unreachable or busy
        replica is "not yet", never agreement.
    """
    import ftactors

    info = ftactors.describe(handle)
    if len(info.replicas) != replicas:
        return NotYet(f"{len(info.replicas)} members, {replicas} expected")
    why = info.disagreement(replicas)
    return True if why is None else NotYet(why)


@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray instance for the module (``address='local'`` never joins another cluster)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="warning",
             log_to_driver=True)
    yield ray
    ray.shutdown()

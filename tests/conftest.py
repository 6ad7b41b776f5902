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

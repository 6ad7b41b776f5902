"""Ray metrics: a group's counters reach Ray's Prometheus endpoint (needs ``ray[default]``)."""

from __future__ import annotations

import re
import socket
import urllib.request

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import wait_for
from tests.test_cli import Counter

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_port():
    """A local Ray whose metrics agent exports on a known port."""
    pytest.importorskip("aiohttp", reason="metrics export needs ray[default] (the 'metrics' extra)")
    if ray.is_initialized():
        ray.shutdown()
    port = _free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="warning",
             _metrics_export_port=port)
    yield port
    ray.shutdown()


def _scrape(port: int, group: str) -> dict:
    """``{metric name: value}`` of ftactors metrics tagged with ``group``."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        m = re.match(r"^ray_(ftactors_\w+)\{(.*)\} ([0-9.e+-]+)$", line)
        if m and f'group="{group}"' in m.group(2):
            out[m.group(1)] = float(m.group(3))
    return out


def test_calls_views_and_failovers_are_exported(metrics_port):
    h = ftactors.replicated(replicas=3)(Counter).options(name="metered").remote()
    try:
        ray.get([h.add.remote() for _ in range(20)])  # a burst (it may wait for the group to start)
        for _ in range(20):  # then one at a time: each announcement rides on the next call's copy
            ray.get(h.add.remote())
        got = wait_for(lambda: (lambda m: m if m.get("ftactors_requests_total", 0) >= 40 else None)(
            _scrape(metrics_port, "metered")), timeout_s=60, interval_s=1.0, what="exported request count")
        assert got["ftactors_replies_total"] >= 40
        assert got["ftactors_view"] == 1
        assert got["ftactors_announcements_piggybacked_total"] > 0
        view = ftactors.describe(h).view
        chaos.kill_replica(h, "primary")
        assert ray.get(h.add.remote()) == 41
        wait_for(lambda: _scrape(metrics_port, "metered").get("ftactors_failovers_total", 0) >= 1,
                 timeout_s=60, interval_s=1.0, what="exported failover count")
        assert _scrape(metrics_port, "metered")["ftactors_view"] > view
    finally:
        ftactors.shutdown(h)

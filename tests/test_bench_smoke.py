"""Smoke test of ``ftactors bench``: tiny counts, JSON shape, exactly-once under failover.

Timings are never asserted: the machine is shared and the counts are tiny.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

SYSTEM_KEYS = {"latency_median_ms", "latency_p99_ms", "latency_ratio", "throughput_per_s", "throughput_ratio",
               "extra_messages_per_call", "failover_pause_median_ms", "failover_pause_max_ms", "lost",
               "duplicated", "state_kept"}


def test_bench_smoke_json_shape_and_exactly_once(tmp_path):
    import ray

    from ftactors.bench import SYSTEM_NAMES, main

    if ray.is_initialized():  # the bench starts and stops its own local Ray session
        ray.shutdown()
    out = tmp_path / "bench"
    path = tmp_path / "r.json"
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# x\n<!-- BENCH:BEGIN -->\nplaceholder\n<!-- BENCH:END -->\ntail\n")
    rc = main(["--smoke", "--sections", "calls,messages,failover,memory", "--json", str(path), "--out", str(out),
               "--update-docs", "--docs", str(docs), "--quiet"])
    assert rc == 0
    assert not ray.is_initialized(), "the bench must shut Ray down"
    r = json.loads(path.read_text())

    for key in ("ray_version", "machine", "date", "command", "systems", "scaling", "messages", "memory"):
        assert key in r, key
    assert set(r["systems"]) == set(SYSTEM_NAMES)
    for name, row in r["systems"].items():
        assert SYSTEM_KEYS <= set(row), (name, SYSTEM_KEYS - set(row))
        assert row["latency_median_ms"] is not None and row["throughput_ratio"] is not None, name
    assert r["systems"]["ray-plain"]["failover_pause_median_ms"] is None  # no failover: null
    assert r["systems"]["naive-active"]["lost"] is None
    assert r["systems"]["pysyncobj"]["ray_based"] is False

    for name in ("ftactors-semi-active", "ftactors-passive"):
        row = r["systems"][name]
        assert row["lost"] == 0, (name, r["failover"][name])
        assert row["duplicated"] == 0, (name, r["failover"][name])
        assert row["state_kept"] is True, name
        assert r["failover"][name]["errors"] == 0, r["failover"][name]
        assert row["extra_messages_per_call"] is not None
        assert r["messages"][name]["per_call"]["requests"] == 1.0
    assert r["systems"]["ray-restart"]["state_kept"] is False  # Ray restarts the actor with a fresh state

    assert r["memory"]["calls"] > 0 and r["memory"]["rss_before_mib"] > 0
    assert {"replicas", "args", "checkpoint"} <= set(r["scaling"])
    assert (out / "latency.png").exists() and (out / "throughput.png").exists() and (out / "failover.png").exists()
    text = docs.read_text()
    assert "placeholder" not in text and "ftactors-semi-active" in text and text.endswith("tail\n")

"""The A/B benchmarks' shared command line (``ftactors.bench.rounds``): each keeps its defaults, its
table and its JSON (no Ray: ``measure`` is replaced by one returning a fixed result)."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

import ftactors.bench.relay as relay
import ftactors.bench.router_ab as router_ab
from ftactors.bench.rounds import markdown_rows


def _fake_measure(monkeypatch: pytest.MonkeyPatch, module: Any, result: Dict[str, Any]) -> List[tuple]:
    calls: List[tuple] = []

    def measure(*args: Any) -> Dict[str, Any]:
        calls.append(args)
        return result

    monkeypatch.setattr(module, "measure", measure)
    return calls


RELAY = {"rounds": [], "load": (1.0, 2.0, 3.0), "summary": {
    "ray-plain": {"latency_median_ms": 0.5, "throughput_calls_s": 12345.6, "latency_ratio": 1.0,
                  "throughput_ratio": 1.0},
    "relay-async": {"latency_median_ms": 0.753, "throughput_calls_s": 2345.4, "latency_ratio": 1.506,
                    "throughput_ratio": 0.19}}}

ROUTER = {"rounds": {}, "load": (0.5, 0.25, 0.125), "summary": {
    "plain": dict(latency_median_ms=0.4, latency_ratio=1.0, throughput_calls_s=5000.0, throughput_ratio=1.0,
                  cpu_us_per_call=55.4, cpu_range_us=(50.1, 60.6)),
    "async": dict(latency_median_ms=1.23, latency_ratio=3.07, throughput_calls_s=1500.5, throughput_ratio=0.3,
                  cpu_us_per_call=155.5, cpu_range_us=(140.0, 170.2))}}


def test_relay_prints_its_table_with_its_defaults_and_writes_the_json(monkeypatch, capsys, tmp_path):
    calls = _fake_measure(monkeypatch, relay, RELAY)
    path = tmp_path / "r.json"
    assert relay.main(["--json", str(path)]) == 0
    assert calls == [(3, 200, 1000)]
    assert capsys.readouterr().out.splitlines() == [
        "| system | latency median ms | x plain | calls/s | x plain |",
        "|---|---|---|---|---|",
        "| ray-plain | 0.50 | 1.00 | 12,346 | 1.00 |",
        "| relay-async | 0.75 | 1.51 | 2,345 | 0.19 |",
    ]
    assert json.loads(path.read_text())["summary"] == RELAY["summary"]


def test_router_ab_prints_its_cpu_column_and_the_load_with_its_defaults(monkeypatch, capsys):
    calls = _fake_measure(monkeypatch, router_ab, ROUTER)
    assert router_ab.main(["--k", "7"]) == 0
    assert calls == [(5, 7, 2000)]
    assert capsys.readouterr().out.splitlines() == [
        "| router | latency median ms | x plain | calls/s | x plain | router CPU us/call (range) |",
        "|---|---|---|---|---|---|",
        "| plain | 0.40 | 1.00 | 5,000 | 1.00 | 55 (50-61) |",
        "| async | 1.23 | 3.07 | 1,500 | 0.30 | 156 (140-170) |",
        "load average (0.5, 0.25, 0.125)",
    ]


def test_each_help_names_its_own_module(capsys):
    for module, name in ((relay, "ftactors.bench.relay"), (router_ab, "ftactors.bench.router_ab")):
        with pytest.raises(SystemExit):
            module.main(["--help"])
        out = capsys.readouterr().out
        assert f"python -m {name}" in out and "pipelined calls per system per round" in out


def test_a_row_with_a_missing_cell_is_refused():
    with pytest.raises(ValueError, match="2 cells under 3 headers"):
        markdown_rows(["a", "b", "c"], [["1", "2"]])

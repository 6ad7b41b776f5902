"""``python -m ftactors.bench.latency_ab``'s table and defaults (no Ray: ``measure`` is replaced)."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

import ftactors.bench.latency_ab as latency_ab

RESULT: Dict[str, Any] = {"load": (3.0, 2.0, 1.0), "rounds": {
    "relay": {"lat": [1.6, 1.8]}, "semi-active": {"lat": [1.7, 1.9]}}, "summary": {
    name: dict(latency_median_ms=lat, latency_ratio=lat, throughput_calls_s=tput, throughput_ratio=tput / 3000,
               latency_x_relay=lat / 1.7, throughput_x_relay=tput / 1500, cpu_us_per_call=cpu)
    for name, lat, tput, cpu in [("plain", 1.0, 3000.0, {"actor": 500.0, "caller": 600.0}),
                                 ("relay", 1.7, 1500.0, {"router": 900.0, "primary": 150.0, "caller": 650.0}),
                                 ("semi-active", 1.8, 1550.0, {"router": 1000.0, "primary": 300.0, "caller": 700.0})]}}


def test_the_table_has_a_row_per_system_with_its_ratios_to_the_relay(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: Any) -> None:
    calls: List[tuple] = []
    monkeypatch.setattr(latency_ab, "measure", lambda *a, **kw: calls.append((a, kw)) or RESULT)
    assert latency_ab.main([]) == 0
    assert calls == [((4, 300, 2000), {"styles": ("semi-active", "passive")})]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| system | latency median ms | x plain | calls/s | x plain | latency x relay")
    semi = next(line for line in out if line.startswith("| semi-active |"))
    assert "| 1.059 |" in semi and "router 1000, primary 300, caller 700" in semi
    assert out[-1] == "load average (3.0, 2.0, 1.0); rounds x relay: [1.062, 1.056]"


def test_the_footer_gives_the_passive_groups_rounds_against_the_relay_too(monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: Any) -> None:
    rounds = dict(RESULT["rounds"], passive={"lat": [2.0, 1.8]})
    monkeypatch.setattr(latency_ab, "measure", lambda *a, **kw: dict(RESULT, rounds=rounds))
    assert latency_ab.main([]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "load average (3.0, 2.0, 1.0); rounds x relay: [1.062, 1.056]; passive: [1.25, 1.0]")


def test_styles_chooses_the_groups_measured_and_refuses_an_unknown_one(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: Any) -> None:
    calls: List[Any] = []
    only_passive = {"relay": RESULT["rounds"]["relay"], "passive": {"lat": [2.0, 1.8]}}
    monkeypatch.setattr(latency_ab, "measure",
                        lambda *a, **kw: calls.append(kw["styles"]) or dict(RESULT, rounds=only_passive))
    assert latency_ab.main(["--styles", "passive"]) == 0
    assert calls == [("passive",)]
    assert capsys.readouterr().out.splitlines()[-1] == "load average (3.0, 2.0, 1.0); rounds x relay: passive: [1.25, 1.0]"
    assert latency_ab.main(["--styles", " passive , semi-active"]) == 0
    assert calls[-1] == ("semi-active", "passive")  # in the benchmark's order
    for bad in ("active", ""):
        with pytest.raises(SystemExit):
            latency_ab.main(["--styles", bad])
        assert "--styles:" in capsys.readouterr().err
    assert len(calls) == 2

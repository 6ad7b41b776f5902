"""The ``ftactors`` command: demo, chaos, status, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import ray

import ftactors
from ftactors.chaos import plan_faults
from ftactors.cli import main

ROOT = Path(__file__).resolve().parent.parent
FTACTORS = [sys.executable, "-m", "ftactors.cli"]


def run_cli(args, env=None, timeout=300):
    return subprocess.run(FTACTORS + list(args), cwd=ROOT, env=env or os.environ.copy(), capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    assert lines[0].startswith("ftactors: error: ")
    return lines[0]


# ------------------------------------------------------------ without Ray


def test_fault_plan_is_a_function_of_the_seed():
    kinds = ["kill-primary", "kill-backup", "kill-router"]
    a = plan_faults(3, kinds, 2.0, duration_s=30)
    assert a == plan_faults(3, kinds, 2.0, duration_s=30)
    assert a != plan_faults(4, kinds, 2.0, duration_s=30)
    assert len(plan_faults(3, kinds, 2.0, faults_max=4)) == 4
    assert all(f.at_s < 30 for f in a)


@pytest.fixture
def plain_module(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text(textwrap.dedent("""
        from ftactors.chaos import Campaign

        class Plain:
            def add(self, x):
                return x

        CHAOS = Campaign(target=Plain, workload=lambda h, rng, i: h.add.remote(i))
    """))
    return path


@pytest.mark.parametrize("args, needle", [
    (["chaos", "no/such/module.py"], "module not found: no/such/module.py"),
    (["chaos", "examples/chaos_target.py", "--faults", "kill-everything"], "unknown fault 'kill-everything'"),
    (["chaos", "examples/chaos_target.py", "--faults", "remove-node"], "remove-node needs --nodes"),
    (["chaos", "examples/chaos_target.py", "--fault-every-s", "-1"], "fault_every_s"),
    (["chaos"], "give the module"),
    (["demo", "--style", "active"], "--style must be semi-active or passive"),
    (["demo", "--replicas", "1"], "--replicas must be >= 2"),
    (["demo", "--duration-s", "soon"], "'--duration-s'"),
    (["demo", "--frobnicate"], "No such option: --frobnicate"),
    (["status", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    (["status", "--address", "no-port"], "expected host:port"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, needle):
    assert main(args) == 2
    out = capsys.readouterr()
    assert needle in one_line_error(out.err)


def test_target_that_is_not_replicated(capsys, plain_module):
    assert main(["chaos", str(plain_module)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "Plain is not replicated" in line and "@ftactors.replicated" in line


def test_module_without_chaos_and_broken_module(capsys, tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    assert main(["chaos", str(empty)]) == 2
    assert "defines no CHAOS" in one_line_error(capsys.readouterr().err)
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_package_xyz\n")
    assert main(["chaos", str(broken)]) == 2
    assert "ModuleNotFoundError" in one_line_error(capsys.readouterr().err)


def test_bad_yaml_field_names_it(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("chaos:\n  module: examples/chaos_target.py\n  fault_every: 3\n")
    assert main(["chaos", "--config", str(cfg)]) == 2
    assert "invalid field 'fault_every'" in one_line_error(capsys.readouterr().err)
    cfg.write_text("chaos:\n  duration_s: [1, 2\n")
    assert main(["chaos", "--config", str(cfg)]) == 2
    assert "not valid YAML" in one_line_error(capsys.readouterr().err)
    assert main(["chaos", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in one_line_error(capsys.readouterr().err)


def test_debug_shows_the_traceback(capsys):
    assert main(["chaos", "no/such.py", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_bench_is_forwarded_or_reports_its_absence(capsys, monkeypatch):
    import types

    seen = {}
    fake = types.ModuleType("ftactors.bench")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "ftactors.bench", fake)
    assert main(["bench", "--quick", "--json", "x.json", "--out", "d"]) == 0
    assert seen["argv"] == ["--quick", "--json", "x.json", "--out", "d"]
    monkeypatch.setitem(sys.modules, "ftactors.bench", None)  # import fails as if absent
    assert main(["bench", "--quick"]) == 2
    assert "ftactors.bench" in one_line_error(capsys.readouterr().err)


def test_console_script_error_is_one_line():
    proc = run_cli(["chaos", "missing_module.py"], timeout=120)
    assert proc.returncode == 2
    assert "module not found" in one_line_error(proc.stderr)


def router_describe() -> dict:
    """What a router's ``describe()`` returns: one backup did not answer."""
    return {"group": "g", "view": 4, "phase": "normal", "members": ["g-r3", "g-r1", "g-r2"], "primary": "g-r3",
            "joining": ["g-r5"], "counts": {"failovers": 2, "requests": 40}, "diverged": [],
            "retained_requests": 1, "retained_order": 1, "retained_replies": 2, "last_failover_s": None,
            "settings": {"style": "passive"}, "handles": {},
            "replicas": {"g-r3": {"role": "primary", "node_id": "n1", "pid": 11, "executed": 40},
                         "g-r1": {"role": "backup", "node_id": "n2", "pid": 12, "executed": 37},
                         "g-r2": {"replica": "g-r2", "error": "GetTimeoutError()"}}}


def test_status_rows_come_from_the_routers_structured_description():
    from rich.console import Console

    from ftactors.runtime.api import group_info
    from ftactors.status import render, status_row

    meta = {"group": "g", "namespace": "shop", "lifetime": "detached", "class_name": "Counter"}
    row = status_row(meta, group_info(router_describe()))
    assert (row["group"], row["namespace"], row["lifetime"], row["view"], row["style"]) == \
        ("g", "shop", "detached", 4, "passive")
    assert [(r["replica"], r["role"], r["executed"]) for r in row["replicas"]] == [
        ("g-r3", "primary", 40), ("g-r1", "backup", 37), ("g-r2", "unknown", -1)]
    assert row["replicas"][2]["error"] == "GetTimeoutError()" and row["replicas"][0]["error"] is None
    assert (row["executed"], row["lag"], row["failovers"], row["joining"]) == (40, 3, 2, ["g-r5"])
    assert status_row({"group": "g", "namespace": None}, group_info(router_describe()))["lifetime"] == "non_detached"
    console = Console(record=True, width=100)
    render([row], console)
    text = console.export_text()
    assert "g-r2" in text and "unreachable" in text and "joining" in text and "passive" in text


# ------------------------------------------------------------- with Ray


@pytest.mark.ray
def test_demo_short_run_checks_pass(tmp_path):
    """The demo on its own local Ray: nothing lost or applied twice, money conserved."""
    out = tmp_path / "demo"
    proc = run_cli(["demo", "--duration-s", "7", "--kill-every-s", "3", "--clients", "3", "--no-progress",
                    "--out", str(out)], timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "result.json").read_text())
    assert data["operations_lost"] == 0 and data["operations_applied_twice"] == 0
    assert data["money_conserved"] is True and data["replies_mismatched"] == 0
    assert data["faults_injected"] >= 1 and data["failovers"] == data["faults_injected"]
    assert data["operations_completed"] > 0 and data["replicas_converged"] is True
    assert (out / "latency.png").stat().st_size > 10_000
    assert "operations lost" in proc.stdout and "demo passed" in proc.stdout


@pytest.fixture(scope="module")
def shared(ray_local):
    """The module's Ray session, joinable by subprocesses."""
    env = os.environ.copy()  # carries RAY_AUTH_MODE, set by the local ray.init
    return {"address": ray.get_runtime_context().gcs_address, "env": env}


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self) -> int:
        self.n += 1
        return self.n


@pytest.mark.ray
def test_status_lists_groups_with_primary_and_backups(shared, capsys):
    h = ftactors.replicated(replicas=3)(Counter).options(name="statusgroup").remote()
    try:
        ray.get([h.add.remote() for _ in range(5)])
        proc = run_cli(["status", "--address", shared["address"], "--json"], env=shared["env"], timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        rows = {r["group"]: r for r in json.loads(proc.stdout)}
        row = rows["statusgroup"]
        assert row["style"] == "semi-active" and row["view"] >= 1 and row["phase"] == "normal"
        roles = sorted(r["role"] for r in row["replicas"])
        assert roles == ["backup", "backup", "primary"]
        assert all(r["pid"] > 0 and r["node"] for r in row["replicas"])
        assert row["executed"] >= 5 and row["failovers"] == 0
        # the table, in this driver's session
        assert main(["status"]) == 0
        out = capsys.readouterr().out
        assert "statusgroup" in out and "semi-active" in out
    finally:
        ftactors.shutdown(h)


@pytest.mark.ray
def test_chaos_campaign_on_the_example_from_a_config(shared, tmp_path):
    # seed 2 draws kill-primary, pause-primary, kill-router (one each); several router kills in a row
    # currently lose the group's backups (runtime issue reported), hence one router kill here.
    cfg = tmp_path / "chaos.yaml"
    cfg.write_text(textwrap.dedent(f"""
        chaos:
          module: {ROOT / 'examples' / 'chaos_target.py'}
          faults: [kill-primary, pause-primary, kill-router]
          faults_max: 3
          fault_every_s: 2
          pause_s: 1.5
          seed: 2
          clients: 2
          recover_timeout_s: 45
    """))
    out = tmp_path / "chaos"
    proc = run_cli(["chaos", "--config", str(cfg), "--address", shared["address"], "--out", str(out),
                    "--no-progress"], env=shared["env"], timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "result.json").read_text())
    assert data["ok"] is True and data["violations"] == []
    assert data["faults_injected"] == 3 and data["operations_failed"] == 0
    assert [f["kind"] for f in data["faults"]] == [f.kind for f in plan_faults(
        2, ["kill-primary", "pause-primary", "kill-router"], 2, None, 3, 1.5)]
    assert (out / "latency.png").is_file()


@pytest.mark.ray
def test_chaos_violation_exits_1_with_seed_and_replay(shared, tmp_path):
    module = tmp_path / "planted.py"
    module.write_text(textwrap.dedent("""
        import ray, ftactors
        from ftactors.chaos import Campaign

        @ftactors.replicated(replicas=2)
        class Box:
            def __init__(self):
                self.items = []
            def put(self, x):
                self.items.append(x)
                return len(self.items)
            def get(self):
                return list(self.items)

        def check(handle, history):
            # a planted invariant that never holds: the campaign must report it
            return [f"planted: {len(ray.get(handle.get.remote()))} items"]

        CHAOS = Campaign(target=Box, workload=lambda h, rng, i: h.put.remote(i), check=check, clients=1)
    """))
    proc = run_cli(["chaos", str(module), "--faults", "kill-backup", "--faults-max", "1", "--fault-every-s", "1",
                    "--seed", "42", "--address", shared["address"], "--out", str(tmp_path / "o"), "--no-progress"],
                   env=shared["env"], timeout=400)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "planted:" in proc.stdout and "seed 42" in proc.stdout
    assert "replay: ftactors chaos" in proc.stdout and "--seed 42" in proc.stdout
    data = json.loads((tmp_path / "o" / "result.json").read_text())
    assert data["ok"] is False and any(v.startswith("planted:") for v in data["violations"])

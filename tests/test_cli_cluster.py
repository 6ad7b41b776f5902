"""``ftactors demo --nodes`` and ``ftactors chaos --nodes`` with node removal, on a local multi-node cluster.

Each command starts its own ``ray.cluster_utils.Cluster`` in a subprocess, as a user would
run it; these tests run in the separate ``-m cluster`` pytest process (see ``run.sh test``).
"""

from __future__ import annotations

import json
import os

import pytest
import ray

from tests.test_cli import ROOT, run_cli

pytestmark = [pytest.mark.ray, pytest.mark.cluster]


@pytest.fixture(scope="module")
def clean_env():
    """No Ray session of this process may be around: each command starts its own cluster."""
    if ray.is_initialized():
        ray.shutdown()
    env = os.environ.copy()
    env.pop("RAY_ADDRESS", None)
    return env


def test_chaos_removes_nodes_and_keeps_the_group_whole(clean_env, tmp_path):
    out = tmp_path / "chaos"
    proc = run_cli(["chaos", str(ROOT / "examples" / "chaos_target.py"), "--nodes", "3",
                    "--faults", "remove-node", "--faults-max", "2", "--fault-every-s", "4", "--seed", "5",
                    "--clients", "2", "--out", str(out), "--no-progress"], env=clean_env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "result.json").read_text())
    assert data["ok"] is True and data["violations"] == []
    removed = [f for f in data["faults"] if f["kind"] == "remove-node"]
    assert len(removed) == 2
    assert all(not f.get("skipped") and f.get("node") for f in removed), removed
    # one fault at a time: each removal took one member (docs/faults.md row 49)
    assert [f["members_taken"] for f in removed] == [1, 1] and data["members_taken_max"] == 1, removed
    # the invariant held and every acknowledged operation was counted once
    assert data["operations_failed"] == 0 and data["operations_completed"] > 0
    assert data["replica_nodes_at_start"] == 3


def test_demo_on_three_local_nodes(clean_env, tmp_path):
    out = tmp_path / "demo"
    proc = run_cli(["demo", "--nodes", "3", "--duration-s", "8", "--kill-every-s", "3", "--clients", "2",
                    "--no-progress", "--out", str(out)], env=clean_env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "result.json").read_text())
    assert data["operations_lost"] == 0 and data["operations_applied_twice"] == 0
    assert data["money_conserved"] is True and data["replicas_converged"] is True
    assert data["faults_injected"] >= 1 and data["failovers"] == data["faults_injected"]
    # "spread" placement put the three replicas on the three nodes
    assert data["replica_nodes_at_start"] == 3

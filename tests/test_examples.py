"""Every example runs on its own (short mode) against one shared local Ray session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from ftactors.chaos import Campaign, load_campaign

pytestmark = pytest.mark.ray

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = ["bank.py", "kv_store.py", "nested_pipeline.py", "priority_scheduling.py", "passive_large_state.py",
           "third_party.py", "serve_gateway.py", "async_pipeline.py",
           "async_ring.py"]


@pytest.fixture(scope="module")
def example_env(ray_local):
    """Examples join this module's Ray (RAY_ADDRESS) instead of starting one each."""
    env = os.environ.copy()  # carries RAY_AUTH_MODE, set by the local ray.init
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    env["FTACTORS_EXAMPLE_QUICK"] = "1"
    return env


def test_every_example_is_listed():
    present = {p.name for p in EXAMPLES.glob("*.py")}
    assert set(SCRIPTS) | {"chaos_target.py"} == present


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_and_checks_itself(example_env, script):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick"], cwd=EXAMPLES.parent,
                          env=example_env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_chaos_example_follows_the_contract():
    """Run by tests/test_cli.py (ftactors chaos); here: it loads and names a replicated target."""
    chaos = load_campaign(EXAMPLES / "chaos_target.py")
    assert isinstance(chaos, Campaign) and chaos.name == "Ledger" and callable(chaos.check)

"""Replicated groups as services: names, namespaces and lifetimes like Ray's, lookup from
other drivers, ``ftactors status`` across namespaces, a quiet console, counters that survive
a router restart (real Ray; other drivers are subprocesses joining the module's session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import wait_for

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


class Ledger:
    """Records each call's token: a token lost or applied twice is visible."""

    def __init__(self) -> None:
        self.tokens: List[str] = []

    def add(self, token: str) -> int:
        self.tokens.append(token)
        return len(self.tokens)

    def read(self) -> List[str]:
        return list(self.tokens)


@pytest.fixture(scope="module")
def session(ray_local) -> Dict[str, Any]:
    """The module's Ray session, joinable by other drivers."""
    env = os.environ.copy()  # carries RAY_AUTH_MODE, set by the local ray.init
    env.pop("RAY_enable_output_error_log_if_still_retry", None)  # what ftactors sets must do the work
    env["PYTHONPATH"] = str(ROOT)
    return {"address": ray.get_runtime_context().gcs_address, "env": env}


def run_driver(session: Dict[str, Any], body: str, prelude: str = "",
               timeout_s: float = 240) -> subprocess.CompletedProcess:
    """Run ``prelude`` then ``body`` as another driver of the session; it prints ``RESULT <json>``."""
    script = "import json, os, signal, sys, time\nimport ray, ftactors\nfrom ftactors import chaos\n" \
             f"ray.init(address={session['address']!r})\n" + prelude + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=session["env"], capture_output=True,
                          text=True, timeout=timeout_s)


def result(proc: subprocess.CompletedProcess) -> Any:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def names_left(group: str, namespace: str) -> List[str]:
    """Named actors of ``group`` still alive in Ray ``namespace`` (its router and replicas)."""
    prefix = f"ftactors:{group}:"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix) and a["namespace"] == namespace]


def missing(name: str, namespace: Any = None) -> bool:
    try:
        ftactors.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False


LEDGER = textwrap.dedent('''
    @ftactors.replicated(replicas=3)
    class Ledger:
        def __init__(self):
            self.tokens = []
        def add(self, token):
            self.tokens.append(token)
            return len(self.tokens)
        def read(self):
            return list(self.tokens)
''')


def test_detached_group_outlives_its_driver_and_serves_another_across_a_primary_kill(session):
    creator = run_driver(session, prelude=LEDGER, body='''
        h = Ledger.options(name="orders", namespace="shop", lifetime="detached").remote()
        tmp = Ledger.options(name="scratch", namespace="shop").remote()
        ray.get([h.add.remote(f"c{i}") for i in range(10)] + [tmp.add.remote("x")])
        print("RESULT", json.dumps({"group": h.group}))
    ''')  # ...and exits without ftactors.shutdown
    assert result(creator) == {"group": "orders"}

    # a group that is not detached ends with its driver's job, replicas and all
    wait_for(lambda: missing("scratch", "shop") and not names_left("scratch", "shop"), timeout_s=60,
             what="the non-detached group to end with its driver")

    user = run_driver(session, '''
        h = ftactors.get_actor("orders", namespace="shop")
        ray.get([h.add.remote(f"d{i}") for i in range(20)])
        old = chaos.kill_replica(h, "primary")
        ray.get([h.add.remote(f"e{i}") for i in range(20)])
        tokens = ray.get(h.read.remote())
        info = ftactors.describe(h)
        ftactors.shutdown(h)
        try:
            ftactors.get_actor("orders", namespace="shop")
            found = True
        except ValueError:
            found = False
        print("RESULT", json.dumps({"tokens": tokens, "failovers": info.counts["failovers"],
                                    "old": old.replica_id, "new": info.primary.replica_id, "found": found}))
    ''')
    out = result(user)
    expected = [f"c{i}" for i in range(10)] + [f"d{i}" for i in range(20)] + [f"e{i}" for i in range(20)]
    assert out["tokens"] == expected  # nothing lost, nothing applied twice, across the failover
    assert out["failovers"] >= 1 and out["new"] != out["old"]
    assert out["found"] is False  # shut down: get_actor no longer finds it
    assert missing("orders", "shop")  # nor from this driver
    assert names_left("orders", "shop") == []  # no replica left behind


def test_names_are_unique_per_namespace_and_get_if_exists_returns_the_group(ray_local):
    Cls = ftactors.replicated(replicas=2)(Ledger)
    h = Cls.options(name="unique").remote()
    try:
        ray.get(h.add.remote("a"))
        with pytest.raises(ValueError, match="already exists"):
            Cls.options(name="unique").remote()
        again = Cls.options(name="unique", get_if_exists=True).remote()
        assert ray.get(again.add.remote("b")) == 2  # the same group, not a second one
        found = ftactors.get_actor("unique")  # the current job's namespace, as with ray.get_actor
        assert ray.get(found.read.remote()) == ["a", "b"]
        other = Cls.options(name="unique", namespace="elsewhere").remote()  # names are per namespace
        assert ray.get(other.read.remote()) == []
        ftactors.shutdown(other)
    finally:
        ftactors.shutdown(h)
    assert missing("unique")
    h2 = Cls.options(name="unique").remote()  # the name is free again
    assert ray.get(h2.read.remote()) == []
    ftactors.shutdown(h2)
    with pytest.raises(ValueError, match="no replicated group named 'nothing'"):
        ftactors.get_actor("nothing", namespace="shop")
    with pytest.raises(ftactors.ConfigError, match="lifetime"):
        Cls.options(lifetime="forever")
    with pytest.raises(ftactors.ConfigError, match="get_if_exists"):
        Cls.options(get_if_exists=True)
    with pytest.raises(ftactors.ConfigError, match="max_restarts"):
        Cls.options(max_restarts=3)


def test_status_lists_groups_of_every_namespace_with_namespace_and_lifetime(ray_local):
    from rich.console import Console

    from ftactors.status import collect, render

    Cls = ftactors.replicated(replicas=2)(Ledger)
    a = Cls.options(name="stat-a", namespace="team-a", lifetime="detached").remote()
    b = Cls.options(name="stat-b").remote()
    try:
        def answered():  # a router still starting (slow under load) gives an error row meanwhile
            rows = {r["group"]: r for r in collect()}
            return rows if all(g in rows and "error" not in rows[g] for g in ("stat-a", "stat-b")) else None

        rows = wait_for(answered, timeout_s=90, what="both groups' routers to answer ftactors status")
        assert rows["stat-a"]["namespace"] == "team-a" and rows["stat-a"]["lifetime"] == "detached"
        # the namespace as get_actor takes it: this job's own
        assert rows["stat-b"]["namespace"] == ray.get_runtime_context().namespace
        assert rows["stat-b"]["lifetime"] == "non_detached"
        console = Console(record=True, width=160)
        render(list(rows.values()), console)
        text = console.export_text()
        header = next(line for line in text.splitlines() if "namespace" in line)
        assert "lifetime" in header
        assert any("stat-a" in line and "team-a" in line and "detached" in line for line in text.splitlines())
    finally:
        ftactors.shutdown(a)
        ftactors.shutdown(b)


#: What Ray printed, before, while a group ran, failed over, re-replicated and had its router restarted.
NOISE = ("anonymous namespace", "constructor arguments in the object store", "will be retried")


def test_console_stays_quiet_through_failover_rereplication_and_router_restart(session):
    proc = run_driver(session, '''
        from ftactors import chaos

        @ftactors.replicated(replicas=3)
        class Counter:
            def __init__(self):
                self.n = 0
            def add(self):
                self.n += 1
                return self.n
            def slow(self, s):
                time.sleep(s)
                return self.n

        def until(pred, timeout=120):
            end = time.time() + timeout
            while time.time() < end:
                try:
                    if pred():
                        return
                except Exception:
                    pass
                time.sleep(0.1)
            raise SystemExit("timed out")

        h = Counter.remote()
        assert ray.get([h.add.remote() for _ in range(100)])[-1] == 100
        first = {r.replica_id for r in ftactors.describe(h).replicas}
        chaos.kill_replica(h, "primary")
        ray.get([h.add.remote() for _ in range(20)])
        until(lambda: (lambda i: len(i.replicas) == 3 and not i.joining
                       and {r.replica_id for r in i.replicas} != first)(ftactors.describe(h)))
        slow = h.slow.remote(1.0)
        inflight = [h.add.remote() for _ in range(50)]  # in flight at the kill
        chaos.kill_router(h)
        inflight += [h.add.remote() for _ in range(50)]
        try:
            done = ray.get(inflight, timeout=180)
        except ray.exceptions.GetTimeoutError:  # say where the group is stuck
            _, stuck = ray.wait(inflight, num_returns=len(inflight), timeout=0)
            print("STUCK", len(stuck), ftactors.describe(h, timeout_s=10), flush=True)
            raise
        assert sorted(done) == list(range(121, 221))  # each once
        ray.get(slow)
        until(lambda: ftactors.describe(h).phase == "normal")
        ftactors.shutdown(h)
        time.sleep(2)  # Ray forwards other processes' output asynchronously
        print("RESULT", json.dumps({"ok": True}))
    ''')
    assert result(proc) == {"ok": True}
    output = proc.stdout + proc.stderr
    for noise in NOISE:
        assert noise not in output, f"{noise!r} printed:\n{output[-4000:]}"
    # ftactors's own actors print nothing at their default level (view changes are INFO lines)
    assert "(_AsyncRouter" not in output and "(_Replica" not in output, output[-4000:]


def test_counters_survive_a_router_restart(ray_local):
    h = ftactors.replicated(replicas=3)(Ledger).remote()
    try:
        ray.get([h.add.remote(f"a{i}") for i in range(50)])
        chaos.kill_replica(h, "primary")
        ray.get([h.add.remote(f"b{i}") for i in range(20)])
        wait_for(lambda: ftactors.describe(h).phase == "normal", what="the failover to end")
        before = ftactors.describe(h).counts
        assert before["failovers"] == 1 and before["requests"] >= 70
        old = chaos.kill_router(h)
        ray.get([h.add.remote(f"c{i}") for i in range(20)])
        assert chaos.router_pid(h) != old
        after = ftactors.describe(h).counts
        for name in ("failovers", "view_changes", "requests", "replies"):
            assert after[name] >= before[name], (name, before, after)
        # the next failover is counted on top of the earlier ones
        chaos.kill_replica(h, "primary")
        ray.get(h.add.remote("d"))
        wait_for(lambda: ftactors.describe(h).counts["failovers"] == 2, what="the second failover counted")
        assert len(ray.get(h.read.remote())) == 91
    finally:
        ftactors.shutdown(h)


def test_group_namespace_keeps_named_namespaces_and_renames_anonymous_ones(ray_local):
    from ftactors.runtime.api import group_namespace, user_namespace

    assert group_namespace("shop") == "shop"
    anon = "0bd64914-ef90-47ce-8c22-ce6af30ed706"
    assert group_namespace(anon) == "ftactors-" + anon and user_namespace("ftactors-" + anon) == anon
    assert user_namespace("shop") == "shop"


#: The start of Ray's warning for a detached actor created in an anonymous namespace (printed by the raylet).
RAY_ANONYMOUS = "It looks like you're creating a detached actor in an anonymous namespace"


def test_a_detached_group_in_an_anonymous_namespace_warns_once_as_ray_does(session):
    """Ray warns once when a driver without ``namespace=`` creates a detached actor: no other driver
    can reach it unless it connects to that namespace, which the warning names. A detached group there
    is as unreachable (``ftactors-<uuid>``, which only ``get_actor`` with that UUID translates), and
    ftactors printed nothing. A named namespace or a group that is not detached: no warning."""
    proc = run_driver(session, prelude=LEDGER, body='''
        ns = ray.get_runtime_context().namespace
        @ray.remote
        class Plain:
            def add(self, token):
                return 1
        plain = Plain.options(name="plain-anon", lifetime="detached").remote()
        ray.get(plain.add.remote("p"))
        quiet = [Ledger.options(name="anon-attached").remote(),
                 Ledger.options(name="named-ns", namespace="shop", lifetime="detached").remote()]
        h = Ledger.options(name="anon-detached", lifetime="detached").remote()
        ray.get([h.add.remote("a")] + [q.add.remote("q") for q in quiet])
        found = ftactors.get_actor("anon-detached", namespace=ns).group
        for g in [h] + quiet:
            ftactors.shutdown(g)
        ray.kill(plain)
        print("RESULT", json.dumps({"ns": ns, "found": found}))
    ''')
    out = result(proc)
    text = proc.stdout + proc.stderr
    assert text.count(RAY_ANONYMOUS) == 1, text[-3000:]  # Ray's, for the plain actor
    ours = [ln for ln in text.splitlines() if "detached replicated group" in ln and "anonymous namespace" in ln]
    assert len(ours) == 1, text[-3000:]
    assert "anon-detached" in ours[0] and f'ray.init(namespace="{out["ns"]}", ...)' in ours[0], ours
    assert f'ftactors.get_actor("anon-detached", namespace="{out["ns"]}")' in ours[0], ours
    assert out["found"] == "anon-detached"

"""Integration: the direct data plane between a group's router and its replicas (real Ray, local)."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any, List, Tuple

import pytest
import ray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ftactors
from tests.conftest import converged, wait_for

pytestmark = pytest.mark.ray


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, x: int = 1) -> int:
        self.n += x
        return self.n

    def get(self) -> int:
        return self.n


@pytest.fixture(scope="module")
def counter(ray_local: Any) -> Any:
    h = ftactors.replicated(replicas=3)(ray.remote(Counter)).remote()
    yield h
    ftactors.shutdown(h)


def _members(h: Any) -> List[Any]:
    info = ftactors.describe(h)
    return [info.primary, *info.backups]


def test_calls_travel_on_authenticated_links_bound_to_the_node_ip(counter: Any) -> None:
    assert ray.get([counter.inc.remote() for _ in range(20)])[-1] == 20
    members = _members(counter)
    assert len(members) == 3
    node_ip = ray.util.get_node_ip_address()
    assert all(m.wire_address is not None and m.wire_address[0] == node_ip for m in members)
    # the backups get their copies within relay_after_s; every member took Delivers over its link
    wait_for(lambda: all(m.wire_delivers > 0 for m in _members(counter)), what="Delivers on every link")


def test_a_fuzzer_on_a_replica_port_runs_nothing_and_the_group_answers(counter: Any) -> None:
    before = ray.get(counter.get.remote())
    primary = _members(counter)[0]
    address = primary.wire_address

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.binary(max_size=200), mode=st.sampled_from(["raw", "after-hello", "wrong-proof"]))
    def fuzz(data: bytes, mode: str) -> None:
        s = socket.create_connection(address, timeout=5.0)
        try:
            if mode != "raw":
                s.recv(40, socket.MSG_WAITALL)
            if mode == "wrong-proof":
                s.sendall(os.urandom(64))
            s.sendall(data)
        except OSError:  # the replica dropped it first
            pass
        finally:
            s.close()

    fuzz()
    assert ray.get(counter.get.remote()) == before  # nothing the fuzzer sent executed
    assert ray.get(counter.inc.remote(5)) == before + 5
    wait_for(lambda: converged(counter, 3), what="the group converged")
    after = _members(counter)
    assert [m.replica_id for m in after] == [m.replica_id for m in _members(counter)]
    assert after[0].replica_id == primary.replica_id  # no failover: the group was unharmed
    wait_for(lambda: _members(counter)[0].wire_dropped > 0, what="the fuzzer's connections dropped")


def test_data_plane_ray_falls_back_to_ray_calls(ray_local: Any) -> None:
    h = ftactors.replicated(replicas=2, data_plane="ray")(ray.remote(Counter)).remote()
    try:
        assert ray.get([h.inc.remote() for _ in range(5)])[-1] == 5
        assert all(m.wire_address is None and m.wire_delivers == 0 for m in _members(h))
    finally:
        ftactors.shutdown(h)


def test_large_arguments_and_replies_still_go_through_the_object_store(ray_local: Any) -> None:
    @ray.remote
    class Blob:
        def __init__(self) -> None:
            self.size = 0

        def put(self, data: bytes) -> int:
            self.size += len(data)
            return self.size

        def big(self, n: int) -> bytes:
            return b"y" * n

    h = ftactors.replicated(replicas=2, large_arg_bytes=1000)(Blob).remote()
    try:
        assert ray.get(h.put.remote(b"x" * 200_000)) == 200_000
        assert len(ray.get(h.big.remote(300_000))) == 300_000
        wait_for(lambda: converged(h, 2), what="the group converged")
    finally:
        ftactors.shutdown(h)


class Store:
    def __init__(self) -> None:
        self.items: List[str] = []

    def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    def all(self) -> List[str]:
        return list(self.items)


def test_checkpoints_in_the_object_store_reach_the_backups_and_survive_a_failover(ray_local: Any) -> None:
    """Passive: a checkpoint over large_arg_bytes is put in the object store; the primary's answer
    holding it is parked (it never goes on the wire) and fetched with a Ray call, and the
    backups get it through Ray calls too. A backup that takes over restores it."""
    import signal

    h = ftactors.replicated(replicas=2, style="passive", checkpoint_every=5, large_arg_bytes=1000)(
        ray.remote(Store)).remote()
    try:
        items = [f"item-{i:04d}-" + "x" * 100 for i in range(40)]
        for it in items:
            ray.get(h.add.remote(it))
        wait_for(lambda: ftactors.describe(h).counts.get("checkpoints", 0) >= 2, what="checkpoints")
        primary = _members(h)[0]
        assert primary.wire_delivers > 0 and primary.wire_parked > 0  # the checkpoints' answers
        os.kill(primary.pid, signal.SIGKILL)
        assert ray.get(h.all.remote(), timeout=60) == items
        assert ray.get(h.add.remote("after"), timeout=60) == len(items) + 1
    finally:
        ftactors.shutdown(h)


def test_a_hung_primary_is_suspected_by_its_links_heartbeats_failed_over_and_fenced(ray_local: Any) -> None:
    """SIGSTOP the primary under load: its link goes silent (no close: the process exists), the router
    misses heartbeat_misses_max heartbeats and suspects it, long before the core's failure timeout;
    calls go on after the failover, none lost, none twice. SIGCONT: the deposed primary answers
    nothing a caller sees (its late output, awaited on its retiring link, is fenced off by view);
    then it is killed by pid."""
    import threading
    import time

    interval_s, misses = 0.1, 3
    failure_timeout_s = 30.0  # the core's own silence timeout: far above what the heartbeats take
    h = ftactors.replicated(replicas=3, heartbeat_interval_s=interval_s, heartbeat_misses_max=misses,
                            heartbeat_s=5.0, failure_timeout_s=failure_timeout_s)(ray.remote(Counter)).remote()
    pid = 0
    try:
        assert ray.get([h.inc.remote() for _ in range(20)])[-1] == 20
        wait_for(lambda: converged(h, 3), what="the group converged")
        old = _members(h)[0]
        pid = old.pid
        done: List[Tuple[float, int]] = []
        errors: List[BaseException] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    done.append((time.monotonic(), ray.get(h.inc.remote(), timeout=60)))
                except BaseException as exc:  # a lost call
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: len(done) >= 20, what="calls under load")
        stopped_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: _members(h)[0].replica_id != old.replica_id, timeout_s=failure_timeout_s / 2,
                 what="a failover")
        failover_s = time.monotonic() - stopped_at
        wait_for(lambda: sum(1 for t, _ in done if t > stopped_at + failover_s) >= 20, what="calls after the failover")
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        # the longest wait a caller saw: the heartbeats' suspicion plus the recovery
        times = [stopped_at] + sorted(t for t, _ in done if t > stopped_at)
        stall_s = max(b - a for a, b in zip(times, times[1:]))
        bound_s = (misses + 1) * interval_s + 3.0
        print(f"hung primary: failover seen after {failover_s:.2f} s, longest caller wait {stall_s:.2f} s "
              f"(suspicion after {(misses + 1) * interval_s:.1f} s of silence; bound {bound_s:.1f} s)")
        assert stall_s < bound_s < failure_timeout_s
        counts = ftactors.describe(h).counts
        assert counts.get("link_heartbeat_suspicions", 0) >= 1, counts
        values = [v for _, v in done]
        assert len(set(values)) == len(values) and sorted(values) == list(range(21, 21 + len(values)))  # 0 twice/lost

        fenced = counts.get("fenced", 0)
        os.kill(pid, signal.SIGCONT)  # the deposed primary runs again: it must answer nothing
        total = 20 + len(values)
        for i in range(1, 21):
            assert ray.get(h.inc.remote(), timeout=60) == total + i
            time.sleep(0.02)
        assert ray.get(h.get.remote(), timeout=60) == total + 20
        # its link was kept for its late output: what it sent in its old view was dropped by the router
        wait_for(lambda: ftactors.describe(h).counts.get("fenced", 0) > fenced,
                 what="the resumed primary's output fenced off")
        assert old.replica_id not in [m.replica_id for m in _members(h)]
        wait_for(lambda: converged(h, 3), what="the group re-replicated and converged")
    finally:
        if pid:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        ftactors.shutdown(h)

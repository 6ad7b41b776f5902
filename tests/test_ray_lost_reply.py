"""Ray: a backup whose pulled nested reply is gone at the callee is resynced (docs/faults.md, row 47).

A frontend backup is stopped while its primary runs calls that each make a nested call to a store
keeping one reply (``reply_cache_max=1``); the frontend's router is killed, so the reply copies it
held for the stopped backup are lost; continued, the backup replays those calls and pulls each
reply from the store's router, which reads it "expired". Before the fix the backup's method got
``ReplyUnavailableError`` (an error the primary never saw) and its state diverged; now the
backup gives the step up and the router repairs it by state transfer.
"""

from __future__ import annotations

from typing import Any

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import converged, wait_for

pytestmark = pytest.mark.ray

CALLS = 6


class Store:
    def __init__(self) -> None:
        self.n = 0

    def add(self, token: str) -> int:
        self.n += 1
        return self.n


class Frontend:
    """Records the token before its nested call (a step given up half way changes the state) and
    what the store answered, or the error it raised."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.seen: list = []

    def add(self, token: str) -> Any:
        self.seen.append(token)
        try:
            value = ray.get(self.store.add.remote(token))
        except Exception as exc:  # the backup's method before the fix: an error the primary never saw
            value = type(exc).__name__
        self.seen.append(value)
        return value

    def read(self) -> list:
        return list(self.seen)


class AsyncFrontend(Frontend):
    """The same in an async method: a backup's step suspends on the nested call and pulls its reply
    at the step that resumes the call (``PendingReply``)."""

    async def add(self, token: str) -> Any:  # type: ignore[override]
        self.seen.append(token)
        try:
            value = await self.store.add.remote(token)
        except Exception as exc:
            value = type(exc).__name__
        self.seen.append(value)
        return value


class AsyncBlockingFrontend(Frontend):
    """The same in an async method that waits for its nested call with a blocking ``ray.get`` (not
    ``await``): a backup resolves what it was handed at once, to the copy or a pull (docs/faults.md
    row 53; before, a pull read gone reached the method as ``ReplyUnavailableError``)."""

    async def add(self, token: str) -> Any:  # type: ignore[override]
        self.seen.append(token)
        try:
            value = ray.get(self.store.add.remote(token))
        except Exception as exc:
            value = type(exc).__name__
        self.seen.append(value)
        return value


@pytest.mark.parametrize("cls", [Frontend, AsyncFrontend, AsyncBlockingFrontend], ids=["sync", "async", "async-ray-get"])
def test_a_backup_whose_pulled_nested_reply_is_gone_is_resynced_by_state_transfer(ray_local: Any, cls: type) -> None:
    store = ftactors.replicated(replicas=2, reply_cache_max=1)(Store).remote()
    # the stopped backup must lag, not be suspected: neither Ray's pings nor the link's heartbeats
    front = ftactors.replicated(replicas=2, failure_timeout_s=120.0, heartbeat_s=1.0, heartbeat_interval_s=1.0,
                                heartbeat_misses_max=120)(cls).remote(store)
    victim = None
    try:
        assert ray.get(front.add.remote("t0")) == 1
        wait_for(lambda: converged(front, 2), what="the frontend converged")
        victim = chaos.pause_replica(front, "backup", 0)              # SIGSTOP: it lags
        assert [ray.get(front.add.remote(f"t{i}")) for i in range(1, CALLS + 1)] == list(range(2, CALLS + 2))
        chaos.kill_router(front)                                       # the copies it held are lost
        pid, victim = victim.pid, None
        chaos.resume(pid)                                              # it replays: it pulls every reply
        wait_for(lambda: converged(front, 2), timeout_s=60.0, what="the frontend's replicas agree")
        stats = ftactors.stats(front)
        assert stats["lost_replies"] >= 1 and stats["resyncs"] >= 1, stats
        assert pid in {b.pid for b in ftactors.describe(front).backups}, "resynced in place, still a member"
        expected = [x for i in range(CALLS + 1) for x in (f"t{i}", i + 1)]
        assert ray.get(front.read.remote()) == expected
        assert ray.get(front.add.remote("last")) == CALLS + 2
        wait_for(lambda: converged(front, 2), what="the frontend's replicas agree after a later call")
    finally:
        if victim is not None:
            chaos.resume(victim.pid)
        ftactors.shutdown(front)
        ftactors.shutdown(store)

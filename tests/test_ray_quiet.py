"""Integration: what ftactors does on purpose does not look like a crash on the user's console."""

from __future__ import annotations

import pytest
import ray

import ftactors
from tests.conftest import wait_for

pytestmark = pytest.mark.ray


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def _actor_entry(actor_id: str) -> dict:
    from ray._private import state

    return state.actors(actor_id)


def test_a_retired_replica_exits_as_intended_not_as_a_crash(ray_local):
    """A replica the router retires (a false suspicion, a deposed primary, a spare it gave up on)
    must leave as an intended exit. Exiting with ``os._exit`` made Ray record a SYSTEM_ERROR death
    and the raylet print "A worker died or was killed while executing a task by an unexpected
    system error ... killed by the OOM killer ..." on the driver's console, for nothing that failed.
    """
    h = ftactors.replicated(replicas=3)(Counter).remote()
    try:
        assert ray.get(h.add.remote(1)) == 1
        backup = ftactors.describe(h).backups[0]
        actor_id = backup.actor._actor_id.hex()
        backup.actor.retire.remote()
        entry = wait_for(lambda: (lambda e: e if e["State"] == "DEAD" else None)(_actor_entry(actor_id)),
                         what="the retired replica to be dead")
        cause = str(entry.get("DeathCause", ""))
        assert "SYSTEM_ERROR" not in cause and "INTENDED" in cause, cause
    finally:
        ftactors.shutdown(h)

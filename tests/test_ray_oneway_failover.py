"""Integration: a one-way nested call survives the failure of the primary that sent it (docs/faults.md,
row 54)."""

from __future__ import annotations

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import converged, wait_for
from tests.test_ray_nested import OnewayFront, PaddedStore, _slow_argument_fetch

pytestmark = pytest.mark.ray


def _backup_checkpoint(front) -> int:
    (backup,) = [r for r in ftactors.describe(front).replicas if r.role == "backup"]
    return ray.get(backup.actor.info.remote())["checkpoint_position"]


def test_a_one_way_nested_call_whose_primary_dies_before_the_callees_router_took_it_takes_effect_once(ray_local):
    """The front's primary sends a one-way nested call whose argument (by reference, past
    ``large_arg_bytes``) the store's router fetches slowly (8 s); its checkpoint, which covers the
    calling message, reaches the passive backup; the primary is SIGKILLed while the store's router
    still fetches: the argument, owned by the dead process, is gone, and the promoted backup does not
    run the calling message again. Before row 54 nobody sent the call again: it never took effect
    (``timed out ... the one-way call to take effect``). Now the promoted primary sends it again (by
    value): it takes effect once."""
    store = ftactors.replicated(replicas=2, large_arg_bytes=1000)(PaddedStore).remote()
    front = ftactors.replicated(replicas=2, style="passive", checkpoint_every=1)(OnewayFront).remote(store)
    try:
        ray.get(store.add.remote("warm"))
        ray.get(store._router.__ray_call__.remote(_slow_argument_fetch, 8.0))
        assert ray.get(front.send_oneway.remote("oneway", "x" * 2000)) == "oneway"
        assert ftactors.describe(front).primary.oneway_out == 1  # the store's router still fetches
        wait_for(lambda: _backup_checkpoint(front) >= 1, timeout_s=3, what="the backup's checkpoint")
        chaos.kill_replica(front, "primary")
        # a later call makes the front's router find its primary dead and promote the backup
        assert ray.get(front.add.remote("after")) >= 2
        wait_for(lambda: "oneway" in ray.get(store.read.remote())["tokens"], timeout_s=30,
                 what="the one-way call to take effect")
        wait_for(lambda: ftactors.describe(front).primary.oneway_out == 0, timeout_s=30,
                 what="the re-sent call's invoke to return")
        primary = ftactors.describe(front).primary
        assert ray.get(primary.actor.info.remote())["counts"]["oneway_resent"] == 1
        tokens = ray.get(store.read.remote())["tokens"]
        assert tokens.count("oneway") == 1, tokens
        assert tokens.count("after") == 1, tokens
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


def test_a_promoted_backup_does_not_re_send_the_one_way_calls_its_primary_learnt_taken(ray_local):
    """docs/faults.md row 69. The front's primary sends 5 one-way nested calls and learns each taken
    (its invoke returned); a later call's Deliver to the backup carries their ids (``Deliver.oneway_taken``).
    The primary is SIGKILLed: the promoted backup re-sends none of them. Before row 69 a backup never
    learnt "taken" and the new primary re-sent all 5 (``oneway_resent`` 5; the store dropped the
    duplicates)."""
    store = ftactors.replicated(replicas=2)(PaddedStore).remote()
    front = ftactors.replicated(replicas=2)(OnewayFront).remote(store)
    try:
        tokens = [f"o{i}" for i in range(5)]
        assert [ray.get(front.send_oneway.remote(t, "x")) for t in tokens] == tokens
        wait_for(lambda: set(tokens) <= set(ray.get(store.read.remote())["tokens"])
                 and ftactors.describe(front).primary.oneway_out == 0, timeout_s=30,
                 what="the one-way calls taken and known taken at the primary")
        assert ray.get(front.add.remote("before")) >= 6  # its announcement carries the taken calls to the backup
        wait_for(lambda: converged(front, 2), timeout_s=30, what="the backup ran the later call")
        chaos.kill_replica(front, "primary")
        assert ray.get(front.add.remote("after")) >= 7
        primary = ftactors.describe(front).primary
        assert ray.get(primary.actor.info.remote())["counts"]["oneway_resent"] == 0
        seen = ray.get(store.read.remote())["tokens"]
        assert [seen.count(t) for t in tokens + ["before", "after"]] == [1] * 7, seen
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)

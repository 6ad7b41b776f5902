"""Integration: a replicated actor calling another replicated actor (nested invocation)."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.conftest import converged, wait_for
from tests.test_ray_failover import Counter, Load, check_exactly_once

pytestmark = pytest.mark.ray


class Store(Counter):
    """The failover tests' counter, with a method that raises and a slow one."""

    def refuse(self, token: str) -> int:
        raise KeyError(f"refused {token}")

    def slow_add(self, token: str, delay_s: float) -> int:
        time.sleep(delay_s)
        return self.add(token)


class Frontend:
    """Every call makes one nested call to the store and records what it answered."""

    def __init__(self, store) -> None:
        self.store = store
        self.seen: list = []

    def add(self, token: str) -> int:
        value = ray.get(self.store.add.remote(token))
        self.seen.append((token, value))
        return value

    def add_refused(self, token: str) -> str:
        """A nested call that raises: the caller catches it by the callee's exception type."""
        try:
            ray.get(self.store.refuse.remote(token))
        except KeyError as exc:
            self.seen.append((token, type(exc.args[0]).__name__ + ":" + str(exc.args[0])))
            return "refused"
        return "accepted"

    def read(self) -> dict:
        return {"n": len(self.seen), "tokens": [t for t, _ in self.seen]}


class AsyncFrontend:
    """An async method whose nested call outlasts the primary's hold of its Deliver (``heartbeat_s``)."""

    def __init__(self, store) -> None:
        self.store = store
        self.seen: list = []

    async def add_slowly(self, token: str, delay_s: float) -> int:
        value = await self.store.slow_add.remote(token, delay_s)
        self.seen.append((token, value))
        return value

    async def add_nap_then_get(self, token: str, nap_s: float, delay_s: float) -> int:
        """A blocking ``ray.get`` of the nested call, after the call slept once (a backup's start
        step ran before the reply was in)."""
        ref = self.store.slow_add.remote(token, delay_s)
        await asyncio.sleep(nap_s)
        value = ray.get(ref)
        self.seen.append((token, value))
        return value


def build(style: str, **settings):
    store = ftactors.replicated(replicas=3, style=style, checkpoint_every=10, **settings)(Store).remote()
    front = ftactors.replicated(replicas=3, style=style, checkpoint_every=10, **settings)(Frontend).remote(store)
    return store, front


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_nested_calls_take_effect_once_with_backups_using_reply_copies(ray_local, style):
    store, front = build(style)
    try:
        results = [ray.get(front.add.remote(f"t{i}")) for i in range(10)]
        assert results == list(range(1, 11))
        ray.get(front.add.remote("last"))
        # semi-active frontend backups re-execute add(): they must not call the store again
        # semi-active: with equal state digests; passive: at the same position
        wait_for(lambda: converged(front, 3), what="frontend backups to catch up")
        assert ray.get(store.read.remote())["tokens"] == [f"t{i}" for i in range(10)] + ["last"]
        # claims 66/67: the store's replies carried its announcements to the frontend, whose
        # later nested requests carried them back to the store's router (and on to its backups)
        assert ftactors.describe(store).counts["announcements_carried_back"] >= 5
        # issue 11: the frontend's primary pushed every reply copy to its backups on the Delivers
        # that went anyway; no backup pulled one from the store's router (claim 48)
        assert ftactors.stats(store)["reply_copies"] == 0, "a frontend backup pulled a reply copy"
        front_counts = ftactors.stats(front)
        assert front_counts["reply_copies_pushed"] >= 2 * 11
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


def test_a_nested_call_that_raised_is_pushed_to_the_backups_with_its_exception_type(ray_local):
    """Errors travel as reply copies too: the frontend's backups re-execute ``add_refused`` and
    catch the store's ``KeyError`` from the pushed copy, without pulling it from the store's router."""
    store, front = build("semi-active")
    try:
        assert [ray.get(front.add_refused.remote(f"r{i}")) for i in range(6)] == ["refused"] * 6
        ray.get(front.add.remote("last"))
        wait_for(lambda: converged(front, 3), what="frontend backups to catch up with equal state")
        assert ftactors.stats(store)["reply_copies"] == 0, "a frontend backup pulled a raised reply"
        assert ftactors.stats(front)["reply_copies_pushed"] >= 2 * 7
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


def backup_counts(handle) -> list:
    """Each backup's own counters (``ReplicaCore.counts``: copies taken, copies pulled)."""
    return [ray.get(b.actor.info.remote(), timeout=30)["counts"] for b in ftactors.describe(handle).backups]


def test_an_async_backup_ahead_of_its_copy_does_not_pull(ray_local):
    """An async nested call slower than ``heartbeat_s``: the primary answers its held Deliver with the
    start step's announcement before the reply is in, and the backups run the start step first. Their
    method is handed an awaitable the pushed copy completes when the resume step comes (docs/faults.md
    row 35); before, each backup pulled the reply from the store's router (``assert 6 == 0``)."""
    store = ftactors.replicated(replicas=3)(Store).remote()
    front = ftactors.replicated(replicas=3)(AsyncFrontend).remote(store)
    try:
        assert [ray.get(front.add_slowly.remote(f"s{i}", 0.6)) for i in range(3)] == [1, 2, 3]
        wait_for(lambda: converged(front, 3), what="frontend backups to catch up")
        assert ftactors.stats(store)["reply_copies"] == 0, "an async frontend backup pulled a reply copy"
        assert [c.get("reply_copies_used") for c in backup_counts(front)] == [3, 3]
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


def test_an_async_backup_ahead_of_its_copy_can_still_ray_get_the_nested_call(ray_local):
    """The stand-in a backup's async method is handed (docs/faults.md row 35) also works with a blocking
    ``ray.get`` after the method slept past ``heartbeat_s``: the copy came with the resume step, no pull."""
    store = ftactors.replicated(replicas=3)(Store).remote()
    front = ftactors.replicated(replicas=3)(AsyncFrontend).remote(store)
    try:
        assert [ray.get(front.add_nap_then_get.remote(f"n{i}", 0.6, 0.9)) for i in range(2)] == [1, 2]
        wait_for(lambda: converged(front, 3), what="frontend backups to catch up with equal state")
        assert ftactors.stats(store)["reply_copies"] == 0, "an async frontend backup pulled a reply copy"
        assert [c.get("reply_copies_used") for c in backup_counts(front)] == [2, 2]
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


class Watcher:
    """Calls a group that may be gone, and records what each call raised."""

    def __init__(self, store) -> None:
        self.store = store
        self.seen: list = []

    def add(self, token: str) -> str:
        try:
            ray.get(self.store.add.remote(token))
        except Exception as exc:
            self.seen.append((token, type(exc).__name__))
            return type(exc).__name__
        self.seen.append((token, "ok"))
        return "ok"

    async def add_async(self, token: str) -> str:
        try:
            await self.store.add.remote(token)
        except Exception as exc:
            self.seen.append((token, type(exc).__name__))
            return type(exc).__name__
        self.seen.append((token, "ok"))
        return "ok"


def test_a_nested_call_to_a_group_that_is_gone_is_pushed_as_the_error_the_primary_got(ray_local):
    """The callee group was shut down: the nested call itself fails (``ActorDiedError`` at the
    primary's ``ray.get``, no method raised). The primary pushes that error as the reply copy, and the
    backups' code raises it, same type, without pulling it from the (dead) callee's router
    (docs/faults.md row 36); before, every backup pulled it (``reply_copies_used`` stayed 0)."""
    store = ftactors.replicated(replicas=3)(Store).remote()
    front = ftactors.replicated(replicas=3)(Watcher).remote(store)
    try:
        assert ray.get(front.add.remote("before")) == "ok"
        ftactors.shutdown(store)
        errors = [ray.get(front.add.remote(f"g{i}")) for i in range(3)]
        errors += [ray.get(front.add_async.remote(f"a{i}")) for i in range(3)]
        assert errors == ["ActorDiedError"] * 6
        wait_for(lambda: converged(front, 3), what="frontend backups to catch up with equal state")
        counts = backup_counts(front)
        assert [c.get("reply_copies_pulled", 0) for c in counts] == [0, 0], counts
        assert [c.get("reply_copies_used") for c in counts] == [7, 7], counts
    finally:
        ftactors.shutdown(front)


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_nested_calls_under_load_cost_no_extra_message(ray_local, style):
    """Issue 11: under load, a call that makes a nested call costs no message beyond the
    unreplicated ones: reply copies ride to the frontend's backups, nothing is pulled from the
    store's router, and no null message goes while calls keep coming. "Keep coming" is within
    ``null_message_after_s`` of each other: at load 25-40 the two callers' calls reached the front's
    router 0.1-1.2 s apart (each nested call that slow), and every null message the router sent went
    after such a silence, as the rule says; so the announcements wait up to 2 s for a ride here, and
    must ride on the request copies (``announcements_piggybacked``)."""
    store, front = build(style, null_message_after_s=2.0)
    try:
        with Load(front, threads=2) as load:
            load.wait_calls(60)
            during = ftactors.stats(front)
            load.wait_calls(120)
            after = ftactors.stats(front)
        assert ftactors.stats(store)["reply_copies"] == 0, "a frontend backup pulled a reply copy"
        assert after["reply_copies_pushed"] > during["reply_copies_pushed"]
        assert after["null_messages"] - during["null_messages"] == 0
        assert after["announcements_piggybacked"] > during["announcements_piggybacked"]
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


@pytest.mark.parametrize("victim", ["front", "store"])
def test_primary_kill_in_either_group_loses_and_duplicates_nothing(ray_local, victim):
    store, front = build("semi-active")
    try:
        with Load(front, threads=2) as load:
            load.wait_calls(30)
            chaos.kill_replica(front if victim == "front" else store, "primary")
            load.wait_calls(60)
        check_exactly_once(front, load)
        # the store took every frontend call exactly once, in the frontend's order
        front_tokens = ray.get(front.read.remote())["tokens"]
        store_tokens = ray.get(store.read.remote())["tokens"]
        assert len(store_tokens) == len(set(store_tokens)), "a nested call took effect twice"
        assert store_tokens == front_tokens
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


class OnewayFront:
    """Sends a one-way nested call to the store (its argument padded past ``large_arg_bytes``), or
    makes a synchronous one."""

    def __init__(self, store) -> None:
        self.store = store

    def send_oneway(self, token: str, pad: str) -> str:
        self.store.add_padded.options(oneway=True).remote(token, pad)
        return token

    def add(self, token: str) -> int:
        return ray.get(self.store.add.remote(token))


class PaddedStore(Store):
    def add_padded(self, token: str, pad: str) -> int:
        return self.add(token)


def _slow_argument_fetch(shell, delay_s: float) -> None:
    """In the router's process: fetching an argument passed by reference takes ``delay_s`` (a loaded
    node); the caller's calls that pass theirs by value go on meanwhile."""
    loop = shell.r
    own = loop._own_argument

    async def own_late(req):
        await asyncio.sleep(delay_s)
        return await own(req)

    loop._own_argument = own_late


def _held_argument_fetch(shell) -> None:
    """In the router's process: fetching an argument passed by reference waits until the test calls
    :func:`_release_argument_fetch` (a loaded node's slow fetch); the caller's calls that pass theirs
    by value go on meanwhile. Was a 4 s delay: at load 45 the 10 later calls took longer, and the
    one-way call came before the last of them (``At index 8 diff: 11 != 10``)."""
    loop = shell.r
    own = loop._own_argument
    shell.fetch_released = False

    async def own_late(req):
        while not shell.fetch_released:  # the router's loop goes on; the test releases it
            await asyncio.sleep(0.01)
        return await own(req)

    loop._own_argument = own_late


def _release_argument_fetch(shell) -> None:
    """In the router's process: the held fetch (:func:`_held_argument_fetch`) goes on."""
    shell.fetch_released = True


def test_a_one_way_nested_call_arriving_after_later_calls_sources_passed_sources_max_takes_effect_once(ray_local):
    """docs/faults.md row 51. The front's first call sends a one-way nested call whose argument the
    store's router fetches slowly (held until they ran): meanwhile 10 later calls of the driver make their nested calls
    to the store (``sources_max=4``), which forgets their sources; its floor passes the one-way call's
    calling message, finished long before. The front names that message in their ``holds`` until the
    one-way invoke returned, so the call, reaching the store's replicas last, still takes effect, once
    (before: it read "expired" and was dropped as a duplicate, ``assert 0 == 1``)."""
    store = ftactors.replicated(replicas=2, sources_max=4, large_arg_bytes=1000)(PaddedStore).remote()
    # passive: its backups do not run the calls, so only the primary sends the one-way call (a
    # semi-active backup sends its copy, which the router would take by value, not fetching it)
    front = ftactors.replicated(replicas=2, style="passive")(OnewayFront).remote(store)
    try:
        ray.get(store.add.remote("warm"))
        ray.get(store._router.__ray_call__.remote(_held_argument_fetch))
        assert ray.get(front.send_oneway.remote("oneway", "x" * 2000)) == "oneway"
        assert ftactors.describe(front).primary.oneway_out == 1  # held while the store's router fetches
        # the later calls run before it: the one-way call's argument is still being fetched
        assert [ray.get(front.add.remote(f"u{i}")) for i in range(10)] == list(range(2, 12))
        ray.get(store._router.__ray_call__.remote(_release_argument_fetch))
        # the invoke returns once the store answered the one-way call (ran it, or dropped it as a duplicate)
        wait_for(lambda: ftactors.describe(front).primary.oneway_out == 0, timeout_s=20,
                 what="the one-way call's invoke to return")
        wait_for(lambda: converged(store, 2), what="the store's backup to catch up")
        tokens = ray.get(store.read.remote())["tokens"]
        assert tokens.count("oneway") == 1, tokens
        assert tokens.index("oneway") == len(tokens) - 1, tokens  # it came after the later calls
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)


class TwoCallFront:
    """An async method that makes a nested call, waits, and makes a second one; a plain forwarder."""

    def __init__(self, store) -> None:
        self.store = store

    async def two_calls(self, token: str, nap_s: float) -> list:
        first = await self.store.add.remote(f"{token}-1")
        await asyncio.sleep(nap_s)  # later calls of the driver run meanwhile
        second = await self.store.add.remote(f"{token}-2")
        return [first, second]

    async def add(self, token: str) -> int:
        return await self.store.add.remote(token)


def test_an_async_call_waiting_between_its_nested_calls_while_sources_max_passes_it_makes_its_second_call(
        ray_local):
    """docs/faults.md row 60 (simulator seed 6423), on Ray. The front's ``two_calls`` makes its first
    nested call and sleeps; 10 later calls of the driver make theirs meanwhile, naming it held. The
    store (``sources_max=4``) forgets the first call's source, then the later ones': its floor rises
    past the waiting call's subtree. Its second call still runs (before: the floor took that subtree
    for one it had passed, and the call raised ``ReplyUnavailableError``)."""
    store = ftactors.replicated(replicas=2, sources_max=4)(Store).remote()
    front = ftactors.replicated(replicas=2)(TwoCallFront).remote(store)
    try:
        ray.get(store.add.remote("warm"))
        held = front.two_calls.remote("held", 20.0)
        wait_for(lambda: "held-1" in ray.get(store.read.remote())["tokens"], what="the first nested call")
        assert [ray.get(front.add.remote(f"u{i}")) for i in range(10)] == list(range(3, 13))
        assert ray.wait([held], timeout=0)[1] == [held], "two_calls ended before the later calls ran"
        assert ray.get(held, timeout=60) == [2, 13]
        tokens = ray.get(store.read.remote())["tokens"]
        assert tokens == ["warm", "held-1"] + [f"u{i}" for i in range(10)] + ["held-2"]
    finally:
        ftactors.shutdown(front)
        ftactors.shutdown(store)

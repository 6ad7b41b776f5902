"""Integration: a Ray user's first day, fifth pass (docs/faults.md rows 83-86).

What a Ray user tries that the earlier passes did not: a method returning an ``ObjectRef``, a
constructor that raises called many times, a method that ends its process on every replica, and a
handle dropped at once (``ray.get(Cls.remote().m.remote())``) and the group's lifetime after it.
Each test does the same to a plain Ray actor and to a replicated group of the same class, in one
local Ray session, and asks for the same behaviour.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
from typing import Any, Dict, Set, Tuple

import pytest
import ray

import ftactors
from ftactors import chaos
from tests.actors import Broken
from tests.conftest import NotYet, wait_for

pytestmark = pytest.mark.ray


class Refs:
    """Methods that return an ``ObjectRef`` (a ``ray.put`` of their value), sync and async."""

    def __init__(self) -> None:
        self.n = 0

    def put(self, v: int) -> Any:
        self.n += 1
        return ray.put(v * 10)

    async def aput(self, v: int) -> Any:
        await asyncio.sleep(0)
        self.n += 1
        return ray.put(v * 10)

    def count(self) -> int:
        return self.n


class Quits:
    """A method that ends its process: ``os._exit`` (every replica runs it, and dies)."""

    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n

    def crash(self) -> None:
        os._exit(1)


def _error_of(ref: Any) -> BaseException:
    try:
        ray.get(ref, timeout=60)
    except Exception as exc:
        return exc
    raise AssertionError("the call succeeded")


def test_a_method_returning_an_object_ref_gives_the_ref_as_with_ray(ray_local):
    plain = ray.remote(Refs).remote()
    group = ftactors.replicated(replicas=2)(ray.remote(Refs)).remote()
    try:
        for h in (plain, group):
            for method in (h.put, h.aput):  # a sync method as an async one
                got = ray.get(method.remote(4), timeout=60)
                assert isinstance(got, ray.ObjectRef), (h, method, got)
                assert ray.get(got, timeout=60) == 40
        assert ray.get(group.count.remote(), timeout=60) == ray.get(plain.count.remote(), timeout=60) == 2
    finally:
        ftactors.shutdown(group)
        ray.kill(plain)


def test_a_constructors_error_is_the_same_at_every_call_and_shows_the_constructors_line(ray_local):
    group = ftactors.replicated(replicas=2)(ray.remote(Broken)).remote(-1)
    try:
        errors = [_error_of(group.ping.remote()) for _ in range(4)]
        for exc in errors:
            assert isinstance(exc, ValueError), exc
            assert "limit must be >= 0, got -1" in str(exc)
        # the same error every time: not one that grows with the router's frames at each call
        assert len({len(str(exc)) for exc in errors}) == 1, [len(str(exc)) for exc in errors]
        text = str(errors[-1])
        assert "in __init__" in text and "raise ValueError" in text, text  # where it was raised
        assert "Broken.__init__()" in text, text  # that it is the constructor, not ping()
    finally:
        ftactors.shutdown(group)


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_a_method_that_ends_its_process_ends_the_group_as_ray_ends_the_actor(ray_local, style):
    other = ftactors.replicated(replicas=2)(ray.remote(Quits)).remote()
    plain = ray.remote(Quits).remote()
    group = ftactors.replicated(replicas=3, style=style)(ray.remote(Quits)).remote()
    try:
        assert ray.get(other.inc.remote(), timeout=60) == 1
        for h in (plain, group):
            assert ray.get(h.inc.remote(), timeout=60) == 1
            crashed = _error_of(h.crash.remote())
            # what a Ray user catches for an actor that died under a call
            assert isinstance(crashed, ray.exceptions.RayActorError), repr(crashed)
            later = _error_of(h.inc.remote())
            assert isinstance(later, ray.exceptions.RayActorError), repr(later)
        # the group's error names the call that did not complete, and the group
        assert "Quits.crash()" in str(crashed) and group.group in str(crashed), str(crashed)
        assert "Quits.inc()" in str(later), str(later)
        assert isinstance(crashed, ftactors.GroupLostError)
        assert ray.get(other.inc.remote(), timeout=60) == 2  # other groups are unharmed
    finally:
        for g in (group, other):
            ftactors.shutdown(g)
        ray.kill(plain)


class Seven:
    def get(self) -> int:
        return 7


def test_a_call_on_a_group_whose_handle_was_dropped_at_once_still_completes(ray_local):
    assert ray.get(ray.remote(Seven).remote().get.remote(), timeout=60) == 7  # Ray: the actor stays for it
    # the one-liner a Ray user writes: the handle is dropped as soon as .remote() returned
    # (outside an assert: pytest's rewriting would keep the handle for its message)
    got = ray.get(ftactors.replicated(replicas=2)(ray.remote(Seven)).remote().get.remote(), timeout=30)
    assert got == 7


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _named(group: str) -> Set[str]:
    """The Ray names of the group's actors still registered (router and replicas)."""
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if f":{group}:" in a["name"]}


def _processes(h: Any) -> Dict[str, int]:
    """The process ids of the group's router and members."""
    pids = {r.replica_id: r.pid for r in ftactors.describe(h).replicas}
    pids["router"] = ray.get(h._router.__ray_call__.remote(lambda _: os.getpid()), timeout=60)
    return pids


def _gone(group: str, pids: Dict[str, int]) -> Any:
    left = {name: pid for name, pid in pids.items() if _alive(pid)}
    named = _named(group)
    return True if not (left or named) else NotYet(f"alive: {left}, named: {sorted(named)}")


def _ray_collected_an_actor() -> None:
    """Wait until Ray collected a plain actor dropped now: what a dropped group's router would be by then."""
    marker = ray.remote(Seven).remote()
    pid = ray.get(marker.__ray_call__.remote(lambda _: os.getpid()), timeout=60)
    del marker
    gc.collect()
    wait_for(lambda: not _alive(pid), timeout_s=60, what="Ray to collect a dropped plain actor")


def _replaced(h: Any, first: Set[str]) -> bool:
    """Whether the group has two members again, one of them a replacement, none joining."""
    info = ftactors.describe(h)
    return len(info.replicas) == 2 and not info.joining and {r.replica_id for r in info.replicas} != first


def test_a_group_whose_handles_are_all_gone_is_collected_as_ray_collects_an_actor(ray_local):
    """Once no handle is left and no call is pending, the router and every replica exit, a replacement
    the router started too (a detached actor), long before ``orphan_timeout_s``."""
    h = ftactors.replicated(replicas=2, orphan_timeout_s=600.0)(ray.remote(Seven)).remote()
    group = h.group
    assert ray.get(h.get.remote(), timeout=60) == 7
    first = {r.replica_id for r in ftactors.describe(h).replicas}
    chaos.kill_replica(h, "backup")
    wait_for(functools.partial(_replaced, h, first), timeout_s=90, what="a replacement replica")
    assert ray.get(h.get.remote(), timeout=60) == 7
    pids = _processes(h)
    assert len(pids) == 3 and all(_alive(p) for p in pids.values()), pids
    del h
    gc.collect()
    wait_for(lambda: _gone(group, pids), timeout_s=60, what="the dropped group's router and replicas to exit")


class Holder:
    """A plain Ray actor keeping a group's handle; it calls the group itself and from a task."""

    def __init__(self, h: Any) -> None:
        self.h = h

    def call(self) -> Tuple[int, int]:
        return ray.get(self.h.get.remote(), timeout=60), ray.get(_call_in_task.remote(self.h), timeout=60)


@ray.remote
def _call_in_task(h: Any) -> int:
    return ray.get(h.get.remote(), timeout=60)


def test_a_copy_of_the_handle_in_an_actor_keeps_the_group_until_that_actor_drops_it(ray_local):
    """A copy passed to an actor (and from there to a task) keeps the group after its creator dropped
    the handle, as a plain actor's handle keeps the actor; then the group goes with the last copy."""
    h = ftactors.replicated(replicas=2, orphan_timeout_s=600.0)(ray.remote(Seven)).remote()
    group = h.group
    holder = ray.remote(Holder).remote(h)
    assert ray.get(holder.call.remote(), timeout=90) == (7, 7)
    pids = _processes(h)
    del h
    gc.collect()
    _ray_collected_an_actor()
    assert ray.get(holder.call.remote(), timeout=90) == (7, 7)  # its replicas were kept too
    assert all(_alive(p) for p in pids.values()), pids
    del holder
    gc.collect()
    wait_for(lambda: _gone(group, pids), timeout_s=60, what="the group to go with the last copy of its handle")


def test_a_named_group_whose_handle_was_dropped_lives_until_shutdown(ray_local):
    """A named group is a service other code finds by name: it stays until ``ftactors.shutdown``
    (or its job's end) with no handle left."""
    h = ftactors.replicated(replicas=2)(ray.remote(Seven)).options(name="kept-seven").remote()
    assert ray.get(h.get.remote(), timeout=60) == 7
    del h
    gc.collect()
    _ray_collected_an_actor()
    found = ftactors.get_actor("kept-seven")
    try:
        assert ray.get(found.get.remote(), timeout=60) == 7
    finally:
        ftactors.shutdown(found)
    assert not _named(found.group)


def test_a_group_dropped_before_any_call_is_collected(ray_local):
    """``Cls.remote()`` alone, its handle dropped at once: the router goes, as Ray collects a plain actor
    created and dropped, maybe before it started; then the replicas it never called, within
    ``orphan_timeout_s`` counted from their start (the creating process keeps them referenced)."""
    group = ftactors.replicated(replicas=2, orphan_timeout_s=2.0)(ray.remote(Seven)).remote().group
    wait_for(lambda: not _named(group) or NotYet(f"named: {sorted(_named(group))}"), timeout_s=90,
             what="the group dropped before any call to go")

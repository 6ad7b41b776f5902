"""Integration: re-entrant calls between async replicated actors complete (issue 12).

A -> B -> A, and a ring A -> B -> C -> A passing a token: a replica must start the re-entrant
call while its first call waits for the nested reply. Each replica steps its coroutines in the
order the primary announced, so the replicas agree by digest; a primary killed in any group of
the ring, in either style, loses no token and applies none twice.
"""

from __future__ import annotations

import os
import signal

import pytest
import ray

import ftactors
from tests.conftest import converged, wait_for

pytestmark = pytest.mark.ray

TIMEOUT_S = 60


class Node:
    """One group of the ring: passes a token on to the next group and records what it saw."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.next = None
        self.seen: list = []  # (token, hops left), in the order this group's steps ran

    def link(self, nxt) -> None:
        self.next = nxt

    async def pass_token(self, token: int, hops: int) -> list:
        self.seen.append((token, hops))
        if hops == 0:
            return [self.name]
        path = await self.next.pass_token.remote(token, hops - 1)
        self.seen.append((token, -hops))  # after the reply: the resume is ordered too
        return [self.name] + path

    def visits(self) -> list:
        return list(self.seen)


def ring(names: str, style: str) -> list:
    cls = ftactors.replicated(replicas=3, style=style, checkpoint_every=5, failure_timeout_s=2.0)(Node)
    nodes = [cls.remote(n) for n in names]
    ray.get([n.link.remote(nodes[(i + 1) % len(nodes)]) for i, n in enumerate(nodes)], timeout=TIMEOUT_S)
    return nodes


def expected_path(names: str, hops: int) -> list:
    return [names[i % len(names)] for i in range(hops + 1)]


def shutdown(nodes: list) -> None:
    for n in nodes:
        ftactors.shutdown(n)


@pytest.mark.parametrize("names", ["AB", "ABC"])
def test_reentrant_calls_complete_and_replicas_agree(ray_local, names):
    nodes = ring(names, "semi-active")
    try:
        hops = 3 * len(names) + 1  # every group is re-entered at least twice per token
        assert ray.get(nodes[0].pass_token.remote(1, hops), timeout=TIMEOUT_S) == expected_path(names, hops)
        # several tokens at once: their steps interleave on every replica
        refs = [nodes[i % len(names)].pass_token.remote(10 + i, hops) for i in range(6)]
        paths = ray.get(refs, timeout=TIMEOUT_S)
        for i, path in enumerate(paths):
            assert path == expected_path(names[i % len(names):] + names[:i % len(names)], hops)
        for n in nodes:
            wait_for(lambda n=n: converged(n, 3), timeout_s=TIMEOUT_S, what="the replicas to agree by digest")
    finally:
        shutdown(nodes)


@pytest.mark.parametrize("victim", [0, 1, 2])
@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_ring_survives_a_primary_kill_in_any_group(ray_local, style, victim):
    names = "ABC"
    nodes = ring(names, style)
    hops = 7
    tokens = 12
    try:
        first = [nodes[i % 3].pass_token.remote(i, hops) for i in range(tokens // 2)]
        ray.get(first[0], timeout=TIMEOUT_S)  # the ring is up and a token went round
        pid = ftactors.describe(nodes[victim]).primary.pid
        os.kill(pid, signal.SIGKILL)
        rest = [nodes[i % 3].pass_token.remote(i, hops) for i in range(tokens // 2, tokens)]
        paths = ray.get(first + rest, timeout=TIMEOUT_S)
        for i, path in enumerate(paths):
            start = i % 3
            assert path == expected_path(names[start:] + names[:start], hops), f"token {i}: {path}"
        wait_for(lambda: ftactors.describe(nodes[victim]).primary.pid != pid, what="a new primary")
        # each group saw each visit of each token exactly once (nothing lost, nothing applied twice)
        for g, n in enumerate(nodes):
            seen = ray.get(n.visits.remote(), timeout=TIMEOUT_S)
            want = sorted((t, h) for t in range(tokens) for k, h in enumerate(range(hops, -1, -1))
                          if (t % 3 + k) % 3 == g for h in ((h, -h) if h else (0,)))
            assert sorted(seen) == want, f"group {names[g]}: {sorted(seen)} != {want}"
        for n in nodes:
            wait_for(lambda n=n: converged(n, 3), timeout_s=TIMEOUT_S, what="the replicas to agree")
    finally:
        shutdown(nodes)

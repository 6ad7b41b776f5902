"""The router gets the group's class from its members: every member at once, the first answer wins,
and each member's error is named when none answers (``ftactors.runtime.router_actor.first_spec``).

No Ray session: the members are coroutines.
"""

from __future__ import annotations

import asyncio
import time

from ftactors.core.config import CoreConfig
from ftactors.runtime.router_actor import first_spec
from ftactors.spec import GroupSpec

SPEC = GroupSpec(group="g", config=CoreConfig(), cls_bytes=b"class", init_bytes=b"args")


async def _hangs() -> GroupSpec:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _answers() -> GroupSpec:
    await asyncio.sleep(0.01)
    return SPEC


async def _dead() -> GroupSpec:
    raise RuntimeError("the actor died\nwith a long traceback")


async def _no_class() -> GroupSpec:
    return GroupSpec(group="g", config=CoreConfig())


def test_a_hung_member_does_not_delay_the_answer_of_another():
    t0 = time.monotonic()
    spec, errors = asyncio.run(first_spec({"r0": _hangs, "r1": _dead, "r2": _answers}, timeout_s=30.0))
    assert spec == SPEC
    assert time.monotonic() - t0 < 5.0  # not r0's 30 s
    assert errors == {"r1": "RuntimeError: the actor died"}


def test_no_answer_names_each_members_error():
    spec, errors = asyncio.run(first_spec({"r0": _hangs, "r1": _dead, "r2": _no_class}, timeout_s=0.2))
    assert spec is None
    assert errors == {"r0": "no answer within 0.2 s", "r1": "RuntimeError: the actor died",
                      "r2": "it gave a spec without the class"}


def test_no_member_no_spec():
    assert asyncio.run(first_spec({}, timeout_s=1.0)) == (None, {})


def test_the_asks_still_running_are_cancelled():
    cancelled = []

    async def hangs_and_notes() -> GroupSpec:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        raise AssertionError("unreachable")

    async def scenario() -> None:
        assert (await first_spec({"r0": hangs_and_notes, "r1": _answers}, timeout_s=30.0))[0] == SPEC
        await asyncio.sleep(0)  # let the cancellation run

    asyncio.run(scenario())
    assert cancelled == [True]

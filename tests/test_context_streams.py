"""The determinism helpers keep the primary's values per drawing task (runtime/context.py), without Ray."""

from __future__ import annotations

import asyncio
from typing import List, Tuple

import pytest

from ftactors.runtime import context


def _run_call(ctx: context.CallContext, first: str) -> List[Tuple[str, float]]:
    """An async call that gathers two tasks, each drawing random() once; ``first`` draws first."""
    loop = asyncio.new_event_loop()
    loop.set_task_factory(context.task_factory)
    order = asyncio.Event()

    async def one(name: str) -> Tuple[str, float]:
        if name != first:
            await order.wait()  # a nested reply that arrives later, here
        value = context.random()
        order.set()
        return name, value

    async def method() -> List[Tuple[str, float]]:
        context.set_current(ctx)
        return list(await asyncio.gather(one("a"), one("b")))

    try:
        return loop.run_until_complete(method())
    finally:
        loop.close()


def test_tasks_that_draw_in_another_order_on_a_backup_get_the_primarys_values() -> None:
    primary = context.CallContext(replica=None, replay=(), choosing=True)
    drawn = dict(_run_call(primary, first="a"))
    backup = context.CallContext(replica=None, replay=tuple(primary.recorded), choosing=False)
    assert dict(_run_call(backup, first="b")) == drawn  # b draws first here, and still gets b's value


def test_a_backup_asking_for_more_values_than_the_primary_drew_is_refused() -> None:
    ctx = context.CallContext(replica=None, replay=(), choosing=False)
    context.set_current(ctx)
    try:
        with pytest.raises(RuntimeError, match="more nondeterministic values"):
            context.random()
    finally:
        context.set_current(None)

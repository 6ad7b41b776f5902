"""What the executing replica knows about the call it runs (a context variable).

The context is a :class:`contextvars.ContextVar`, not thread-local: an async method runs on
the replica's event loop thread, and :meth:`_Replica._run_async` sets the same context inside
the coroutine's task there, so nested calls, ``now()`` and ``random()`` made from a coroutine
(and from tasks it creates, which copy its context) belong to the call being executed.

``ftactors.now()`` and ``ftactors.random()`` are the determinism helpers: on
the primary they read the clock or a random source and record the value; on a
backup, or on replay after a failover, they return the recorded values in the
same order, so every replica computes the same state.
"""

from __future__ import annotations

import contextvars
import random as _random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

_current: "contextvars.ContextVar[Optional[CallContext]]" = contextvars.ContextVar("ftactors_call", default=None)


@dataclass
class CallContext:
    """The call being executed by this replica (in this thread, or this coroutine's task)."""

    replica: Any  # the _Replica instance (runtime object)
    replay: Tuple[Any, ...]  # values to replay, or () when choosing fresh
    choosing: bool  # True on a primary executing a new message
    execute: Any = None  # the core's Execute effect being carried out
    recorded: List[Any] = field(default_factory=list)
    cursor: int = 0
    finished: bool = False  # the call returned; a task it left running still holds this context

    def check_open(self) -> None:
        """Refuse work for a call that is over.

        Raises:
            RuntimeError: the call returned, and an asyncio task it created (and did not await)
                tries to make a nested call or draw a value for it.
        """
        if self.finished:
            raise RuntimeError("ftactors: a task created by a replicated method is still running after the "
                               "method returned; await every task a replicated method creates (its nested "
                               "calls, now() and random() belong to the call, which is over)")

    def value(self, make: Callable[[], Any]) -> Any:
        """A nondeterministic value: chosen and recorded, or replayed.

        Args:
            make: draws a fresh value (on a primary executing a new message).

        Returns:
            The drawn value, or the next recorded one.

        Raises:
            RuntimeError: more values asked for than the primary drew, or the call is over.
        """
        self.check_open()
        if self.choosing:
            v = make()
            self.recorded.append(v)
            return v
        if self.cursor >= len(self.replay):
            raise RuntimeError("ftactors: method asked for more nondeterministic values than the primary did; "
                               "replicated methods must be deterministic")
        v = self.replay[self.cursor]
        self.cursor += 1
        return v


def current() -> Optional[CallContext]:
    """The context of the call being executed here.

    Returns:
        The CallContext of the thread, or of the asyncio task, executing a replicated call;
        None outside replicated execution.
    """
    return _current.get()


def set_current(ctx: Optional[CallContext]) -> None:
    """Install (or clear, with None) the call context of the current thread or asyncio task.

    Args:
        ctx: the context of the call about to execute, or None once it is over.
    """
    _current.set(ctx)


def now() -> float:
    """Wall-clock time the replicas agree on (``time.time()`` chosen by the primary).

    Returns:
        Seconds since the epoch. Outside a replicated call: ``time.time()``.
    """
    ctx = current()
    return time.time() if ctx is None else ctx.value(time.time)


def random() -> float:
    """A random float in [0, 1) that every replica sees the same.

    Returns:
        The value the primary drew. Outside a replicated call: ``random.random()``.
    """
    ctx = current()
    return _random.random() if ctx is None else ctx.value(_random.random)

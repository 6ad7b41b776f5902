"""What the executing replica knows about the call it runs (thread-local).

``ftactors.now()`` and ``ftactors.random()`` are the determinism helpers: on
the primary they read the clock or a random source and record the value; on a
backup, or on replay after a failover, they return the recorded values in the
same order, so every replica computes the same state.
"""

from __future__ import annotations

import random as _random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

_local = threading.local()


@dataclass
class CallContext:
    """The call being executed by this thread's replica."""

    replica: Any  # the _Replica instance (runtime object)
    replay: Tuple[Any, ...]  # values to replay, or () when choosing fresh
    choosing: bool  # True on a primary executing a new message
    execute: Any = None  # the core's Execute effect being carried out
    recorded: List[Any] = field(default_factory=list)
    cursor: int = 0

    def value(self, make: Callable[[], Any]) -> Any:
        """A nondeterministic value: chosen and recorded, or replayed."""
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
    """The context of the call this thread executes, or None outside replicated execution."""
    return getattr(_local, "ctx", None)


def set_current(ctx: Optional[CallContext]) -> None:
    """Install (or clear) this thread's call context."""
    _local.ctx = ctx


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

"""Async replicated methods, stepped by the replica in the order the primary announces.

Each async call runs on a private event loop of its own (:class:`CallLoop`) that nobody runs
freely: the replica's driving thread runs it one *step* at a time, from the call's start or a
resume to the point where nothing on the loop can go on without an event from outside (a nested
reply, a timer). Events from outside never enter the loop by themselves: a reply arriving on a
Ray thread (``call_soon_threadsafe``) and a timer (``call_at``) are parked in the loop's inbox,
each under a name that is the same on every replica (the ordinal of the future it completes,
or of the timer, in the call's own creation order). A resume step admits exactly one of them.

The primary admits the first to arrive and reports its name (the core announces it with the
step's position: ``Announcement.resume``/``wake``); a backup, and a new primary replaying the
order, admit the event of that name, waiting for a reply until it arrives and firing a timer at
once (the primary waited for it). Coroutines of different calls thus interleave in the same
order on every replica, and so do the tasks one call gathers.

Relies on details of CPython's ``asyncio.BaseEventLoop`` (3.10-3.12): ``_ready`` (the callbacks
due now), the ``_selector``/``_process_events``/``_write_to_self`` hooks, and that ``stop()``
before ``run_forever()`` runs one iteration.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ftactors.core import MsgId
from ftactors.runtime import context

Wake = Tuple[str, int]  # ("f", n): the n-th future of the call completed; ("t", n): its n-th timer; ("x", n)

_arrivals = itertools.count(1)


class _NoSelector:
    """What a :class:`CallLoop` polls instead of sockets: nothing (no file descriptor per call)."""

    def select(self, timeout: Optional[float] = None) -> List[Any]:
        return []

    def close(self) -> None:
        return None


class CallLoop(asyncio.BaseEventLoop):
    """The private event loop of one async call; external events wait in its inbox.

    It holds no selector and no file descriptor: sockets, pipes and subprocesses are not
    available on it (``NotImplementedError``): their events would reach each replica in its
    own order.

    Args:
        on_event: called (from any thread) when an event arrives, to wake the replica's driver.
        events_max: events one call may hold parked at once (a bound, not a tuning knob).
    """

    def __init__(self, on_event: Callable[[], None], events_max: int = 10_000) -> None:
        super().__init__()
        if not isinstance(getattr(self, "_ready", None), collections.deque):
            raise RuntimeError("ftactors: this Python's asyncio event loop has no _ready queue; replicated async "
                               "methods need CPython 3.10-3.12's asyncio.BaseEventLoop")
        self._selector = _NoSelector()
        # tasks a call creates are named by their place in its tree of creations: now()/random()
        # are recorded and replayed per task (see ftactors.runtime.context.CallContext.stream)
        self.set_task_factory(context.task_factory)
        self._on_event = on_event
        self._events_max = events_max
        self._lock = threading.Lock()
        self._futures: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()
        self._future_count = 0
        self._timer_count = 0
        self._other_count = 0
        # name -> (arrival, callback, args, context); replies and other threadsafe calls
        self._inbox: "collections.OrderedDict[Wake, Tuple[int, Callable[..., Any], Tuple[Any, ...], Any]]" = \
            collections.OrderedDict()
        self._timers: Dict[int, Tuple[asyncio.TimerHandle, Callable[..., Any], Tuple[Any, ...], Any]] = {}

    # ----------------------------------------------------- what the loop sees

    def create_future(self) -> "asyncio.Future[Any]":
        """A future, numbered in the call's creation order (equal on every replica)."""
        fut = super().create_future()
        self._future_count += 1
        self._futures[fut] = self._future_count
        return fut

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                             context: Any = None) -> asyncio.Handle:
        """An event from another thread (a nested reply): parked until a step admits it."""
        name = self._name_of(callback, args)
        with self._lock:
            if len(self._inbox) >= self._events_max:
                raise RuntimeError(f"ftactors: more than {self._events_max} events parked for one call")
            self._inbox[name] = (next(_arrivals), callback, args, context)
        self._on_event()
        return asyncio.Handle(callback, args, self, context)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,  # type: ignore[override]
                context: Any = None) -> asyncio.TimerHandle:
        """A timer (``asyncio.sleep``, ``call_later``): parked until a step admits it."""
        self._timer_count += 1
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        self._timers[self._timer_count] = (handle, callback, args, context)
        return handle

    def number_of(self, fut: Any) -> Optional[int]:
        """The ordinal of a future this loop created (its event is ``("f", n)``), else None."""
        try:
            return self._futures.get(fut)
        except TypeError:  # unhashable
            return None

    def _name_of(self, callback: Callable[..., Any], args: Tuple[Any, ...]) -> Wake:
        for candidate in (args[0] if args else None, getattr(callback, "__self__", None)):
            try:
                n = self._futures.get(candidate) if candidate is not None else None
            except TypeError:  # unhashable
                n = None
            if n is not None:
                return ("f", n)
        with self._lock:
            self._other_count += 1
            return ("x", self._other_count)

    # ------------------------------------------------------------ stepping

    def ready_since(self) -> Optional[int]:
        """The arrival number of the oldest event that can be admitted now (a due timer
        counts as arrived now), or None when the call must go on waiting."""
        with self._lock:
            if self._inbox:
                return next(iter(self._inbox.values()))[0]
        now = self.time()
        if any(h.when() <= now for h, *_ in self._timers.values() if not h.cancelled()):
            return next(_arrivals)
        return None

    def next_timer_s(self) -> Optional[float]:
        """Seconds until the call's earliest live timer is due (None without one)."""
        self._drop_cancelled()
        if not self._timers:
            return None
        return max(0.0, min(h.when() for h, *_ in self._timers.values()) - self.time())

    def first_ready(self) -> Optional[Wake]:
        """The primary's choice: the oldest reply that arrived, else the earliest due timer."""
        with self._lock:
            if self._inbox:
                return next(iter(self._inbox))
        self._drop_cancelled()
        now = self.time()
        due = [(h.when(), n) for n, (h, *_) in self._timers.items() if h.when() <= now]
        return ("t", min(due)[1]) if due else None

    def admit(self, wake: Wake) -> bool:
        """Let the event ``wake`` into the loop (a backup's "x" takes the oldest such event).

        Returns:
            False if it has not arrived yet (a reply still on its way).
        """
        kind, n = wake
        if kind == "t":
            entry = self._timers.pop(n, None)
            if entry is not None and not entry[0].cancelled():
                self.call_soon(entry[1], *entry[2], context=entry[3])
            return True  # a timer the primary admitted is due here too: it fires now
        with self._lock:
            if kind == "x":
                wake = next((w for w in self._inbox if w[0] == "x"), wake)
            item = self._inbox.pop(wake, None)
        if item is None:
            return False
        self.call_soon(item[1], *item[2], context=item[3])
        return True

    def run_quiet(self) -> None:
        """Run the loop until nothing on it can go on without an outside event."""
        while True:
            self.stop()
            self.run_forever()  # after stop(): exactly one iteration
            if not self._ready:  # type: ignore[attr-defined]
                return

    def discard(self) -> None:
        """Cancel what the call left running (tasks it never awaited) and close the loop."""
        tasks = [t for t in asyncio.all_tasks(self) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            self.run_quiet()
        self._inbox.clear()
        self._timers.clear()
        self.close()

    def _process_events(self, event_list: List[Any]) -> None:
        """No I/O events: the selector is :class:`_NoSelector`."""

    def _write_to_self(self) -> None:
        """Nothing to wake: the replica's driver is notified by ``on_event`` instead."""

    def _drop_cancelled(self) -> None:
        for n in [n for n, (h, *_) in self._timers.items() if h.cancelled()]:
            del self._timers[n]


@dataclass
class _Running:
    loop: CallLoop
    task: "asyncio.Task[Any]"
    ctx: Any  # the call's context.CallContext, which the coroutine's tasks hold


@dataclass(frozen=True)
class StepResult:
    """How a step ended.

    Args:
        done: the method returned or raised (``outcome`` holds which); else it waits.
        value: what it returned (done, no error).
        error: what it raised (done), or None.
        wake: the event this step admitted (a resume), None for a start.
    """

    done: bool
    value: Any = None
    error: Optional[BaseException] = None
    wake: Optional[Wake] = None


class Coroutines:
    """The async calls a replica holds started, and their stepping.

    Args:
        on_event: wakes the replica's driver (called from any thread).
        suspended_max: calls held at once (the core's bound; more is a bug).
    """

    def __init__(self, on_event: Callable[[], None], suspended_max: int) -> None:
        self._on_event = on_event
        self._suspended_max = suspended_max
        self._calls: Dict[MsgId, _Running] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[MsgId]:
        return iter(list(self._calls))

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._calls  # without it, ``in`` copied and scanned the calls (__iter__)

    def start(self, msg_id: MsgId, awaitable: Any, ctx: Any, wrap: Callable[[Any, Any], Any]) -> StepResult:
        """Run the first step of an async call.

        Args:
            msg_id: the call.
            awaitable: what the async method returned.
            ctx: the call's context (tasks the coroutine creates share it).
            wrap: ``wrap(awaitable, ctx)`` makes the coroutine that sets the context and
                awaits it (the replica's ``_await``).

        Returns:
            How the step ended.
        """
        assert msg_id not in self._calls, f"{msg_id} started twice"
        assert len(self._calls) < self._suspended_max, "more async calls than suspended_max"
        loop = CallLoop(self._on_event)
        task = loop.create_task(wrap(awaitable, ctx))
        self._calls[msg_id] = _Running(loop, task, ctx)
        loop.run_quiet()
        return self._ended(msg_id, None)

    def context_of(self, msg_id: MsgId) -> Any:
        """The context of a started call."""
        return self._calls[msg_id].ctx

    def resume(self, msg_id: MsgId, wake: Optional[Wake], wait: Callable[[float], None]) -> StepResult:
        """Run one resume step of a suspended call.

        Args:
            msg_id: the call.
            wake: the event to admit (announced by the primary); None: the primary's choice,
                the first ready one (waiting for one if none is).
            wait: ``wait(timeout_s)`` blocks until an event may have arrived (the replica's
                condition), releasing its lock.

        Returns:
            How the step ended.
        """
        run = self._calls[msg_id]
        while True:
            chosen = wake if wake is not None else run.loop.first_ready()
            if chosen is not None and run.loop.admit(chosen):
                break
            timer = run.loop.next_timer_s()
            wait(0.05 if timer is None else min(0.05, timer))
        run.loop.run_quiet()
        return self._ended(msg_id, chosen)

    def awaits(self, msg_id: MsgId, futures: List[Any], wake: Optional[Wake]) -> bool:
        """Whether event ``wake`` completes one of ``futures`` (futures of call ``msg_id``'s loop).

        Args:
            msg_id: a started call (False if it is not held).
            futures: futures of its loop.
            wake: an event name, ``("f", n)`` for the n-th future the call created.
        """
        run = self._calls.get(msg_id)
        if run is None or wake is None or wake[0] != "f":
            return False
        return any(run.loop.number_of(f) == wake[1] for f in futures)

    def ready(self) -> Tuple[MsgId, ...]:
        """The suspended calls that can be resumed now, the longest-waiting event first."""
        if not self._calls:  # no suspended call (every sync method's step): asked twice per Deliver
            return ()
        stamps: List[Tuple[int, MsgId]] = []
        for mid, run in self._calls.items():
            since = run.loop.ready_since()
            if since is not None:
                stamps.append((since, mid))
        return tuple(mid for _, mid in sorted(stamps))

    def next_timer_s(self) -> Optional[float]:
        """Seconds until the earliest timer of any suspended call."""
        times = [t for run in self._calls.values() if (t := run.loop.next_timer_s()) is not None]
        return min(times) if times else None

    def drop_all(self) -> None:
        """Forget every call (the state is restored from a checkpoint, or this replica left)."""
        for run in self._calls.values():
            run.loop.discard()
        self._calls.clear()

    def _ended(self, msg_id: MsgId, wake: Optional[Wake]) -> StepResult:
        run = self._calls[msg_id]
        if not run.task.done():
            return StepResult(False, wake=wake)
        del self._calls[msg_id]
        run.loop.discard()
        exc = run.task.exception()
        return StepResult(True, None if exc is not None else run.task.result(), exc, wake)


def wait_on(cond: threading.Condition) -> Callable[[float], None]:
    """A ``wait`` for :meth:`Coroutines.resume` on the replica's condition (held by the caller
    or not: ``Condition`` over an ``RLock`` is taken here for the wait only)."""
    def wait(timeout_s: float) -> None:
        with cond:
            cond.wait(timeout=max(0.001, timeout_s))
    return wait


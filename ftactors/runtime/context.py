"""What the executing replica knows about the call it runs (a context variable).

The context is a :class:`contextvars.ContextVar`, not thread-local: an async method runs on
the replica's event loop thread, and :meth:`_Replica._run_async` sets the same context inside
the coroutine's task there, so nested calls, ``now()`` and ``random()`` made from a coroutine
(and from tasks it creates, which copy its context) belong to the call being executed.

``ftactors.now()`` and ``ftactors.random()`` are the determinism helpers: on
the primary they read the clock or a random source and record the value; on a
backup, or on replay after a failover, they return the recorded values in the
same order, so every replica computes the same state. The order is kept per drawing
task (the method itself, or a task it created), so tasks that interleave differently on
a backup still get the primary's values.

:func:`watch_plain_calls` makes a replica process warn (once per group and method) when a
replicated method submits a plain Ray task or actor call, which every replica makes again.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import random as _random
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

log = logging.getLogger("ftactors")

_current: "contextvars.ContextVar[Optional[CallContext]]" = contextvars.ContextVar("ftactors_call", default=None)


@dataclass
class CallContext:
    """The call being executed by this replica (in this thread, or this coroutine's task)."""

    replica: Any  # the _Replica instance (runtime object)
    replay: Tuple[Any, ...]  # values to replay, or () when choosing fresh
    choosing: bool  # True on a primary executing a new message
    execute: Any = None  # the core's Execute effect being carried out
    recorded: List[Any] = field(default_factory=list)  # (stream, value) pairs, see ``value``
    cursors: Dict[Tuple[int, ...], int] = field(default_factory=dict)
    # the asyncio tasks the call created, each named by its place in the tree of task creations
    # (creation order within its creator), which the method's code fixes on every replica
    # (made at the first task: most calls create none)
    task_streams: "Optional[weakref.WeakKeyDictionary[Any, Tuple[int, ...]]]" = None
    children: Dict[Tuple[int, ...], int] = field(default_factory=dict)
    _replay_by_stream: Optional[Dict[Tuple[int, ...], List[Any]]] = None
    finished: bool = False  # the call returned; a task it left running still holds this context
    internal: bool = False  # ftactors itself is submitting a Ray call (a nested call to a router)

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
        stream = self.stream()
        if self.choosing:
            v = make()
            self.recorded.append((stream, v))
            return v
        if self._replay_by_stream is None:
            self._replay_by_stream = {}
            for s, recorded in self.replay:
                self._replay_by_stream.setdefault(s, []).append(recorded)
        values = self._replay_by_stream.get(stream, [])
        i = self.cursors.get(stream, 0)
        if i >= len(values):
            raise RuntimeError("ftactors: method asked for more nondeterministic values than the primary did; "
                               "replicated methods must be deterministic")
        self.cursors[stream] = i + 1
        return values[i]

    def begin_step(self, replay: Tuple[Any, ...], choosing: bool, execute: Any) -> None:
        """Start the next step of an async call (a resume): its own values to record or replay.

        Args:
            replay: the values the primary drew in this step, as (stream, value) pairs; () to choose.
            choosing: whether this replica draws fresh values (a primary executing a new step).
            execute: the core's Execute effect of this step.
        """
        self.replay, self.choosing, self.execute = replay, choosing, execute
        self.recorded, self.cursors, self._replay_by_stream = [], {}, None

    def stream(self) -> Tuple[int, ...]:
        """Who draws: () for the method itself, else the asyncio task of the call drawing.

        Values are recorded and replayed per stream: two tasks of one call that draw in a different
        order on a backup (their nested replies arrive in another order) still get the primary's.
        """
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop: a sync method
            return ()
        streams = self.task_streams
        return () if task is None or streams is None else streams.get(task, ())

    def task_created(self, task: Any) -> None:
        """Name a task the call just created, after its creator and its creation order there."""
        parent = self.stream()
        n = self.children.get(parent, 0)
        self.children[parent] = n + 1
        if self.task_streams is None:
            self.task_streams = weakref.WeakKeyDictionary()
        self.task_streams[task] = parent + (n,)


def task_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
    """The replica loop's task factory: tasks created during a replicated call are named for it
    (see :meth:`CallContext.stream`)."""
    task = asyncio.Task(coro, loop=loop, **kwargs)
    ctx = _current.get()
    if ctx is not None and not ctx.finished:
        ctx.task_created(task)
    return task


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


# ------------------------------------------------------------ plain Ray calls

_watch_lock = threading.Lock()
_watching = False
_warned: Set[Tuple[str, str]] = set()  # (group, method) already warned about, in this process


def watch_plain_calls() -> None:
    """Warn when a replicated method submits a plain Ray task or actor call (call once per replica process).

    Wraps Ray's ``ActorMethod._remote`` and ``RemoteFunction._remote`` (what ``.remote()`` and
    ``.options(...).remote()`` end in) in this process: outside a replicated call the wrapper
    costs one context-variable read before Ray's own submission. Inside one, the primary logs a
    warning on the ``ftactors`` logger once per (group, method). Calls from threads the method
    starts carry no context and are not seen. A Ray without these methods gets no warning.
    """
    global _watching
    with _watch_lock:
        if _watching:
            return
        _watching = True
        from ray.actor import ActorMethod
        from ray.remote_function import RemoteFunction

        for cls, kind, name_attr in ((ActorMethod, "actor call", "_method_name"),
                                     (RemoteFunction, "task", "_function_name")):
            original = getattr(cls, "_remote", None)
            if original is not None:
                setattr(cls, "_remote", _watched(original, kind, name_attr))


_resolving = False


def resolve_pending_replies() -> None:
    """Let ``ray.get`` and ``ray.wait`` take what a backup's async method is handed for a nested call
    whose reply copy has not come (``replica_actor.PendingReply``; call once per replica process).

    Such a wait blocks the step, so the copy cannot come meanwhile: the replica binds the pending
    reply to the copy if it is here, else pulls it (``PendingReply.resolve_now``), and the wait
    gets that ``ObjectRef``, as the primary's did. Wraps the ``ray`` module's ``get`` and ``wait``
    (code that imported them by name before is not seen); elsewhere the wrapper costs one
    attribute look-up per call.
    """
    global _resolving
    with _watch_lock:
        if _resolving:
            return
        _resolving = True
        import ray

        for name in ("get", "wait"):
            original = getattr(ray, name, None)
            if original is not None:
                setattr(ray, name, _resolved(original))


def _resolved(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(object_refs: Any, *args: Any, **kwargs: Any) -> Any:
        pending = _pending_in(object_refs)
        if not pending:
            return original(object_refs, *args, **kwargs)
        refs = _refs_of(object_refs)
        try:
            return original(refs, *args, **kwargs)
        except Exception as exc:
            # a reply a backup pulled and its callee forgot must not reach the method: the step is
            # given up and the replica resynced, as for an ``await`` (``PendingReply.gone_from``)
            for p in pending:
                gone = p.gone_from(original, exc)
                if gone is not None:
                    if gone.for_step() is not gone:
                        raise  # a step of the primary's own choice: the method gets the error
                    raise gone from exc
            raise

    return call


def _pending_in(refs: Any) -> List[Any]:
    """The pending replies (``replica_actor.PendingReply``) among ``refs``, one or a list."""
    if hasattr(refs, "resolve_now"):
        return [refs]
    if isinstance(refs, list):
        return [r for r in refs if hasattr(r, "resolve_now")]
    return []


def _refs_of(refs: Any) -> Any:
    """``refs`` with each pending reply replaced by its ``ObjectRef`` (see :func:`resolve_pending_replies`)."""
    now = getattr(refs, "resolve_now", None)
    if now is not None:
        return now()
    if isinstance(refs, list) and any(hasattr(r, "resolve_now") for r in refs):
        return [r.resolve_now() if hasattr(r, "resolve_now") else r for r in refs]
    return refs


def _watched(original: Callable[..., Any], kind: str, name_attr: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def _remote(self: Any, *args: Any, **kwargs: Any) -> Any:
        ctx = _current.get()
        if ctx is not None and not ctx.internal:
            plain_call_made(ctx, kind, str(getattr(self, name_attr, "?")))
        return original(self, *args, **kwargs)

    return _remote


def plain_call_made(ctx: CallContext, kind: str, target: str) -> bool:
    """Note that the call ``ctx`` submitted a plain Ray call; warn the first time per (group, method).

    Args:
        ctx: the replicated call being executed.
        kind: "task" or "actor call".
        target: the Ray function or actor method called.

    Returns:
        True if this logged the warning.
    """
    if not ctx.choosing or ctx.execute is None:  # the primary warns; backups make the same calls
        return False
    group, method = ctx.replica.spec.group, ctx.execute.request.method
    with _watch_lock:
        if (group, method) in _warned:
            return False
        _warned.add((group, method))
    log.warning("[%s] replicated method %s() submitted a plain Ray %s (%s): every replica makes it, and a new "
                "primary makes it again when it re-executes the call, so it is not exactly once. Call "
                "replicated actors from replicated methods, or make the plain call idempotent (see README, "
                "'Rules for replicated methods'). Warned once per method.", group, method, kind, target)
    return True

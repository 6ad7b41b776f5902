"""The replica actor: a thin Ray host around :class:`ftactors.core.ReplicaCore`.

One ``_Replica`` actor holds one instance of the user's class. The router
calls ``deliver`` with a batch; the calling thread feeds the core and then
*drives* it: it carries out effects (restore, execute, snapshot) one at a time
until the core has nothing to do, and returns the core's Delivered (replies
and piggybacked announcements). Deliveries that arrive while another thread
drives are fed to the core at once, so the primary's scheduler sees them
(priority, deadline, ...), and the driving thread executes them.

The Deliver loop itself is :class:`ftactors.host.replica.ReplicaHost`, shared with the
simulator; this shell holds its lock around every call into the host and carries the effects
out on the driving call's thread (:class:`_ThreadIO`). Delivers come as Ray calls or over the
direct data plane (a :class:`~ftactors.runtime.wire.WireServer` thread calling ``deliver``).

Async methods run in steps on private event loops (:mod:`ftactors.runtime.coroutines`): the
driving thread starts or resumes one call at a time, in the order the primary chooses (and the
core announces) or, on a backup, the announced one. A primary holding suspended calls keeps
its Deliver (the host decides, ``ReplicaIO.hold``; at most ``heartbeat_s``) until one of them
can resume, so the resumed step's reply leaves at once; the router keeps such a Deliver
outstanding. A coroutine event wakes the waiting driver (``_wake_driver``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import hashlib
import inspect
import logging
import os
import re
import sys
import threading
import time
import traceback
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

# Ray's own cloudpickle, not the package: a class pickled by value (a driver script's exception or
# value type) keeps one tracker id through the replicas, the router and Ray's return to the caller,
# so the caller unpickles it as its own class (docs/faults.md row 57).
from ray import cloudpickle
import ray

from ftactors.core import (
    Deliver,
    Delivered,
    Execute,
    MsgId,
    NewView,
    Outcome,
    RemoteProtocolError,
    Reply,
    ReplicaCore,
    ReplyUnavailableError,
    Request,
    Restore,
    Role,
    Snapshot,
    StateReport,
)
from ftactors.host.replica import OrphanWatch, ReplicaHost
from ftactors.runtime import context, wire
from ftactors.runtime.coroutines import Coroutines, StepResult, wait_on
from ftactors.runtime.errors import MethodAbortedError, PulledReplyGoneError
from ftactors.runtime.settings import ReplicationSettings
from ftactors.spec import GroupSpec

log = logging.getLogger("ftactors")


@dataclasses.dataclass(frozen=True)
class OwnedArgument:
    """A call's arguments in the object store, put again by the router (``_RouterLoop._own_argument``).

    Args:
        ref: the router's object: it lives while the router holds the request.
        caller: the caller's object, read when the router's was lost with it (a router restart)
            and the caller still lives.
    """

    ref: Any
    caller: Any

#: a payload (or a checkpoint's state) in the object store, fetched before use
_BY_REFERENCE = (ray.ObjectRef, OwnedArgument)

#: answers parked for the router's Ray call (see ``_Replica.parked``)
PARKED_MAX = 1024
#: how long a retired replica lets its running calls finish before it exits regardless (``retire``)
RETIRE_EXIT_WAIT_MAX_S = 2.0


def replica_actor_name(group: str, replica_id: str) -> str:
    """The Ray actor name of a replica."""
    return f"ftactors:{group}:{replica_id}"


def router_actor_name(group: str) -> str:
    """The Ray actor name of a group's router."""
    return f"ftactors:{group}:router"


_ADDR = re.compile(r"0x[0-9a-fA-F]+")


_SCALARS = frozenset({type(None), bool, int, float, str})


def _flat(values: Any) -> bool:
    """Whether every value is an exact scalar (whose repr is the same in every process)."""
    return all(type(v) in _SCALARS for v in values)


def _feed(h: Any, obj: Any, depth: int = 0) -> None:
    """Hash a process-independent form of ``obj``: sets sorted, no addresses, bytes streamed."""
    if depth > 50:
        h.update(b"...")
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        h.update(b"b%d:" % len(obj))
        h.update(obj)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(repr(obj).encode())
    elif isinstance(obj, dict):
        if _flat(obj.keys()) and _flat(obj.values()):
            h.update(b"D")  # fast path: repr of scalars is process-independent, and done in C
            h.update(repr(obj).encode())
            return
        h.update(b"{")
        for k, v in obj.items():
            _feed(h, k, depth + 1)
            _feed(h, v, depth + 1)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        if _flat(obj):
            h.update(b"L")
            h.update(repr(obj).encode())
            return
        h.update(b"[")
        for v in obj:
            _feed(h, v, depth + 1)
        h.update(b"]")
    elif isinstance(obj, (set, frozenset)):
        parts = sorted(state_digest_of(v) for v in obj)
        h.update(("s" + ",".join(parts)).encode())
    elif hasattr(obj, "__dict__") and not inspect.isroutine(obj) and not inspect.isclass(obj):
        h.update(type(obj).__qualname__.encode())
        _feed(h, vars(obj), depth + 1)
    else:
        h.update(_ADDR.sub("0x", repr(obj)).encode())


def state_digest_of(obj: Any) -> str:
    """The digest of a value (see :func:`state_digest`)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()[:16]


def state_digest(obj: Any) -> str:
    """A short digest of an application object's state, equal across processes.

    A class may define ``__ftactors_digest__()`` to supply its own.
    """
    custom = getattr(obj, "__ftactors_digest__", None)
    return state_digest_of(custom() if callable(custom) else obj)


def portable_error(exc: BaseException) -> BaseException:
    """The exception a call's outcome carries: ``exc`` if it pickles and unpickles, else a stand-in.

    An exception goes to the router in every replica's answer and into every replica's
    exactly-once table. One that pickles but cannot be unpickled (its ``__init__`` takes more
    arguments than it passes to ``Exception.__init__``) made the router fail to decode every
    replica's answer and lose the group (docs/faults.md row 73); a plain Ray actor's caller gets
    ``UnserializableException`` for that call and the actor goes on. Each replica decides the same
    way, so the call fails alike everywhere and the group stays up.

    Args:
        exc: what the method (or the constructor, or a nested call) raised.

    Returns:
        ``exc``, or a ``RuntimeError`` naming its type, its message and why it does not travel.
    """
    try:
        data = cloudpickle.dumps(exc)
    except Exception as why:
        return RuntimeError(f"{type(exc).__name__}: {exc} (the exception cannot be pickled: "
                            f"{type(why).__name__}: {why})")
    try:
        cloudpickle.loads(data)
    except Exception as why:
        return RuntimeError(
            f"{type(exc).__name__}: {exc} (the exception cannot be unpickled: {type(why).__name__}: "
            f"{why}; pass every argument of its __init__ to super().__init__, or define __reduce__)")
    _keep_traceback(exc)
    return exc


#: ftactors' own source files (their frames are left out of a method's traceback)
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the end of a method's formatted traceback an exception carries to its caller, at most
TRACEBACK_CHARS_MAX = 4000

#: the attribute that carries it (:func:`ftactors.runtime.router_actor.unwrap` makes it the cause)
TRACEBACK_ATTR = "_ftactors_remote_traceback"


def _keep_traceback(exc: BaseException) -> None:
    """Have ``exc`` carry where it was raised (its traceback's last ``TRACEBACK_CHARS_MAX``
    characters, from the user's first frame): a pickled exception loses its traceback, and the
    router re-raises it in its own frames. An exception that takes no attribute (a frozen dataclass)
    goes without.

    Args:
        exc: a method's (or constructor's) exception, caught with its traceback.
    """
    tb = exc.__traceback__
    if tb is None or hasattr(exc, TRACEBACK_ATTR):
        return
    while tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_OWN_DIR):
        tb = tb.tb_next  # from the user's first frame: ftactors' own above it tell nothing
    text = "".join(traceback.format_tb(tb))
    try:
        setattr(exc, TRACEBACK_ATTR, text[-TRACEBACK_CHARS_MAX:])
    except Exception:
        pass


#: Results that always pickle: the common case on the call path is not pickled twice, and Ray's own
#: references are left to Ray's serialiser.
_PLAIN_RESULTS = (type(None), bool, int, float, str, bytes, ray.ObjectRef, ray.actor.ActorHandle)


#: Results a method returns that are neither awaitable nor unpicklable, checked first (exact types).
_SCALAR_RESULTS = frozenset({type(None), bool, int, float, str, bytes})


def portable_result(result: Any, class_name: str, method: str) -> Outcome:
    """The outcome of a call that returned ``result``: the value if it pickles, else a ``TypeError``.

    A result goes to the caller and into every replica's exactly-once table (checkpoints, state
    transfers): one that cannot be pickled made every replica's answer to its router fail to
    serialise, and the router took them all for failed (docs/faults.md row 62). Each replica
    decides the same way, so the call fails alike everywhere and the group stays up, as a plain
    Ray actor's call fails and the actor goes on. Buffers (numpy arrays) are not copied to check.

    Args:
        result: what the method returned (an async method's final value).
        class_name: the user's class, for the message.
        method: the method's name, for the message.

    Returns:
        ``Outcome(True, result)``, or ``Outcome(False, TypeError(...))`` saying what to return
        instead (a generator: Ray's streaming returns are not supported).
    """
    if type(result) in _PLAIN_RESULTS:
        return Outcome(True, result)
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        return Outcome(False, TypeError(
            f"{class_name}.{method}() returned a generator: a replicated method cannot stream its "
            f"results (Ray's generator methods, num_returns='streaming'); return a list instead"))
    try:
        cloudpickle.dumps(result, protocol=5, buffer_callback=_out_of_band)
    except Exception as exc:
        return Outcome(False, TypeError(
            f"{class_name}.{method}() returned a value that cannot be pickled ({type(exc).__name__}: "
            f"{exc}); a replicated method's result goes to its caller and to every replica: return "
            f"a picklable value"))
    return Outcome(True, result)


def _out_of_band(buffer: Any) -> bool:
    """Leave a pickled value's buffers out (``portable_result`` only checks that it pickles)."""
    return False


class CopiedTaskError(ray.exceptions.RayTaskError):
    """A nested method's exception, as the primary's code got it from ``ray.get``, in a reply copy.

    Put in a backup's object store (:func:`copied_ref`), ``ray.get`` raises it as an instance of
    the method's exception type, with the primary's message.

    Args:
        cause: the exception the nested method raised.
        text: the message the primary's ``ray.get`` raised it with.
    """

    def __init__(self, cause: BaseException, text: str) -> None:
        super().__init__("invoke_nested", text, cause, proctitle="ftactors", pid=1, ip="-")
        self.text = text
        self.args = (cause, text)

    def __str__(self) -> str:
        return self.text


def pushed_outcome(ref: Any) -> Optional[Outcome]:
    """What the primary's code got from a nested call's ``ObjectRef`` (ready), as a reply copy.

    Args:
        ref: the ready ``ObjectRef`` of the nested call's value.

    Returns:
        ``Outcome(True, value)``; ``Outcome(False, CopiedTaskError)`` when the nested method (or
        the callee's router) raised: a backup puts that error in its object store, and its code's
        ``ray.get`` raises it as the primary's did (an instance of the method's exception type,
        same message); ``Outcome(False, error)`` when the call itself failed with a Ray error (the
        callee's group was shut down or lost: ``ActorDiedError``...), the error as ``ray.get``
        raised it, which a backup's ``ray.get`` (or ``await``) raises again, same type, same
        message (docs/faults.md row 36); None for an error that does not pickle, or one that is
        not Ray's (a backup pulls those).
    """
    try:
        return Outcome(True, ray.get(ref, timeout=0))
    except ray.exceptions.RayTaskError as exc:  # an instance of a class ray.get made on the fly
        return Outcome(False, CopiedTaskError(exc.cause, str(exc)))
    except ray.exceptions.RayError as exc:  # the call failed: its actor died, or is unavailable
        return Outcome(False, exc) if portable_error(exc) is exc else None
    except Exception:
        return None


def copied_ref(copy: Reply) -> Any:
    """A backup's ``ObjectRef`` for a pushed reply copy: ``ray.get`` returns its value, or raises the
    nested method's exception as it did at the primary (see :func:`pushed_outcome`).

    Args:
        copy: the reply copy the primary pushed.

    Returns:
        An ``ObjectRef`` in the local object store (no message).
    """
    return ray.put(copy.outcome.value)


class ReplyGone(BaseException):
    """Raised into a backup's method replaying a step when the nested reply it pulled from the
    callee's router is gone there (``ReplyUnavailableError``: the callee forgot the call's source
    or its reply). The primary's method got the value; this one must not go on with an error the
    primary never saw. Not an ``Exception``, so that the method's own handlers let it through;
    the replica gives the step up (``ReplicaHost.pulled_reply_gone``) and the router repairs it
    by state transfer (docs/faults.md, row 47).

    A step of the primary's own choice (a backup promoted since it suspended on the call) must
    instead raise the error into the method, as the simulator does (docs/faults.md rows 53, 55):
    :meth:`PendingReply.__await__` and the wrapped ``ray.get`` decide when the step takes the reply
    (:meth:`for_step`), not when the pull completes.

    Args:
        msg_id: the nested request.
        error: the callee's error (``ReplyUnavailableError``), or None.
    """

    def __init__(self, msg_id: MsgId, error: Optional[BaseException] = None) -> None:
        super().__init__(f"the reply of {msg_id} is gone at its callee")
        self.msg_id = msg_id
        self.error = error

    def for_step(self) -> BaseException:
        """What the step taking the reply raises: the callee's error in a step of the primary's own
        choice (``CallContext.choosing``), else this (the step is given up).

        Returns:
            The exception to raise into the method.
        """
        ctx = context.current()
        if ctx is not None and ctx.choosing and self.error is not None:
            err = getattr(self.error, "cause", None) or self.error  # Ray's wrapper of the router's error
            return ReplyUnavailableError(*err.args) if isinstance(err, PulledReplyGoneError) else self.error
        return self


class PendingReply:
    """What a backup's async method gets for a nested call whose reply copy has not come yet.

    The primary's method gets the call's ``ObjectRef``; a backup makes no call, and the copy its
    primary pushes rides with the announcement of the step that resumes the calling message on
    that reply (``ReplicaCore.copy_or_pull``), after the step that makes the call ended. So the
    backup's method is handed this awaitable instead of an ``ObjectRef`` that would have to exist
    at once (a pull from the callee's router, docs/faults.md row 35): ``await`` it (or gather,
    ``asyncio.wait_for``, ``asyncio.wrap_future(p.future())``) exactly as the ``ObjectRef``. The
    replica binds it when the resume step comes (:meth:`bind`: the copy put in its object store,
    no message) and pulls only a copy still missing then (after a failover, a router restart).
    Awaiting it creates one future on the call's loop and completes it from another thread, as an
    ``ObjectRef`` does, so the event has the same name (``("f", n)``) as at the primary. Used
    otherwise, it becomes the ``ObjectRef`` it stands for at once (:meth:`resolve_now`: the copy
    if here, else a pull, as before row 35): ``ray.get`` and ``ray.wait`` of it (a blocking wait
    inside the step; ``context.resolve_pending_replies``), or pickling it (passed as an argument
    to another call). ``isinstance(p, ray.ObjectRef)`` is False.

    Args:
        request: the nested request (its id names the reply copy).
        pull: makes the call's pull from the callee's router; returns its ``ObjectRef``.
        now: binds it at once, to the copy if here, else to a pull (the replica's
            ``_Replica.resolve_now``).
    """

    def __init__(self, request: Request, pull: Callable[[], Any],
                 now: Optional[Callable[["PendingReply"], None]] = None) -> None:
        self.request = request
        self._pull = pull
        self._now = now
        self._fut: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
        self.awaited: List[Any] = []  # the call loop's futures awaiting it (named ("f", n) there)
        self.raw = False  # future() was handed out: which loop future awaits it is not known
        self.ref: Any = None  # the ObjectRef it is bound to
        self.pulled = False  # bound to a pull from the callee's router (not a pushed copy)

    def bind(self, ref: Any) -> None:
        """Complete it as ``ref`` completes (a copy's ``ObjectRef``, or the pull's).

        Args:
            ref: the ``ObjectRef`` holding the reply.
        """
        if self.ref is not None:
            return
        self.ref = ref
        dest = self._fut

        gone = self.request.msg_id if self.pulled else None

        def done(src: "concurrent.futures.Future[Any]") -> None:
            if src.cancelled():
                dest.cancel()
            elif src.exception() is not None:
                exc = src.exception()
                # a pulled reply the callee forgot: the step must not go on with that error
                dest.set_exception(ReplyGone(gone, exc) if gone is not None and
                                   isinstance(exc, PulledReplyGoneError) else exc)
            else:
                dest.set_result(src.result())
        ref.future().add_done_callback(done)

    def pull(self) -> Any:
        """Bind it to a pull of the reply from the callee's router (the copy is not coming).

        Returns:
            The pull's ``ObjectRef``.
        """
        if self.ref is None:
            self.pulled = True
            self.bind(self._pull())
        return self.ref

    def gone_from(self, get: Callable[..., Any], exc: BaseException) -> Optional["ReplyGone"]:
        """A blocking wait (``ray.get``) that took it raised ``exc``: whether that is this reply, pulled
        from the callee's router and gone there (``ReplyUnavailableError``). The method must not get
        that error (its primary got the value): it gets :class:`ReplyGone` instead, which gives the
        step up, as for an ``await`` (:meth:`bind`; docs/faults.md row 53).

        Args:
            get: Ray's own ``ray.get``.
            exc: what the wait raised.

        Returns:
            The ``ReplyGone`` to raise instead, or None (``exc`` is not this reply's loss).
        """
        if not self.pulled or self.ref is None or not isinstance(exc, PulledReplyGoneError):
            return None
        try:
            get(self.ref, timeout=0)  # done: the wait that raised had it
        except PulledReplyGoneError as err:
            return ReplyGone(self.request.msg_id, err)
        except Exception:  # noqa: S110 - not done, or another error: not this reply's loss
            return None
        return None

    def resolve_now(self) -> Any:
        """The ``ObjectRef`` it stands for, now: the copy's if it is here, else a pull's.

        Returns:
            An ``ObjectRef`` of the reply.
        """
        if self.ref is None:
            if self._now is not None:
                self._now(self)
            else:
                self.pull()
        return self.ref

    def __reduce__(self) -> Any:
        return self.resolve_now().__reduce__()

    def future(self) -> "concurrent.futures.Future[Any]":
        """A ``concurrent.futures.Future`` of the reply (as ``ObjectRef.future``)."""
        self.raw = True
        return self._fut

    def as_future(self, _internal: bool = False) -> "asyncio.Future[Any]":
        """An asyncio future of the reply on the running loop (as ``ObjectRef.as_future``)."""
        fut = asyncio.wrap_future(self._fut)
        self.awaited.append(fut)
        return fut

    def __await__(self) -> Any:
        try:
            return (yield from self.as_future().__await__())
        except ReplyGone as gone:
            raised = gone.for_step()  # a step of the primary's own choice gets the callee's error
            if raised is gone:
                raise
            raise raised from None

    def __repr__(self) -> str:
        return f"PendingReply({self.request.msg_id}, bound={self.ref is not None})"


def aborted(class_name: str, method: str, exc: BaseException) -> MethodAbortedError:
    """The error a caller gets for a method that raised a ``BaseException`` that is not an
    ``Exception`` (``SystemExit``, ``KeyboardInterrupt``, ``asyncio.CancelledError``...).

    Args:
        class_name: the replicated class.
        method: the method that raised it.
        exc: what it raised.

    Returns:
        A :class:`MethodAbortedError` that says what happened in one line.
    """
    what = type(exc).__name__
    detail = f"{what}({exc})" if str(exc) else what
    return MethodAbortedError(f"{class_name}.{method}() raised {detail}; the call failed on every replica "
                              f"alike and the replicated group stays up (a replicated method cannot end "
                              f"its actor)", what)


def port_range_from_env() -> Optional[Tuple[int, int]]:
    """The node's port range for the direct data plane from ``FTACTORS_PORT_RANGE`` ("first-last"),
    set where Ray starts on the node (configs/cluster.yaml, configs/kuberay.yaml); a group's
    ``port_range`` setting wins. None when unset or malformed (malformed: logged)."""
    raw = os.environ.get("FTACTORS_PORT_RANGE", "").strip()
    if not raw:
        return None
    try:
        first, last = (int(p) for p in raw.split("-", 1))
    except ValueError:
        log.warning("FTACTORS_PORT_RANGE=%r is not first-last; replicas listen on any free port", raw)
        return None
    if not 1 <= first <= last <= 65535:
        log.warning("FTACTORS_PORT_RANGE=%r is out of 1-65535; replicas listen on any free port", raw)
        return None
    return first, last


def _name_console_lines(name: str) -> None:
    """Have Ray prefix what this process prints from now on with ``name`` (``(name pid=...)``).

    Ray's log monitor takes the prefix from the last ``:actor_name:`` line of the process's
    stdout and stderr, which Ray itself writes once the actor's constructor returned (its
    ``__repr__``, else its class): a replica's lines, the user's constructor's too, came as
    ``(_Replica pid=...)`` (docs/faults.md row 75).

    Args:
        name: what to show, the user's class first.
    """
    try:
        from ray._private import ray_constants
        for stream in (sys.stdout, sys.stderr):
            print(f"{ray_constants.LOG_PREFIX_ACTOR_NAME}{name}", file=stream, flush=True)
    except Exception:  # another Ray's internals: the prefix stays Ray's own
        log.debug("could not name this replica's console lines", exc_info=True)


def _load_class(spec: GroupSpec) -> Tuple[Optional[type], Tuple[Any, ...], Dict[str, Any], Optional[BaseException]]:
    """The user's class and its constructor's arguments, or why this worker cannot load them.

    A class from a module only the driver has (a local file, no ``runtime_env``) cannot be unpickled
    here: the replica stays up and every call fails with the import error and what to do about it, as
    a plain Ray actor's calls fail with it. Raising here instead made Ray abort the replica's process
    (a C++ stack on the console) and the caller got only ``GroupLostError`` (docs/faults.md row 78).

    Args:
        spec: the group's spec.

    Returns:
        (class, args, kwargs, None), or (None, (), {}, the error every call gets).
    """
    try:
        cls = cloudpickle.loads(spec.cls_bytes)
        args, kwargs = cloudpickle.loads(spec.init_bytes)
    except Exception as exc:
        return None, (), {}, RuntimeError(
            f"the replicated class or its constructor's arguments could not be loaded on this worker: "
            f"{type(exc).__name__}: {exc}. The workers need the modules the class and its arguments come "
            f"from: install them on every node, or pass them with Ray's runtime_env (py_modules, working_dir)")
    return cls, args, kwargs, None


class _Replica:
    """Ray actor hosting one replica. Private: created by the router and ``replicated``."""

    def __repr__(self) -> str:
        """What Ray prefixes this process's console lines with, and its error headers' ``repr=``:
        the user's class and the replica, as a plain actor's lines show its class (row 75)."""
        return f"{getattr(self, 'class_name', 'replicated')} replica {getattr(self, 'replica_id', '?')!r}"

    def __init__(self, spec: GroupSpec, replica_id: str, initial_view: Optional[NewView]) -> None:
        self.spec = spec
        self.replica_id = replica_id
        self.settings = ReplicationSettings(**spec.settings)
        cls, args, kwargs, load_error = _load_class(spec)
        self.class_name = cls.__name__ if cls is not None else spec.group.rsplit("-", 1)[0]
        _name_console_lines(repr(self))  # before the user's constructor prints anything
        self.core = ReplicaCore(spec.group, replica_id, spec.config, scheduling=spec.scheduling,
                                initial_view=initial_view)
        # the constructor's exception (or why the class could not be loaded): every call gets it
        self.init_error: Optional[BaseException] = load_error
        self.obj: Any = None
        if cls is not None:
            try:
                self.obj = cls(*args, **kwargs)
            except Exception as exc:
                self.init_error = portable_error(exc)
            except BaseException as exc:  # SystemExit & co.: this replica must not exit over it
                self.init_error = aborted(cls.__name__, "__init__", exc)
        context.watch_plain_calls()
        context.resolve_pending_replies()
        self._cond = threading.Condition()
        # the Deliver loop written once (ftactors.host.replica): which Deliver applies, who drives,
        # who gets the output, whether the primary keeps its Deliver for a suspended call; it hands
        # effects to the driving call's thread (_ThreadIO)
        self.host = ReplicaHost(self.core, _ThreadIO(self))
        self._t0 = time.monotonic()
        # async calls started and suspended, stepped in the primary's announced order
        self._coroutines = Coroutines(self._wake_driver, self.core.config.suspended_max)
        self._polling = False  # the driver waits for a suspended call's event (no step runs)
        self._carried: Deque[Tuple[str, Tuple[Any, ...]]] = collections.deque(maxlen=1024)
        # one-way nested calls whose invoke returned (the callee's router took them), for the core
        self._oneway_taken: Deque[MsgId] = collections.deque()
        # the callee routers of the one-way nested calls this replica made, by group (re-sends, row 54)
        self.oneway_routers: Dict[str, Any] = {}
        # the primary's nested calls whose replies it pushes to the backups, by calling message
        self._to_push: Dict[MsgId, List[Tuple[Request, Any]]] = {}
        # a backup's async calls: nested calls waiting for their reply copies (PendingReply)
        self._pending: Dict[MsgId, List[PendingReply]] = {}
        # the router's last call, counted from the start: a first replica whose router ended before it
        # called (collected at once: docs/faults.md row 86), and a replacement or spare whose router ended
        # while it was being created (row 89: it counted from the router's first call, which never came),
        # still exit once the router's name no longer resolves
        self.orphan = OrphanWatch(self.settings.ticks(self.settings.orphan_timeout_s), self._ticks())
        threading.Thread(target=self._orphan_watch, daemon=True, name="ftactors-orphan-watch").start()
        self._parked: "collections.OrderedDict[Tuple[str, int], Delivered]" = collections.OrderedDict()
        self._parked_total = 0  # answers parked so far
        self._wire = self._start_wire()
        log.debug("[%s] replica %s started (pid %d)", spec.group, replica_id, os.getpid())

    # ------------------------------------------------------------ Ray methods

    def ready(self) -> Dict[str, Any]:
        """Where this replica runs, and the constructor's exception if it raised one (asked by the
        router: a replica it started, a warm spare too, may be left before its first Deliver or
        ping, and must still exit when that router is gone, see ``_orphan_watch``)."""
        self.orphan.heard(self._ticks())
        return self._where()

    def _where(self) -> Dict[str, Any]:
        """Where this replica runs (``ready``'s answer, without noting the router's call)."""
        ctx = ray.get_runtime_context()
        return {"replica": self.replica_id, "pid": os.getpid(), "node_id": ctx.get_node_id(),
                "error": self.init_error, "wire": self.wire_address()}

    # ------------------------------------------------------- direct data plane

    def _start_wire(self) -> Optional[wire.WireServer]:
        """Listen for the router's direct link on this node's IP (data_plane "direct")."""
        if self.settings.data_plane != "direct" or not self.spec.secret:
            return None
        port_range = self.settings.port_range or port_range_from_env()
        try:
            return wire.WireServer(
                ray.util.get_node_ip_address(), port_range, self.spec.secret, self._wire_deliver,
                self.settings.frame_bytes_max, workers_max=self.settings.replica_threads(),
                name=f"[{self.spec.group}] replica {self.replica_id}: data plane")
        except wire.WireError as exc:  # no free port in the range: Ray calls carry the Delivers
            log.warning("[%s] replica %s: %s; its Delivers go through Ray calls", self.spec.group,
                        self.replica_id, exc)
            return None

    def wire_address(self) -> Optional[Tuple[str, int]]:
        """(node IP, port) of this replica's direct link, or None (Ray calls only)."""
        return None if self._wire is None else self._wire.address

    def _wire_deliver(self, call_id: int, seq: int, epoch: str, body: bytes) -> Tuple[int, bytes]:
        """One Deliver that came on the direct link: ``deliver`` it and encode the answer.

        Raises:
            wire.FrameError: the body is not a Deliver (the connection is dropped).
        """
        msg = wire.loads(body)
        if not isinstance(msg, Deliver):
            raise wire.FrameError(f"a {type(msg).__name__} where a Deliver was expected")
        answer = self.deliver(msg, epoch, seq)
        try:
            out = wire.dumps(answer)
            if len(out) + 64 <= self.settings.frame_bytes_max:
                return wire.KIND_DELIVERED, out
        except Exception as exc:  # an ObjectRef (a checkpoint or a reply in the object store), or what
            log.debug("[%s] %s: answer parked: %r", self.spec.group, self.replica_id, exc)  # Ray may pickle
        with self._cond:
            self._parked_total += 1
            self._parked[(epoch, call_id)] = answer
            while len(self._parked) > PARKED_MAX:  # the router fetches each at once; these are lost routers'
                self._parked.popitem(last=False)
        return wire.KIND_PARKED, b""

    def parked(self, epoch: str, call_id: int) -> Delivered:
        """An answer the direct link could not carry (it holds an ObjectRef or is over a frame).

        Args:
            epoch: the router incarnation.
            call_id: the call on its link.
        """
        with self._cond:
            answer = self._parked.pop((epoch, call_id), None)
        return answer if answer is not None else self.host.nothing()

    def ping(self, counts: Optional[Dict[str, int]] = None) -> bool:
        """Liveness probe (answered even while a call executes).

        Args:
            counts: the router's counters, kept for a restarted router (see ``view_info``).
        """
        self.orphan.heard(self._ticks())
        if counts:  # the highest of each: a late ping from a router incarnation that is gone
            with self._cond:
                self.host.on_ping(counts.items())
        return True

    def group_spec(self) -> GroupSpec:
        """The group's spec with the class and constructor arguments (the router spawns replicas from it)."""
        return self.spec

    def deliver(self, msg: Deliver, epoch: str = "", seq: int = 0) -> Delivered:
        """Take a batch from the router; return replies and announcements.

        The batch enters the core at once, so the primary's scheduler sees every call
        that arrived, even while a long call executes (priority, deadline...). One
        thread drives the core at a time; one Deliver that arrives meanwhile waits as
        its *standby* and takes over driving after the current effect, returning the
        output so far; any further Deliver returns at once, freeing the router to send
        the next. Output belongs to the router incarnation that is current when it is
        taken: an execution started under a router that died answers the new one.

        Args:
            msg: the batch.
            epoch: the router incarnation sending it.
            seq: its number on this link; batches are applied in this order
                (Ray runs concurrent calls of a threaded actor in any order).

        Returns:
            The core's output for the router (empty when another thread delivers it).
        """
        self.orphan.heard(self._ticks())
        if msg.checkpoint is not None:
            msg = self._localise_checkpoint(msg)
        msg = self._localise_requests(msg)
        ticket = _Ticket()
        with self._cond:
            self.host.tick()
            self.host.deliver(msg, epoch, seq, ticket)
            resend = self.core.take_resend()  # just promoted: one-way calls its dead primary may have lost
            if resend:
                threading.Thread(target=self._resend_oneway, args=(resend,), daemon=True,
                                 name="ftactors-oneway-resend").start()
            self.host.drive()
            self._notify()
            while True:
                if ticket.work is not None:  # this call drives: carry the effect out on this thread
                    self._carry_out(ticket)
                elif ticket.answer is not None:
                    return ticket.answer
                elif ticket.error is not None:
                    raise ticket.error
                elif ticket.hold_s is not None:  # the primary keeps this Deliver for a suspended call
                    self._hold(ticket)
                else:  # a later one of this link ran first, or another call drives: wait
                    self._cond.wait()

    def state_report(self, epoch: str = "") -> StateReport:
        """What this replica holds, for the router's recovery.

        Args:
            epoch: the asking router incarnation: a dead one's Delivers are dropped from now on,
                so the report is all this replica will hold of what it sent.
        """
        self.orphan.heard(self._ticks())
        with self._cond:
            report = self.host.state_report(epoch)
            self._cond.notify_all()
            return report

    def view_info(self, epoch: str = "") -> Tuple[int, Tuple[str, ...], str, Dict[str, int]]:
        """(view, members, role, the router's last counters), for a restarted router rebuilding the view.

        Args:
            epoch: the asking router incarnation (see :meth:`state_report`).
        """
        self.orphan.heard(self._ticks())
        with self._cond:
            info = self.host.view_info(epoch)
            self._cond.notify_all()
            return info

    def info(self) -> Dict[str, Any]:
        """Role, progress and a state digest, for ``ftactors.describe``."""
        with self._cond:
            # a digest taken mid-batch would not match the executed count: wait for the batch
            self._cond.wait_for(lambda: not self.host.turns.driving or self._polling, timeout=2.0)
            core = self.core
            self.take_carried()  # the one-way calls taken meanwhile (oneway_out below)
            passive_backup = core.role == Role.BACKUP and core.config.style == "passive"
            if passive_backup:  # it applies checkpoints and logs instead of executing
                digest = core.checkpoint.digest if core.checkpoint is not None else ""
                executed = core.acked_position()
            else:
                idle = not self.host.turns.driving or self._polling
                digest = state_digest(self.obj) if idle else ""  # unknown: still busy
                executed = core.executed_upto
            return {
                **self._where(), "role": core.role.value, "view": core.view, "executed": executed,
                "checkpoint_position": core.checkpoint.position if core.checkpoint is not None else 0,
                "acked": core.acked_position(), "state_digest": digest, "counts": dict(core.counts),
                "pending": len(core.requests), "replies_cached": len(core.dedup),
                "wire_delivers": self._wire.served if self._wire is not None else 0,
                "wire_dropped": sum(self._wire.dropped.values()) if self._wire is not None else 0,
                "wire_parked": self._parked_total,
                # why it may lag: what its next position needs, the Deliver it applies next,
                # and how many later ones wait for that one
                "waits_for": core.waits_for(), "next_deliver": self.host.turns.next_seq,
                "delivers_waiting": len(self.host.later),
                # one-way nested calls sent whose invoke has not returned (their callers stay held)
                "oneway_out": len(core.oneway_out),
            }

    def retire(self) -> None:
        """Leave: the router removed this replica from the view."""
        log.info("[%s] replica %s retired", self.spec.group, self.replica_id)
        # an intended exit: ``os._exit`` here made Ray record a SYSTEM_ERROR death and the raylet
        # print "A worker died ... unexpected system error" on the driver's console (row 58). Ray
        # lets the calls running on other threads finish first; one that does not end soon (a method
        # waiting on a nested call) must not keep a retired replica alive: exit anyway then.
        timer = threading.Timer(RETIRE_EXIT_WAIT_MAX_S, lambda: os._exit(0))
        timer.daemon = True
        timer.start()
        ray.actor.exit_actor()

    def set_unavailable(self, resources: Tuple[str, ...]) -> None:
        """Resource scheduling: mark resources unavailable (empty: all available)."""
        with self._cond:
            self.core.set_unavailable(frozenset(resources))

    # ------------------------------------------------------------- orphans

    def _orphan_watch(self) -> None:
        """Exit when the group's router is gone for good (collected with its group while this replica
        was being created, or its driver exited without ``ftactors.shutdown``): replicas created by
        re-replication are detached actors and would otherwise outlive the job. The rule is the
        host's (``ftactors.host.replica.OrphanWatch``); its control plane here is the router's name:
        a router that Ray is restarting still resolves, so only a destroyed router ends the replica."""
        timeout_s = self.settings.orphan_timeout_s
        beats = 0
        while True:
            time.sleep(max(0.5, timeout_s / 4))
            if self._wire is not None and self._wire.heartbeats != beats:  # the router beats on the link
                beats = self._wire.heartbeats  # (an idle group's pings)
                self.orphan.heard(self._ticks())
            if not self.orphan.due(self._ticks()):
                continue
            try:
                ray.get_actor(router_actor_name(self.spec.group), namespace=self.spec.namespace)
                exists: Optional[bool] = True
            except ValueError:
                exists = False
            except Exception:  # the GCS is unreachable: keep the state, try again
                exists = None
            if self.orphan.decide(self._ticks(), exists):
                log.info("[%s] replica %s: the group's router is gone; exiting", self.spec.group,
                         self.replica_id)
                os._exit(0)

    # ------------------------------------------------------------- carry-back

    def carry_back_later(self, group: str, anns_ref: Any) -> None:
        """When the nested reply's announcements arrive, keep them for the core (claim 66).

        Args:
            group: the callee group.
            anns_ref: the ObjectRef of the announcements its router returned.
        """
        def arrived(fut: Any) -> None:
            try:
                anns = fut.result()
            except Exception:  # the method raised, or the callee failed: nothing to carry
                return
            self._carried.append((group, anns))  # thread-safe; the core takes them under the lock

        anns_ref.future().add_done_callback(arrived)

    def _resend_oneway(self, reqs: Tuple[Request, ...]) -> None:
        """This replica became primary: send again the one-way nested calls its dead primary may have
        died before the callees' routers took (``ReplicaCore.take_resend``; the callees drop the
        duplicates). Their arguments travel by value. Each is released like a call sent from a method
        (:meth:`oneway_later`). Runs on its own thread (finding a callee's router asks the GCS).

        Args:
            reqs: the requests to send.
        """
        for req in reqs:
            try:
                router = self.oneway_routers.get(req.group)
                if router is None:
                    router = ray.get_actor(router_actor_name(req.group), namespace=self.spec.namespace)
                self.oneway_later(req.msg_id, router.invoke.remote(req, oneway=True))
            except Exception as exc:  # the callee is gone: nothing to deliver it to
                log.warning("[%s] replica %s: one-way call %s not sent again: %s", self.spec.group,
                            self.replica_id, req.msg_id, exc)
                self._oneway_taken.append(req.msg_id)

    def oneway_later(self, msg_id: MsgId, ref: Any) -> None:
        """The primary sent the one-way nested call ``msg_id`` (noted in the core with
        ``ReplicaCore.oneway_sent``, so its calling message stays named in the holds of later nested
        calls): once its invoke returns (the callee's router took it and it ran, or the call failed),
        the core forgets it (taken under the lock with the next nested call, :meth:`take_carried`).

        Args:
            msg_id: the nested request's id.
            ref: the ObjectRef of the router's ``invoke``.
        """
        ref.future().add_done_callback(lambda _fut: self._oneway_taken.append(msg_id))  # thread-safe

    def push_later(self, ctx: "context.CallContext", req: Request, ref: Any) -> None:
        """The primary made nested call ``req``: push its reply to the backups once it is here.

        The reply is taken at the end of the step that made the call (a sync call's code got it)
        or of a later step of the same call (an async call resumed by it), and goes out on that
        step's Delivered, with the calling message's announcement (claim 48); the router relays
        it to the backups on the Deliver that carries the announcement, so a backup reaching the
        call pulls nothing from the callee's router.

        Args:
            ctx: the calling message's context.
            req: the nested request.
            ref: the ObjectRef of its value.
        """
        if ctx.execute is None:
            return
        calls = self._to_push.setdefault(ctx.execute.request.msg_id, [])
        if len(calls) < self.core.config.reply_copies_max:
            calls.append((req, ref))

    def check_pull(self, req: Request, ref: Any) -> None:
        """A backup's sync step pulled the reply of nested request ``req`` (its pushed copy was lost):
        wait for it here, so that a reply gone at the callee never reaches the method.

        Args:
            req: the nested request.
            ref: the pull's ``ObjectRef``.

        Raises:
            ReplyGone: the callee forgot the call (``ReplyUnavailableError``); the step is given up.
        """
        try:
            ray.get(ref)
        except PulledReplyGoneError as exc:  # the callee forgot it; not a method that raised the error (row 70)
            raise ReplyGone(req.msg_id) from exc
        except Exception:  # noqa: S110 - the method's own error (or the call's): its ray.get raises it
            return

    def await_copy(self, ctx: "context.CallContext", pending: PendingReply) -> None:
        """A backup's async step made a nested call whose copy is not here: the copy comes with the
        announcement of the step that resumes the call on it (:meth:`_settle_pending`). Call
        holding ``_cond``. Past ``reply_copies_max`` waiting for one call, it is pulled now.

        Args:
            ctx: the calling message's context.
            pending: what the method is handed.
        """
        calls = self._pending.setdefault(ctx.execute.request.msg_id if ctx.execute is not None else
                                         pending.request.msg_id, [])
        if len(calls) < self.core.config.reply_copies_max:
            calls.append(pending)
            return
        _, pull = self.core.copy_or_pull(pending.request.msg_id, consuming=True)
        if pull:
            pending.pull()

    def resolve_now(self, pending: PendingReply) -> None:
        """Bind ``pending`` at once (its method waits on it with ``ray.get``, or pickles it): to the
        copy if it is here, else to a pull (the copy cannot come while the step runs).

        Args:
            pending: a nested call's stand-in this replica handed its method.
        """
        with self._cond:
            for caller, calls in list(self._pending.items()):
                if any(p is pending for p in calls):
                    calls[:] = [p for p in calls if p is not pending]
                    if not calls:
                        del self._pending[caller]
            copy, _ = self.core.copy_or_pull(pending.request.msg_id, consuming=True)
        if copy is not None:
            pending.bind(copied_ref(copy))
        else:
            pending.pull()

    def _settle_pending(self, caller: MsgId, wake: Any) -> None:
        """Before a resume step of ``caller``: hand its waiting nested calls the copies that came
        (no message) and pull the one the step consumes if its copy is missing (it was lost).

        Args:
            caller: the calling message.
            wake: the event the step admits (announced); None: this replica is primary and
                chooses, so every call still waiting needs its reply now (a promoted backup).
        """
        binds: List[Tuple[PendingReply, Optional[Reply]]] = []
        with self._cond:
            pendings = self._pending.pop(caller, None)
            if not pendings:
                return
            left = []
            for p in pendings:
                consuming = wake is None or p.raw or self._coroutines.awaits(caller, p.awaited, wake)
                copy, pull = self.core.copy_or_pull(p.request.msg_id, consuming)
                if copy is not None or pull:
                    binds.append((p, copy))
                else:
                    left.append(p)
            if left:
                self._pending[caller] = left
        for p, copy in binds:
            if copy is not None:
                p.bind(copied_ref(copy))
            else:
                p.pull()

    def _settle_promoted(self) -> None:
        """This replica became primary with async calls waiting for copies (call holding
        ``_cond``): they need their replies to become resumable; missing copies are pulled."""
        if self._pending and self.core.role == Role.PRIMARY:
            for caller in list(self._pending):
                self._settle_pending(caller, None)

    def _replies_to_push(self, caller: MsgId, finished: bool) -> List[Reply]:
        """The replies of ``caller``'s nested calls that arrived (without the lock: a local check
        of Ray's object store, no message). A value or the nested method's exception is pushed
        (see :func:`pushed_outcome`); a call whose group failed, or whose reply is still missing
        when ``caller`` finishes, is not: the backups pull it."""
        if not self._to_push:  # no nested call made (most steps)
            return []
        calls = self._to_push.pop(caller, None) if finished else self._to_push.get(caller)
        if not calls:
            return []
        out, waiting = [], []
        for req, ref in calls:
            try:
                ready, _ = ray.wait([ref], timeout=0, fetch_local=False)
            except Exception:  # its group failed: the backups pull
                continue
            if not ready:
                waiting.append((req, ref))
                continue
            outcome = pushed_outcome(ref)
            if outcome is not None:
                out.append(Reply(req.msg_id, req.group, 0, 0, outcome))
        if not finished:
            if waiting:
                self._to_push[caller] = waiting
            else:
                self._to_push.pop(caller, None)
        return out

    def _push(self, replies: List[Reply]) -> None:
        """Hand the replies to the core's outbox (call holding ``_cond``)."""
        if self.core.role != Role.PRIMARY:
            return
        for rep in replies:
            self.core.nested_reply(rep)

    def take_carried(self) -> None:
        """Feed the announcements that arrived to the core, and the one-way nested calls the
        callees' routers took. Call holding ``_cond``."""
        while self._carried:
            group, anns = self._carried.popleft()
            self.core.carry_back(group, anns)
        while self._oneway_taken:
            self.core.oneway_taken(self._oneway_taken.popleft())

    # --------------------------------------------------------------- driving

    def _ticks(self) -> int:
        return int((time.monotonic() - self._t0) / self.settings.tick_s)

    def _notify(self) -> None:
        """Wake the Deliver calls waiting on ``_cond`` (call holding it); none wait in a sequential run."""
        if self._cond._waiters:  # type: ignore[attr-defined]  # what notify_all reads, without its calls
            self._cond.notify_all()

    def _wake_driver(self) -> None:
        """An event for a suspended async call arrived (from any thread): wake the driver."""
        with self._cond:
            self._cond.notify_all()

    def _carry_out(self, ticket: "_Ticket") -> None:
        """Carry out the effect the host gave this call's thread (call holding ``_cond``): the
        method, the pickling and the loading run without the lock, so Delivers arriving meanwhile
        enter the core (the primary's scheduler sees them) and pings are answered."""
        effect, ticket.work = ticket.work, None
        self._cond.release()
        try:
            done = self._run_effect(effect)
        except BaseException:
            self._cond.acquire()
            self.host.abort()  # this call fails; a standby takes over driving
            self.host.drive()
            self._cond.notify_all()
            raise
        self._cond.acquire()
        done()
        self.host.drive()
        self._notify()

    def _hold(self, ticket: "_Ticket") -> None:
        """The host keeps this call's Deliver while the primary's suspended calls wait (call holding
        ``_cond``): wait for a coroutine event (or the next timer, or another Deliver), then let
        the host look for work again; it answers once ``heartbeat_s`` passed."""
        ticket.hold_s, wait_s = None, ticket.hold_s
        self._polling = True  # no step runs meanwhile: info() may read the state
        try:
            self._cond.wait(timeout=wait_s)
        finally:
            self._polling = False
        self.host.drive()
        self._cond.notify_all()

    def _hold_for_s(self, ticket: "_Ticket") -> Optional[float]:
        """How long the driving ``ticket`` may keep its Deliver now (None: answer it)."""
        if ticket.since is None:
            ticket.since = time.monotonic()
        left = self.settings.heartbeat_s - (time.monotonic() - ticket.since)
        if left <= 0:
            return None
        timer = self._coroutines.next_timer_s()
        return min(left, 0.05 if timer is None else max(0.001, timer))

    def _run_effect(self, effect: Any) -> Callable[[], None]:
        """Carry ``effect`` out (without the lock); return what tells the host it is done."""
        if isinstance(effect, Execute):
            try:
                outcome, nondet, wake = self._execute(effect)
            except ReplyGone as gone:
                return self._given_up(effect, gone)
            pushed = self._replies_to_push(effect.request.msg_id, finished=outcome is not None)

            def done() -> None:
                self._push(pushed)  # first: the copies ride no later than the announcement
                self.host.executed(outcome, nondet, wake)
            return done
        if isinstance(effect, Snapshot):
            state, digest = self._snapshot(effect)
            return lambda: self.host.snapshot_taken(state, digest)
        if isinstance(effect, Restore):
            self._coroutines.drop_all()  # the core dropped them too: a checkpoint holds none
            self._pending.clear()
            self.obj = cloudpickle.loads(self._materialise(effect.checkpoint.state))
            return self.host.restored
        raise AssertionError(f"unknown effect {effect!r}")  # pragma: no cover - the core has no other

    def _given_up(self, ex: Execute, gone: ReplyGone) -> Callable[[], None]:
        """What tells the host that the step of ``ex`` met a nested reply gone at its callee: given
        up (a replayed step; the router repairs this replica by state transfer), or, for a step of
        the primary's own choice, ended with the error as its outcome."""
        self._to_push.pop(ex.request.msg_id, None)

        def done() -> None:
            if not self.host.pulled_reply_gone(gone.msg_id):
                err = ReplyUnavailableError(f"reply of {gone.msg_id} was trimmed (reply_cache_max)")
                self.host.executed(Outcome(False, err))
        return done

    def _execute(self, ex: Execute) -> Tuple[Optional[Outcome], Tuple[Any, ...], Any]:
        """Run one step of ``ex``: a whole sync call, or an async call's start or resume.

        Returns:
            (outcome, nondet, wake): outcome None when an async call waits (suspended); the
            values the primary drew in this step; the event a resume step admitted.
        """
        req = ex.request
        choosing = self.core.role == Role.PRIMARY and not ex.replay
        if ex.resume:
            ctx = self._coroutines.context_of(req.msg_id)
            ctx.begin_step(ex.nondet, choosing, ex)
            if self._pending:
                self._settle_pending(req.msg_id, None if choosing else ex.wake)
            step = self._coroutines.resume(req.msg_id, None if choosing else ex.wake, wait_on(self._cond))
            if step.done:
                self._pending.pop(req.msg_id, None)
            return self._step_outcome(step, req.method), tuple(ctx.recorded), step.wake
        ctx = context.CallContext(replica=self, replay=ex.nondet, choosing=choosing, execute=ex)
        context.set_current(ctx)
        outcome: Optional[Outcome]
        try:
            args, kwargs = cloudpickle.loads(self._materialise(req.payload))
            result = getattr(self.obj, req.method)(*args, **kwargs)
            if type(result) in _SCALAR_RESULTS:  # the common case: no awaitable, pickles
                outcome = Outcome(True, result)
            elif inspect.isawaitable(result) and not isinstance(result, ray.ObjectRef):
                # an async method's coroutine; an ObjectRef is awaitable too, but a sync method that
                # returns one returns the ref, as with Ray (docs/faults.md row 83)
                context.set_current(None)  # the coroutine runs with its own copy, on its call loop
                step = self._coroutines.start(req.msg_id, result, ctx, _await)
                outcome = self._step_outcome(step, req.method)
            else:
                outcome = portable_result(result, type(self.obj).__name__, req.method)
        except Exception as exc:  # the method's own exception: every replica raises it too
            outcome = Outcome(False, portable_error(exc))
        except ReplyGone:
            raise  # the step is given up (_given_up)
        except BaseException as exc:  # SystemExit & co. would end every replica in turn
            outcome = Outcome(False, aborted(type(self.obj).__name__, req.method, exc))
        finally:
            if not (ex.resume or req.msg_id in self._coroutines):
                ctx.finished = True  # a task the method left running can no longer act for this call
                if self._pending:
                    self._pending.pop(req.msg_id, None)
            context.set_current(None)
        return outcome, tuple(ctx.recorded), None

    def _step_outcome(self, step: StepResult, method: str) -> Optional[Outcome]:
        """The outcome of an async call's step: None while it waits."""
        if not step.done:
            return None
        if step.error is None:
            return portable_result(step.value, type(self.obj).__name__, method)
        if isinstance(step.error, _Aborted):
            if isinstance(step.error.exc, ReplyGone):
                raise step.error.exc  # the step is given up (_given_up)
            return Outcome(False, aborted(type(self.obj).__name__, method, step.error.exc))
        if isinstance(step.error, Exception):
            return Outcome(False, portable_error(step.error))
        return Outcome(False, aborted(type(self.obj).__name__, method, step.error))

    def _snapshot(self, snap: Snapshot) -> Tuple[Any, str]:
        """(the state for a checkpoint or None, its digest)."""
        digest = state_digest(self.obj)
        state: Any = None
        if snap.for_checkpoint:
            data = cloudpickle.dumps(self.obj)
            state = ray.put(data) if len(data) > self.settings.large_arg_bytes else data
        return state, digest

    def _materialise(self, value: Any) -> Any:
        """A payload or a checkpoint's state, fetched if it is in the object store."""
        if isinstance(value, _BY_REFERENCE):
            return self._fetch_argument(value)
        return value

    def _localise_requests(self, msg: Deliver) -> Deliver:
        """Arguments in the object store are fetched on arrival, as checkpoints are.

        The router owns them (``_RouterLoop._own_argument``) for as long as the order needs them; a
        fetched copy also outlives a router restart (this replica's state report then carries the
        bytes). One that cannot be fetched belongs to a router that died: the request is left out,
        as if that router never sent it (the rebuilt router, or the caller's retry, sends it again);
        executing it without its argument would record another outcome than the other replicas.
        """
        for r in msg.requests:
            if isinstance(r.payload, _BY_REFERENCE):
                break
        else:  # every argument came by value (the common case): no copy of the Deliver
            return msg
        reqs = []
        for req in msg.requests:
            if isinstance(req.payload, _BY_REFERENCE):
                try:
                    req = dataclasses.replace(req, payload=self._fetch_argument(req.payload))
                except Exception as exc:  # its owners, a router and the caller, died
                    log.warning("[%s] %s: the argument of %s is lost with its router (%r); left out",
                                self.spec.group, self.replica_id, req.msg_id, exc)
                    continue
            reqs.append(req)
        return dataclasses.replace(msg, requests=tuple(reqs))

    def _fetch_argument(self, payload: Any) -> Any:
        """The bytes of an argument in the object store: the router's object, else the caller's.

        Raises:
            The error of the last object tried (``OwnerDiedError``, ``GetTimeoutError``...).
        """
        timeout_s = max(30.0, self.settings.failure_timeout_s)
        if not isinstance(payload, OwnedArgument):
            return ray.get(payload, timeout=timeout_s)
        try:
            return ray.get(payload.ref, timeout=timeout_s)
        except Exception:  # the router that owned it restarted: the caller's may still live
            return ray.get(payload.caller, timeout=timeout_s)

    def _localise_checkpoint(self, msg: Deliver) -> Deliver:
        """A checkpoint in the object store is owned by the primary: copy it here before it can die."""
        cp = msg.checkpoint
        if cp is None or not isinstance(cp.state, ray.ObjectRef):
            return msg
        try:
            state = ray.get(cp.state, timeout=max(30.0, self.settings.failure_timeout_s))
        except Exception as exc:  # its owner (a primary) died: keep the checkpoint already held
            log.warning("[%s] %s: checkpoint at %d unreachable (%r); keeping the previous one",
                        self.spec.group, self.replica_id, cp.position, exc)
            if msg.join:
                raise
            return dataclasses.replace(msg, checkpoint=None)
        return dataclasses.replace(msg, checkpoint=dataclasses.replace(cp, state=state))


class _Aborted(Exception):
    """Carries a coroutine's ``BaseException`` out of the replica's event loop, which would
    otherwise stop on ``SystemExit`` or ``KeyboardInterrupt`` and never answer."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        self.exc = exc


async def _await(awaitable: Any, ctx: context.CallContext) -> Any:
    """Await ``awaitable`` as the call ``ctx`` (set in this task's own context on the loop thread);
    a ``BaseException`` that is not an ``Exception`` comes out wrapped in :class:`_Aborted`."""
    context.set_current(ctx)
    try:
        return await awaitable
    except Exception:
        raise
    except BaseException as exc:
        raise _Aborted(exc) from None
    finally:
        # closed in the same step of the loop as the method's end: a task it left running must find
        # it closed on every replica alike (else one replica's task acts for the call, another's not)
        ctx.finished = True
        context.set_current(None)


class _Ticket:
    """One Deliver call in the Ray shell: what the host gave it (an answer, an error, or an effect
    to carry out on the call's own thread). Read and written holding the replica's ``_cond``."""

    __slots__ = ("answer", "error", "work", "hold_s", "since")

    def __init__(self) -> None:
        self.answer: Optional[Delivered] = None
        self.error: Optional[BaseException] = None
        self.work: Any = None
        self.hold_s: Optional[float] = None  # the host keeps this Deliver: wait this long, then drive
        self.since: Optional[float] = None  # when it started driving (it keeps it heartbeat_s at most)


class _ThreadIO:
    """The replica host's I/O in Ray (:class:`ftactors.host.replica.ReplicaIO`): the host runs under
    the replica's lock; an answer or an effect goes to the waiting Deliver call's ticket, and that
    call's thread carries the effect out (``_Replica._carry_out``)."""

    def __init__(self, replica: _Replica) -> None:
        self.r = replica

    def ticks(self) -> int:
        return self.r._ticks()

    def answer(self, token: _Ticket, out: Delivered) -> None:
        token.answer = out

    def refused(self, token: _Ticket, exc: RemoteProtocolError) -> None:
        token.error = exc  # the Ray call raises it: the router treats the replica as failed

    def execute(self, ex: Execute, token: _Ticket) -> None:
        if token.since is None:  # it started driving: it may keep its Deliver heartbeat_s from now
            token.since = time.monotonic()
        token.work = ex

    def snapshot(self, snap: Snapshot, token: _Ticket) -> None:
        token.work = snap

    def restore(self, effect: Restore, token: _Ticket) -> None:
        token.work = effect

    def resumable(self) -> Tuple[MsgId, ...]:
        r = self.r
        if r._pending:
            r._settle_promoted()
        return r._coroutines.ready()

    def hold(self, token: _Ticket) -> bool:
        token.hold_s = self.r._hold_for_s(token)
        return token.hold_s is not None

    def count(self, what: str) -> None:
        pass

"""The public face of ftactors on Ray: ``@replicated``, handles, ``describe``, ``shutdown``.

A :class:`ReplicatedHandle` behaves like a Ray actor handle: ``h.method.remote()``
returns a real ``ray.ObjectRef`` (``ray.get``, ``ray.wait``, ``await``, ActorPool
work), the method's exceptions arrive with their own type, and handles pickle
into tasks and other actors.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import importlib
import inspect
import logging
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

# Ray's own cloudpickle, not the package: a class pickled by value (a driver script's exception or
# value type) keeps one tracker id through the replicas, the router and Ray's return to the caller,
# so the caller unpickles it as its own class (docs/faults.md row 57).
from ray import cloudpickle
import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftactors.core import Abandoned, CancelRenotices, ClientCore, ConfigError, Kind, NewView, Request
from ftactors.host.placement import plan_nodes
from ftactors.runtime import context
from ftactors.runtime.errors import GroupShutdownError, NotReplicatedError
from ftactors.runtime.coroutines import CallLoop
from ftactors.runtime.replica_actor import PendingReply, copied_ref, replica_actor_name, router_actor_name
from ftactors.runtime.router_actor import _REPLICA_CLASS, ABANDON_WAIT_S_MAX, _AsyncRouter, flat_request
from ftactors.runtime.wire import new_secret
from ftactors.runtime.settings import REMOVED_SETTINGS, ReplicationSettings, load_settings
from ftactors.spec import GroupSpec

log = logging.getLogger("ftactors")

_callers_lock = threading.Lock()
_callers: Dict[str, "_Caller"] = {}  # one numbering per (process, group): the router keeps its FIFO
_process_id = uuid.uuid4().hex[:16]
#: what keeps the groups this process created, by (namespace, group) (docs/faults.md row 86): the first
#: replicas, which this process owns and Ray collects once it references them no more (the router finds
#: them by name, which Ray does not count), and a named group's router (a named group lives until
#: ``ftactors.shutdown`` or its job's end). An unnamed group's router is Ray's to collect, as a plain actor
#: is: once no handle (copies in tasks and actors included) and no pending call references it; its end
#: stops the replicas (``_AsyncRouter.__ray_shutdown__``, each replica's orphan watch otherwise).
_kept_lock = threading.Lock()
_kept: "collections.OrderedDict[Tuple[Optional[str], str], Tuple[Any, ...]]" = collections.OrderedDict()
#: entries checked (their router looked up by name) at each group creation: those whose router is gone
#: are let go, so the process keeps no more than its live groups plus a few, for any number created
KEPT_CHECKS_PER_CREATION = 2

#: Ray options that ftactors sets itself and a user may not, with what to do instead.
_RESERVED = {
    "max_restarts": "ftactors replaces a failed replica itself (settings replicas, min_replicas)",
    "max_task_retries": "ftactors retries calls itself and runs each one exactly once",
    "name": "name the group with @ftactors.replicated(name=...) or .options(name=...)",
}

#: Ray options for running several calls of an actor at once.
_CONCURRENCY = ("max_concurrency", "concurrency_groups")

#: Why a replica runs one call at a time (the refusal of max_concurrency > 1 and concurrency_groups).
_ONE_AT_A_TIME = (
    "ftactors runs one call at a time on each replica, in the order the primary chose, so that "
    "every replica computes the same state (calls running concurrently would interleave "
    "differently on each replica). Remove it; async methods may still await nested calls. For "
    "parallelism, split the state over several replicated groups, or run stateless work in plain "
    "Ray tasks called from outside the replicated actor"
)
#: Ray's values of an actor's ``lifetime`` option.
_LIFETIMES = (None, "detached", "non_detached")

#: The prefix of the Ray namespace of a group created in an anonymous one (see :func:`group_namespace`).
_ANONYMOUS_PREFIX = "ftactors-"
#: How long after the router is gone ``shutdown`` lets Ray release the names of the group's actors
#: before it stops the ones still named itself (``_wait_names_gone``).
NAMES_SWEEP_AFTER_S = 1.0
#: Callers' calls in the router (an async Ray actor) at once, its Ray ``max_concurrency``; more wait
#: in Ray's queue for the actor.
ROUTER_CALLS_MAX = 1000
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def group_namespace(namespace: Optional[str] = None) -> str:
    """The Ray namespace of a group's named actors (its router and replicas).

    Args:
        namespace: the namespace the user named, or None for the current job's.

    Returns:
        That namespace; an anonymous one (the UUID Ray gives a job started without
        ``namespace=``) with the prefix ``ftactors-``: the router creates replacement
        replicas as detached actors, and Ray warns about every detached actor created in
        an anonymous namespace. A group stays private to its job there, as with Ray.
    """
    ns = namespace if namespace is not None else ray.get_runtime_context().namespace
    return _ANONYMOUS_PREFIX + ns if _UUID.fullmatch(ns) else ns


def user_namespace(ray_namespace: Optional[str]) -> Optional[str]:
    """The namespace a user names to reach a group: the inverse of :func:`group_namespace`."""
    if ray_namespace and ray_namespace.startswith(_ANONYMOUS_PREFIX) \
            and _UUID.fullmatch(ray_namespace[len(_ANONYMOUS_PREFIX):]):
        return ray_namespace[len(_ANONYMOUS_PREFIX):]
    return ray_namespace


class _Caller:
    """One process's requests to one group, and the results it has not yet seen arrive.

    A plain caller gets each reply as a Ray result, never as a :class:`Reply`; it
    learns that one arrived by asking Ray, every ``sweep_every`` requests, which of
    its oldest results are ready. Its ``ack_below`` then lets the router and the
    replicas forget those replies: their exactly-once tables stay as small as the
    number of calls in flight (a retry of Ray's only ever repeats a call whose
    result did not arrive).

    Args:
        source: the source name of this process towards the group.
        sweep_every: requests between two checks.
        sweep_max: results checked at most in one go.
    """

    def __init__(self, source: str, sweep_every: int = 16, sweep_max: int = 256) -> None:
        self.core = ClientCore(source)
        self._waiting: "collections.deque[Tuple[int, Any]]" = collections.deque()
        self._sweep_every, self._sweep_max = sweep_every, sweep_max
        self._since_sweep = 0
        # the group's router, as of the last call: weakly, so that a group whose handles are all gone
        # is collected (docs/faults.md row 86)
        self._router: Optional["weakref.ReferenceType[Any]"] = None
        # calls cancelled (``ray.cancel``) before their result came: their result (TaskCancelledError) says
        # nothing of whether or when the group runs them, so ``ack_below`` passes one only once its router
        # said it gave it up (docs/faults.md row 72)
        self._cancelled: Set[int] = set()
        # those whose notice got no settling answer ("unknown", or the router died): noticed again on a later
        # call (docs/faults.md row 88); made at the first cancel, so that a caller that cancels nothing pays
        # one test per call
        self.renotices: Optional[CancelRenotices] = None
        self.notices_out: List[int] = []  # due: sent by the call that found them, out of ``_callers_lock``

    def request(self, **fields: Any) -> Any:
        """The next request (call under ``_callers_lock``), its ``ack_below`` up to date."""
        if self.renotices is not None and len(self.renotices):
            self.notices_out.extend(self.renotice(_now_ms()))
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_every and self._waiting:
            self._since_sweep = 0
            self._sweep()
        return self.core.request(**fields)

    def sent(self, seq: int, ref: Any, router: Any) -> None:
        """Request ``seq`` was submitted; ``ref`` is its result (call under ``_callers_lock``).

        Args:
            seq: the request's sequence number.
            ref: its result.
            router: the group's router (told if the call is cancelled: :func:`cancel`).
        """
        self._waiting.append((seq, ref))
        if self._router is None or self._router() is not router:
            self._router = weakref.ref(router)

    @property
    def router(self) -> Any:
        """The group's router as of the last call (None: none yet, or no handle to it is left here)."""
        return None if self._router is None else self._router()

    def seq_of(self, ref: Any) -> Optional[int]:
        """The sequence number of the call whose result is ``ref``, if it has not settled yet (call
        under ``_callers_lock``)."""
        for seq, waiting in self._waiting:
            if waiting == ref:
                return seq
        return None

    def cancelled(self, seq: int) -> None:
        """Call ``seq`` is being cancelled (``ray.cancel``) before its result came (call under
        ``_callers_lock``): it stays unsettled (``ack_below`` does not pass it) unless its router gives it
        up (:meth:`given_up`). A call the router had taken still runs at the group, and a later call
        carrying an ``ack_below`` past it would tell the replicas that it ran: each asserted it ran twice
        when it did (docs/faults.md row 72).

        Args:
            seq: the call's sequence number.
        """
        self._cancelled.add(seq)

    def noticed(self, seq: int, now_ms: int) -> None:
        """The first notice of cancelled call ``seq`` is sent (call under ``_callers_lock``): track it
        until an answer settles it (:meth:`renotice`).

        Args:
            seq: the call's sequence number.
            now_ms: the clock (:func:`_now_ms`).
        """
        if self.renotices is None:
            self.renotices = CancelRenotices(RENOTICE_MS, ANSWER_WAIT_MS, RENOTICES_MAX, RENOTICE_TRACKED_MAX)
        note = self.renotices.cancelled(seq, now_ms)
        if note:
            log.warning("ftactors: caller %s: %s", self.core.source, note)

    def renotice(self, now_ms: int) -> Tuple[int, ...]:
        """The cancelled calls whose notice to send again now (call under ``_callers_lock``; send them with
        :func:`_send_notices` out of it): an answer "unknown" or an error (the router died) came
        ``RENOTICE_MS`` ago (docs/faults.md row 88). A rebuilt router that recovered answers "given up" or
        "ran" (a call it knows nothing of died with its predecessor: "given up").

        Args:
            now_ms: the clock (:func:`_now_ms`).

        Returns:
            The calls' sequence numbers.
        """
        assert self.renotices is not None
        due = self.renotices.due(now_ms)
        if due.note:
            log.warning("ftactors: caller %s: %s", self.core.source, due.note)
        return due.send

    def given_up(self, seq: int) -> None:
        """The router gave cancelled call ``seq`` up (it never runs) or said it ran (``_AsyncRouter.abandon``
        answered "given up" or "ran"): it is settled (call under ``_callers_lock``; rows 72, 82).

        Args:
            seq: the call's sequence number.
        """
        self._cancelled.discard(seq)
        self.core.on_settled(seq)

    def _sweep(self) -> None:
        batch = [self._waiting[i] for i in range(min(len(self._waiting), self._sweep_max))]
        ready, _ = ray.wait([ref for _, ref in batch], num_returns=len(batch), timeout=0, fetch_local=False)
        if not ready:
            return
        done = set(ready)
        for _ in batch:
            self._waiting.popleft()
        for seq, ref in reversed(batch):  # the unsettled go back in front, in their order
            if ref in done:
                if seq not in self._cancelled:  # a cancelled call's result says nothing of its run
                    self.core.on_settled(seq)
            else:
                self._waiting.appendleft((seq, ref))


_ray_cancel = getattr(ray.cancel, "__wrapped__", ray.cancel)


def cancel(ray_waitable: Any, *args: Any, **kwargs: Any) -> None:
    """``ray.cancel``, which ftactors installs in its place (row 67): Ray's own, then, for the result
    of a replicated call of this process not settled yet, a notice to the group's router
    (``_AsyncRouter.abandon``). A call cancelled before the router took it (still queued in Ray)
    never runs, and without the notice the caller's next call waited ``reorder_wait_s`` for its
    sequence number; one the router took runs as before. The call stays unsettled (the caller's
    ``ack_below`` does not pass it) until the router answers that it gave it up or that it ran
    (:func:`_given_up`): its result (``TaskCancelledError``) says nothing of when the group runs it
    (rows 72, 82). No cost on the call path (a callback on every result cost 80-150 us a call).

    Args:
        ray_waitable: as for ``ray.cancel``.
        *args: as for ``ray.cancel``.
        **kwargs: as for ``ray.cancel`` (``force``, ``recursive``).

    Raises:
        What ``ray.cancel`` raises.
    """
    found: List[Tuple[_Caller, int, Any]] = []
    if isinstance(ray_waitable, ray.ObjectRef) and _callers and \
            not ray.wait([ray_waitable], timeout=0, fetch_local=False)[0]:  # a call done already: nothing to tell
        with _callers_lock:  # marked before Ray's cancel makes its result ready: no sweep settles it
            found = [(c, seq, c.router) for c in _callers.values()
                     if (seq := c.seq_of(ray_waitable)) is not None and c.router is not None]
            for c, seq, _ in found:
                c.cancelled(seq)
    try:
        _ray_cancel(ray_waitable, *args, **kwargs)
    except BaseException:
        with _callers_lock:
            for c, seq, _ in found:
                c._cancelled.discard(seq)  # not cancelled: its result settles it as any
        raise
    if found:
        now_ms = _now_ms()
        with _callers_lock:
            for c, seq, _ in found:
                c.noticed(seq, now_ms)
    for c, seq, router in found:  # its answer read: a router gone meanwhile prints no unhandled error
        router.abandon.remote(c.core.source, seq)._on_completed(functools.partial(_given_up, c, seq))


def _send_notices(caller: _Caller) -> None:
    """Send the notices :meth:`_Caller.renotice` found due (out of ``_callers_lock``: a notice's answer
    may come at once, and :func:`_given_up` takes the lock)."""
    with _callers_lock:
        seqs, caller.notices_out = caller.notices_out, []
        router = caller.router
    for seq in seqs:
        if router is None:  # no handle to the group left in this process: nowhere to send it
            _given_up(caller, seq, None)
        else:
            router.abandon.remote(caller.core.source, seq)._on_completed(functools.partial(_given_up, caller, seq))


def _given_up(caller: _Caller, seq: int, result: Any) -> None:
    """The router's answer to the notice of cancelled call ``seq`` (:func:`cancel`): "given up" (it never
    runs) or "ran" (the router answers once the call it had taken ran, row 82): settled. Otherwise
    ("unknown": a recovering router, or the call did not run in ``ABANDON_WAIT_S_MAX``; or the router or
    the group was gone) the call stays unsettled: the caller's ``ack_below`` stays at it (row 72), and its
    next call ``RENOTICE_MS`` later sends the notice again (:meth:`_Caller.renotice`, row 88).

    Args:
        caller: the caller of the call.
        seq: the call's sequence number.
        result: ``_AsyncRouter.abandon``'s answer, or its error.
    """
    settles = isinstance(result, str) and result in _SETTLES
    with _callers_lock:
        if settles:
            caller.given_up(seq)
        if caller.renotices is not None:
            caller.renotices.answered(seq, settles, _now_ms())


#: the answers of ``_AsyncRouter.abandon`` that settle the cancelled call (``core.Abandoned``)
_SETTLES = frozenset({Abandoned.GIVEN_UP.value, Abandoned.RAN.value})
#: a cancelled call whose notice got an answer that did not settle it is noticed again on the first call
#: this long after the answer (``reorder_wait_s``'s default: a rebuilt router recovers within it)
RENOTICE_MS = 500
#: a notice unanswered this long is sent again (``_AsyncRouter.abandon`` waits ``ABANDON_WAIT_S_MAX``
#: at most; Ray answers an error if the router died, so this is only a backstop)
ANSWER_WAIT_MS = int(ABANDON_WAIT_S_MAX * 1000) + 60_000
#: notices sent again per cancelled call at most, and cancelled calls tracked per caller at most
RENOTICES_MAX = 16
RENOTICE_TRACKED_MAX = 1_024


def _now_ms() -> int:
    """The caller's clock for its re-notices (``core.CancelRenotices``' ticks), in milliseconds."""
    return int(time.monotonic() * 1000)


cancel.__wrapped__ = _ray_cancel  # type: ignore[attr-defined]
ray.cancel = cancel


def _caller(group: str) -> _Caller:
    """This process's caller towards ``group`` (call under ``_callers_lock``)."""
    caller = _callers.get(group)
    if caller is None:
        caller = _callers[group] = _Caller(f"c{_process_id}.{len(_callers)}")
    return caller


@dataclass(frozen=True)
class ReplicaInfo:
    """One replica, as ``ftactors.describe`` reports it."""

    replica_id: str
    actor: Any
    node_id: str
    pid: int
    role: str
    executed: int
    state_digest: str
    replies_cached: int = -1  # its exactly-once table (-1: unknown)
    error: str = ""  # why it did not answer ``describe`` ("" when it did)
    wire_address: Optional[Tuple[str, int]] = None  # its direct data plane's (node IP, port); None: Ray calls
    wire_delivers: int = 0  # Delivers it took over the direct data plane
    wire_dropped: int = 0  # connections it dropped (failed handshake, bad frame...)
    wire_parked: int = 0  # answers that held an ObjectRef (or were over a frame): fetched with a Ray call
    waits_for: str = ""  # what its next position needs ("" when nothing is missing)
    next_deliver: int = 0  # the number of the router's Deliver it applies next
    delivers_waiting: int = 0  # later Delivers it holds until that one comes
    oneway_out: int = 0  # one-way nested calls it sent that the callee's router has not taken yet


@dataclass(frozen=True)
class GroupInfo:
    """A replicated group, as ``ftactors.describe`` reports it."""

    group: str
    view: int
    style: str
    phase: str
    primary: Optional[ReplicaInfo]
    backups: List[ReplicaInfo]
    joining: List[str]
    counts: Dict[str, int]
    diverged: List[Tuple[str, int]] = field(default_factory=list)
    last_failover_s: Optional[float] = None
    #: what the router keeps: requests not yet executed everywhere, their order, replies for retries
    retained: Dict[str, int] = field(default_factory=dict)
    #: warm spares ready (``spares=``): replica id -> its process id; not members
    spares: Dict[str, int] = field(default_factory=dict)
    #: what the router holds for each member: ``acked``, ``inflight`` Delivers, ``queued_requests``,
    #: ``queued_announcements``, ``sent_ago_s``, ``heard_ago_s``, ``progress_ago_s``, ``wire`` (the
    #: direct link's state), ``delivers_sent``
    links: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    @property
    def replicas(self) -> List[ReplicaInfo]:
        """Primary first, then backups."""
        return ([self.primary] if self.primary else []) + list(self.backups)

    def disagreement(self, replicas: int) -> Optional[str]:
        """Why the group is not (yet) whole, caught up and in agreement; None when it is.

        A replica that did not answer ``describe`` (executed -1) or was busy
        (semi-active, empty digest) counts as not converged: agreement is shown
        only by real figures from every replica, never by two unknowns that compare equal.

        Args:
            replicas: how many members the group must have (at least).

        Returns:
            None if the router is in its normal phase with no join pending, at
            least ``replicas`` members all reported an executed position >= 0 and
            the same one, and (semi-active) all reported the same non-empty state
            digest; otherwise a sentence saying what is missing or differs.
        """
        reps = self.replicas
        if len(reps) < replicas or self.joining or self.phase != "normal":
            return f"{len(reps)}/{replicas} replicas, phase {self.phase}, joining {self.joining}"
        unknown = [r.replica_id for r in reps if r.executed < 0 or r.pid <= 0]
        if unknown:
            return f"no progress reported by {unknown} (unreachable or busy)"
        executed = [r.executed for r in reps]
        if len(set(executed)) != 1:
            return f"executed positions differ: {executed}; " + "; ".join(
                self.lag_detail(r) for r in reps if r.executed < max(executed))
        if self.style == "semi-active":  # passive backups hold a checkpoint's digest, not the current state's
            digests = [r.state_digest for r in reps]
            if not all(digests) or len(set(digests)) != 1:
                return "state digests differ or are unknown (busy): " + ", ".join(
                    f"{r.replica_id} ({r.role}, executed {r.executed}): {r.state_digest!r}" for r in reps)
        return None


    def lag_detail(self, r: ReplicaInfo) -> str:
        """Why replica ``r`` may be behind, in one clause: what it waits for, the Delivers it holds,
        and what the router holds for it.

        Args:
            r: a member of this group.

        Returns:
            For instance ``"g-r3 (backup) at 1044 waits for the announcement of position 1045 (0 later
            ones held), applies Deliver 812 next; router: acked 1044, 1 Deliver in flight, 0 requests
            and 225 announcements queued, sent 61.0 s ago, heard 0.1 s ago, link up"``.
        """
        parts = [f"{r.replica_id} ({r.role}) at {r.executed}"]
        if r.waits_for:
            parts.append(f"waits for {r.waits_for}")
        if r.next_deliver:
            parts.append(f"applies Deliver {r.next_deliver} next" +
                         (f" ({r.delivers_waiting} later ones wait for it)" if r.delivers_waiting else ""))
        link = self.links.get(r.replica_id)
        if link:
            parts.append(f"router: acked {link.get('acked')}, {link.get('inflight')} Deliver(s) in flight of "
                         f"{link.get('delivers_sent', '?')} sent, {link.get('queued_requests')} requests and "
                         f"{link.get('queued_announcements')} announcements queued, sent {link.get('sent_ago_s')} s "
                         f"ago, heard {link.get('heard_ago_s')} s ago, advanced {link.get('progress_ago_s')} s ago, "
                         f"link {link.get('wire', 'none')}")
        return ", ".join(parts)


class ReplicatedMethod:
    """``handle.method``: call it with ``.remote(...)``; set hints with ``.options(...)``."""

    def __init__(self, handle: "ReplicatedHandle", name: str, priority: int = 0,
                 deadline_s: Optional[float] = None, oneway: bool = False,
                 resources: Tuple[str, ...] = (), num_returns: Optional[int] = None) -> None:
        self._handle, self._name = handle, name
        self._priority, self._deadline_s, self._oneway, self._resources = priority, deadline_s, oneway, resources
        self._num_returns = num_returns  # None: the method's own (@ray.method(num_returns=...)) or 1

    def options(self, *, priority: int = 0, deadline_s: Optional[float] = None, oneway: bool = False,
                resources: Tuple[str, ...] = (), num_returns: Any = None,
                **ray_options: Any) -> "ReplicatedMethod":
        """Scheduling hints and message kind for this call.

        Args:
            priority: higher runs first (with ``scheduling="priority"``).
            deadline_s: run before this many seconds from now (``scheduling="deadline"``).
            oneway: a one-way call: ``.remote()`` returns None and neither the value nor
                an exception comes back. The group still acknowledges the call to this
                process once the primary executed it, so a router crash cannot lose it:
                Ray retries it and it takes effect exactly once.
            resources: names of resources the call needs (``scheduling="resources"``).
            num_returns: as Ray's: ``.remote()`` returns a list of that many refs, one per
                value of the tuple the method returns (row 63).
            **ray_options: Ray's other method options: refused.

        Raises:
            TypeError: a hint of the wrong type; ``num_returns`` other than an int >= 1
                (``"streaming"``, ``"dynamic"``: not supported); another Ray method option.
        """
        if ray_options:
            raise TypeError(f"{self._handle._class_name}.{self._name}.options(): option {sorted(ray_options)[0]!r} "
                            f"is not supported on a replicated method (ftactors retries and orders calls "
                            f"itself); its options are priority, deadline_s, oneway, resources and num_returns")
        returns = None if num_returns is None else returns_of(num_returns, f"{self._handle._class_name}.{self._name}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be an int, got {priority!r}")
        if deadline_s is not None and (not isinstance(deadline_s, (int, float)) or deadline_s < 0):
            raise TypeError(f"deadline_s must be a number >= 0, got {deadline_s!r}")
        if isinstance(resources, str):
            resources = (resources,)
        return ReplicatedMethod(self._handle, self._name, priority, deadline_s, bool(oneway), tuple(resources),
                                returns)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Invoke the method on the replicated group.

        Returns:
            A ``ray.ObjectRef`` to the method's result (None for a one-way call); with
            ``num_returns`` above 1, a list of that many, as Ray gives.

        Raises:
            GroupShutdownError: the group was shut down.
            ray.exceptions.RayError: an ``ObjectRef`` argument's task failed (its error).
            TypeError: ``num_returns`` above 1 in a call from a replicated method, or
                ``num_returns="streaming"``; the arguments do not fit the method's signature (Ray's message, as a
                plain actor's ``.remote()`` raises it), or an argument cannot be serialised.
            ValueError: the arguments exceed ``max_message_bytes``.
        """
        h = self._handle
        if h._closed:
            raise GroupShutdownError(f"{h._group} was shut down; this handle can no longer be used")
        params = h._signatures.get(self._name)
        if params is not None:  # as Ray's .remote() does, before anything is sent (row 61)
            check_arguments(params, args, kwargs)
        args, kwargs = resolved_arguments(args, kwargs)
        returns = self._num_returns
        if returns is None:
            declared = h._num_returns.get(self._name)
            returns = 1 if declared is None else returns_of(declared, f"{h._class_name}.{self._name}")
        try:
            payload: Any = cloudpickle.dumps((args, kwargs))
        except Exception as exc:
            raise TypeError(f"{h._class_name}.{self._name}(): an argument cannot be serialized: {exc}") from exc
        size = len(payload)
        by_value = payload
        if size > h._max_message_bytes:
            raise ValueError(f"{h._class_name}.{self._name}(): arguments are {size} bytes, over "
                             f"max_message_bytes={h._max_message_bytes}")
        if size > h._large_arg_bytes:
            payload = ray.put(payload)  # in the object store once, whatever the number of replicas
        # one-way calls travel as acknowledged requests too: an invoke that returned before the
        # primary executed the call would be lost with the router, as Ray would not retry it
        kind = Kind.SYNC_REQUEST
        deadline = None if self._deadline_s is None else int((time.time() + self._deadline_s) * 1000)
        fields = dict(method=self._name, payload=payload, kind=kind, priority=self._priority,
                      deadline_tick=deadline, resources=self._resources, size_bytes=size)
        ctx = context.current()
        if ctx is None:
            with _callers_lock:
                caller = _caller(h._group)
                req = caller.request(group=h._group, **fields)
                flat = flat_request(req)  # plain values: Ray's msgpack, not its pickler (issue 11)
                sent = req if flat is None else flat
                # the router's invoke named Class.method: Ray's error header shows it (row 66); with
                # num_returns above 1 Ray splits the method's tuple into the refs (row 63)
                invoke = h._invoker(self._name, returns)
                ref = invoke.remote(sent, oneway=True) if self._oneway else invoke.remote(sent)
                caller.sent(req.msg_id.seq, ref[0] if isinstance(ref, list) else ref, h._router)  # until it completes
            if caller.notices_out:  # cancelled calls noticed again (row 88): not on the call path otherwise
                _send_notices(caller)
        else:
            ctx.check_open()
            if returns != 1 and not self._oneway:
                raise TypeError(f"{h._class_name}.{self._name}(): num_returns={returns} is not supported in a call "
                                f"from a replicated method (its reply comes back as one value); call it with "
                                f".options(num_returns=1) and unpack the tuple it returns")
            replica = ctx.replica
            pending: Optional[PendingReply] = None
            with replica._cond:
                replica.take_carried()
                req, send = replica.core.nested_request(h._group, **fields)
                if self._oneway:  # every replica keeps it, to send it again if it becomes primary (row 54)
                    replica.core.keep_oneway(dataclasses.replace(req, payload=by_value))
                    replica.oneway_routers[h._group] = h._router
                if send and self._oneway:  # its caller stays held until the callee's router took it
                    replica.core.oneway_sent(req.msg_id)
                pushed = None
                if not (send or self._oneway):
                    # a sync step consumes the reply now; an async one suspends on it, and the copy
                    # comes with the announcement of the step that resumes the call on it
                    pushed, pull = replica.core.copy_or_pull(req.msg_id, consuming=not _in_async_step())
                    if pushed is None and not pull:
                        pending = PendingReply(req, _puller(h, replica, req), replica.resolve_now)
                        replica.await_copy(ctx, pending)
            if pushed is not None:  # its primary pushed the reply here (claim 48): no message
                return copied_ref(pushed)
            if pending is not None:  # a backup's async method: the copy comes later (row 35)
                return pending
            ctx.internal = True  # not a plain Ray call of the user's (context.watch_plain_calls)
            try:
                if self._oneway:
                    try:
                        taken = h._invoker(self._name, 1).remote(req, copy=not send, oneway=True)
                    except BaseException:
                        if send:
                            with replica._cond:
                                replica.core.oneway_taken(req.msg_id)
                        raise
                    if send:
                        replica.oneway_later(req.msg_id, taken)
                    return None
                ref, anns = h._invoker(self._name, 0).remote(req, copy=not send)
            finally:
                ctx.internal = False
            replica.carry_back_later(h._group, anns)
            if send:
                replica.push_later(ctx, req, ref)
            else:  # a backup's sync step pulls the reply it consumes: one gone at the callee gives the step up
                replica.check_pull(req, ref)
        return None if self._oneway else ref

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"replicated methods cannot be called directly; use {self._name}.remote()")


def _in_async_step() -> bool:
    """Whether the running code is a step of an async replicated call (its private call loop runs)."""
    return isinstance(asyncio._get_running_loop(), CallLoop)


def _puller(h: "ReplicatedHandle", replica: Any, req: Request) -> Callable[[], Any]:
    """What pulls a backup's nested reply from the callee's router, by the request's id (a reply
    gone at the callee reaches the method as ``ReplyGone``, not as the error: ``PendingReply.bind``)."""
    def pull() -> Any:
        ref, anns = h._invoker(req.method, 0).remote(req, copy=True)
        replica.carry_back_later(h._group, anns)
        return ref
    return pull


class ReplicatedHandle:
    """A handle to a replicated group. Use it like a Ray actor handle.

    Example:
        >>> acct = Account.remote(100)
        >>> ray.get(acct.deposit.remote(5))
        105
    """

    def __init__(self, group: str, router: Any, class_name: str, methods: Tuple[str, ...],
                 max_message_bytes: int, large_arg_bytes: int, style: str,
                 signatures: Optional[Dict[str, Params]] = None, num_returns: Optional[Dict[str, Any]] = None) -> None:
        self._group, self._router, self._class_name = group, router, class_name
        # the methods' own @ray.method(num_returns=...) other than 1 (row 63)
        self._num_returns: Dict[str, Any] = dict(num_returns or {})
        # each method's parameters, to bind a call's arguments at .remote() as Ray does (row 61)
        self._signatures: Dict[str, Params] = dict(signatures or {})
        self._methods = frozenset(methods)
        self._max_message_bytes, self._large_arg_bytes, self._style = max_message_bytes, large_arg_bytes, style
        self._closed = False

    def _invoker(self, method: str, returns: int) -> Any:
        """The router's ``invoke`` (``invoke_nested`` when ``returns`` is 0) named ``Class.method``.

        Ray's error header, ``ray::Class.method()``, names the task (row 66). Not cached: the
        ``.options()`` call costs about 0.5 us, and a cache in the handle would enter the state digest
        of a replicated actor that holds the handle (filled on the primary, empty on its backups).

        Args:
            method: the user's method.
            returns: the call's ``num_returns``; 0 for a nested call (``num_returns=2``: value and
                announcements).

        Returns:
            The bound method to call ``.remote(...)`` on.
        """
        name = f"{self._class_name}.{method}"
        if returns == 0:
            return self._router.invoke_nested.options(name=name, num_returns=2)
        return self._router.invoke.options(name=name, num_returns=returns)

    def __getattr__(self, name: str) -> ReplicatedMethod:
        if name.startswith("_"):
            raise AttributeError(f"'{self._class_name}' replicated actor: private attribute {name!r} is not callable")
        if name not in self._methods:
            raise AttributeError(f"'{self._class_name}' replicated actor has no method {name!r}")
        return ReplicatedMethod(self, name)

    def __reduce__(self) -> Any:
        return (ReplicatedHandle, (self._group, self._router, self._class_name, tuple(self._methods),
                                   self._max_message_bytes, self._large_arg_bytes, self._style,
                                   self._signatures, self._num_returns))

    def __repr__(self) -> str:
        return f"ReplicatedHandle({self._class_name}, group={self._group!r})"

    @property
    def group(self) -> str:
        """The group's name."""
        return self._group


class ReplicatedClass:
    """What ``@replicated`` returns: call ``.remote(*args)`` to create a group."""

    def __init__(self, cls: type, settings: ReplicationSettings, actor_options: Dict[str, Any],
                 name: Optional[str] = None, namespace: Optional[str] = None, lifetime: Optional[str] = None,
                 get_if_exists: bool = False) -> None:
        self._cls, self._settings, self._actor_options = cls, settings, actor_options
        self._name, self._namespace = name, namespace
        self._lifetime, self._get_if_exists = _check_lifetime(lifetime), get_if_exists
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def options(self, *, name: Optional[str] = None, namespace: Optional[str] = None,
                lifetime: Optional[str] = None, get_if_exists: Optional[bool] = None,
                **changes: Any) -> "ReplicatedClass":
        """A copy with a group name, lifetime, replication settings or Ray actor options changed.

        Args:
            name: the group's name, unique in its namespace (``ftactors.get_actor`` finds it).
            namespace: the Ray namespace of the group (default: the current job's).
            lifetime: ``"detached"``: the group outlives the job that creates it and ends only
                with ``ftactors.shutdown``; None or ``"non_detached"``: it ends with its job.
            get_if_exists: with ``name``: return the existing group of that name instead of
                raising ``ValueError``.
            **changes: replication settings (see :class:`ReplicationSettings`) and Ray actor
                options for every replica (``num_cpus``, ``resources``, ``runtime_env``...).

        Returns:
            A new :class:`ReplicatedClass`.

        Raises:
            ConfigError: an unknown or invalid setting, a Ray option ftactors sets itself, a
                lifetime other than Ray's, or ``get_if_exists`` without a name.
            TypeError: ``get_if_exists`` is not a bool.
        """
        fields = set(ReplicationSettings.model_fields) | set(REMOVED_SETTINGS)  # a removed one: ConfigError
        settings = {k: v for k, v in changes.items() if k in fields}
        ray_opts = {k: v for k, v in changes.items() if k not in fields}
        _check_actor_options(ray_opts)
        ray_opts = {k: v for k, v in ray_opts.items() if k not in _CONCURRENCY}  # max_concurrency=1: ours
        if get_if_exists is not None and not isinstance(get_if_exists, bool):
            raise TypeError(f"get_if_exists must be a bool, got {get_if_exists!r}")
        new_settings = load_settings(self._settings.model_dump(exclude_unset=True), **settings)  # derived stay derived
        out = ReplicatedClass(self._cls, new_settings, {**self._actor_options, **ray_opts},
                              name or self._name, namespace or self._namespace,
                              lifetime if lifetime is not None else self._lifetime,
                              self._get_if_exists if get_if_exists is None else get_if_exists)
        if out._get_if_exists and not out._name:
            raise ConfigError("get_if_exists=True needs a group name: .options(name=..., get_if_exists=True)")
        return out

    def remote(self, *args: Any, **kwargs: Any) -> ReplicatedHandle:
        """Create the group (replicas and router) and return its handle at once.

        As with Ray's own ``.remote()``, nothing waits for the actors to start: they start in
        the background, in parallel, and the group's first call waits for them. A constructor
        that raises surfaces at the first call, as the constructor's exception.

        Returns:
            The group's handle; with ``get_if_exists=True``, the existing group's if there is one.

        Raises:
            ConfigError: the cluster cannot satisfy ``placement``.
            TypeError: the arguments do not fit the constructor's signature (Ray's message), or
                cannot be serialised.
            ray.exceptions.RayError: an ``ObjectRef`` argument's task failed (its error).
            ValueError: a group of this name already exists in the namespace (without
                ``get_if_exists=True``).
        """
        params = method_signatures(self._cls, ("__init__",)).get("__init__")
        if params is not None:  # as Ray's Cls.remote() does, before any actor starts (row 61)
            check_arguments(params, args, kwargs)
        if not ray.is_initialized():
            ray.init()
        args, kwargs = resolved_arguments(args, kwargs)
        return _create_group(self, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"replicated classes cannot be instantiated directly; use {self.__name__}.remote()")


def _check_lifetime(lifetime: Optional[str]) -> Optional[str]:
    """``lifetime`` if it is one of Ray's values.

    Raises:
        ConfigError: any other value.
    """
    if lifetime not in _LIFETIMES:
        raise ConfigError(f"lifetime must be 'detached', 'non_detached' or None, got {lifetime!r}")
    return lifetime


def _check_actor_options(opts: Dict[str, Any], where: str = ".options()") -> None:
    """Refuse Ray actor options that replication cannot honour.

    Args:
        opts: the Ray actor options given by the user.
        where: where they were given, for the message.

    Raises:
        ConfigError: ``max_concurrency`` above 1, ``concurrency_groups``, or an option ftactors
            sets itself; the message names the option, why, and what to do instead.
    """
    _check_concurrency(opts, where)
    known = _ray_actor_option_names()
    unknown = sorted(k for k in opts if known and k not in known)
    if unknown:  # else Ray refuses it only in the router, creating every replica (row 59)
        raise ConfigError(f"unknown option {unknown[0]!r} in {where}: neither a replication setting nor a Ray "
                          f"actor option (a name, namespace, lifetime or get_if_exists, a ReplicationSettings "
                          f"field, or one of Ray's actor options such as num_cpus, resources, runtime_env)")
    bad = sorted(k for k in opts if k in _RESERVED)
    if bad:
        raise ConfigError(f"Ray option {bad[0]!r} in {where}: ftactors manages it itself; {_RESERVED[bad[0]]}")


def _ray_actor_option_names() -> Set[str]:
    """The option names Ray's ``ActorClass.options`` accepts (empty if this Ray version hides them)."""
    for module in ("ray._common.ray_option_utils", "ray._private.ray_option_utils"):
        try:
            return set(importlib.import_module(module).actor_options)
        except (ImportError, AttributeError):
            continue
    return set()


def _check_concurrency(opts: Dict[str, Any], where: str) -> None:
    """Refuse ``max_concurrency`` above 1 and ``concurrency_groups`` (``max_concurrency=1`` is allowed).

    Raises:
        ConfigError: either is set; the message names it and says what to do.
    """
    if opts.get("max_concurrency", 1) not in (None, 1):
        raise ConfigError(f"Ray option max_concurrency={opts['max_concurrency']!r} in {where} is not supported "
                          f"on a replicated class: {_ONE_AT_A_TIME}")
    if opts.get("concurrency_groups"):
        raise ConfigError(f"Ray option concurrency_groups in {where} is not supported on a replicated class: "
                          f"{_ONE_AT_A_TIME}")


def _public_methods(cls: type) -> Tuple[str, ...]:
    return tuple(n for n, v in inspect.getmembers(cls) if callable(v) and not n.startswith("_"))


#: A method's parameters as plain values, ``self`` left out: (name, ``inspect.Parameter`` kind as an
#: int, whether it has a default) each. Plain values because the router keeps them for
#: ``ftactors.get_actor`` (Ray restarts it from its arguments) and handles carry them when pickled.
Params = Tuple[Tuple[str, int, bool], ...]

#: A default value stand-in: binding needs only to know that a parameter has one.
_HAS_DEFAULT = object()
#: Signatures rebuilt from :data:`Params`, shared by every handle of this process, with the fewest
#: and most positional arguments that bind when no keyword is given.
_bound_signatures: Dict[Params, Tuple[inspect.Signature, int, int]] = {}


def _binder(params: Params) -> Tuple[inspect.Signature, int, int]:
    """``params`` as an ``inspect.Signature``, with the positional counts that need no binding."""
    kinds = inspect.Parameter
    sig = inspect.Signature([
        kinds(name, inspect._ParameterKind(kind), default=_HAS_DEFAULT if has_default else kinds.empty)
        for name, kind, has_default in params])
    positional = [p for p in params if p[1] in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    most = 1 << 30 if any(p[1] == kinds.VAR_POSITIONAL for p in params) else len(positional)
    fewest = sum(1 for p in positional if not p[2])
    if any(kind == kinds.KEYWORD_ONLY and not has_default for _, kind, has_default in params):
        fewest = most + 1  # a required keyword-only argument: no call without keywords fits
    return sig, fewest, most


def method_signatures(cls: type, names: Tuple[str, ...]) -> Dict[str, Params]:
    """The parameters of ``cls``'s methods ``names`` as a caller binds them (``self`` left out).

    As Ray's ``extract_signature``: the first parameter is dropped for a method called on an
    instance, kept for a static method; a class method's is already bound. A method whose
    signature cannot be read (a builtin, a Cython function) is left out, and its calls are not
    checked at ``.remote()``.

    Args:
        cls: the user's class.
        names: the methods (``"__init__"`` for the constructor).

    Returns:
        Method name -> :data:`Params`.
    """
    out: Dict[str, Params] = {}
    for name in names:
        try:
            raw = inspect.getattr_static(cls, name)
            params = list(inspect.signature(getattr(cls, name)).parameters.values())
        except (AttributeError, TypeError, ValueError):
            continue
        if inspect.isroutine(raw) and not isinstance(raw, (staticmethod, classmethod)):  # bound to an instance
            if not params:
                continue
            params = params[1:]
        out[name] = tuple((p.name, int(p.kind), p.default is not inspect.Parameter.empty) for p in params)
    return out


def declared_returns(cls: type, names: Tuple[str, ...]) -> Dict[str, Any]:
    """The ``num_returns`` of ``@ray.method(num_returns=...)`` on ``cls``'s methods ``names``, where not 1.

    Args:
        cls: the user's class.
        names: its public methods.

    Returns:
        Method name -> what it declared (checked at ``.remote()`` by :func:`returns_of`).
    """
    out: Dict[str, Any] = {}
    for name in names:
        declared = getattr(getattr(cls, name, None), "__ray_num_returns__", None)
        if declared is not None and declared != 1:
            out[name] = declared
    return out


def returns_of(num_returns: Any, where: str) -> int:
    """A call's ``num_returns`` if ftactors supports it (an int >= 1).

    Args:
        num_returns: what the user gave (``.options`` or ``@ray.method``).
        where: ``Class.method``, for the message.

    Returns:
        The number of refs ``.remote()`` returns (a list of them when above 1).

    Raises:
        TypeError: ``"streaming"``, ``"dynamic"`` (a replicated method cannot stream its results)
            or anything else that is not an int >= 1.
    """
    if isinstance(num_returns, int) and not isinstance(num_returns, bool) and num_returns >= 1:
        return num_returns
    if num_returns in ("streaming", "dynamic"):
        raise TypeError(f"{where}: num_returns={num_returns!r} is not supported on a replicated method (its "
                        f"results are not streamed); return a list instead")
    raise TypeError(f"{where}: num_returns must be an int >= 1, got {num_returns!r}")


#: What stands for a value not here yet: a Ray ``ObjectRef``, or, at a backup's async method, the
#: ``PendingReply`` it is handed for a nested call's reply (``ray.get`` takes both in a replica).
_REFS = (ray.ObjectRef, PendingReply)


def resolved_arguments(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """A call's arguments with each top-level ``ObjectRef`` replaced by its value, as Ray passes them.

    Ray resolves an ``ObjectRef`` given as an argument itself (not one inside a list or a dict)
    before the method runs. A replicated call is resolved here, in ``.remote()``, which waits for
    those values: every replica, now or later (a backup replaying, a replacement after the caller
    exited), must run the call on the same values, which the caller's object may no longer give
    (row 64). Refs inside containers pass as refs, as with Ray.

    Args:
        args: the call's positional arguments.
        kwargs: its keyword arguments.

    Returns:
        ``(args, kwargs)``, the same objects when no argument is an ``ObjectRef``.

    Raises:
        ray.exceptions.RayError: an argument's task failed (its error, as ``ray.get`` raises it).
    """
    refs = [a for a in args if isinstance(a, _REFS)]
    refs += [v for v in kwargs.values() if isinstance(v, _REFS)] if kwargs else []
    if not refs:
        return args, kwargs
    values = {id(ref): value for ref, value in zip(refs, ray.get(refs))}  # type: ignore[arg-type]
    return (tuple(values[id(a)] if isinstance(a, _REFS) else a for a in args),
            {k: values[id(v)] if isinstance(v, _REFS) else v for k, v in kwargs.items()})


def check_arguments(params: Params, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
    """Bind a call's arguments to a method's parameters, as Ray's ``.remote()`` does.

    Args:
        params: the method's parameters (:func:`method_signatures`).
        args: the call's positional arguments.
        kwargs: its keyword arguments.

    Raises:
        TypeError: they do not fit, with Python's message (``missing a required argument: 'n'``,
            ``too many positional arguments``, ``got an unexpected keyword argument 'x'``), as Ray
            raises it.
    """
    known = _bound_signatures.get(params)
    if known is None:
        known = _bound_signatures[params] = _binder(params)
    sig, fewest, most = known
    if not kwargs and fewest <= len(args) <= most:  # fits, without binding (the call path's common case)
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(str(exc)) from None


def _placement(settings: ReplicationSettings, n: int) -> List[Optional[str]]:
    """A node id per replica (None: let Ray choose), by the one placement policy.

    Raises:
        PlacementError: ``strict-spread`` with fewer alive nodes than replicas.
    """
    nodes = [] if settings.placement == "pack" else alive_nodes()
    return plan_nodes(nodes, n, settings.placement)


#: The resource Ray gives the head node only.
_HEAD_MARKER = "node:__internal_head__"


def alive_nodes() -> List[str]:
    """Alive Ray node ids, worker nodes first: the head node (GCS) is the cluster's own single
    point of failure, so the primary and the first backups go elsewhere when they can."""
    alive = [x for x in ray.nodes() if x.get("Alive")]
    alive.sort(key=lambda x: _HEAD_MARKER in x.get("Resources", {}))
    return [x["NodeID"] for x in alive]


def head_node() -> Optional[str]:
    """The head node's id, if Ray marks one among the alive nodes."""
    for x in ray.nodes():
        if x.get("Alive") and _HEAD_MARKER in x.get("Resources", {}):
            return str(x["NodeID"])
    return None


def _router_strategy(node_of: Dict[str, str]) -> Dict[str, Any]:
    """Where the router goes. On a multi-node cluster: the head node, pinned. Losing the head
    loses the cluster (its GCS) anyway, so the router adds no failure of its own there, and it
    never shares a node with the primary when the primary is elsewhere. Without a head marker:
    the node of the last backup, preferred."""
    if len(set(node_of.values())) <= 1:
        return {}
    head = head_node()
    if head is not None:
        return _strategy(head, True)
    return _strategy(node_of[sorted(node_of)[-1]], False)


def _strategy(node: Optional[str], strict: bool) -> Dict[str, Any]:
    return {} if node is None else {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=not strict)}


def _create_group(rc: ReplicatedClass, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> ReplicatedHandle:
    s = rc._settings
    group = rc._name or f"{rc._cls.__name__}-{uuid.uuid4().hex[:8]}"
    try:
        init_bytes = cloudpickle.dumps((args, kwargs))
    except Exception as exc:
        raise TypeError(f"{rc._cls.__name__}.remote(): a constructor argument cannot be serialized: {exc}") from exc
    namespace = group_namespace(rc._namespace)  # explicit: a restarted router looks replicas up
    if rc._name:
        existing = _existing_group(group, namespace, rc)
        if existing is not None:
            return existing
    spec = GroupSpec(group=group, config=s.core_config(), scheduling=s.scheduling, settings=s.model_dump(),
                     cls_bytes=cloudpickle.dumps(rc._cls), init_bytes=init_bytes,
                     actor_options=dict(rc._actor_options), namespace=namespace, secret=new_secret())
    members = tuple(f"{group}-r{i}" for i in range(s.replicas))
    nodes = _placement(s, s.replicas)
    strict = s.placement == "strict-spread"
    lifetime = {} if rc._lifetime is None else {"lifetime": rc._lifetime}
    handles: Dict[str, Any] = {}
    # Ray checks the options here, before any actor exists: a bad one is its own ValueError, not the
    # name clash below (row 59)
    classes = {rid: _REPLICA_CLASS.options(
        name=replica_actor_name(group, rid), namespace=namespace, max_restarts=0, enable_task_events=False,
        max_concurrency=s.replica_threads(), **_strategy(nodes[i], strict), **lifetime, **rc._actor_options,
    ) for i, rid in enumerate(members)}
    try:
        for rid in members:
            handles[rid] = classes[rid].remote(spec, rid, NewView(1, members))
    except ValueError:  # a name taken meanwhile: another driver is creating the same group
        for h in handles.values():
            ray.kill(h, no_restart=True)
        if rc._get_if_exists:
            return _wait_for_group(group, namespace)
        raise ValueError(f"a replicated group named {group!r} already exists in namespace "
                         f"{user_namespace(namespace)!r}") from None
    # nothing waits here, as with Ray's own .remote(): the router learns where each replica runs
    # when they are up, and the group's first call waits for that
    planned = {rid: node for rid, node in zip(members, nodes) if node is not None}
    methods = _public_methods(rc._cls)
    signatures, returns = method_signatures(rc._cls, methods), declared_returns(rc._cls, methods)
    info = {"class_name": rc._cls.__name__, "methods": methods, "lifetime": rc._lifetime, "signatures": signatures,
            "num_returns": returns}
    # the router's arguments are small values, not ObjectRefs or actor handles: Ray restarts it from
    # them even after the creating driver is gone (it finds the replicas, and the class, by name)
    router = ray.remote(_AsyncRouter).options(
        name=router_actor_name(group), namespace=namespace, max_restarts=-1, max_task_retries=-1,
        max_concurrency=ROUTER_CALLS_MAX, num_cpus=0, enable_task_events=False, **lifetime,
        **_router_strategy(planned),
    ).remote(dataclasses.replace(spec, cls_bytes=b"", init_bytes=b""), members, {}, info)
    log.debug("[%s] replicated group starting: %d replicas, %s", group, s.replicas, s.style)
    if rc._lifetime == "detached" and user_namespace(namespace) != namespace:
        _warn_anonymous(group, user_namespace(namespace) or "")
    if rc._lifetime != "detached":  # Ray collects no detached actor
        _keep(namespace, group, tuple(handles.values()) + ((router,) if rc._name else ()))
    return ReplicatedHandle(group, router, rc._cls.__name__, methods, s.max_message_bytes,
                            s.large_arg_bytes, s.style, signatures, returns)


def _keep(namespace: Optional[str], group: str, actors: Tuple[Any, ...]) -> None:
    """Keep the actors of a group this process created (``_kept``), after letting go of those of up to
    ``KEPT_CHECKS_PER_CREATION`` earlier groups whose router is gone (collected, or shut down elsewhere):
    they are stopped, as a router collected before it started could not (its replicas' orphan watch
    would, after ``orphan_timeout_s``).

    Args:
        namespace: the group's Ray namespace.
        group: the group's name.
        actors: its first replicas, and its router if it is named.
    """
    with _kept_lock:
        earlier = [key for key, _ in zip(_kept, range(KEPT_CHECKS_PER_CREATION))]
    for key in earlier:
        try:
            ray.get_actor(router_actor_name(key[1]), namespace=key[0])  # a router Ray restarts is found too
            gone = False
        except ValueError:
            gone = True
        except Exception:  # the GCS is busy: another time
            continue
        with _kept_lock:
            if not gone:
                if key in _kept:
                    _kept.move_to_end(key)
                continue
            let_go = _kept.pop(key, ())
        for actor in let_go:  # its replicas, if its router ended before it stopped them (never started)
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
    with _kept_lock:
        _kept[(namespace, group)] = actors


def _warn_anonymous(group: str, namespace: str) -> None:
    """Ray's advice for a detached actor created in an anonymous namespace, for a detached group (row 68).

    Ray's raylet prints it for a plain detached actor; the group's own actors live in
    ``ftactors-<namespace>``, which Ray does not take for anonymous, so ftactors says it itself,
    once per group, with the same advice and the ``ftactors.get_actor`` call that reaches the group.

    Args:
        group: the group's name.
        namespace: the job's anonymous namespace (the UUID Ray gave it).
    """
    log.warning("It looks like you're creating a detached replicated group %r in an anonymous namespace. In "
                "order to access this group in the future, you will need to explicitly connect to this namespace "
                "with ray.init(namespace=\"%s\", ...), or call ftactors.get_actor(\"%s\", namespace=\"%s\")",
                group, namespace, group, namespace)


def _existing_group(group: str, namespace: str, rc: ReplicatedClass) -> Optional[ReplicatedHandle]:
    """With ``get_if_exists``: the group named ``group`` if it exists; without: raise if it does."""
    try:
        ray.get_actor(router_actor_name(group), namespace=namespace)
    except ValueError:
        return None
    if not rc._get_if_exists:
        raise ValueError(f"a replicated group named {group!r} already exists in namespace "
                         f"{user_namespace(namespace)!r}; use .options(get_if_exists=True) to get it")
    return _wait_for_group(group, namespace)


def _wait_for_group(group: str, namespace: str, timeout_s: float = 60.0) -> ReplicatedHandle:
    """The handle of a group another driver is creating or has created."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _group_handle(group, namespace, timeout_s)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _group_handle(group: str, namespace: str, timeout_s: float) -> ReplicatedHandle:
    """A handle built from the group's router (found by name)."""
    missing = f"no replicated group named {group!r} in namespace {user_namespace(namespace)!r}"
    try:
        router = ray.get_actor(router_actor_name(group), namespace=namespace)
    except ValueError:
        raise ValueError(missing) from None
    try:
        info = ray.get(router.handle_info.remote(), timeout=timeout_s)
    except RayActorError:  # shut down meanwhile
        raise ValueError(missing) from None
    return ReplicatedHandle(group, router, info["class_name"], tuple(info["methods"]), info["max_message_bytes"],
                            info["large_arg_bytes"], info["style"], signatures=info.get("signatures"),
                            num_returns=info.get("num_returns"))


def get_actor(name: str, namespace: Optional[str] = None, timeout_s: float = 30.0) -> ReplicatedHandle:
    """The handle of a named replicated group, from any driver or job of the cluster.

    Like ``ray.get_actor``: the group was created with ``.options(name=...)``; a detached
    group (``lifetime="detached"``) is found after its creating driver has exited.

    Args:
        name: the group's name.
        namespace: its namespace (default: the current job's, as for ``ray.get_actor``).
        timeout_s: how long to wait for the group's router to answer.

    Returns:
        A :class:`ReplicatedHandle` to the group.

    Raises:
        ValueError: no group of that name in that namespace (or it was shut down).
        TypeError: ``name`` is not a non-empty string.
        ray.exceptions.GetTimeoutError: the router did not answer within ``timeout_s``.

    Example:
        >>> Orders.options(name="orders", namespace="shop", lifetime="detached").remote()
        >>> # later, in another job:
        >>> orders = ftactors.get_actor("orders", namespace="shop")
        >>> ray.get(orders.place.remote("book"))
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not ray.is_initialized():
        ray.init()
    return _group_handle(name, group_namespace(namespace), timeout_s)


def replicated(cls: Any = None, *, config: Any = None, name: Optional[str] = None,
               namespace: Optional[str] = None, **settings: Any) -> Any:
    """Make an actor class fault tolerant: a primary and backups behind a router.

    Use it on a plain class or on a ``@ray.remote`` class (its Ray options, such
    as ``num_cpus`` or ``runtime_env``, apply to every replica).

    Args:
        cls: the class (when used without parentheses).
        config: a YAML file or dict of settings (keyword arguments win).
        name: the group's name (default: class name plus a random suffix).
        namespace: the Ray namespace of the group's named actors.
        **settings: see :class:`ReplicationSettings` (replicas, style, scheduling,
            checkpoint_every, null_message_after_s, min_replicas, placement,
            heartbeat_s, failure_timeout_s, ...).

    Returns:
        A :class:`ReplicatedClass`; ``.remote(*args)`` creates the group.

    Raises:
        ConfigError: an invalid setting (the message names it).
        TypeError: the decorated object is not a class.

    Example:
        >>> @ftactors.replicated(replicas=3, style="semi-active")
        ... @ray.remote
        ... class Counter:
        ...     def __init__(self): self.n = 0
        ...     def inc(self): self.n += 1; return self.n
    """
    _check_concurrency(settings, "@ftactors.replicated(...)")
    resolved = load_settings(config, **settings)

    def wrap(target: Any) -> ReplicatedClass:
        user_cls, options = _unwrap_class(target)
        # Ray's naming options of a @ray.remote class apply to the group
        lifetime, get_if_exists = options.pop("lifetime", None), bool(options.pop("get_if_exists", False))
        ns = namespace or options.pop("namespace", None)
        options.pop("namespace", None)
        return ReplicatedClass(user_cls, resolved, options, name, ns, lifetime, get_if_exists and bool(name))

    return wrap(cls) if cls is not None else wrap


def _unwrap_class(target: Any) -> Tuple[type, Dict[str, Any]]:
    if isinstance(target, ReplicatedClass):
        raise TypeError("this class is already replicated")
    if isinstance(target, ray.actor.ActorClass):
        actor_class: Any = target  # Ray's ActorClass keeps the class and options in private fields
        meta = actor_class.__ray_metadata__
        original = getattr(meta.modified_class, "__ray_actor_class__", meta.modified_class)
        given = dict(actor_class._default_options)
        _check_concurrency(given, f"@ray.remote on {original.__name__}")
        options = {k: v for k, v in given.items() if k not in _RESERVED and k not in _CONCURRENCY}
        return original, options
    if not inspect.isclass(target):
        raise TypeError(f"@ftactors.replicated decorates a class, got {type(target).__name__} {target!r}")
    return target, {}


def _handle(h: Any) -> ReplicatedHandle:
    if not isinstance(h, ReplicatedHandle):
        raise NotReplicatedError(f"expected a ReplicatedHandle, got {type(h).__name__}")
    if h._closed:
        raise GroupShutdownError(f"{h._group} was shut down")
    return h


def _replica_info(d: Dict[str, Any], rid: str, handles: Dict[str, Any]) -> ReplicaInfo:
    return ReplicaInfo(replica_id=rid, actor=handles.get(rid), node_id=d.get("node_id", ""), pid=d.get("pid", -1),
                       role=d.get("role", "unknown"), executed=d.get("executed", -1),
                       state_digest=d.get("state_digest", ""), replies_cached=d.get("replies_cached", -1),
                       error=str(d.get("error") or ""),
                       wire_address=tuple(d["wire"]) if d.get("wire") else None,
                       wire_delivers=d.get("wire_delivers", 0), wire_dropped=d.get("wire_dropped", 0),
                       wire_parked=d.get("wire_parked", 0), waits_for=str(d.get("waits_for") or ""),
                       next_deliver=d.get("next_deliver", 0), delivers_waiting=d.get("delivers_waiting", 0),
                       oneway_out=d.get("oneway_out", 0))


def _links_info(d: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The router's per-member link summaries with their ticks in seconds (``GroupInfo.links``)."""
    tick_s = float(d.get("settings", {}).get("tick_s", 0.01))
    out: Dict[str, Dict[str, Any]] = {}
    for rid, link in (d.get("links") or {}).items():
        out[rid] = {(k[: -len("_ticks")] + "_s" if k.endswith("_ticks") else k):
                    (round(v * tick_s, 2) if k.endswith("_ticks") else v) for k, v in link.items()}
    return out


def group_info(d: Dict[str, Any]) -> GroupInfo:
    """A :class:`GroupInfo` from the dict the group's router returns from ``describe()``.

    ``ftactors.describe`` and ``ftactors status`` both read a router through this.

    Args:
        d: the router's ``describe()``: the core's summary, each member's info, the settings.

    Returns:
        The group's view, style, phase, primary and backups (members in view order), counters.
    """
    handles = d.get("handles") or {}
    infos = [_replica_info(d["replicas"].get(rid, {}), rid, handles) for rid in d["members"]]
    return GroupInfo(group=d["group"], view=d["view"], style=d["settings"]["style"], phase=d["phase"],
                     primary=infos[0] if infos else None, backups=infos[1:], joining=list(d["joining"]),
                     counts=dict(d["counts"]), diverged=list(d["diverged"]), last_failover_s=d["last_failover_s"],
                     retained={"requests": d["retained_requests"], "order": d["retained_order"],
                               "replies": d["retained_replies"]},
                     spares={rid: int(s.get("pid") or 0) for rid, s in (d.get("spares") or {}).items()},
                     links=_links_info(d))


def describe(handle: ReplicatedHandle, timeout_s: float = 30.0) -> GroupInfo:
    """The group's view, style, primary and backups (node, pid, progress, digest).

    Raises:
        NotReplicatedError: ``handle`` is not a replicated handle.
        GroupShutdownError: the group was shut down.
    """
    h = _handle(handle)
    return group_info(ray.get(h._router.describe.remote(), timeout=timeout_s))


def stats(handle: ReplicatedHandle) -> Dict[str, int]:
    """Message counts by kind (requests, replies, copies, announcements piggybacked, null messages...)."""
    return dict(describe(handle).counts)


def set_unavailable(handle: ReplicatedHandle, *resources: str) -> None:
    """Resource scheduling: mark resources unavailable (call with none to make all available)."""
    ray.get(_handle(handle)._router.set_unavailable.remote(tuple(resources)))


def shutdown(handle: ReplicatedHandle, timeout_s: float = 30.0) -> None:
    """Stop the group's replicas and router; the only end of a detached group.

    When it returns, ``ftactors.get_actor`` no longer finds the group and its name can
    be used again. The handle cannot be used afterwards.

    Args:
        handle: the group's handle (from ``.remote()`` or ``ftactors.get_actor``).
        timeout_s: how long to wait for the router and the names to go.

    Raises:
        NotReplicatedError: ``handle`` is not a replicated handle.
        GroupShutdownError: the group was already shut down through this handle.
    """
    h = _handle(handle)
    namespace = None
    try:
        namespace = ray.get(h._router.shutdown.remote(), timeout=timeout_s)
    finally:
        ray.kill(h._router, no_restart=True)
        h._closed = True
        with _callers_lock:
            _callers.pop(h._group, None)  # and the results it was still watching
    if namespace is not None:
        with _kept_lock:
            _kept.pop((namespace, h._group), None)
        _wait_names_gone(h._group, namespace, min(timeout_s, 10.0))


def _wait_names_gone(group: str, namespace: str, timeout_s: float) -> None:
    """Wait until Ray has released the names of the group's actors (``ray.kill`` is asynchronous).

    An actor still named a while after the router is gone (a replica whose creation returned only
    after the router stopped, docs/faults.md row 43) is stopped here, once, by name.
    """
    prefix = router_actor_name(group)[: -len("router")]
    deadline = time.monotonic() + timeout_s
    sweep_at = time.monotonic() + NAMES_SWEEP_AFTER_S
    swept: Set[str] = set()
    while time.monotonic() < deadline:
        try:
            named = ray.util.list_named_actors(all_namespaces=True)
        except Exception:  # the GCS is busy: the names go anyway
            return
        left = {a["name"] for a in named if a["name"].startswith(prefix) and a["namespace"] == namespace}
        if not left:
            return
        if time.monotonic() >= sweep_at:
            for name in sorted(left - swept):
                swept.add(name)
                _kill_by_name(name, namespace)
        time.sleep(0.05)
    log.info("[%s] shut down; Ray has not released every name yet", group)


def _kill_by_name(name: str, namespace: str) -> None:
    """Stop the actor ``name`` if it is still there (shutdown's last resort)."""
    try:
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    except Exception as exc:  # gone meanwhile
        log.debug("%s: not stopped by name: %r", name, exc)
        return
    log.debug("%s outlived its router; stopped by name", name)

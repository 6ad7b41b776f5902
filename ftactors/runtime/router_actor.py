"""The group router actor: a thin Ray shell around :class:`ftactors.host.router.RouterHost`.

Callers' ``.remote()`` calls land in ``invoke``; the ObjectRef they hold is this
actor's task, so it survives the death of any replica. The router is restarted
by Ray if it dies (``max_restarts=-1``); Ray then retries the callers' pending
calls (``max_task_retries=-1``) and the rebuilt router answers them exactly
once from the replicas' exactly-once tables.

The Ray actor :class:`_AsyncRouter` is an async actor: the host runs on Ray's event loop
(:class:`_RouterLoop`) and a caller's ``invoke`` submits its request without a thread hand-over.
A threaded shell (``router_actor: threaded``) was measured against it (``docs/benchmarks.md``,
2026-12-02: more router CPU per call, lower throughput) and removed on 2026-12-03 (issue 11).
"""

from __future__ import annotations

import asyncio
import collections
import copy as _copy
import dataclasses
import logging
import time
import uuid
import warnings
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

import ray
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ftactors.core import (Abandoned, Deliver, Kind, MsgId, RemoteProtocolError, Reply, ReplyUnavailableError, Request,
                           RouterCore, StaleViewError)
from ftactors.host.links import Parked, Route
from ftactors.host.placement import PlacementError, choose_node, misplaced
from ftactors.host.router import RouterHost, ViewInfo
from ftactors.core.errors import CallGivenUpError
from ftactors.runtime.errors import CallCancelledError, GroupLostError, PulledReplyGoneError
from ftactors.runtime.replica_actor import (TRACEBACK_ATTR, OwnedArgument, _Replica, replica_actor_name,
                                            router_actor_name)
from ftactors.runtime.settings import ReplicationSettings
from ftactors.spec import GroupSpec
from ftactors.runtime.wire import DirectLink, LinkClosedError, NotOnWireError, ParkedError, RemoteDeliverError

log = logging.getLogger("ftactors")

_DEAD = (RayActorError, ActorUnavailableError)
_REPLICA_CLASS = ray.remote(_Replica)  # one actor class: its definition is exported once


#: How long the router waits for one member's answer when it asks every member at once for the
#: group's class (``_RouterLoop._ask_for_spec``).
SPEC_ASK_TIMEOUT_S = 10.0
#: Rounds of asking the members for the group's class before a replica's start fails.
SPEC_ROUNDS_MAX = 6
#: The pause after the first round without an answer; it doubles each round, up to SPEC_BACKOFF_MAX_S.
SPEC_BACKOFF_FIRST_S = 1.0
SPEC_BACKOFF_MAX_S = 10.0
#: failed router ticks logged with their traceback at most, per router incarnation (the rest are counted)
TICK_ERRORS_LOGGED_MAX = 10
#: How long ``shutdown`` waits for replicas whose creation is under way (a blocking Ray call on a
#: worker thread), so that it can stop them too: a detached replica created after the shutdown
#: listed the group's actors would otherwise outlive the group (docs/faults.md row 43).
SHUTDOWN_CREATE_WAIT_S = 10.0
#: The nodes of members that left the view (and of replacements Ray did not place where asked) that
#: a replacement's placement remembers (newest kept).
LOST_NODES_MAX = 8
#: How long a rebuilt router waits for a member to say where it runs (``_RouterLoop._learn_nodes``).
NODE_ASK_TIMEOUT_S = 10.0
#: Replacements in a row started again because Ray put them beside a member while a node holding
#: none was alive (``host.placement.misplaced``); the next one stays where Ray puts it (logged).
PLACEMENT_TRIES_MAX = 3
#: The pause before the first of those new starts (Ray's nodes learn of a fresh node within about
#: a second); it doubles each time.
PLACEMENT_PAUSE_FIRST_S = 0.5
#: How long the notice of a cancelled call the router holds waits for the call to run (``_AsyncRouter.abandon``);
#: past it the answer is "unknown" and the caller keeps the call unsettled (docs/faults.md row 82).
ABANDON_WAIT_S_MAX = 600.0


#: a request's kind by its value (:func:`request_of`)
_KINDS: Dict[int, Kind] = {k.value: k for k in Kind}


def flat_request(req: Request) -> Optional[List[Any]]:
    """``req`` as a list of plain values for a caller's ``invoke`` (:func:`request_of` rebuilds it),
    or None when it does not go flat (its arguments are in the object store, or it holds calling
    paths: a nested call's).

    Ray serialises an argument of plain values with msgpack, where a ``Request`` object goes through
    its pickler: about 50 us of the caller's ``.remote()`` and some of the router's receipt, on every
    call (issue 11). Ray's msgpack is strict: a tuple is not packed but pickled, whole, with all it
    holds; so the request and its sequences are lists (carried announcements, objects, are pickled
    one by one).

    Args:
        req: a caller's request.

    Returns:
        [kind, source, seq, group, method, payload, priority, deadline_tick, resources, ack_below,
        peer_announcements, size_bytes], or None.
    """
    if req.holds or req.source_view is not None or not isinstance(req.payload, bytes):
        return None
    return [req.kind.value, req.msg_id.source, req.msg_id.seq, req.group, req.method, req.payload, req.priority,
            req.deadline_tick, list(req.resources), req.ack_below, list(req.peer_announcements), req.size_bytes]


def request_of(req: Any) -> Request:
    """The request a caller's ``invoke`` carried: a :class:`Request`, or its :func:`flat_request`
    (lists where it had tuples, as msgpack gives them back), rebuilt and validated by the constructors.

    Raises:
        RemoteProtocolError: it is neither (a malformed flat request: its fields fail the checks).
    """
    if isinstance(req, Request):
        return req
    if not isinstance(req, (tuple, list)) or len(req) != 12:
        raise RemoteProtocolError(f"invoke takes a Request, got {type(req).__name__}")
    kind, source, seq, group, method, payload, priority, deadline, resources, ack_below, anns, size = req
    if not isinstance(resources, (tuple, list)) or not isinstance(anns, (tuple, list)):
        raise RemoteProtocolError("a flat request's resources and announcements are sequences")
    known: Any = _KINDS.get(kind, kind)  # an unknown kind fails the constructor's check
    return Request(known, MsgId(source, seq), group, method, payload, priority, deadline,
                   tuple(resources), ack_below, None, tuple(anns), size)


def unwrap(rep: Reply) -> Any:
    """The reply's value, or raise the method's exception, with a note of where the replica raised it
    (Ray's error then shows the method's file and line, after the router's frames)."""
    if rep.outcome.ok:
        return rep.outcome.value
    exc = rep.outcome.value
    frames = getattr(exc, TRACEBACK_ATTR, None)
    if isinstance(frames, str):
        note = f"Raised in the replica:\n{frames.rstrip()}"
        if note not in getattr(exc, "__notes__", ()):  # a duplicate's cached reply is raised again
            exc.add_note(note)
    raise exc


def constructor_error(exc: BaseException, class_name: str) -> BaseException:
    """What a call on a group whose constructor raised ``exc`` raises: a copy of ``exc`` with a note
    naming the constructor and where it raised.

    Every call raises it; raising the kept exception itself added the router's frames to its
    traceback at each call, so the caller's error grew by them call after call (docs/faults.md row 84).

    Args:
        exc: what the user's constructor raised (as the replica's ``portable_error`` kept it).
        class_name: the user's class, for the note.

    Returns:
        A fresh exception of the same type, message and attributes, without a traceback.
    """
    try:
        fresh = _copy.copy(exc)  # the replica checked that it unpickles, which copy's reduce needs
    except Exception:
        fresh = exc
    frames = getattr(exc, TRACEBACK_ATTR, None)
    where = f":\n{frames.rstrip()}" if isinstance(frames, str) else ""
    note = (f"Raised by {class_name}.__init__() in the replica: the group's constructor failed, and "
            f"every call fails with its error; create the group again{where}")
    notes = [n for n in getattr(exc, "__notes__", ()) if n != note]
    try:
        setattr(fresh, "__notes__", notes + [note])  # a list of its own: copy.copy shares the original's
    except Exception:
        pass
    return fresh.with_traceback(None)


class _FutureWaiter:
    """A caller's coroutine waiting for its reply."""

    __slots__ = ("fut",)

    def __init__(self, fut: "asyncio.Future[Optional[Reply]]") -> None:
        self.fut = fut

    def answer(self, reply: Optional[Reply]) -> None:
        if not self.fut.done():
            self.fut.set_result(reply)

    def fail(self, error: BaseException) -> None:
        if not self.fut.done():
            self.fut.set_exception(error)


class _Metrics:
    """Ray metrics of a router, exported by delta from the core's counters."""

    NAMES = ("requests", "replies", "failovers", "announcements_piggybacked", "null_messages",
             "view_changes", "divergences", "checkpoints")

    def __init__(self, group: str) -> None:
        from ray.util import metrics

        self._tags = {"group": group}
        self._counters = {
            n: metrics.Counter(f"ftactors_{n}", description=f"ftactors router: {n}", tag_keys=("group",))
            for n in self.NAMES
        }
        self._view = metrics.Gauge("ftactors_view", description="current view number", tag_keys=("group",))
        self._last: Dict[str, int] = {}

    def update(self, counts: Dict[str, int], view: int) -> None:
        for n, c in self._counters.items():
            delta = counts.get(n, 0) - self._last.get(n, 0)
            if delta > 0:
                c.inc(delta, tags=self._tags)
            self._last[n] = counts.get(n, 0)
        self._view.set(view, tags=self._tags)


class _RouterLoop:
    """The router of one group, on Ray's event loop (the Ray actor :class:`_AsyncRouter` is its shell).

    A shell around :class:`ftactors.host.router.RouterHost`: it implements the host's I/O
    (:class:`_RayIO`) over Ray handles and asyncio, and keeps what only Ray has: actor names,
    placement, ``ray.kill``, metrics export, replica creation.
    """

    def __init__(self, spec: GroupSpec, members: Tuple[str, ...], nodes: Dict[str, str],
                 info: Optional[Dict[str, Any]] = None) -> None:
        # small values only, no ObjectRefs or actor handles, so that Ray can restart this actor from
        # them after its creator is gone: the replicas are found by name, and the user's class and
        # constructor arguments (``spec`` comes without them) are fetched from the replicas once started
        self.spec = spec
        self.group = spec.group
        self.settings = ReplicationSettings(**spec.settings)
        self.config = spec.config
        self.info: Dict[str, Any] = dict(info or {})
        self.handles: Dict[str, Any] = {}
        self.nodes: Dict[str, str] = dict(nodes)
        #: the nodes of the last members that left the view, and those a replacement was asked for
        #: that Ray did not place it on (``_placed_again``), newest last (``choose_node``'s ``lost``)
        self._lost_nodes: Deque[str] = collections.deque(maxlen=LOST_NODES_MAX)
        #: replacements started again in a row because Ray put them beside a member (``_spawn``)
        self._placement_tries = 0
        #: replacements started again since this router started (for tests and debugging)
        self.placed_again_total = 0
        #: the members' nodes asked for after a rebuild (``_learn_nodes``)
        self._nodes_learnt: Optional["asyncio.Future[None]"] = None
        self.initial_members = tuple(members)
        self._t0 = time.monotonic()
        self._kick_scheduled = False
        #: in ``_process``: the links ``_send_now`` queued a Deliver on, written when it ends
        self._unflushed: Optional[List[DirectLink]] = None
        self._started: Optional[asyncio.Event] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None  # Ray's event loop, once started (``end``)
        self._closed = False
        self._tick_errors = 0  # ticks that raised (logged, then the clock goes on)
        self._metrics: Optional[_Metrics] = None
        with warnings.catch_warnings():  # the property uses a deprecated accessor internally
            warnings.simplefilter("ignore")
            self._reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        self.start_error: Optional[BaseException] = None  # the user's constructor raised it
        self._spec_fetch: Optional["asyncio.Future[None]"] = None  # the class being fetched (_fetch_spec)
        self._pids: Dict[str, int] = {}  # process ids of the replicas this incarnation started (spares too)
        # replica creations under way on worker threads (at most one per replica the host asked for)
        self._creating: Dict[str, "asyncio.Future[Any]"] = {}
        # the epoch names this incarnation on its Delivers; a restarted router's sorts later (it restarts
        # on the same node: pinned to the head node on a multi-node cluster), so replicas drop the old one's
        epoch = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.host = RouterHost(self.group, self.config, _RayIO(self), epoch,
                               members=None if self._reconstructed else self.initial_members,
                               counts_every_ticks=self.settings.ticks(1.0),
                               link_settings=self.settings.link_settings(),
                               spare_settings=self.settings.spare_settings())
        # the direct data plane: one link per replica, opened on its first Deliver; the host's links
        # (ftactors.host.links) decide the path, what a close means, heartbeats and when a link closes
        self._direct = self.settings.data_plane == "direct" and bool(spec.secret)
        self._links: Dict[str, "asyncio.Future[Optional[DirectLink]]"] = {}  # held until the host closes them
        self._wire_addrs: Dict[str, Tuple[str, int]] = {}  # from the replicas' ready()

    @property
    def core(self) -> Optional[RouterCore]:
        """The host's core (None until a restarted router rebuilt its view)."""
        return self.host.core

    # ------------------------------------------------- what the Ray methods run

    async def ready(self) -> Dict[str, Any]:
        """Wait until the router can serve; return its description."""
        await self._ensure_started()
        return self.host._core().describe()

    async def areply(self, req: Request, copy: bool) -> Optional[Reply]:
        """On Ray's loop (the async router): submit ``req`` and wait for its reply (None: one-way).

        Raises:
            GroupOverloadedError, StaleViewError...: the host refused the request.
        """
        if not self._is_started():  # no await before submit once started: submission order is kept
            await self._ensure_started()
        if self.start_error is not None:
            # the user's constructor raised it: a copy, so that the router's frames do not pile up
            raise constructor_error(self.start_error, self.info.get("class_name", "the class"))
        waiter = _FutureWaiter(asyncio.get_running_loop().create_future())
        if not copy and isinstance(req.payload, ray.ObjectRef):  # an OwnedArgument is owned already
            # the fetch awaits: the caller's later calls, submitted meanwhile, wait for this one
            self.host.fetch_begins(req.msg_id)
            try:
                req = await self._own_argument(req)
            except BaseException:
                self.host.fetch_failed(req.msg_id)
                raise
            cached = self.host.fetched(req, copy, waiter)
        else:
            cached = self.host.submit(req, copy, waiter)  # raises GroupOverloadedError / StaleViewError
        if cached is not None or not req.wants_reply:
            return cached
        try:
            return await waiter.fut
        except GroupLostError as exc:  # name the call, as Ray's "before finishing this task" (row 85)
            raise GroupLostError(
                f"{exc}; {self.info.get('class_name', 'the class')}.{req.method}() did not complete (a method "
                f"that ends its process, e.g. with os._exit, ends every replica that runs it)") from None

    async def _own_argument(self, req: Request) -> Request:
        """``req`` with its argument, passed by reference, owned by this router.

        The caller put it in the object store (over ``large_arg_bytes``) and owns it: a backup that
        fetched it after the caller exited would get ``OwnerDiedError`` and diverge. The router
        fetches it once and puts it again, so the object lives as long as the router holds the
        request (until every member acknowledged its position) or a replica does. The request
        carries both objects (``OwnedArgument``): a replica reads the caller's when this router's
        died with it. A later call of the same source may be submitted meanwhile: the intake holds
        it until this one is submitted (``RouterHost.fetch_begins``), past ``sequence_gap_ticks``.

        Raises:
            The caller's object's error (its owner died before this router fetched it).
        """
        data = await req.payload
        return dataclasses.replace(req, payload=OwnedArgument(ray.put(data), req.payload))

    def handle_info(self) -> Dict[str, Any]:
        """What a handle needs (``ftactors.get_actor`` builds one from it): the class name, its
        methods, the message size limits, the style and the lifetime."""
        return {**self.info, "group": self.group, "namespace": self.spec.namespace,
                "max_message_bytes": self.settings.max_message_bytes,
                "large_arg_bytes": self.settings.large_arg_bytes, "style": self.settings.style}

    async def describe(self) -> Dict[str, Any]:
        """The core's summary plus each replica's info."""
        await self._ensure_started()
        core = self.host._core()
        out: Dict[str, Any] = core.describe()
        # one snapshot: the view and the failover time together (the awaits below let a failover in)
        out["last_failover_s"] = self.host.last_failover_s
        out["last_recovery_ms"] = self.host.last_recovery_ms
        counts: Dict[str, int] = {**out["counts"], **{f"link_{k}": n for k, n in self.host.links.counts.items()}}
        out["counts"] = counts
        links: Dict[str, Dict[str, Any]] = out.get("links", {})
        for rid, summary in links.items():  # the data plane's side of each member's link
            state = self.host.links.state(rid)
            summary["wire"] = state.value if state is not None else "none"
            summary["delivers_sent"] = self.host.link_seq.get(rid, 0)
        infos = {}
        for rid in list(core.members):
            try:
                infos[rid] = await asyncio.wait_for(_aw(self.handles[rid].info.remote()), timeout=5.0)
            except Exception as exc:  # a dying replica: report what we know
                infos[rid] = {"replica": rid, "error": repr(exc)}
        out["replicas"] = infos
        out["settings"] = self.spec.settings
        out["lifetime"] = self.info.get("lifetime")
        out["handles"] = {rid: self.handles.get(rid) for rid in core.members}
        out["spares"] = {rid: {"pid": self._pids.get(rid, 0), "node_id": self.nodes.get(rid)}
                         for rid in self.host.spares.ready}
        counts.update({f"spare_{k}": n for k, n in self.host.spares.counts.items()})
        return out

    async def set_unavailable(self, resources: Tuple[str, ...]) -> None:
        """Resource scheduling: tell the primary which resources are unavailable."""
        await self._ensure_started()
        for rid in self.host._core().members:
            self.handles[rid].set_unavailable.remote(tuple(resources))

    async def shutdown(self) -> Optional[str]:
        """Stop every replica, those being created included; fail waiting callers.

        Returns:
            The group's namespace (``None``: the default one).
        """
        self._closed = True  # from here on no creation starts (``_spawn``)
        for rid in list(self._links):
            self._close_link(rid)
        await self._stop_creations()
        # and those it has no handle to (one being spawned, or a deposed one): by name
        loop = asyncio.get_running_loop()
        for rid in await loop.run_in_executor(None, self._named_replicas) - set(self.handles):
            handle = await loop.run_in_executor(None, _lookup, replica_actor_name(self.group, rid),
                                                self.spec.namespace)
            if handle is not None:
                self.handles[rid] = handle
        for rid, h in list(self.handles.items()):
            try:
                ray.kill(h, no_restart=True)
            except Exception:
                pass
        self.host.close(f"{self.group} was shut down")
        return self.spec.namespace

    def end(self) -> None:
        """Ray ends this router gracefully (``_AsyncRouter.__ray_shutdown__``): the group ends with it, as a
        plain actor ends once Ray collects it (docs/faults.md row 86). Stop every replica now: those it
        started are detached actors, which only their orphan watch would otherwise stop, after
        ``orphan_timeout_s``. A detached group's router is never collected (and ``ray.kill`` is no
        graceful end): nothing is done for one.
        """
        if self.info.get("lifetime") == "detached":
            return
        self._closed = True  # no creation starts any more (``_spawn``)
        # Ray stopped its event loop already: the tasks left on it (the tick loop, a spawn...) are
        # destroyed with the process, quietly (asyncio would print each on the driver's console)
        if self._loop is not None:
            for task in asyncio.all_tasks(self._loop):
                setattr(task, "_log_destroy_pending", False)
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
        # which replicas: the router host decides (``RouterHost.end``, the simulator runs it too); those
        # it holds no handle to (being created, or left by an earlier incarnation) are stopped by name
        for rid in self.host.end(held=list(self.handles), named=self._named_replicas()):
            handle = self.handles.get(rid) or _lookup(replica_actor_name(self.group, rid), self.spec.namespace)
            if handle is not None:
                try:
                    ray.kill(handle, no_restart=True)
                except Exception:
                    pass

    async def _stop_creations(self) -> None:
        """Wait (at most ``SHUTDOWN_CREATE_WAIT_S``) for the replica creations under way and stop
        what they created: a creation's Ray call may register its detached actor after ``shutdown``
        has listed the group's actors, and return after this router is gone."""
        creating = dict(self._creating)
        if not creating:
            return
        await asyncio.wait(list(creating.values()), timeout=SHUTDOWN_CREATE_WAIT_S)
        for rid, fut in creating.items():
            if not fut.done():
                log.warning("[%s] replica %s was still being created after %.0f s; shutdown stops it by "
                            "name if Ray has registered it", self.group, rid, SHUTDOWN_CREATE_WAIT_S)
            elif fut.exception() is None:
                self.handles[rid] = fut.result()  # killed with the others

    # -------------------------------------------------------------- start-up

    def _is_started(self) -> bool:
        """Whether start-up is over (the core exists before: it learns of replicas that fail to start)."""
        return self._started is not None and self._started.is_set()

    async def _ensure_started(self) -> None:
        if self._started is None:
            self._started = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            asyncio.get_running_loop().create_task(self._start())
        await self._started.wait()

    async def _start(self) -> None:
        assert self._started is not None
        try:
            if self._reconstructed:
                await self._rebuild()
            else:
                loop = asyncio.get_running_loop()
                for m in self.initial_members:  # blocking GCS calls: off the event loop
                    self.handles[m] = await loop.run_in_executor(None, _await_name, replica_actor_name(
                        self.group, m), self.spec.namespace, self.settings.failure_timeout_s * 30)
                await self._first_replicas_up()
            try:
                self._metrics = _Metrics(self.group)
            except Exception as exc:  # metrics are optional
                log.debug("metrics disabled: %r", exc)
            asyncio.get_running_loop().create_task(self._tick_loop())
            asyncio.get_running_loop().create_task(self._prefetch_spec())
        finally:
            self._started.set()
        self._kick()

    async def _first_replicas_up(self) -> None:
        """Wait for the group's first replicas (created with the router, in parallel), learn their
        nodes, and keep the constructor's exception for every call if it raised one."""
        infos = await asyncio.gather(*(_aw(self.handles[m].ready.remote()) for m in self.initial_members),
                                     return_exceptions=True)
        for rid, info in zip(self.initial_members, infos):
            if isinstance(info, BaseException):  # it died while starting: re-replication replaces it
                log.info("[%s] replica %s did not start: %s", self.group, rid, str(info).splitlines()[0])
                self.host._core().on_failure(rid)
            elif info.get("error") is not None and self.start_error is None:
                self.start_error = info["error"]
            else:
                self.nodes[rid] = info["node_id"]
                if info.get("wire"):
                    self._wire_addrs[rid] = info["wire"]

    async def _rebuild(self) -> None:
        """After a crash: learn the view from the surviving replicas, then recover."""
        # every replica ever started and still alive is a named actor: ask Ray for them all, so a
        # rebuild finds the current view even when no initial member is in it (a deposed one that
        # still runs would otherwise lead the rebuild back to its stale view)
        listed = await asyncio.get_running_loop().run_in_executor(None, self._named_replicas)
        names = set(self.initial_members) | listed
        found: Dict[str, ViewInfo] = {}  # (view, members, role, counts)
        for _ in range(3):  # members may name replicas spawned after start
            for rid in sorted(names - set(found)):
                # by name: handles deserialised from a restarted actor's arguments may be stale
                handle = _lookup(replica_actor_name(self.group, rid), self.spec.namespace) or self.handles.get(rid)
                if handle is None:
                    continue
                self.handles[rid] = handle  # a member or not, answering or not: the rebuild may retire it
                try:
                    found[rid] = await asyncio.wait_for(_aw(handle.view_info.remote(self.host.epoch)),
                                                        timeout=5.0)
                except Exception as exc:  # a dead replica, replaced before the restart
                    log.debug("[%s] rebuild: replica %s unreachable: %s", self.group, rid, exc)
                    continue
            names |= {m for v in found.values() for m in v[1]}
        try:  # the same choice as the simulator's router makes (ftactors.host.rebuild); it retires
            # every replica outside the view it takes over (``_retire``: a stopped one on continuing),
            # the dead incarnation's spares among them (this one starts its own)
            self.host.rebuild(found, known=names)
        except LookupError:
            raise GroupLostError(f"{self.group}: no replica survived the router's restart") from None
        # the placement of replacements counts the members' nodes: learn them (in the background,
        # a dead member's silence must not hold up the recovery; ``_spawn`` waits for it)
        self._nodes_learnt = asyncio.ensure_future(self._learn_nodes())
        self._nodes_learnt.add_done_callback(_retrieved)

    async def _learn_nodes(self) -> None:
        """Ask each member whose node is not known where it runs (after a rebuild: the restarted
        router was created knowing none), so that a replacement's placement counts it and a lost
        member's node is remembered (``_retire``). A member that does not answer within
        ``NODE_ASK_TIMEOUT_S`` stays unknown (it counts nowhere)."""
        rids = [r for r in self.host._core().members if r in self.handles and r not in self.nodes]
        infos = await asyncio.gather(*(asyncio.wait_for(_aw(self.handles[r].ready.remote()), NODE_ASK_TIMEOUT_S)
                                       for r in rids), return_exceptions=True)
        for rid, info in zip(rids, infos):
            if isinstance(info, dict) and info.get("node_id") and rid in self.handles:
                self.nodes[rid] = info["node_id"]
            elif isinstance(info, BaseException):
                log.debug("[%s] replica %s did not say where it runs: %r", self.group, rid, info)

    def _named_replicas(self) -> Set[str]:
        """Replica ids of this group among Ray's named actors (a blocking GCS call)."""
        prefix = replica_actor_name(self.group, "")
        try:
            named = ray.util.list_named_actors(all_namespaces=True)
        except Exception as exc:  # the GCS is busy or unreachable: fall back on the initial members
            log.warning("[%s] rebuild: could not list named actors: %r", self.group, exc)
            return set()
        return {a["name"][len(prefix):] for a in named
                if a["name"].startswith(prefix) and a["name"] != router_actor_name(self.group)
                and (self.spec.namespace is None or a["namespace"] == self.spec.namespace)}

    # ---------------------------------------------------------------- driving

    def _ticks(self) -> int:
        return int((time.monotonic() - self._t0) / self.settings.tick_s)

    async def _tick_loop(self) -> None:
        """The router's clock: ``host.tick()`` every ``tick_s`` until the router closes. A tick that
        raises is logged (the first ``TICK_ERRORS_LOGGED_MAX`` times) and the clock goes on: a
        stopped clock stops the relays to the backups, null messages and failure detection for
        good while callers are still answered (docs/faults.md row 41)."""
        next_metrics = 0.0
        while not self._closed:
            await asyncio.sleep(self.settings.tick_s)
            try:
                self.host.tick()  # the core's clock, the counters' save timer, then the core's output
            except Exception as exc:
                self._tick_errors += 1
                if self._tick_errors <= TICK_ERRORS_LOGGED_MAX:
                    log.error("[%s] router tick failed (%d so far): %r; the router goes on", self.group,
                              self._tick_errors, exc, exc_info=True)
                continue
            now = time.monotonic()
            if now >= next_metrics and self._metrics is not None and self.host.core is not None:
                self._metrics.update(self.host.core.counts, self.host.core.view)
                next_metrics = now + 1.0

    def _kick(self) -> None:
        if not self._kick_scheduled:
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._process)

    def _process(self) -> None:
        """Carry out everything the core asks for, in order (once start-up is over)."""
        self._kick_scheduled = False
        if self._closed or not self._is_started():
            return
        self._unflushed = []  # the links _send_now queued on: written at the end (no step of the loop each)
        try:
            self.host.process()
        finally:
            unflushed, self._unflushed = self._unflushed, None
            for link in unflushed:
                link.flush()

    async def _deliver(self, rid: str, ref: Any) -> None:
        try:
            answer = await ref
        except Exception as exc:
            self._delivery_failed(rid, exc)
            return
        if answer is not None:  # None: it came on the direct link, and the host has it
            self.host.on_delivered(answer)

    def _delivery_failed(self, rid: str, exc: Exception) -> None:
        """A Deliver to ``rid`` (or what its answer set off) raised ``exc``."""
        if isinstance(exc, LinkClosedError):  # the host's links decide (an open link's close: a suspicion)
            self.host.on_link_closed(rid, str(exc))
        elif isinstance(exc, _DEAD):
            log.debug("[%s] replica %s died: %s", self.group, rid, str(exc).splitlines()[0])
            self.host.on_failure(rid)
        else:
            log.error("[%s] replica %s failed a delivery: %r", self.group, rid, exc)
            self.host.on_failure(rid)

    def _send_now(self, rid: str, handle: Any, msg: Deliver, epoch: str, seq: int) -> bool:
        """``_send_direct`` without a task when ``rid``'s link is open and ``msg`` fits a frame: the
        frame is queued now and its answer taken in a callback of its future (``_link_answer``),
        where a task would take a step of the event loop to start and one to resume.

        Returns:
            Whether it was sent (else ``_send_direct`` does, in a task).
        """
        pending = self._links.get(rid)
        if pending is None or not pending.done() or pending.cancelled() or pending.exception() is not None:
            return False
        link = pending.result()
        links = self.host.links
        if link is None or not links.is_up(rid):  # as route(rid) == WIRE: _send_direct's first steps
            return False
        unflushed = self._unflushed
        try:
            link.send(msg, epoch, seq, lambda call_id, frame, error: self._link_answer(
                rid, handle, msg, epoch, seq, call_id, frame, error), flush_soon=unflushed is None)
        except (NotOnWireError, LinkClosedError):  # _send_direct takes it (the same calls to the host)
            return False
        links.on_sent(rid)
        if unflushed is not None:
            unflushed.append(link)
        return True

    def _link_answer(self, rid: str, handle: Any, msg: Deliver, epoch: str, seq: int, call_id: int,
                     frame: Optional[Tuple[int, bytes]], error: Optional[BaseException]) -> None:
        """The answer frame (or the link's close) of a Deliver ``_send_now`` sent, from the link's
        protocol: as ``_send_direct`` takes it."""
        try:
            if frame is None:
                raise error or LinkClosedError(f"link to {rid} closed")
            answer = DirectLink.answer_of(call_id, frame)
        except BaseException as exc:  # parked, closed, or the replica's deliver raised: in a task
            asyncio.get_running_loop().create_task(
                self._deliver(rid, self._link_failed(rid, handle, msg, epoch, seq, exc)))
            return
        try:
            self.host.on_link_answer(rid)
            self.host.on_link_delivered(rid, answer)  # after any parked answer that came before it
        except Exception as exc:
            self._delivery_failed(rid, exc)

    # ------------------------------------------------------- direct data plane

    async def _send_direct(self, rid: str, handle: Any, msg: Deliver, epoch: str, seq: int) -> Any:
        """The seam: Deliver ``msg`` to replica ``rid`` as link batch ``seq``; return its Delivered
        when it came by a Ray call, or None when the host took it already (it came on the link: the
        host hands a replica's link answers to the core in link order, see ``host.links``).

        On the path the host's links decide (``host.links.route``): the replica's direct link, a Ray
        call (no link, or the message holds an ObjectRef or is over a frame), or none (its link closed).
        Ordering does not depend on the path: the replica applies a link's batches in ``seq`` order.

        Raises:
            LinkClosedError: the link closed (the host's links decide whether that is a suspicion).
            RayActorError: the replica died during a Ray call.
        """
        links = self.host.links
        pending = self._links.get(rid)
        if pending is None and links.want_link(rid):
            pending = self._links[rid] = asyncio.ensure_future(self._open_link(rid, handle))
        link = await pending if pending is not None else None
        route = links.route(rid)
        if route == Route.NONE:
            raise LinkClosedError(f"link to {rid} closed")
        if route == Route.RAY or link is None:
            return await handle.deliver.remote(msg, epoch, seq)
        links.on_sent(rid)
        try:
            answer = await link.deliver(msg, epoch, seq)
        except BaseException as exc:
            return await self._link_failed(rid, handle, msg, epoch, seq, exc)
        self.host.on_link_answer(rid)
        self.host.on_link_delivered(rid, answer)  # after any parked answer that came before it
        return None

    async def _link_failed(self, rid: str, handle: Any, msg: Deliver, epoch: str, seq: int,
                           exc: BaseException) -> Any:
        """A Deliver sent on ``rid``'s link raised ``exc`` instead of its answer: ``_send_direct``'s
        rest (see there).

        Raises:
            LinkClosedError, RayActorError...: as ``_send_direct``.
        """
        links = self.host.links
        try:
            raise exc
        except NotOnWireError:  # it never went out: a Ray call, so the object store tracks its references
            self.host.on_link_answer(rid, heard=False)
            assert links.route(rid, fits_wire=False) == Route.RAY
            return await handle.deliver.remote(msg, epoch, seq)
        except ParkedError as parked:
            decision, ticket = self.host.on_link_parked(rid)
            self.host.on_link_answer(rid)
            if decision == Parked.DROP:
                return None
            try:
                fetched = await handle.parked.remote(epoch, parked.call_id)
            except BaseException:
                self.host.on_parked_lost(rid, ticket)  # what came after it on the link is dropped too
                raise
            self.host.on_parked_fetched(rid, ticket, fetched)  # then what waited for it, in link order
            return None
        except BaseException as failed:  # closed, cancelled, or the replica's deliver raised
            self.host.on_link_answer(rid, heard=isinstance(failed, RemoteDeliverError))
            raise

    async def _open_link(self, rid: str, handle: Any) -> Optional[DirectLink]:
        """The direct link to ``rid`` (None: it has none, Ray calls carry its Delivers)."""
        address = self._wire_addrs.get(rid)
        if address is None:  # a rebuilt router: ask the replica
            address = await handle.wire_address.remote()
        if address is None:
            self.host.on_link_unreachable(rid, "the replica has no direct link")
            return None
        link = DirectLink((str(address[0]), int(address[1])), self.spec.secret, self.settings.frame_bytes_max,
                          connect_timeout_s=max(1.0, self.settings.failure_timeout_s))
        if not await link.connect():  # a port closed between the nodes, say: not a failed replica
            if self.host.on_link_unreachable(rid, str(link.closed)):
                log.warning("[%s] replica %s: no direct link (%s); its Delivers go through Ray calls "
                            "(open port_range between the nodes)", self.group, rid, link.closed)
            return None
        link.on_close = lambda: self.host.on_link_closed(rid, str(link.closed))
        link.on_heard = lambda: self.host.on_link_heard(rid)
        self.host.on_link_up(rid)
        return link

    def _close_link(self, rid: str) -> None:
        """Forget ``rid``'s link and close it (once open, if it is still opening)."""
        pending = self._links.pop(rid, None)
        self._wire_addrs.pop(rid, None)
        if pending is None:
            return
        if pending.done():
            self._end_link(pending)
        else:  # still connecting: end it once it is open
            pending.add_done_callback(self._end_link)

    @staticmethod
    def _end_link(opened: "asyncio.Future[Optional[DirectLink]]") -> None:
        if opened.cancelled() or opened.exception() is not None:
            return
        link = opened.result()
        if link is not None:
            link.close()

    def _heartbeat(self, rid: str) -> None:
        """A heartbeat on ``rid``'s open link (``host.links`` asks for it when the link is idle)."""
        pending = self._links.get(rid)
        if pending is not None and pending.done() and not pending.cancelled() and pending.exception() is None:
            link = pending.result()
            if link is not None:
                link.heartbeat()

    async def _ping(self, rid: str, counts: Optional[Dict[str, int]]) -> None:
        handle = self.handles.get(rid)
        if handle is None:
            return
        try:
            await handle.ping.remote(counts)  # the replica keeps the counters for a restarted router
        except _DEAD:
            self.host.on_failure(rid)
            return
        self.host.on_pong(rid)

    async def _query(self, rid: str, epoch: str) -> None:
        try:
            report = await self.handles[rid].state_report.remote(epoch)
        except Exception as exc:
            log.info("[%s] replica %s did not report its state: %s", self.group, rid, exc)
            self.host.on_failure(rid)
            return
        self.host.on_state_report(report)

    def _retire(self, rid: str) -> None:
        handle = self.handles.pop(rid, None)
        node = self.nodes.pop(rid, None)  # its link: the host's links close it once drained (late output is fenced)
        if node is not None:  # its replacement prefers another node (``choose_node``'s ``lost``)
            self._lost_nodes.append(node)
        if handle is not None:
            try:
                handle.retire.remote()
            except Exception:
                pass

    async def _spawn(self, rid: str) -> None:
        """Create a replica on a node that holds no other replica of the group, if any.

        Creating an actor takes the calling thread 50-150 ms (the class and its
        arguments are pickled and registered): the host asks for it once a recovery
        is over, and it runs on a worker thread, so callers are not held up by it.
        """
        loop = asyncio.get_running_loop()
        if self._nodes_learnt is not None:  # after a rebuild: the members' nodes first
            try:
                await asyncio.shield(self._nodes_learnt)
            except Exception as exc:  # unknown nodes count nowhere: place as well as it can
                log.debug("[%s] members' nodes not learnt: %r", self.group, exc)
        # ray.nodes() is a blocking GCS call: keep it off the event loop that serves callers
        node = await loop.run_in_executor(None, self._free_node)
        options = dict(self.spec.actor_options)
        if node is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                node, soft=self.settings.placement != "strict-spread")
        try:
            await self._fetch_spec()
            if self._closed:  # shut down meanwhile: create nothing more
                return
            creating = self._creating[rid] = loop.run_in_executor(None, self._create_replica, rid, options)
            try:
                handle = await creating
            finally:
                self._creating.pop(rid, None)
            if self._closed:  # shut down meanwhile (shutdown waited for this creation and stops it too)
                ray.kill(handle, no_restart=True)
                return
            info = await handle.ready.remote()
        except Exception as exc:
            if self._closed:  # the group is shutting down: its members are gone, nothing to report
                return
            log.error("[%s] could not start replica %s: %r", self.group, rid, exc)
            self.host.on_spawn_failed(rid)
            return
        if node is not None and await self._placed_again(rid, handle, node, info["node_id"]):
            return
        self.handles[rid] = handle
        self.nodes[rid] = info["node_id"]
        self._pids[rid] = info.get("pid", 0)
        if info.get("wire"):
            self._wire_addrs[rid] = info["wire"]
        log.debug("[%s] replica %s started on node %s; joining", self.group, rid, info["node_id"][:8])
        self.host.on_spawned(rid)

    async def _placed_again(self, rid: str, handle: Any, asked: str, landed: str) -> bool:
        """Check where Ray started replica ``rid``: asked for ``asked`` (a soft node affinity), it runs
        on ``landed``. Beside a member while a node holding none is alive (``host.placement.misplaced``:
        the Ray node deciding did not know the chosen node yet, or found it unable to take it), it is
        stopped before it joins and the core asks for another, after a pause, up to
        ``PLACEMENT_TRIES_MAX`` times in a row; then it stays where it is (logged).

        Args:
            rid: the new replica (not joined yet).
            handle: its actor.
            asked: the node ``_free_node`` chose.
            landed: the node it reported (``ready``).

        Returns:
            True: it was stopped and its start reported failed (``on_spawn_failed``).
        """
        from ftactors.runtime.api import alive_nodes  # api imports this module

        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        try:  # ray.nodes() is a blocking GCS call: off the event loop
            nodes = await loop.run_in_executor(None, alive_nodes)
        except Exception as exc:  # the node list unread: keep the replica where it is
            log.debug("[%s] where replica %s runs not checked: %r", self.group, rid, exc)
            nodes = []
        core = self.host._core()  # spares count as members (see ``_free_node``), joiners too
        others = [r for r in list(core.members) + sorted(core.joining) + list(self.host.spares.ready) if r != rid]
        crowded = misplaced(nodes, [self.nodes.get(r) for r in others], self.settings.placement, asked, landed,
                            lost=list(self._lost_nodes))
        if asked != landed:  # not taken (removed, or unknown yet to the Ray node deciding): asked last next time
            self._lost_nodes.append(asked)
        if not crowded:
            self._placement_tries = 0
            return False
        if self._placement_tries >= PLACEMENT_TRIES_MAX:
            log.warning("[%s] replica %s runs on node %s beside a member: Ray did not place it on a node "
                        "without one in %d tries (asked for %s)", self.group, rid, landed[:8],
                        PLACEMENT_TRIES_MAX + 1, asked[:8])
            self._placement_tries = 0
            return False
        self._placement_tries += 1
        self.placed_again_total += 1
        log.info("[%s] replica %s asked for node %s started on node %s, beside a member: placing it again "
                 "(try %d of %d)", self.group, rid, asked[:8], landed[:8], self._placement_tries,
                 PLACEMENT_TRIES_MAX)
        try:
            ray.kill(handle, no_restart=True)
        except Exception as exc:
            log.debug("[%s] misplaced replica %s not killed: %r", self.group, rid, exc)
        await asyncio.sleep(PLACEMENT_PAUSE_FIRST_S * 2 ** (self._placement_tries - 1))
        if not self._closed:
            self.host.on_spawn_failed(rid)
        return True

    def _create_replica(self, rid: str, options: Dict[str, Any]) -> Any:
        """Start replica ``rid`` (on a worker thread: blocking calls). It is detached, so that it
        outlives this router's restarts, in the group's namespace, never an anonymous one."""
        return _REPLICA_CLASS.options(
            name=replica_actor_name(self.group, rid), namespace=self.spec.namespace, lifetime="detached",
            enable_task_events=False,
            max_restarts=0, max_concurrency=self.settings.replica_threads(), **options,
        ).remote(self.spec, rid, None)

    async def _fetch_spec(self) -> None:
        """Get the user's class and constructor arguments from the members and keep them (the router
        is created without them, see ``__init__``). Callers share one fetch at a time: the one started
        right after start-up (``_prefetch_spec``), or a spawn's when that one failed.

        Raises:
            GroupLostError: no member or joiner gave them (see :meth:`_ask_for_spec`).
        """
        if self.spec.cls_bytes:
            return
        if self._spec_fetch is None or self._spec_fetch.done():
            self._spec_fetch = asyncio.ensure_future(self._ask_for_spec())
            self._spec_fetch.add_done_callback(_retrieved)
        await asyncio.shield(self._spec_fetch)

    async def _prefetch_spec(self) -> None:
        """Fetch the group's class while its members are up (after start-up or a rebuild), so that
        a replacement replica needs no member's answer when one fails or is busy."""
        try:
            await self._fetch_spec()
        except Exception as exc:  # a spawn asks again; its failure is the one the user sees
            log.debug("[%s] the group's class not fetched yet: %s", self.group, exc)

    async def _ask_for_spec(self) -> None:
        """Ask every member and joiner at once for the group's spec, in up to ``SPEC_ROUNDS_MAX``
        rounds with back-off between them; keep the first class given.

        Raises:
            GroupLostError: no member gave it; the message names each member's last error.
        """
        pause_s = SPEC_BACKOFF_FIRST_S
        errors: Dict[str, str] = {}
        for round_no in range(1, SPEC_ROUNDS_MAX + 1):
            spec, errors = await first_spec(await self._spec_askers(), SPEC_ASK_TIMEOUT_S)
            if spec is not None:
                self.spec = dataclasses.replace(self.spec, cls_bytes=spec.cls_bytes, init_bytes=spec.init_bytes)
                return
            log.debug("[%s] round %d: no member gave the group's class: %s", self.group, round_no, errors)
            if self._closed or round_no == SPEC_ROUNDS_MAX:
                break
            await asyncio.sleep(pause_s)
            pause_s = min(2 * pause_s, SPEC_BACKOFF_MAX_S)
        detail = "; ".join(f"{rid}: {why}" for rid, why in sorted(errors.items())) or "the group has no member"
        raise GroupLostError(f"{self.group}: no member gave the group's class ({detail})")

    async def _spec_askers(self) -> Dict[str, "_SpecAsker"]:
        """For each member and joiner: how to ask it for the group's spec (by name when the router
        holds no handle to it, as after a rebuild that did not hear from it)."""
        core = self.host._core()
        rids = list(core.members) + sorted(set(core.joining) - set(core.members))
        loop = asyncio.get_running_loop()
        askers: Dict[str, _SpecAsker] = {}
        for rid in rids:
            handle = self.handles.get(rid)
            if handle is None:  # a blocking GCS call: off the event loop
                handle = await loop.run_in_executor(None, _lookup, replica_actor_name(self.group, rid),
                                                    self.spec.namespace)
            askers[rid] = _missing_actor(rid) if handle is None else _group_spec_of(handle)
        return askers

    def _free_node(self) -> Optional[str]:
        """Where a replacement replica goes, by the one placement policy (None: Ray chooses)."""
        if self.settings.placement == "pack":
            return None
        from ftactors.runtime.api import alive_nodes  # api imports this module

        try:
            # spares count as members: a spare replaces a member, so it must not share a member's node
            taken = list(self.host._core().members) + list(self.host.spares.ready)
            return choose_node(alive_nodes(), [self.nodes.get(m) for m in taken], self.settings.placement,
                               lost=list(self._lost_nodes))
        except PlacementError as exc:
            log.warning("[%s] %s; Ray places the replacement replica", self.group, exc)
            return None



class _AsyncRouter:
    """Ray actor routing one group. Private: created by ``ftactors.replicated``.

    An async actor: every method a coroutine on Ray's event loop, which runs the host too
    (:class:`_RouterLoop`)."""

    def __init__(self, spec: GroupSpec, members: Tuple[str, ...], nodes: Dict[str, str],
                 info: Optional[Dict[str, Any]] = None) -> None:
        self.r = _RouterLoop(spec, members, nodes, info)

    def __repr__(self) -> str:
        """What Ray's error header shows as the actor's ``repr=`` (row 66): the group, not this class."""
        return f"{self.r.info.get('class_name', 'replicated')} group {self.r.group!r}"

    async def ready(self) -> Dict[str, Any]:
        """Wait until the router can serve; return its description."""
        return await self.r.ready()

    async def invoke(self, req: Any, copy: bool = False, oneway: bool = False) -> Any:
        """A call to the group: returns the method's value or raises its exception.

        Args:
            req: the request, or a caller's as :func:`flat_request` gave it.
            copy: True when a backup of a calling group fetches its reply copy.
            oneway: a one-way call: return None once it executed, whatever its outcome.

        Raises:
            RemoteProtocolError: ``req`` is not a request.
            CallCancelledError: its caller cancelled it (``ray.cancel``) and the notice came first: it
                never runs (Ray's ``TaskCancelledError``, as for a task Ray cancelled).
        """
        try:
            rep = await self.r.areply(request_of(req), copy)
        except CallGivenUpError as exc:
            raise CallCancelledError.of(exc) from None
        return None if rep is None or oneway else unwrap(rep)

    async def abandon(self, source: str, seq: int) -> str:
        """A caller's call ``seq`` was cancelled (``ray.cancel``). Not taken yet: it is given up, never
        runs, and the caller's later calls need not wait ``reorder_wait_s`` for it (row 67). Taken: it
        runs, as Ray runs a task that had started, and this answers once it ran (its reply released, at
        most ``ABANDON_WAIT_S_MAX``), so that the caller settles it then (rows 72, 82).

        Args:
            source: the caller's source name.
            seq: the call's sequence number.

        Returns:
            "given up" or "ran" (the caller settles the call), or "unknown" (it keeps it unsettled: the
            router is recovering, or the call did not run within ``ABANDON_WAIT_S_MAX``).

        Raises:
            GroupLostError: the group was lost (or shut down) before the call ran.
        """
        if not self.r._is_started():
            await self.r._ensure_started()
        waiter = _FutureWaiter(asyncio.get_running_loop().create_future())
        outcome = self.r.host.abandon(MsgId(source, seq), waiter)
        if outcome is Abandoned.RUNS:
            try:
                await asyncio.wait_for(waiter.fut, ABANDON_WAIT_S_MAX)
            except asyncio.TimeoutError:
                return Abandoned.UNKNOWN.value
            return Abandoned.RAN.value  # its reply was released, whatever the method returned or raised
        return outcome.value

    async def invoke_nested(self, req: Request, copy: bool = False) -> Tuple[Any, Tuple[Any, ...]]:
        """A nested call from a replicated group; called with ``num_returns=2``.

        Returns:
            (value, announcements): the caller's code gets the value; the calling
            replica keeps this group's announcements to carry them back (claim 66).

        Raises:
            The method's own exception (both returned refs raise it).
        """
        rep = await self.r.areply(req, copy)
        if rep is None:
            return None, ()
        if copy and not rep.position and not rep.outcome.ok and isinstance(rep.outcome.value, ReplyUnavailableError):
            # the callee forgot the call (no position): gone, unlike a method that raised it (row 70)
            raise PulledReplyGoneError(*rep.outcome.value.args)
        return unwrap(rep), rep.announcements

    async def handle_info(self) -> Dict[str, Any]:
        """What a handle needs (``ftactors.get_actor`` builds one from it)."""
        return self.r.handle_info()

    async def describe(self) -> Dict[str, Any]:
        """The core's summary plus each replica's info."""
        return await self.r.describe()

    async def set_unavailable(self, resources: Tuple[str, ...]) -> None:
        """Resource scheduling: tell the primary which resources are unavailable."""
        await self.r.set_unavailable(resources)

    async def shutdown(self) -> Optional[str]:
        """Stop every replica; fail waiting callers. Returns the group's namespace."""
        return await self.r.shutdown()

    def __ray_shutdown__(self) -> None:
        """Called by Ray when it ends this actor gracefully: no handle to it is left (copies in tasks and
        actors included) and no call is pending, so Ray collects it as any actor; or its job ended. The
        group's replicas are stopped with it (``_RouterLoop.end``)."""
        self.r.end()


class _RayIO:
    """The router host's I/O over Ray (:class:`ftactors.host.router.RouterIO`): each call to a
    replica is a Ray actor call or a direct-link Deliver awaited in a task on the router's event
    loop; callers' coroutines wait on :class:`_FutureWaiter` futures."""

    def __init__(self, router: _RouterLoop) -> None:
        self.r = router

    def ticks(self) -> int:
        return self.r._ticks()

    def wall_s(self) -> float:
        return time.time()

    def deliver(self, rid: str, msg: Deliver, epoch: str, seq: int) -> None:
        """The data plane, router -> replica: the replica's direct link (``_RouterLoop._send_direct``;
        a closed link fails the replica at once, a parked answer is fetched with a Ray call), or a
        Ray actor call (``_Replica.deliver``) when the data plane is ``ray`` or the replica has no
        link; the answer goes to ``host.on_delivered``, a failure to ``host.on_failure``."""
        r = self.r
        handle = r.handles[rid]
        if r._direct and r._send_now(rid, handle, msg, epoch, seq):  # an open link: no task
            return
        sent: Any = (r._send_direct(rid, handle, msg, epoch, seq) if r._direct
                     else handle.deliver.remote(msg, epoch, seq))
        asyncio.get_running_loop().create_task(r._deliver(rid, sent))

    def ping(self, rid: str) -> None:
        asyncio.get_running_loop().create_task(self.r._ping(rid, None))

    def save_counts(self, rid: str, counts: Dict[str, int]) -> None:
        asyncio.get_running_loop().create_task(self.r._ping(rid, counts))

    def query(self, rid: str, epoch: str) -> None:
        asyncio.get_running_loop().create_task(self.r._query(rid, epoch))

    def spawn(self, rid: str) -> None:
        asyncio.get_running_loop().create_task(self.r._spawn(rid))

    def retire(self, rid: str) -> None:
        self.r._retire(rid)

    def answer(self, reply: Reply, waiters: Sequence[Any]) -> None:
        for waiter in waiters:
            waiter.answer(reply)

    def fail(self, msg_id: MsgId, reason: str, waiters: Sequence[Any]) -> None:
        for waiter in waiters:
            waiter.fail(GroupLostError(reason))

    def fence(self, msg_id: MsgId, waiters: Sequence[Any]) -> None:
        for waiter in waiters:
            waiter.fail(StaleViewError(f"{msg_id}: from a deposed primary of its group"))

    def kick(self) -> None:
        self.r._kick()

    def heartbeat(self, rid: str) -> None:
        self.r._heartbeat(rid)

    def close_link(self, rid: str) -> None:
        self.r._close_link(rid)



def _await_name(name: str, namespace: Optional[str], timeout_s: float) -> Any:
    """The actor named ``name``, waiting for Ray to register it (the router starts in parallel with
    the group's first replicas, whose names may not be registered yet).

    Raises:
        ValueError: no such actor after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get_actor(name, namespace=namespace)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _lookup(name: str, namespace: Optional[str]) -> Any:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError as exc:  # a replica that is gone
        log.debug("no actor named %s: %r", name, exc)
        return None


async def _aw(ref: Any) -> Any:
    return await ref


_SpecAsker = Callable[[], Awaitable[GroupSpec]]


def _group_spec_of(handle: Any) -> _SpecAsker:
    """Ask the replica behind ``handle`` for the group's spec."""
    return lambda: _aw(handle.group_spec.remote())


def _missing_actor(rid: str) -> _SpecAsker:
    """Stand in for a member that Ray has no actor for: its answer is that error."""
    async def ask() -> GroupSpec:
        raise LookupError(f"Ray has no actor for replica {rid} (it is gone)")
    return ask


def _retrieved(fut: "asyncio.Future[Any]") -> None:
    """Mark a future's exception as seen (its awaiters handle it; asyncio would print it otherwise)."""
    if not fut.cancelled():
        fut.exception()


async def first_spec(askers: Dict[str, _SpecAsker], timeout_s: float) -> Tuple[Optional[GroupSpec], Dict[str, str]]:
    """Ask every member at once for the group's spec; the first one that holds the class wins.

    Args:
        askers: member id -> how to ask it (a call returning an awaitable of its spec).
        timeout_s: how long each member's answer is awaited.

    Returns:
        (spec, errors): the first spec given with its class (None: none was), and why each
        member that answered no such spec did not (the others' asks are cancelled).
    """
    errors: Dict[str, str] = {}
    tasks = {asyncio.ensure_future(asyncio.wait_for(ask(), timeout=timeout_s)): rid for rid, ask in askers.items()}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None and isinstance(task.result(), GroupSpec) and task.result().cls_bytes:
                    return task.result(), errors
                errors[tasks[task]] = _why(exc, timeout_s)
        return None, errors
    finally:
        for task in tasks:
            task.cancel()


def _why(exc: Optional[BaseException], timeout_s: float) -> str:
    """A member's error, in one line, for the spawn's error message."""
    if exc is None:
        return "it gave a spec without the class"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {timeout_s:g} s"
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__

"""The replica actor: a thin Ray host around :class:`ftactors.core.ReplicaCore`.

One ``_Replica`` actor holds one instance of the user's class. The router
calls ``deliver`` with a batch; the calling thread feeds the core and then
*drives* it: it carries out effects (restore, execute, snapshot) one at a time
until the core has nothing to do, and returns the core's Delivered (replies
and piggybacked announcements). Deliveries that arrive while another thread
drives are fed to the core at once, so the primary's scheduler sees them
(priority, deadline, ...), and the driving thread executes them.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import inspect
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Deque, Dict, Optional, Tuple

import cloudpickle
import ray

from ftactors.core import (
    Deliver,
    Delivered,
    Execute,
    NewView,
    Outcome,
    ReplicaCore,
    Restore,
    Role,
    Snapshot,
    StaleViewError,
    StateReport,
)
from ftactors.runtime import context
from ftactors.runtime.settings import ReplicationSettings

log = logging.getLogger("ftactors")


@dataclass(frozen=True)
class GroupSpec:
    """Everything needed to build a replica of a group (shipped to router and replicas).

    Args:
        group: the group name.
        cls_bytes: the user's class, cloudpickled.
        init_bytes: constructor (args, kwargs), cloudpickled.
        settings: ReplicationSettings as a dict.
        actor_options: Ray actor options for each replica (num_cpus, resources, ...).
        namespace: Ray namespace of the named actors.
    """

    group: str
    cls_bytes: bytes
    init_bytes: bytes
    settings: Dict[str, Any]
    actor_options: Dict[str, Any]
    namespace: Optional[str] = None


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
    """The exception itself if it pickles, else a RuntimeError naming it."""
    try:
        cloudpickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class _Replica:
    """Ray actor hosting one replica. Private: created by the router and ``replicated``."""

    def __init__(self, spec: GroupSpec, replica_id: str, initial_view: Optional[NewView]) -> None:
        self.spec = spec
        self.replica_id = replica_id
        self.settings = ReplicationSettings(**spec.settings)
        cls = cloudpickle.loads(spec.cls_bytes)
        args, kwargs = cloudpickle.loads(spec.init_bytes)
        self.core = ReplicaCore(spec.group, replica_id, self.settings.core_config(),
                                scheduling=self.settings.scheduling, initial_view=initial_view)
        self.obj = cls(*args, **kwargs)
        self._cond = threading.Condition()
        self._driving = False
        self._epoch = ""  # the router incarnation whose Delivers we apply, in order
        self._next_seq = 1
        self._t0 = time.monotonic()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._carried: Deque[Tuple[str, Tuple[Any, ...]]] = collections.deque(maxlen=1024)
        # last call from the router; None until its first call (it is created after the first replicas)
        self._router_seen: Optional[float] = None
        self._router_counts: Dict[str, int] = {}  # the router's counters, as it last sent them
        threading.Thread(target=self._orphan_watch, daemon=True, name="ftactors-orphan-watch").start()
        log.debug("[%s] replica %s started (pid %d)", spec.group, replica_id, os.getpid())

    # ------------------------------------------------------------ Ray methods

    def ready(self) -> Dict[str, Any]:
        """Where this replica runs."""
        ctx = ray.get_runtime_context()
        return {"replica": self.replica_id, "pid": os.getpid(), "node_id": ctx.get_node_id()}

    def ping(self, counts: Optional[Dict[str, int]] = None) -> bool:
        """Liveness probe (answered even while a call executes).

        Args:
            counts: the router's counters, kept for a restarted router (see ``view_info``).
        """
        self._router_seen = time.monotonic()
        if counts:  # the highest of each: a late ping from a router incarnation that is gone
            kept = self._router_counts
            self._router_counts = {k: max(n, kept.get(k, 0)) for k, n in {**kept, **counts}.items()}
        return True

    def group_spec(self) -> GroupSpec:
        """The group's spec with the class and constructor arguments (the router spawns replicas from it)."""
        return self.spec

    def deliver(self, msg: Deliver, epoch: str = "", seq: int = 0) -> Delivered:
        """Take a batch from the router; return replies and announcements.

        Args:
            msg: the batch.
            epoch: the router incarnation sending it.
            seq: its number on this link; batches are applied in this order
                (Ray runs concurrent calls of a threaded actor in any order).
        """
        self._router_seen = time.monotonic()
        msg = self._localise_checkpoint(msg)
        with self._cond:
            if not self._in_turn(epoch, seq):
                return self.core.take_delivered()
            self.core.tick(self._ticks())
            try:
                self.core.deliver(msg)
            except StaleViewError:
                return self.core.take_delivered()
            finally:
                self._next_seq += 1
                self._cond.notify_all()
            if self._driving:
                while self._driving:
                    self._cond.wait()
                return self.core.take_delivered()
            self._driving = True
        return self._drive()

    def _in_turn(self, epoch: str, seq: int) -> bool:
        """Wait (holding the condition) until batch ``seq`` of ``epoch`` is next; False if stale."""
        if epoch != self._epoch:
            if seq != 1:
                return False  # from a router incarnation that is gone
            self._epoch, self._next_seq = epoch, 1
        while self._next_seq < seq and self._epoch == epoch:
            self._cond.wait()
        return self._epoch == epoch and self._next_seq == seq

    def state_report(self) -> StateReport:
        """What this replica holds, for the router's recovery."""
        self._router_seen = time.monotonic()
        with self._cond:
            return self.core.state_report()

    def view_info(self) -> Tuple[int, Tuple[str, ...], str, Dict[str, int]]:
        """(view, members, role, the router's last counters), for a restarted router rebuilding the view."""
        self._router_seen = time.monotonic()
        with self._cond:
            return self.core.view, tuple(self.core.members), self.core.role.value, dict(self._router_counts)

    def info(self) -> Dict[str, Any]:
        """Role, progress and a state digest, for ``ftactors.describe``."""
        with self._cond:
            # a digest taken mid-batch would not match the executed count: wait for the batch
            self._cond.wait_for(lambda: not self._driving, timeout=2.0)
            core = self.core
            passive_backup = core.role == Role.BACKUP and core.config.style == "passive"
            if passive_backup:  # it applies checkpoints and logs instead of executing
                digest = core.checkpoint.digest if core.checkpoint is not None else ""
                executed = core.acked_position()
            else:
                digest = state_digest(self.obj) if not self._driving else ""  # unknown: still busy
                executed = core.executed_upto
            return {
                **self.ready(), "role": core.role.value, "view": core.view, "executed": executed,
                "checkpoint_position": core.checkpoint.position if core.checkpoint is not None else 0,
                "acked": core.acked_position(), "state_digest": digest, "counts": dict(core.counts),
                "pending": len(core.requests), "replies_cached": len(core.dedup),
            }

    def retire(self) -> None:
        """Leave: the router removed this replica from the view."""
        log.info("[%s] replica %s retired", self.spec.group, self.replica_id)
        threading.Timer(0.05, lambda: os._exit(0)).start()

    def set_unavailable(self, resources: Tuple[str, ...]) -> None:
        """Resource scheduling: mark resources unavailable (empty: all available)."""
        with self._cond:
            self.core.set_unavailable(frozenset(resources))

    # ------------------------------------------------------------- orphans

    def _orphan_watch(self) -> None:
        """Exit when the group's router is gone for good (its driver exited without
        ``ftactors.shutdown``): replicas created by re-replication are detached actors
        and would otherwise outlive the job. A router that Ray is restarting still
        resolves by name, so only a destroyed router ends the replica."""
        timeout_s = self.settings.orphan_timeout_s
        while True:
            time.sleep(max(0.5, timeout_s / 4))
            seen = self._router_seen
            if seen is None or time.monotonic() - seen < timeout_s:
                continue
            try:
                ray.get_actor(router_actor_name(self.spec.group), namespace=self.spec.namespace)
            except ValueError:
                log.info("[%s] replica %s: the group's router is gone; exiting", self.spec.group,
                         self.replica_id)
                os._exit(0)
            except Exception:  # the GCS is unreachable: keep the state, try again
                continue
            self._router_seen = time.monotonic()

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

    def take_carried(self) -> None:
        """Feed the announcements that arrived to the core. Call holding ``_cond``."""
        while self._carried:
            group, anns = self._carried.popleft()
            self.core.carry_back(group, anns)

    # --------------------------------------------------------------- driving

    def _ticks(self) -> int:
        return int((time.monotonic() - self._t0) / self.settings.tick_s)

    def _drive(self) -> Delivered:
        """Carry out effects until the core is idle; return its Delivered."""
        while True:
            with self._cond:
                effect = self.core.next_effect()
                if effect is None:
                    self._driving = False
                    self._cond.notify_all()
                    return self.core.take_delivered()
            try:
                self._carry_out(effect)
            except BaseException:
                with self._cond:
                    self._driving = False
                    self._cond.notify_all()
                raise

    def _carry_out(self, effect: Any) -> None:
        if isinstance(effect, Execute):
            outcome, nondet = self._execute(effect)
            with self._cond:
                self.core.executed(effect.request.msg_id, outcome, nondet)
        elif isinstance(effect, Snapshot):
            self._snapshot(effect)
        elif isinstance(effect, Restore):
            self.obj = cloudpickle.loads(self._materialise(effect.checkpoint.state))
        else:  # pragma: no cover - the core has no other effects
            raise AssertionError(f"unknown effect {effect!r}")

    def _execute(self, ex: Execute) -> Tuple[Outcome, Tuple[Any, ...]]:
        req = ex.request
        choosing = self.core.role == Role.PRIMARY and not ex.replay
        ctx = context.CallContext(replica=self, replay=ex.nondet, choosing=choosing, execute=ex)
        context.set_current(ctx)
        try:
            args, kwargs = cloudpickle.loads(self._materialise(req.payload))
            result = getattr(self.obj, req.method)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._run_async(result)
            outcome = Outcome(True, result)
        except Exception as exc:  # the method's own exception: every replica raises it too
            outcome = Outcome(False, portable_error(exc))
        finally:
            context.set_current(None)
        return outcome, tuple(ctx.recorded)

    def _snapshot(self, snap: Snapshot) -> None:
        digest = state_digest(self.obj)
        state: Any = None
        if snap.for_checkpoint:
            data = cloudpickle.dumps(self.obj)
            state = ray.put(data) if len(data) > self.settings.large_arg_bytes else data
        with self._cond:
            self.core.snapshot_taken(snap.position, state, digest)

    def _run_async(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True, name="ftactors-async").start()
        return asyncio.run_coroutine_threadsafe(_await(awaitable), self._loop).result()

    @staticmethod
    def _materialise(value: Any) -> Any:
        return ray.get(value) if isinstance(value, ray.ObjectRef) else value

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


async def _await(awaitable: Any) -> Any:
    return await awaitable

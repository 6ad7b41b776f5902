"""Chaos campaigns: faults injected into *your* replicated actor while clients call it.

``ftactors chaos path/to/module.py`` imports the module and looks for one name,
``CHAOS``, a :class:`Campaign`::

    import ftactors
    from ftactors.campaign import Campaign

    @ftactors.replicated(replicas=3)
    class Counter:
        def __init__(self, start=0):
            self.n, self.tokens = start, []
        def add(self, token):
            self.n += 1
            self.tokens.append(token)
            return self.n
        def read(self):
            return list(self.tokens)

    def workload(handle, rng, op_index):
        # one operation; return an ObjectRef (the campaign ray.get's it) or a value
        return handle.add.remote(f"op{op_index}")

    def check(handle, history):
        # invariants after the run; return one string per violation ([] = fine)
        applied = ray.get(handle.read.remote())
        acked = {f"op{op.index}" for op in history if op.ok}
        return [f"lost {t}" for t in sorted(acked - set(applied))]

    CHAOS = Campaign(target=Counter, workload=workload, check=check, args=(0,))

The contract:

``target``
    a class decorated with ``@ftactors.replicated(...)``. The campaign creates
    one group with ``target.remote(*args, **kwargs)`` and shuts it down at the end.
``workload(handle, rng, op_index)``
    issues one operation. ``rng`` is the calling client's ``random.Random``
    (seeded from the campaign seed, so a replay issues the same operations);
    ``op_index`` is unique across clients (use it to make tokens unique). It
    returns a ``ray.ObjectRef`` (or a list of them), which the client waits
    for, or a plain value. Several clients (threads) call it concurrently.
``check(handle, history)``
    optional; runs after the faults stopped and the replicas converged.
    ``history`` is the list of :class:`Op` (index, client, start_s, end_s,
    value, error). It returns a list of violations (strings).
``figures(handle, history)``
    optional; a dict of extra figures for the report and the JSON.
``allowed_errors``
    exception types a call may legitimately raise (application errors);
    any other failed call is a violation.

Built-in checks, always run: no call failed (beyond ``allowed_errors``), the
group recovered to its full size after every fault, and the replicas agree at
the end (equal state digests for semi-active groups, equal executed positions
for passive ones).

Faults (``--faults``): ``kill-primary``, ``kill-backup``, ``kill-router``
(SIGKILL of the process), ``pause-primary`` (SIGSTOP, then SIGCONT after
``--pause-s``) and ``remove-node`` (only with ``--nodes``: the node of a
replica leaves the cluster; a fresh node joins). The plan (when, which fault)
is drawn up front from ``random.Random(seed)``: the same seed gives the same
plan. Faults respect the fault model: the next fault waits until the group is
back to its full size.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
import json
import math
import os
import random
import signal
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

FAULTS = ("kill-primary", "kill-backup", "kill-router", "pause-primary", "remove-node")


class CampaignError(Exception):
    """Bad campaign input (a missing module, a target that is not replicated...)."""


# ----------------------------------------------------------------- contract


@dataclass
class Campaign:
    """What ``ftactors chaos`` runs: a replicated class and how to exercise and check it."""

    target: Any
    workload: Callable[..., Any]
    check: Optional[Callable[..., List[str]]] = None
    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    clients: int = 3
    figures: Optional[Callable[..., Dict[str, Any]]] = None
    allowed_errors: Tuple[type, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        from ftactors.runtime.api import ReplicatedClass

        if not isinstance(self.target, ReplicatedClass):
            what = getattr(self.target, "__name__", type(self.target).__name__)
            raise CampaignError(f"Campaign target {what} is not replicated: decorate it with @ftactors.replicated(...)")
        if not callable(self.workload):
            raise CampaignError("Campaign workload must be a function workload(handle, rng, op_index)")
        if self.check is not None and not callable(self.check):
            raise CampaignError("Campaign check must be a function check(handle, history) -> list of violations")
        if self.figures is not None and not callable(self.figures):
            raise CampaignError("Campaign figures must be a function figures(handle, history) -> dict")
        if not isinstance(self.clients, int) or self.clients < 1:
            raise CampaignError(f"Campaign clients must be an int >= 1, got {self.clients!r}")
        if not isinstance(self.args, (tuple, list)):
            raise CampaignError(f"Campaign args must be a tuple, got {type(self.args).__name__}")
        self.args = tuple(self.args)
        self.allowed_errors = tuple(self.allowed_errors)
        self.name = self.name or self.target.__name__


@dataclass(frozen=True)
class Op:
    """One operation of the history."""

    index: int
    client: int
    start_s: float
    end_s: float
    value: Any = None
    error: Optional[str] = None
    error_type: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Fault:
    """A planned fault: ``kind`` at ``at_s`` seconds after the clients start."""

    at_s: float
    kind: str
    pause_s: float = 0.0


@dataclass
class FaultRecord:
    """What happened to a planned fault."""

    kind: str
    planned_s: float
    at_s: Optional[float] = None
    waited_s: float = 0.0
    victim: str = ""
    pid: int = -1
    node: str = ""
    skipped: str = ""
    pause_s: Optional[float] = None   # callers' longest gap in completions around the fault


# --------------------------------------------------------------- loading


def load_campaign(path: str | Path) -> Campaign:
    """Import ``path`` and return its ``CHAOS`` campaign.

    Raises:
        CampaignError: a missing file, an import error, no CHAOS, a bad target.
    """
    p = Path(path)
    if not p.is_file():
        raise CampaignError(f"module not found: {p}")
    if p.suffix != ".py":
        raise CampaignError(f"{p}: expected a Python file (.py)")
    name = f"ftactors_chaos_{p.stem}".replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise CampaignError(f"{p}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(p.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except CampaignError as exc:
        raise CampaignError(f"{p}: {exc}") from None
    except SyntaxError as exc:
        raise CampaignError(f"{p}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise CampaignError(f"{p}: import failed: {type(exc).__name__}: {exc}") from exc
    # Workers cannot import this module by name: ship its classes and functions by value.
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    try:
        from ray import cloudpickle as ray_cloudpickle

        ray_cloudpickle.register_pickle_by_value(module)
    except Exception:
        pass
    chaos = getattr(module, "CHAOS", None)
    if chaos is None:
        raise CampaignError(f"{p}: defines no CHAOS = ftactors.campaign.Campaign(target=..., workload=..., "
                            f"check=...) (see `ftactors chaos --help`)")
    if not isinstance(chaos, Campaign):
        raise CampaignError(f"{p}: CHAOS must be a ftactors.campaign.Campaign, got {type(chaos).__name__}")
    return chaos


# ------------------------------------------------------------------- plan


def parse_faults(spec: str | Sequence[str]) -> List[str]:
    """``"kill-primary,pause-primary"`` -> a list of fault kinds.

    Raises:
        CampaignError: an unknown fault.
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    if not items:
        raise CampaignError(f"--faults is empty; choose from {', '.join(FAULTS)}")
    bad = [s for s in items if s not in FAULTS]
    if bad:
        raise CampaignError(f"unknown fault {bad[0]!r}; choose from {', '.join(FAULTS)}")
    return items


def plan_faults(seed: int, kinds: Sequence[str], every_s: float, duration_s: Optional[float] = None,
                faults_max: Optional[int] = None, pause_s: float = 3.0, tail_s: Optional[float] = None) -> List[Fault]:
    """The fault plan, drawn from ``random.Random(seed)`` before the run starts.

    Faults come every ``every_s`` seconds on average (uniform 0.75x-1.25x),
    until ``duration_s`` minus a quiet tail or ``faults_max`` faults.
    """
    if every_s <= 0:
        raise CampaignError("--fault-every-s must be > 0")
    if duration_s is None and not faults_max:
        raise CampaignError("give --duration-s or --faults-max")
    rng = random.Random(seed)
    tail = every_s * 0.5 if tail_s is None else tail_s
    plan: List[Fault] = []
    t = 0.0
    while True:
        t += every_s * rng.uniform(0.75, 1.25)
        kind = rng.choice(list(kinds))
        if duration_s is not None and t > duration_s - tail:
            break
        if faults_max is not None and len(plan) >= faults_max:
            break
        plan.append(Fault(round(t, 3), kind, pause_s if kind == "pause-primary" else 0.0))
    return plan


# ------------------------------------------------------------------- runner


@dataclass
class Result:
    """Everything a campaign measured."""

    name: str
    seed: int
    style: str
    replicas: int
    duration_s: float
    history: List[Op]
    faults: List[FaultRecord]
    violations: List[str]
    failovers: int
    converged: bool
    figures: Dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def pauses(self) -> List[float]:
        return [f.pause_s for f in self.faults if f.pause_s is not None]

    def summary(self) -> Dict[str, Any]:
        done = [op for op in self.history if op.ok]
        lat = sorted(op.latency_s for op in done)
        pauses = self.pauses()

        def q(p: float) -> Optional[float]:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {
            "name": self.name, "seed": self.seed, "style": self.style, "replicas": self.replicas,
            "duration_s": round(self.duration_s, 2),
            "operations_completed": len(done),
            "operations_failed": len(self.history) - len(done),
            "throughput_ops_s": round(len(done) / self.duration_s, 1) if self.duration_s > 0 else 0.0,
            "latency_ms_p50": q(0.5), "latency_ms_p99": q(0.99), "latency_ms_max": q(1.0),
            "faults_injected": sum(1 for f in self.faults if f.at_s is not None),
            "faults_by_kind": dict(Counter(f.kind for f in self.faults if f.at_s is not None)),
            "faults_skipped": sum(1 for f in self.faults if f.skipped),
            "failovers": self.failovers,
            "pause_ms_median": round(statistics.median(pauses) * 1000, 1) if pauses else None,
            "pause_ms_worst": round(max(pauses) * 1000, 1) if pauses else None,
            "replicas_converged": self.converged,
            **self.figures,
            "violations": list(self.violations),
            "ok": self.ok,
        }


def _brief(exc: BaseException) -> str:
    """``Type: first line`` of an exception, unwrapping Ray's task errors."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


def _is_ref(x: Any) -> bool:
    import ray

    return isinstance(x, ray.ObjectRef) or (isinstance(x, list) and bool(x) and all(isinstance(r, ray.ObjectRef) for r in x))


class Clients:
    """``n`` threads calling ``workload`` until stopped; every call goes into the history."""

    def __init__(self, campaign: Campaign, handle: Any, seed: int, call_timeout_s: float = 120.0) -> None:
        self.campaign, self.handle, self.call_timeout_s = campaign, handle, call_timeout_s
        self.history: List[Op] = []
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i, random.Random(f"{seed}/client/{i}")),
                                          daemon=True, name=f"ftactors-client-{i}")
                         for i in range(campaign.clients)]

    def start(self) -> "Clients":
        self.t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _index(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def _run(self, client: int, rng: random.Random) -> None:
        import ray

        while not self._stop.is_set():
            index = self._index()
            start = self.now()
            value, error, etype = None, None, None
            try:
                out = self.campaign.workload(self.handle, rng, index)
                value = ray.get(out, timeout=self.call_timeout_s) if _is_ref(out) else out
            except Exception as exc:  # recorded in the history; checks decide
                error, etype = _brief(exc), type(getattr(exc, "cause", None) or exc).__name__
                if self.campaign.allowed_errors and isinstance(exc, self.campaign.allowed_errors):
                    etype = "allowed:" + etype
            op = Op(index, client, start, self.now(), value, error, etype)
            with self._lock:
                self.history.append(op)

    @property
    def completed(self) -> int:
        return len(self.history)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.call_timeout_s + 10)

    def snapshot(self) -> List[Op]:
        with self._lock:
            return sorted(self.history, key=lambda op: op.index)


def group_ready(handle: Any, replicas: int) -> bool:
    """The group has all its replicas, none joining, in normal operation."""
    import ftactors

    info = ftactors.describe(handle, timeout_s=15)
    return (info.phase == "normal" and len(info.replicas) >= replicas and not info.joining
            and all(r.pid > 0 for r in info.replicas))


def replicas_agree(handle: Any, replicas: int) -> Tuple[bool, str]:
    """All replicas reachable and caught up; semi-active: equal, known digests; passive: equal positions.

    Args:
        handle: the group's handle.
        replicas: how many members the group must have (at least).

    Returns:
        (agree, detail): an unreachable or busy replica means not (yet) agreeing (see
        :meth:`ftactors.GroupInfo.disagreement`).
    """
    import ftactors

    info = ftactors.describe(handle, timeout_s=15)
    why = info.disagreement(replicas)
    if why is not None:
        return False, why
    return True, f"{len(info.replicas)} replicas at position {info.replicas[0].executed}"


def group_memory_mib(handle: Any) -> Dict[str, float]:
    """Resident memory of the group's processes on this machine, by role (MiB).

    Args:
        handle: the group.

    Returns:
        ``{"router": ..., "primary": ..., "backup1": ..., "total": ...}``; a process on another
        machine, or one that is gone, is left out.
    """
    import psutil

    import ftactors
    from ftactors.chaos import router_pid

    info = ftactors.describe(handle, timeout_s=30)
    pids = {"router": router_pid(handle)}
    pids.update({("primary" if i == 0 else f"backup{i}"): r.pid for i, r in enumerate(info.replicas)})
    out: Dict[str, float] = {}
    for role, pid in pids.items():
        try:
            out[role] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        except (psutil.Error, ValueError):
            continue
    out["total"] = round(sum(out.values()), 1)
    return out


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return True
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def _check_pid(pid: Any, who: str) -> None:
    """Refuse to signal anything but one other process (``describe`` reports pid -1 when it
    could not reach a replica, and ``os.kill(-1, ...)`` would signal every process we own)."""
    if not isinstance(pid, int) or pid <= 1 or pid == os.getpid():
        raise CampaignError(f"{who}: no usable pid ({pid!r}); replica unreachable?")


def _node_of_router(handle: Any) -> str:
    import ray

    return ray.get(handle._router.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()),
                   timeout=15)


class Injector:
    """Carries out faults against one group (pids on this machine; nodes of a local Cluster)."""

    def __init__(self, handle: Any, cluster: Any = None, num_cpus_per_node: int = 1) -> None:
        self.handle, self.cluster, self.num_cpus_per_node = handle, cluster, num_cpus_per_node
        self._timers: List[threading.Timer] = []
        self._paused: List[int] = []
        self._adders: List[threading.Thread] = []
        self.notes: List[str] = []

    def inject(self, fault: Fault, record: FaultRecord) -> None:
        import ray

        import ftactors
        from ftactors import chaos

        kind = fault.kind
        if kind in ("kill-primary", "kill-backup"):
            role = "primary" if kind == "kill-primary" else "backup"
            info = ftactors.describe(self.handle, timeout_s=15)
            if role == "backup" and not info.backups:
                record.skipped = "no backup"
                return
            index = 0 if role == "primary" else random.Random(fault.at_s).randrange(len(info.backups))
            victim = info.primary if role == "primary" else info.backups[index]
            record.victim, record.pid, record.node = victim.replica_id, victim.pid, victim.node_id[:8]
            _check_pid(victim.pid, victim.replica_id)
            try:
                os.kill(victim.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # not on this machine: let Ray kill the actor
                ray.kill(victim.actor, no_restart=True)
        elif kind == "kill-router":
            pid = chaos.router_pid(self.handle)
            record.victim, record.pid = "router", pid
            _check_pid(pid, "router")
            os.kill(pid, signal.SIGKILL)
        elif kind == "pause-primary":
            info = ftactors.describe(self.handle, timeout_s=15)
            victim = info.primary
            record.victim, record.pid, record.node = victim.replica_id, victim.pid, victim.node_id[:8]
            _check_pid(victim.pid, victim.replica_id)
            os.kill(victim.pid, signal.SIGSTOP)
            self._paused.append(victim.pid)
            timer = threading.Timer(fault.pause_s, chaos.resume, args=(victim.pid,))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)
        elif kind == "remove-node":
            self._remove_node(record)
        else:  # pragma: no cover - parse_faults rejects it
            raise CampaignError(f"unknown fault {kind!r}")

    def _remove_node(self, record: FaultRecord) -> None:
        import ftactors

        if self.cluster is None:
            record.skipped = "remove-node needs --nodes"
            return
        info = ftactors.describe(self.handle, timeout_s=15)
        head = self.cluster.head_node.node_id
        router_node = _node_of_router(self.handle)
        # Never the head (not tolerated), never the primary together with the router (not tolerated);
        # prefer a node without the router (a router restart is a second fault).
        by_id = {n.node_id: n for n in self.cluster.worker_nodes}
        order = []
        if info.primary and info.primary.node_id not in (head, router_node):
            order.append(info.primary)
        order += [b for b in info.backups if b.node_id not in (head, router_node)]
        order += [b for b in info.backups if b.node_id == router_node and b.node_id != head
                  and not (info.primary and info.primary.node_id == router_node)]
        for victim in order:
            node = by_id.get(victim.node_id)
            if node is None:
                continue
            record.victim, record.pid, record.node = victim.replica_id, victim.pid, victim.node_id[:8]
            self.cluster.remove_node(node, allow_graceful=False)
            self._add_node()  # in this (main) thread: Ray's Node registers signal handlers
            return
        record.skipped = "no replica on a removable worker node"

    def _add_node(self) -> None:
        try:
            self.cluster.add_node(num_cpus=self.num_cpus_per_node, wait=False)
        except Exception as exc:  # the campaign goes on with one node less
            self.notes.append(f"a replacement node failed to start: {_brief(exc)}")

    def close(self) -> None:
        from ftactors import chaos

        for t in self._timers:
            t.cancel()
        for pid in self._paused:
            if isinstance(pid, int) and pid > 1:
                chaos.resume(pid)
        for a in self._adders:
            a.join(timeout=60)


def caller_pauses(history: Sequence[Op], faults: Sequence[FaultRecord], end_s: float, window_s: float = 10.0) -> None:
    """Set each fault's ``pause_s``: the longest gap between completions overlapping [fault, fault+window]."""
    ends = sorted(op.end_s for op in history if op.ok)
    times = [f.at_s for f in faults if f.at_s is not None]
    for f in faults:
        if f.at_s is None:
            continue
        later = [t for t in times if t > f.at_s]
        hi = min(f.at_s + window_s, later[0] if later else end_s, end_s)
        prev = max((e for e in ends if e <= f.at_s), default=0.0)
        worst, last = 0.0, prev
        for e in ends:
            if e <= f.at_s:
                continue
            worst = max(worst, e - last)
            last = e
            if e >= hi:
                break
        else:
            worst = max(worst, hi - last)
        f.pause_s = worst


class Progress:
    """A rich progress bar over the run's duration (or nothing when disabled)."""

    def __init__(self, total_s: float, enabled: bool = True, label: str = "chaos") -> None:
        self.enabled, self.total_s, self.label = enabled, total_s, label
        self._p: Any = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress as RP, TextColumn, TimeElapsedColumn

            self._p = RP(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                         TextColumn("{task.fields[info]}"), transient=False)
            self._p.__enter__()
            self._task = self._p.add_task(self.label, total=self.total_s, info="starting")
        return self

    def update(self, elapsed_s: float, info: str) -> None:
        if self._p is not None:
            self._p.update(self._task, total=self.total_s, completed=min(elapsed_s, self.total_s), info=info)

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


def run(campaign: Campaign, *, seed: int = 0, plan: Sequence[Fault] = (), duration_s: Optional[float] = None,
        cluster: Any = None, progress: bool = True, recover_timeout_s: float = 60.0,
        call_timeout_s: float = 120.0, label: str = "chaos", log: Callable[[str], None] = lambda s: None) -> Result:
    """Create the group, run clients and the fault plan, then check. Ray must be initialised."""
    import ftactors

    settings = campaign.target._settings
    replicas = settings.replicas
    handle = campaign.target.remote(*campaign.args, **campaign.kwargs)
    records = [FaultRecord(kind=f.kind, planned_s=f.at_s) for f in plan]
    violations: List[str] = []
    end_s = duration_s if duration_s is not None else (plan[-1].at_s if plan else 0.0) + 3.0
    injector = Injector(handle, cluster)
    clients = Clients(campaign, handle, seed, call_timeout_s)
    try:
        start_nodes = len({r.node_id for r in ftactors.describe(handle, timeout_s=30).replicas})
        memory_start = group_memory_mib(handle)
        clients.start()
        with Progress(end_s, progress, label) as bar:
            def tick() -> None:
                done = [r for r in records if r.at_s is not None]
                last = f", last: {done[-1].kind} {done[-1].victim}" if done else ""
                bar.update(clients.now(), f"{clients.completed} ops, {len(done)}/{len(records)} faults{last}")

            for fault, record in zip(plan, records, strict=True):
                while clients.now() < fault.at_s:
                    tick()
                    time.sleep(min(0.2, max(0.0, fault.at_s - clients.now())))
                t_wait = clients.now()
                if not wait_until(lambda: group_ready(handle, replicas), recover_timeout_s, 0.1):
                    violations.append(f"group not back to {replicas} replicas {recover_timeout_s:.0f}s after "
                                      f"the previous fault; remaining faults not injected")
                    record.skipped = "group did not recover"
                    break
                record.waited_s = round(clients.now() - t_wait, 3)
                record.at_s = round(clients.now(), 3)
                try:
                    injector.inject(fault, record)
                except Exception as exc:
                    record.at_s = None
                    record.skipped = f"{type(exc).__name__}: {exc}"[:200]
                log(f"{record.at_s}s {fault.kind} {record.victim} {record.skipped}")
                tick()
            if duration_s is None:  # --faults-max: watch the last fault's recovery for a while
                end_s = max(end_s, clients.now() + 3.0)
                bar.total_s = end_s
            while clients.now() < end_s:
                tick()
                time.sleep(0.2)
            tick()
        clients.stop()
        run_s = clients.now()
        injector.close()
        history = clients.snapshot()
        caller_pauses(history, records, run_s)

        errors = [op for op in history if op.error and not (op.error_type or "").startswith("allowed:")]
        if errors:
            violations.append(f"{len(errors)} calls failed; first: op {errors[0].index}: {errors[0].error}")
        agree: List[Any] = [False, ""]

        def settle() -> bool:
            agree[:] = replicas_agree(handle, replicas)
            return agree[0]

        converged = wait_until(settle, recover_timeout_s, 0.2)
        if not converged:
            violations.append(f"replicas did not converge within {recover_timeout_s:.0f}s: {agree[1]}")
        failovers, style = -1, settings.style
        try:
            info = ftactors.describe(handle, timeout_s=30)
            failovers, style = int(info.counts.get("failovers", 0)), info.style
        except Exception as exc:
            violations.append(f"describe() failed after the run: {_brief(exc)}")
        figures: Dict[str, Any] = {}
        if campaign.figures is not None:
            try:
                figures = dict(campaign.figures(handle, history))
            except Exception as exc:
                violations.append(f"figures() raised {_brief(exc)}")
        if campaign.check is not None:
            try:
                found = campaign.check(handle, history)
            except Exception as exc:  # e.g. the group is lost: that is a finding, not a crash
                found = [f"check() raised {_brief(exc)}"]
            if not isinstance(found, (list, tuple)):
                raise CampaignError(f"check() must return a list of violations, got {type(found).__name__}")
            violations += [str(v) for v in found]
        figures["replica_nodes_at_start"] = start_nodes
        try:
            figures["memory_mib_start"], figures["memory_mib_end"] = memory_start, group_memory_mib(handle)
        except Exception as exc:  # a figure, not a check
            figures["memory_mib_end"] = f"unavailable: {_brief(exc)}"
        if injector.notes:
            figures["notes"] = list(injector.notes)
        return Result(campaign.name, seed, style, replicas, run_s, history, records, violations,
                      failovers, converged, figures)
    finally:
        clients._stop.set()
        injector.close()
        try:
            ftactors.shutdown(handle)
        except Exception:
            pass


# ----------------------------------------------------------------- output


def write_outputs(result: Result, out_dir: str | Path, title: str = "") -> Dict[str, Path]:
    """``result.json`` and ``latency.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.summary()
    data["faults"] = [asdict(f) for f in result.faults]
    json_path = out / "result.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    png_path = out / "latency.png"
    plot_latency(result, png_path, title or f"{result.name}: call latency under faults (seed {result.seed})")
    return {"json": json_path, "png": png_path}


_COLORS = {"kill-primary": "tab:red", "kill-backup": "tab:orange", "kill-router": "tab:purple",
           "pause-primary": "tab:brown", "remove-node": "tab:pink"}


def plot_latency(result: Result, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [op for op in result.history if op.ok]
    bad = [op for op in result.history if not op.ok]
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    ax.scatter([op.end_s for op in ok], [max(op.latency_s * 1000, 0.01) for op in ok], s=3, alpha=0.5,
               color="tab:blue", label=f"call ({len(ok)})", linewidths=0)
    if bad:
        ax.scatter([op.end_s for op in bad], [max(op.latency_s * 1000, 0.01) for op in bad], s=12, marker="x",
                   color="black", label=f"failed call ({len(bad)})")
    seen = set()
    for f in result.faults:
        if f.at_s is None:
            continue
        ax.axvline(f.at_s, color=_COLORS.get(f.kind, "red"), linestyle="--", linewidth=1,
                   label=f.kind if f.kind not in seen else None)
        seen.add(f.kind)
    ax.set_yscale("log")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("call latency (ms, log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render_report(result: Result, console: Any, extra_rows: Sequence[Tuple[str, str, Optional[bool]]] = ()) -> None:
    """A rich table of the figures; ``extra_rows`` are (figure, value, passed or None)."""
    from rich.table import Table

    s = result.summary()
    t = Table(title=f"{result.name} ({result.style}, {result.replicas} replicas, seed {result.seed})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("check", justify="center")

    def mark(v: Optional[bool]) -> str:
        return "" if v is None else ("[green]ok[/]" if v else "[red]FAIL[/]")

    rows: List[Tuple[str, str, Optional[bool]]] = [
        ("operations completed", f"{s['operations_completed']} ({s['throughput_ops_s']}/s)", None),
        ("operations failed", str(s["operations_failed"]), s["operations_failed"] == 0 or None),
        ("latency p50 / p99 / max", f"{s['latency_ms_p50']} / {s['latency_ms_p99']} / {s['latency_ms_max']} ms", None),
        ("faults injected", f"{s['faults_injected']}" + (f" ({s['faults_skipped']} skipped)" if s["faults_skipped"] else "")
         + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(s["faults_by_kind"].items())) + ")"
            if s["faults_by_kind"] else ""), None),
        ("failovers", str(s["failovers"]), None),
        ("pause seen by callers, median / worst",
         f"{s['pause_ms_median']} / {s['pause_ms_worst']} ms" if s["pause_ms_median"] is not None else "-", None),
    ]
    start, end = s.get("memory_mib_start"), s.get("memory_mib_end")
    if isinstance(start, dict) and isinstance(end, dict):
        roles = [r for r in ("router", "primary", "backup1", "backup2", "backup3", "total") if r in start or r in end]
        rows.append(("memory at start -> end (MiB)",
                     ", ".join(f"{r} {start.get(r, '-')} -> {end.get(r, '-')}" for r in roles), None))
    rows += list(extra_rows)
    rows.append(("replicas agree at the end", "yes" if s["replicas_converged"] else "no", s["replicas_converged"]))
    for name, value, passed in rows:
        t.add_row(name, value, mark(passed))
    console.print(t)
    for v in result.violations:
        console.print(f"[red]violation:[/] {v}")


def faults_table(result: Result, console: Any) -> None:
    from rich.table import Table

    t = Table(title="faults")
    for c in ("at s", "fault", "victim", "pid", "waited s", "pause ms", "note"):
        t.add_column(c)
    for f in result.faults:
        t.add_row("-" if f.at_s is None else f"{f.at_s:.2f}", f.kind, f.victim.rsplit("-", 1)[-1], str(f.pid) if f.pid > 0 else "",
                  f"{f.waited_s:.2f}", "" if f.pause_s is None else f"{f.pause_s * 1000:.0f}", f.skipped)
    console.print(t)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else math.nan


# --------------------------------------------------------------- ray set-up

#: Fast node-failure detection (about 1.5 s instead of about 13 s); see configs/cluster.yaml.
HEALTH_CHECK_ENV = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
                    "RAY_health_check_timeout_ms": "1000"}


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with one line, when ``host:port`` does not answer.

    Raises:
        CampaignError: unreachable or malformed address.
    """
    import socket

    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CampaignError(f"--address {address!r}: expected host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise CampaignError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


def start_ray(address: Optional[str] = None, nodes: Optional[int] = None, debug: bool = False,
              num_cpus: int = 4) -> Any:
    """Connect to Ray: local (default), an existing cluster (``address``), or ``nodes`` local nodes.

    Returns:
        The ``ray.cluster_utils.Cluster`` when ``nodes`` is given, else None.

    Raises:
        CampaignError: bad combination, or the cluster cannot be reached.
    """
    import ray

    quiet = dict(logging_level="info" if debug else "error", log_to_driver=debug, include_dashboard=False)
    if not debug:
        _quiet_expected_warnings()
    if nodes is not None:
        if address is not None:
            raise CampaignError("--nodes starts a local cluster; it cannot be combined with --address")
        if nodes < 1:
            raise CampaignError(f"--nodes must be >= 1, got {nodes}")
        for k, v in HEALTH_CHECK_ENV.items():  # before the GCS starts, so that it inherits them
            os.environ.setdefault(k, v)
        # A prior local ray.init in this process sets RAY_AUTH_MODE=token; be explicit so that
        # other drivers (`ftactors status --address ...`) can join this cluster.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, **quiet)
        return cluster
    if address is None or address == "local":
        ray.init(address="local", num_cpus=num_cpus, **quiet)
        return None
    check_address(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CampaignError(f"cannot connect to Ray at {address}: {first}") from None
    return None


#: Messages Ray prints for what a chaos run does on purpose (shown with --debug).
_EXPECTED = ("A worker died or was killed while executing a task",
             "creating a detached actor in an anonymous namespace")


def _quiet_expected_warnings() -> None:
    """Drop Ray's driver-side notices about workers we killed on purpose."""
    try:
        from ray._private import worker as ray_worker
    except Exception:  # pragma: no cover - a Ray without this internal
        return
    original = ray_worker.print_to_stdstream
    if getattr(original, "_ftactors_quiet", False):
        return

    def filtered(data: Any, *args: Any, **kwargs: Any) -> Any:
        lines = [ln for ln in data.get("lines", []) if not any(e in ln for e in _EXPECTED)]
        if not lines:
            return None
        return original({**data, "lines": lines}, *args, **kwargs)

    filtered._ftactors_quiet = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = filtered


def stop_ray(cluster: Any = None) -> None:
    import ray

    try:
        ray.shutdown()
    finally:
        if cluster is not None:
            cluster.shutdown()


# ------------------------------------------------------------------ config


def _chaos_config_model() -> Any:
    from typing import Union as U

    from pydantic import BaseModel, ConfigDict, Field

    class ChaosConfig(BaseModel):
        """A campaign file (``configs/chaos.yaml``): top level, or a ``chaos:`` section."""

        model_config = ConfigDict(extra="forbid")

        module: Optional[str] = None
        faults: U[str, List[str]] = "kill-primary,kill-backup,kill-router,pause-primary"
        fault_every_s: float = Field(4.0, gt=0)
        duration_s: Optional[float] = Field(None, gt=0)
        faults_max: Optional[int] = Field(None, ge=1)
        seed: int = 0
        pause_s: float = Field(3.0, gt=0)
        clients: Optional[int] = Field(None, ge=1)
        address: Optional[str] = None
        nodes: Optional[int] = Field(None, ge=1)
        out: str = "out/chaos"
        recover_timeout_s: float = Field(60.0, gt=0)

    return ChaosConfig


ChaosConfig = _chaos_config_model()


# ------------------------------------------------------------ safe faults


def kill_replica(handle: Any, role: str = "primary", index: int = 0, timeout_s: float = 30.0) -> Any:
    """SIGKILL a replica's process, like ``ftactors.chaos.kill_replica``, but only a real pid.

    ``describe`` reports pid -1 for a replica it could not reach, and ``os.kill(-1, SIGKILL)``
    would signal every process the user owns; this waits (up to ``timeout_s``) until the
    replica's pid is known instead.

    Returns:
        The ``ReplicaInfo`` of the replica killed.

    Raises:
        CampaignError: no such replica with a known pid within ``timeout_s``.
    """
    import ftactors

    deadline = time.monotonic() + timeout_s
    while True:
        info = ftactors.describe(handle, timeout_s=timeout_s)
        victim = info.primary if role == "primary" else (info.backups[index] if index < len(info.backups) else None)
        if victim is not None and isinstance(victim.pid, int) and victim.pid > 1 and victim.pid != os.getpid():
            os.kill(victim.pid, signal.SIGKILL)
            return victim
        if time.monotonic() > deadline:
            raise CampaignError(f"{handle.group}: no {role} with a known pid after {timeout_s:.0f}s")
        time.sleep(0.1)

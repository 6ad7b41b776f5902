"""Chaos campaigns: faults injected into *your* replicated actor while clients call it.

``ftactors chaos path/to/module.py`` imports the module and looks for one name,
``CHAOS``, a :class:`Campaign`::

    import ftactors
    from ftactors.chaos import Campaign

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
``--pause-s``) and ``remove-node`` (only with ``--nodes``: a fresh node joins,
then the node of a replica alone on its node leaves the cluster, so the fault
takes one member and its replacement finds a node free of the group's members).
The plan (when, which fault) is drawn up front from ``random.Random(seed)``: the
same seed gives the same plan. Faults respect the fault model: the next fault
waits until the group is back to its full size, and each takes one member at
most (the report's ``members`` column; ``members_taken_max`` in ``result.json``).
"""


from __future__ import annotations

import importlib.util
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ftactors.chaos import checks, faults
from ftactors.chaos.clients import Clients, Op, brief
from ftactors.chaos.errors import CampaignError
from ftactors.chaos.plan import Fault, FaultRecord
from ftactors.chaos.report import Progress, Result, caller_pauses, group_memory_mib

# ----------------------------------------------------------------- contract


@dataclass
class Campaign:
    """What ``ftactors chaos`` runs: a replicated class and how to exercise and check it.

    Raises:
        CampaignError: a target that is not replicated, or a field of the wrong kind.
    """

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
        for name, signature in (("workload", "workload(handle, rng, op_index)"),
                                ("check", "check(handle, history) -> list of violations"),
                                ("figures", "figures(handle, history) -> dict")):
            value = getattr(self, name)
            if (value is not None or name == "workload") and not callable(value):
                raise CampaignError(f"Campaign {name} must be a function {signature}")
        if not isinstance(self.clients, int) or self.clients < 1:
            raise CampaignError(f"Campaign clients must be an int >= 1, got {self.clients!r}")
        if not isinstance(self.args, (tuple, list)):
            raise CampaignError(f"Campaign args must be a tuple, got {type(self.args).__name__}")
        self.args = tuple(self.args)
        self.allowed_errors = tuple(self.allowed_errors)
        self.name = self.name or self.target.__name__


def load_campaign(path: Union[str, Path]) -> Campaign:
    """Import ``path`` and return its ``CHAOS`` campaign.

    Raises:
        CampaignError: a missing file, an import error, no CHAOS, a bad target.
    """
    p = Path(path)
    if not p.is_file():
        raise CampaignError(f"module not found: {p}")
    if p.suffix != ".py":
        raise CampaignError(f"{p}: expected a Python file (.py)")
    module = _import_file(p)
    chaos = getattr(module, "CHAOS", None)
    if chaos is None:
        raise CampaignError(f"{p}: defines no CHAOS = ftactors.chaos.Campaign(target=..., workload=..., "
                            f"check=...) (see `ftactors chaos --help`)")
    if not isinstance(chaos, Campaign):
        raise CampaignError(f"{p}: CHAOS must be a ftactors.chaos.Campaign, got {type(chaos).__name__}")
    return chaos


def _import_file(p: Path) -> Any:
    """Import a Python file as a module whose classes and functions Ray workers get by value.

    Raises:
        CampaignError: it cannot be imported (the message says why, with the line of a syntax error).
    """
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
    return module


# ----------------------------------------------------------------- faults


class Injector:
    """Carries out planned faults against one group, each with a primitive of :mod:`ftactors.chaos.faults`.

    Args:
        handle: the group.
        cluster: the local ``ray.cluster_utils.Cluster`` (needed by ``remove-node``).
        num_cpus_per_node: CPUs of a node added after a removal.
    """

    def __init__(self, handle: Any, cluster: Any = None, num_cpus_per_node: int = 1) -> None:
        self.handle, self.cluster, self.num_cpus_per_node = handle, cluster, num_cpus_per_node
        self._timers: List[threading.Timer] = []
        self._paused: List[int] = []
        self.notes: List[str] = []
        self._by_kind: Dict[str, Callable[[Fault, FaultRecord], None]] = {
            "kill-primary": self._kill_primary, "kill-backup": self._kill_backup,
            "kill-router": self._kill_router, "pause-primary": self._pause_primary,
            "remove-node": self._remove_node,
        }

    def inject(self, fault: Fault, record: FaultRecord) -> None:
        """Carry out ``fault``; note the victim (or why it was skipped) in ``record``.

        Raises:
            CampaignError: an unknown fault kind.
            FaultError: no victim with a usable pid.
        """
        action = self._by_kind.get(fault.kind)
        if action is None:
            raise CampaignError(f"unknown fault {fault.kind!r}")
        action(fault, record)

    @staticmethod
    def _note(record: FaultRecord, victim: Any) -> None:
        record.victim, record.pid, record.node = victim.replica_id, victim.pid, victim.node_id[:8]
        record.members_taken = 1

    def _kill_primary(self, fault: Fault, record: FaultRecord) -> None:
        self._note(record, faults.kill_replica(self.handle, "primary", timeout_s=0.0))

    def _kill_backup(self, fault: Fault, record: FaultRecord) -> None:
        import ftactors

        info = ftactors.describe(self.handle, timeout_s=15)
        if not info.backups:
            record.skipped = "no backup"
            return
        victim = faults.choose_replica(info, "backup", faults.backup_index(len(info.backups), fault.at_s))
        self._note(record, victim)
        faults.kill(victim)

    def _kill_router(self, fault: Fault, record: FaultRecord) -> None:
        record.victim = "router"
        record.pid = faults.kill_router(self.handle)

    def _pause_primary(self, fault: Fault, record: FaultRecord) -> None:
        victim = faults.pause_replica(self.handle, "primary", timeout_s=0.0)
        self._note(record, victim)
        self._paused.append(victim.pid)
        timer = threading.Timer(fault.pause_s, faults.resume, args=(victim.pid,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _remove_node(self, fault: Fault, record: FaultRecord) -> None:
        if self.cluster is None:
            record.skipped = "remove-node needs --nodes"
            return
        # in this (main) thread: Ray's Node registers signal handlers
        removal = faults.replace_replica_node(self.cluster, self.handle, self.num_cpus_per_node)
        if removal is None:
            record.skipped = "no replica alone on a removable worker node"
            return
        self._note(record, removal.victim)
        record.members_taken = len(removal.members)

    def close(self) -> None:
        """Cancel pending resumes and resume every paused process now."""
        for t in self._timers:
            t.cancel()
        for pid in self._paused:
            faults.resume(pid)
        self._paused.clear()


# -------------------------------------------------------------- the run


class _Run:
    """One campaign run against one group: clients, the plan's faults one at a time, then the checks."""

    def __init__(self, campaign: Campaign, handle: Any, seed: int, plan: Sequence[Fault], cluster: Any,
                 recover_timeout_s: float, call_timeout_s: float, log: Callable[[str], None]) -> None:
        self.campaign, self.handle, self.seed, self.plan = campaign, handle, seed, list(plan)
        self.replicas = campaign.target._settings.replicas
        self.recover_timeout_s, self.log = recover_timeout_s, log
        self.records = [FaultRecord(kind=f.kind, planned_s=f.at_s) for f in self.plan]
        self.violations: List[str] = []
        self.injector = Injector(handle, cluster)
        self.clients = Clients(campaign.workload, handle, campaign.clients, seed, campaign.allowed_errors,
                               call_timeout_s)
        self.figures: Dict[str, Any] = {}

    def tick(self, bar: Progress) -> None:
        """Update the progress bar."""
        done = [r for r in self.records if r.at_s is not None]
        last = f", last: {done[-1].kind} {done[-1].victim}" if done else ""
        bar.update(self.clients.now(), f"{self.clients.completed} ops, {len(done)}/{len(self.records)} faults{last}")

    def sleep_until(self, t_s: float, bar: Progress) -> None:
        """Wait (updating the bar) until ``t_s`` seconds after the clients started."""
        while self.clients.now() < t_s:
            self.tick(bar)
            time.sleep(min(0.2, max(0.0, t_s - self.clients.now())))

    def inject_plan(self, bar: Progress) -> None:
        """Each planned fault at its time, once the group is back to full size (else stop)."""
        for fault, record in zip(self.plan, self.records):
            self.sleep_until(fault.at_s, bar)
            t_wait = self.clients.now()
            if not checks.wait_until(lambda: checks.group_ready(self.handle, self.replicas),
                                     self.recover_timeout_s, 0.1):
                self.violations.append(f"group not back to {self.replicas} replicas {self.recover_timeout_s:.0f}s "
                                       f"after the previous fault; remaining faults not injected")
                record.skipped = "group did not recover"
                return
            record.waited_s = round(self.clients.now() - t_wait, 3)
            self.inject(fault, record)
            self.tick(bar)

    def inject(self, fault: Fault, record: FaultRecord) -> None:
        """One fault; a fault that cannot be carried out is recorded as skipped."""
        record.at_s = round(self.clients.now(), 3)
        try:
            self.injector.inject(fault, record)
        except Exception as exc:
            record.at_s = None
            record.skipped = f"{type(exc).__name__}: {exc}"[:200]
        if record.skipped:
            record.at_s = None
        self.log(f"{record.at_s}s {fault.kind} {record.victim} {record.skipped}")

    def check(self, history: List[Op]) -> Tuple[bool, int, str]:
        """The built-in and the campaign's checks; returns (converged, failovers, style)."""
        import ftactors

        self.violations += checks.failed_calls(history)
        converged, detail = checks.await_agreement(self.handle, self.replicas, self.recover_timeout_s)
        if not converged:
            self.violations.append(f"replicas did not converge within {self.recover_timeout_s:.0f}s: {detail}")
        failovers, style = -1, self.campaign.target._settings.style
        try:
            info = ftactors.describe(self.handle, timeout_s=30)
            failovers, style = int(info.counts.get("failovers", 0)), info.style
        except Exception as exc:
            self.violations.append(f"describe() failed after the run: {brief(exc)}")
        self.user_figures(history)
        if self.campaign.check is not None:
            self.violations += checks.user_check(self.campaign.check, self.handle, history)
        return converged, failovers, style

    def user_figures(self, history: List[Op]) -> None:
        """The campaign's own figures (before its check, which may use them)."""
        if self.campaign.figures is None:
            return
        try:
            self.figures.update(self.campaign.figures(self.handle, history))
        except Exception as exc:
            self.violations.append(f"figures() raised {brief(exc)}")

    def memory_end(self) -> None:
        """The group's memory at the end: a figure, not a check."""
        try:
            self.figures["memory_mib_end"] = group_memory_mib(self.handle)
        except Exception as exc:
            self.figures["memory_mib_end"] = f"unavailable: {brief(exc)}"

    def measure_start(self) -> None:
        """Figures before the clients start: on how many nodes the replicas are, their memory."""
        import ftactors

        info = ftactors.describe(self.handle, timeout_s=30)
        self.figures["replica_nodes_at_start"] = len({x.node_id for x in info.replicas})
        self.figures["memory_mib_start"] = group_memory_mib(self.handle)

    def drive(self, duration_s: Optional[float], progress: bool, label: str) -> None:
        """Clients run while the plan's faults are injected, until ``duration_s`` (None: a few
        seconds after the last fault)."""
        end_s = duration_s if duration_s is not None else (self.plan[-1].at_s if self.plan else 0.0) + 3.0
        with Progress(end_s, progress, label) as bar:
            self.inject_plan(bar)
            if duration_s is None:  # --faults-max: watch the last fault's recovery for a while
                end_s = bar.total_s = max(end_s, self.clients.now() + 3.0)
            self.sleep_until(end_s, bar)
            self.tick(bar)

    def execute(self, duration_s: Optional[float], progress: bool, label: str) -> Result:
        """The whole run: figures at the start, clients and faults, then the checks."""
        self.measure_start()
        self.clients.start()
        self.drive(duration_s, progress, label)
        self.clients.stop()
        run_s = self.clients.now()
        self.injector.close()
        history = self.clients.snapshot()
        caller_pauses(history, self.records, run_s)
        converged, failovers, style = self.check(history)
        self.memory_end()
        if self.injector.notes:
            self.figures["notes"] = list(self.injector.notes)
        return Result(self.campaign.name, self.seed, style, self.replicas, run_s, history, self.records,
                      self.violations, failovers, converged, self.figures)

    def close(self) -> None:
        """Stop the clients and resume anything still paused (also after an error)."""
        self.clients.signal_stop()
        self.injector.close()


def run(campaign: Campaign, *, seed: int = 0, plan: Sequence[Fault] = (), duration_s: Optional[float] = None,
        cluster: Any = None, progress: bool = True, recover_timeout_s: float = 60.0,
        call_timeout_s: float = 120.0, label: str = "chaos", log: Callable[[str], None] = lambda s: None) -> Result:
    """Create the group, run clients and the fault plan, then check. Ray must be initialised.

    Args:
        campaign: what to run.
        seed: seeds the clients (the plan is drawn by the caller, see :func:`plan_faults`).
        plan: the faults.
        duration_s: how long clients run; None: until the last fault's recovery was watched.
        cluster: the local ``Cluster`` (for ``remove-node``).
        progress: show a progress bar.
        recover_timeout_s: how long the group may take to be back to full size, or to agree.
        call_timeout_s: how long one call may take.
        label: the progress bar's label.
        log: called with one line per fault.

    Returns:
        The result; its ``violations`` say what failed.
    """
    import ftactors

    handle = campaign.target.remote(*campaign.args, **campaign.kwargs)
    r = _Run(campaign, handle, seed, plan, cluster, recover_timeout_s, call_timeout_s, log)
    try:
        return r.execute(duration_s, progress, label)
    finally:
        r.close()
        try:
            ftactors.shutdown(handle)
        except Exception:
            pass

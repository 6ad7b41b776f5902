"""The report of a chaos run: the result's figures, the callers' pauses, the group's memory, a
rich table, ``result.json`` and ``latency.png``."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ftactors.chaos.clients import Op
from ftactors.chaos.plan import FaultRecord

#: a row of the report: (figure, value, passed or None when it is no check)
Row = Tuple[str, str, Optional[bool]]


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
        """No violation."""
        return not self.violations

    @property
    def injected(self) -> int:
        """Faults injected (not skipped)."""
        return sum(1 for f in self.faults if f.at_s is not None)

    def members_taken_max(self) -> int:
        """The most members one injected fault took (1: one fault at a time held; 0: none taken)."""
        return max((f.members_taken for f in self.faults if f.at_s is not None), default=0)

    def pauses(self) -> List[float]:
        """The callers' pause around each injected fault (seconds)."""
        return [f.pause_s for f in self.faults if f.pause_s is not None]

    def summary(self) -> Dict[str, Any]:
        """The figures, as ``result.json`` holds them."""
        done = [op for op in self.history if op.ok]
        pauses = self.pauses()
        return {
            "name": self.name, "seed": self.seed, "style": self.style, "replicas": self.replicas,
            "duration_s": round(self.duration_s, 2),
            "operations_completed": len(done),
            "operations_failed": len(self.history) - len(done),
            "throughput_ops_s": round(len(done) / self.duration_s, 1) if self.duration_s > 0 else 0.0,
            **latency_ms(done),
            "faults_injected": self.injected,
            "faults_by_kind": dict(Counter(f.kind for f in self.faults if f.at_s is not None)),
            "faults_skipped": sum(1 for f in self.faults if f.skipped),
            "members_taken_max": self.members_taken_max(),
            "failovers": self.failovers,
            "pause_ms_median": round(statistics.median(pauses) * 1000, 1) if pauses else None,
            "pause_ms_worst": round(max(pauses) * 1000, 1) if pauses else None,
            "replicas_converged": self.converged,
            **self.figures,
            "violations": list(self.violations),
            "ok": self.ok,
        }


def latency_ms(done: Sequence[Op]) -> Dict[str, Optional[float]]:
    """p50, p99 and max latency of the completed calls (ms; None without calls)."""
    lat = sorted(op.latency_s for op in done)

    def q(p: float) -> Optional[float]:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

    return {"latency_ms_p50": q(0.5), "latency_ms_p99": q(0.99), "latency_ms_max": q(1.0)}


def caller_pauses(history: Sequence[Op], faults: Sequence[FaultRecord], end_s: float, window_s: float = 10.0) -> None:
    """Set each injected fault's ``pause_s``: the longest gap between completions overlapping
    [fault, fault + window], cut at the next fault and at ``end_s``."""
    ends = sorted(op.end_s for op in history if op.ok)
    times = [f.at_s for f in faults if f.at_s is not None]
    for f in faults:
        if f.at_s is not None:
            later = [t for t in times if t > f.at_s]
            f.pause_s = longest_gap(ends, f.at_s, min(f.at_s + window_s, later[0] if later else end_s, end_s))


def longest_gap(ends: Sequence[float], at_s: float, hi_s: float) -> float:
    """The longest gap between consecutive completion times (sorted ``ends``) that overlaps [at_s, hi_s]."""
    worst, last = 0.0, max((e for e in ends if e <= at_s), default=0.0)
    for e in ends:
        if e <= at_s:
            continue
        worst = max(worst, e - last)
        last = e
        if e >= hi_s:
            return worst
    return max(worst, hi_s - last)


def group_memory_mib(handle: Any) -> Dict[str, float]:
    """Resident memory of the group's processes on this machine, by role (MiB).

    Returns:
        ``{"router": ..., "primary": ..., "backup1": ..., "total": ...}``; a process on another
        machine, or one that is gone, is left out.
    """
    import psutil

    import ftactors
    from ftactors.chaos.faults import router_pid

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


# ----------------------------------------------------------------- output


def write_outputs(result: Result, out_dir: Union[str, Path], title: str = "") -> Dict[str, Path]:
    """``result.json`` and ``latency.png`` in ``out_dir``; returns their paths (``json``, ``png``)."""
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
    """Each call's latency over time (log scale), a dashed line at each fault."""
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
        if f.at_s is not None:
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


def report_rows(result: Result) -> List[Row]:
    """The figures every report shows (operations, latency, faults, failovers, pauses, memory)."""
    s = result.summary()
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(s["faults_by_kind"].items()))
    rows: List[Row] = [
        ("operations completed", f"{s['operations_completed']} ({s['throughput_ops_s']}/s)", None),
        ("operations failed", str(s["operations_failed"]), s["operations_failed"] == 0 or None),
        ("latency p50 / p99 / max", f"{s['latency_ms_p50']} / {s['latency_ms_p99']} / {s['latency_ms_max']} ms", None),
        ("faults injected", f"{s['faults_injected']}" + (f" ({s['faults_skipped']} skipped)" if s["faults_skipped"] else "")
         + (f" ({by_kind})" if by_kind else ""), None),
        ("members taken by one fault, most", str(s["members_taken_max"]), None),
        ("failovers", str(s["failovers"]), None),
        ("pause seen by callers, median / worst",
         f"{s['pause_ms_median']} / {s['pause_ms_worst']} ms" if s["pause_ms_median"] is not None else "-", None),
    ]
    start, end = s.get("memory_mib_start"), s.get("memory_mib_end")
    if isinstance(start, dict) and isinstance(end, dict):
        roles = [r for r in ("router", "primary", "backup1", "backup2", "backup3", "total") if r in start or r in end]
        rows.append(("memory at start -> end (MiB)",
                     ", ".join(f"{r} {start.get(r, '-')} -> {end.get(r, '-')}" for r in roles), None))
    return rows


def render_report(result: Result, console: Any, extra_rows: Sequence[Row] = ()) -> None:
    """A rich table of the figures, then the violations; ``extra_rows`` come before agreement."""
    from rich.table import Table

    t = Table(title=f"{result.name} ({result.style}, {result.replicas} replicas, seed {result.seed})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("check", justify="center")
    rows = report_rows(result) + list(extra_rows)
    rows.append(("replicas agree at the end", "yes" if result.converged else "no", result.converged))
    for name, value, passed in rows:
        t.add_row(name, value, "" if passed is None else ("[green]ok[/]" if passed else "[red]FAIL[/]"))
    console.print(t)
    for v in result.violations:
        console.print(f"[red]violation:[/] {v}")


def faults_table(result: Result, console: Any) -> None:
    """A rich table of the faults: when, which, the victim, the members it took, the wait and the
    callers' pause."""
    from rich.table import Table

    t = Table(title="faults")
    for c in ("at s", "fault", "victim", "pid", "members", "waited s", "pause ms", "note"):
        t.add_column(c)
    for f in result.faults:
        t.add_row("-" if f.at_s is None else f"{f.at_s:.2f}", f.kind, f.victim.rsplit("-", 1)[-1],
                  str(f.pid) if f.pid > 0 else "", "" if f.at_s is None else str(f.members_taken),
                  f"{f.waited_s:.2f}",
                  "" if f.pause_s is None else f"{f.pause_s * 1000:.0f}", f.skipped)
    console.print(t)


class Progress:
    """A rich progress bar over the run's duration (or nothing when disabled)."""

    def __init__(self, total_s: float, enabled: bool = True, label: str = "chaos") -> None:
        self.enabled, self.total_s, self.label = enabled, total_s, label
        self._p: Any = None
        self._task: Any = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            self._p = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                                   TextColumn("{task.fields[info]}"), transient=False)
            self._p.__enter__()
            self._task = self._p.add_task(self.label, total=self.total_s, info="starting")
        return self

    def update(self, elapsed_s: float, info: str) -> None:
        """Move the bar to ``elapsed_s`` with ``info`` beside it."""
        if self._p is not None:
            self._p.update(self._task, total=self.total_s, completed=min(elapsed_s, self.total_s), info=info)

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

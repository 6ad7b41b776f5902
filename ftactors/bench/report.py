"""Rendering: the rich table, PNG plots, and the results section of docs/benchmarks.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

BEGIN, END = "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->"

COLUMNS = [
    ("latency_median_ms", "lat med ms", "{:.2f}"),
    ("latency_p99_ms", "lat p99 ms", "{:.2f}"),
    ("latency_ratio", "lat x plain", "{:.2f}"),
    ("throughput_per_s", "calls/s", "{:.0f}"),
    ("throughput_ratio", "tput x plain", "{:.2f}"),
    ("extra_messages_per_call", "extra msg/call", "{:.4f}"),
    ("failover_pause_median_ms", "pause med ms", "{:.0f}"),
    ("failover_pause_max_ms", "pause max ms", "{:.0f}"),
    ("lost", "lost", "{}"),
    ("duplicated", "run twice", "{}"),
    ("state_kept", "state kept", "{}"),
]


def _fmt(v: Any, fmt: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _label(name: str, row: Dict[str, Any]) -> str:
    return name + (" (non-Ray)" if row.get("ray_based") is False else "")


def print_table(results: Dict[str, Any]) -> None:
    """The main table and the targets, in the terminal."""
    from rich.console import Console
    from rich.table import Table

    con = Console(width=200)
    t = Table(title=f"ftactors bench ({results.get('mode')}) - Ray {results.get('ray_version')}, "
                    f"{results['machine'].get('cores')} cores, {results.get('date')}")
    t.add_column("system")
    for _, head, _f in COLUMNS:
        t.add_column(head, justify="right")
    for name, row in results["systems"].items():
        t.add_row(_label(name, row), *[_fmt(row.get(k), f) for k, _h, f in COLUMNS])
    con.print(t)
    if results.get("messages"):
        m = Table(title="messages per call under load (ftactors.stats)")
        kinds = ["requests", "replies", "copies", "delivers", "announcements_piggybacked", "null_messages",
                 "heartbeats", "checkpoints"]
        m.add_column("system")
        for k in kinds:
            m.add_column(k, justify="right")
        m.add_column("Ray tasks/call", justify="right")
        for name, mm in results["messages"].items():
            if not isinstance(mm, dict) or "per_call" not in mm:
                continue
            m.add_row(name, *[_fmt(mm["per_call"].get(k), "{:.3f}") for k in kinds],
                      _fmt(mm.get("ray_tasks_per_call"), "{:.2f}"))
        con.print(m)
    for key, title, cols in (
            ("replicas", "scaling: replicas", ["replicas", "latency_median_ms", "latency_ratio", "throughput_per_s",
                                               "throughput_ratio"]),
            ("args", "scaling: argument size (sync latency)", ["system", "bytes", "latency_median_ms",
                                                               "latency_p99_ms", "latency_ratio"]),
            ("checkpoint", "passive: checkpoint size", ["state_mib", "checkpoints", "latency_median_ms",
                                                        "latency_p99_ms", "throughput_per_s", "create_s"])):
        rows = results.get("scaling", {}).get(key) or []
        if rows:
            st = Table(title=title)
            for c in cols:
                st.add_column(c, justify="right")
            for r in rows:
                st.add_row(*[_fmt(r.get(c), "{:.2f}" if isinstance(r.get(c), float) else "{}") for c in cols])
            con.print(st)
    mem = results.get("memory") or {}
    if mem.get("error"):
        con.print(f"memory run failed: {mem['error']}")
    elif mem:
        con.print(f"memory ({mem['system']}, {mem['processes']} processes): {mem['calls']} calls in "
                  f"{mem['seconds']}s, RSS {mem['rss_before_mib']} -> {mem['rss_after_mib']} MiB "
                  f"({mem['growth_mib']:+} MiB)")
    v = Table(title="targets")
    v.add_column("target")
    v.add_column("measured", justify="right")
    v.add_column("met")
    for row in results.get("verdicts", []):
        v.add_row(row["target"], str(row["figure"]),
                  "[green]yes[/]" if row["met"] else "[red]NO[/]" if row["met"] is False else "-")
    con.print(v)


# ------------------------------------------------------------------ plots


def plots(results: Dict[str, Any], out_dir: Path) -> List[Path]:
    """latency.png, throughput.png, failover.png (and scaling.png): the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    sysr = results["systems"]
    samples = {k: v for k, v in (results.get("latency_samples_ms") or {}).items() if v}
    if samples:
        fig, ax = plt.subplots(figsize=(10, 5))
        names = list(samples)
        ax.boxplot([samples[n] for n in names], orientation="horizontal", whis=(1, 99), showfliers=False)
        ax.set_yticks(range(1, len(names) + 1), [_label(n, sysr.get(n, {})) for n in names])
        ax.set_xscale("log")
        ax.set_xlabel("synchronous call latency, ms (box: quartiles, whiskers: p1-p99)")
        ax.set_title("Latency distribution, same Ray session, alternating rounds")
        fig.tight_layout()
        p = out_dir / "latency.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    tp = {n: r["throughput_per_s"] for n, r in sysr.items() if r.get("throughput_per_s")}
    if tp:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        names = list(tp)
        bars = ax.bar(range(len(names)), [tp[n] for n in names], color=[
            "#888" if n.startswith("ray-") else "#2a7" if n.startswith("ftactors") else "#c63" for n in names])
        for b, n in zip(bars, names):
            ratio = sysr[n].get("throughput_ratio")
            if ratio is not None:
                ax.annotate(f"{ratio:.2f}x", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=9)
        ax.set_xticks(range(len(names)), [_label(n, sysr[n]) for n in names], rotation=20, ha="right")
        ax.set_ylabel("calls/s, many in flight")
        ax.set_title("Pipelined throughput (ratio to ray-plain, same rounds)")
        fig.tight_layout()
        p = out_dir / "throughput.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    fo = {n: f["pauses_ms"] for n, f in (results.get("failover") or {}).items() if f.get("pauses_ms")}
    if fo:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        for i, (n, pauses) in enumerate(fo.items()):
            ax.scatter([i + 1] * len(pauses), pauses, alpha=0.6)
        ax.boxplot(list(fo.values()), showfliers=False)
        ax.axhline(50, ls="--", color="g", lw=0.8, label="target median 50 ms")
        ax.axhline(250, ls="--", color="r", lw=0.8, label="target worst 250 ms")
        ax.set_xticks(range(1, len(fo) + 1), [_label(n, sysr.get(n, {})) for n in fo])
        ax.set_yscale("log")
        ax.set_ylabel("pause seen by callers, ms")
        ax.set_title("Failover: longest gap between completions around each primary kill")
        ax.legend(loc="upper left")
        fig.tight_layout()
        p = out_dir / "failover.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    rep = (results.get("scaling") or {}).get("replicas") or []
    if rep:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        xs = [r["replicas"] for r in rep]
        a1.plot(xs, [r["latency_ratio"] for r in rep], "o-")
        a1.set_xlabel("replicas")
        a1.set_ylabel("sync latency, x plain")
        a2.plot(xs, [r["throughput_ratio"] for r in rep], "o-")
        a2.set_xlabel("replicas")
        a2.set_ylabel("throughput, x plain")
        fig.suptitle("ftactors semi-active: scaling with replicas")
        fig.tight_layout()
        p = out_dir / "scaling.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


# ------------------------------------------------------------------ docs


def _md_row(cells: List[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(results: Dict[str, Any]) -> str:
    """The results section (between the markers of docs/benchmarks.md)."""
    m = results["machine"]
    lines = [
        f"Measured {results.get('date')} on {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, "
        f"Python {m.get('python')}, Ray {results.get('ray_version')} (load average at start "
        f"{', '.join(str(x) for x in m.get('loadavg_at_start', []))}).",
        "",
        f"Command: `{results.get('command')}` (mode `{results.get('mode')}`, {results.get('elapsed_s')} s).",
        "",
        _md_row(["system"] + [h for _, h, _ in COLUMNS]),
        _md_row(["---"] * (len(COLUMNS) + 1)),
    ]
    for name, row in results["systems"].items():
        lines.append(_md_row([_label(name, row)] + [_fmt(row.get(k), f) for k, _h, f in COLUMNS]))
    lines += ["", "Targets:", "", _md_row(["target", "measured", "met"]), _md_row(["---"] * 3)]
    for v in results.get("verdicts", []):
        met = "yes" if v["met"] else "**no**" if v["met"] is False else "-"
        lines.append(_md_row([v["target"], str(v["figure"]), met]))
    msgs = {k: v for k, v in (results.get("messages") or {}).items() if isinstance(v, dict) and "per_call" in v}
    if msgs:
        kinds = ["requests", "replies", "copies", "delivers", "announcements_piggybacked", "null_messages",
                 "heartbeats", "checkpoints"]
        lines += ["", "Messages per call under load (`ftactors.stats`), and when idle (per second):", "",
                  _md_row(["system"] + kinds + ["Ray tasks/call", "idle null/s", "idle heartbeats/s"]),
                  _md_row(["---"] * (len(kinds) + 4))]
        for name, mm in msgs.items():
            idle = mm.get("idle_per_s", {})
            lines.append(_md_row([name] + [_fmt(mm["per_call"].get(k), "{:.3f}") for k in kinds] +
                                 [_fmt(mm.get("ray_tasks_per_call"), "{:.2f}"),
                                  _fmt(idle.get("null_messages"), "{:.1f}"), _fmt(idle.get("heartbeats"), "{:.1f}")]))
    sc = results.get("scaling") or {}
    if sc.get("replicas"):
        lines += ["", "Scaling with replicas (ftactors semi-active):", "",
                  _md_row(["replicas", "lat med ms", "lat x plain", "calls/s", "tput x plain"]), _md_row(["---"] * 5)]
        for r in sc["replicas"]:
            lines.append(_md_row([str(r["replicas"]), _fmt(r["latency_median_ms"], "{:.2f}"),
                                  _fmt(r["latency_ratio"], "{:.2f}"), _fmt(r["throughput_per_s"], "{:.0f}"),
                                  _fmt(r["throughput_ratio"], "{:.2f}")]))
    if sc.get("args"):
        lines += ["", "Argument size (sync latency):", "",
                  _md_row(["system", "bytes", "lat med ms", "lat p99 ms", "lat x plain"]), _md_row(["---"] * 5)]
        for r in sc["args"]:
            lines.append(_md_row([r["system"], str(r["bytes"]), _fmt(r["latency_median_ms"], "{:.2f}"),
                                  _fmt(r["latency_p99_ms"], "{:.2f}"), _fmt(r["latency_ratio"], "{:.2f}")]))
    if sc.get("checkpoint"):
        lines += ["", "Passive checkpoint size (checkpoint every 100 calls):", "",
                  _md_row(["state MiB", "checkpoints", "lat med ms", "lat p99 ms", "calls/s", "group start s"]),
                  _md_row(["---"] * 6)]
        for r in sc["checkpoint"]:
            lines.append(_md_row([str(r["state_mib"]), str(r["checkpoints"]), _fmt(r["latency_median_ms"], "{:.2f}"),
                                  _fmt(r["latency_p99_ms"], "{:.2f}"), _fmt(r["throughput_per_s"], "{:.0f}"),
                                  _fmt(r["create_s"], "{:.2f}")]))
    fo = results.get("failover") or {}
    if fo:
        lines += ["", "Failover details:", "",
                  _md_row(["system", "kills", "calls", "caller errors", "retries", "router saw the death after ms (median)",
                           "back to full strength s (median)", "same reply twice"]), _md_row(["---"] * 8)]
        for name, f in fo.items():
            if "error" in f:
                lines.append(_md_row([name, "failed: " + f["error"][:80], "", "", "", "", "", ""]))
                continue
            done = f.get("failover_done_ms")
            lines.append(_md_row([name, str(f["kills"]), str(f["calls"]), str(f["errors"]), str(f.get("retries", 0)),
                                  _fmt(sorted(done)[len(done) // 2] if done else None, "{:.0f}"),
                                  _fmt(f.get("recovery_s_median"), "{:.2f}"), str(f.get("replies_repeated"))]))
    mem = results.get("memory") or {}
    if mem.get("error"):
        lines += ["", f"Memory run failed: `{mem['error']}`"]
    elif mem:
        lines += ["", f"Memory ({mem['system']}, router + replicas, {mem['processes']} processes): "
                      f"{mem['calls']} calls in {mem['seconds']} s; RSS {mem['rss_before_mib']} MiB before, "
                      f"{mem['rss_after_mib']} MiB after ({mem['growth_mib']:+} MiB, "
                      f"{mem.get('growth_bytes_per_call')} bytes/call)."]
    hl = results.get("health") or {}
    if hl:
        lines += ["", "Health of the long-lived ftactors groups (counters; a view change without a kill is a "
                      "false suspicion):", ""]
        for name, snaps in hl.items():
            lines.append(f"* {name}: " + "; ".join(
                f"{x.get('when')}: " + (x["error"] if "error" in x else
                                        f"view {x['view']}, {x['view_changes']} view changes, "
                                        f"{x['failovers']} failovers, {x['joins']} joins, {x['resyncs']} resyncs, "
                                        f"{x['divergences']} divergences") for x in snaps))
    lines += ["", "Plots: `latency.png`, `throughput.png`, `failover.png`, `scaling.png` in the `--out` directory."]
    return "\n".join(lines)


def update_docs(results: Dict[str, Any], path: Path) -> None:
    """Replace the text between the BENCH markers of ``path`` with these results."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no {BEGIN} ... {END} markers")
    body = render_markdown(results)
    new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: f"{BEGIN}\n{body}\n{END}", text, flags=re.S)
    path.write_text(new)

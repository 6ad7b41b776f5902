"""``ftactors status``: the replicated groups of a running Ray cluster, in every namespace.

Each group has a named router actor ``ftactors:<group>:router``; its
``describe()`` gives the view, the style, the lifetime, the replicas and the counters.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

ROUTER_PREFIX = "ftactors:"
ROUTER_SUFFIX = ":router"


def find_routers() -> List[Dict[str, str]]:
    """Named router actors in every namespace: ``[{"group", "name", "namespace"}]``."""
    import ray

    out = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else entry
        ns = entry.get("namespace") if isinstance(entry, dict) else None
        if name.startswith(ROUTER_PREFIX) and name.endswith(ROUTER_SUFFIX):
            out.append({"group": name[len(ROUTER_PREFIX):-len(ROUTER_SUFFIX)], "name": name, "namespace": ns})
    return sorted(out, key=lambda e: e["group"])


def collect(timeout_s: float = 10.0) -> List[Dict[str, Any]]:
    """One row per group of every namespace (Ray must be initialised).

    Args:
        timeout_s: how long to wait for each router.

    Returns:
        Rows with the group, its ``namespace`` (as ``ftactors.get_actor`` takes it), ``lifetime``
        (``"detached"`` or ``"non_detached"``), view, style, phase, replicas and counters.
        Unreachable routers get an ``error`` field.
    """
    import ray

    from ftactors.runtime.api import user_namespace

    rows = []
    for entry in find_routers():
        row: Dict[str, Any] = {"group": entry["group"], "namespace": user_namespace(entry["namespace"])}
        try:
            router = ray.get_actor(entry["name"], namespace=entry["namespace"])
            d = ray.get(router.describe.remote(), timeout=timeout_s)
        except Exception as exc:  # a router being restarted, or gone meanwhile
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            rows.append(row)
            continue
        replicas = []
        for rid in d["members"]:
            r = d["replicas"].get(rid, {})
            replicas.append({"replica": rid, "role": r.get("role", "?"), "node": r.get("node_id", ""),
                             "pid": r.get("pid", -1), "executed": r.get("executed", -1),
                             "error": r.get("error")})
        executed = [r["executed"] for r in replicas if isinstance(r["executed"], int) and r["executed"] >= 0]
        row.update({
            "lifetime": d.get("lifetime") or "non_detached",
            "view": d["view"], "style": d["settings"]["style"], "phase": d["phase"],
            "replicas": replicas, "joining": list(d.get("joining", [])),
            "executed": max(executed) if executed else None,
            "lag": (max(executed) - min(executed)) if executed else None,
            "failovers": d["counts"].get("failovers", 0),
            "last_failover_s": d.get("last_failover_s"),
            "requests": d["counts"].get("requests", 0),
        })
        rows.append(row)
    return rows


def _ago(t: Optional[float]) -> str:
    if not t:
        return "never"
    s = max(0.0, time.time() - t)
    return f"{s:.0f}s ago" if s < 120 else (f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago")


def render(rows: List[Dict[str, Any]], console: Any) -> None:
    """Per group: a summary line, then a table of its replicas (fits 80 columns)."""
    from rich.table import Table

    if not rows:
        console.print("no replicated groups in this Ray cluster")
        return
    console.print(f"[bold]{len(rows)} replicated group(s)[/]")
    groups = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 2, 0, 0))
    for c in ("group", "namespace", "lifetime", "view", "style", "phase", "lag", "failovers"):
        groups.add_column(c)
    for row in rows:
        if "error" in row:
            groups.add_row(row["group"], str(row["namespace"]), "?", "", "", "[red]unreachable[/]", "", "")
        else:
            groups.add_row(row["group"], str(row["namespace"]), row["lifetime"], str(row["view"]), row["style"],
                           row["phase"], str(row["lag"]), str(row["failovers"]))
    console.print(groups)
    for row in rows:
        if "error" in row:
            console.print(f"[bold]{row['group']}[/]  [red]router unreachable: {row['error']}[/]")
            continue
        console.print(f"[bold]{row['group']}[/] ({row['namespace']})  view {row['view']}  {row['style']}  "
                      f"{row['phase']}  lag {row['lag']}  failovers {row['failovers']} "
                      f"(last: {_ago(row['last_failover_s'])})")
        t = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 2, 0, 2))
        for c in ("role", "replica", "node", "pid", "executed"):
            t.add_column(c)
        order = sorted(row["replicas"], key=lambda r: r["role"] != "primary")
        for r in order:
            t.add_row(r["role"] + (" [red](unreachable)[/]" if r["error"] else ""), r["replica"],
                      (r["node"] or "")[:12], str(r["pid"]), str(r["executed"]))
        for j in row["joining"]:
            t.add_row("joining", j, "", "", "")
        console.print(t)

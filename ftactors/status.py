"""``ftactors status``: the replicated groups of a running Ray cluster.

Each group has a named router actor ``ftactors:<group>:router``; its
``describe()`` gives the view, the style, the replicas and the counters.
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
    """One row per group (Ray must be initialised). Unreachable routers get an ``error`` field."""
    import ray

    rows = []
    for entry in find_routers():
        row: Dict[str, Any] = {"group": entry["group"], "namespace": entry["namespace"]}
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
    from rich.table import Table

    if not rows:
        console.print("no replicated groups in this Ray cluster")
        return
    t = Table(title=f"ftactors groups ({len(rows)})")
    for c in ("group", "view", "style", "phase", "primary (node, pid)", "backups (node, pid)", "executed", "lag",
              "failovers", "last failover"):
        t.add_column(c)
    for row in rows:
        if "error" in row:
            t.add_row(row["group"], "-", "-", f"[red]{row['error']}[/]", "", "", "", "", "", "")
            continue

        def fmt(r: Dict[str, Any]) -> str:
            return f"{r['replica'].rsplit('-', 1)[-1]} ({r['node'][:8]}, {r['pid']})" + (" [red]![/]" if r["error"] else "")

        prim = [r for r in row["replicas"] if r["role"] == "primary"]
        backs = [r for r in row["replicas"] if r["role"] != "primary"]
        t.add_row(row["group"], str(row["view"]), row["style"], row["phase"],
                  ", ".join(fmt(r) for r in prim) or "-",
                  "\n".join(fmt(r) for r in backs) + ("".join(f"\n{j} (joining)" for j in row["joining"])),
                  str(row["executed"]), str(row["lag"]), str(row["failovers"]), _ago(row["last_failover_s"]))
    console.print(t)

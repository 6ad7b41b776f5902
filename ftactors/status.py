"""``ftactors status``: the replicated groups of a running Ray cluster, in every namespace.

Each group has a named router actor ``ftactors:<group>:router``: the names only find the
routers. What is shown comes from each router as structured data: its ``handle_info()``
(the group's name, namespace, lifetime, class) and its ``describe()``, read into a
:class:`ftactors.GroupInfo` by the same :func:`ftactors.runtime.api.group_info` as
``ftactors.describe``.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from ftactors.runtime.api import GroupInfo

ROUTER_PREFIX = "ftactors:"
ROUTER_SUFFIX = ":router"


def find_routers() -> List[Dict[str, Any]]:
    """Named router actors in every namespace: ``[{"name", "namespace"}]`` (Ray's own names)."""
    import ray

    out = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else entry
        ns = entry.get("namespace") if isinstance(entry, dict) else None
        if name.startswith(ROUTER_PREFIX) and name.endswith(ROUTER_SUFFIX):
            out.append({"name": name, "namespace": ns})
    return out


def status_row(meta: Dict[str, Any], info: GroupInfo) -> Dict[str, Any]:
    """One group's row, from its router's ``handle_info()`` and its :class:`GroupInfo`.

    Args:
        meta: the router's ``handle_info()``: ``group``, ``namespace`` (Ray's), ``lifetime``...
        info: the group as described.

    Returns:
        The group, its ``namespace`` (as ``ftactors.get_actor`` takes it), ``lifetime``
        (``"detached"`` or ``"non_detached"``), view, style, phase, replicas (primary first),
        joining, the highest position executed, the lag between replicas, failovers, requests.
    """
    from ftactors.runtime.api import user_namespace

    replicas = [{"replica": r.replica_id, "role": r.role, "node": r.node_id, "pid": r.pid,
                 "executed": r.executed, "error": r.error or None} for r in info.replicas]
    executed = [r.executed for r in info.replicas if r.executed >= 0]
    return {
        "group": meta.get("group") or info.group, "namespace": user_namespace(meta.get("namespace")),
        "lifetime": meta.get("lifetime") or "non_detached", "class_name": meta.get("class_name"),
        "view": info.view, "style": info.style, "phase": info.phase,
        "replicas": replicas, "joining": list(info.joining),
        "executed": max(executed) if executed else None,
        "lag": (max(executed) - min(executed)) if executed else None,
        "failovers": info.counts.get("failovers", 0),
        "last_failover_s": info.last_failover_s,
        "requests": info.counts.get("requests", 0),
    }


def _error_row(entry: Dict[str, Any], exc: BaseException) -> Dict[str, Any]:
    """The row of a router that did not answer (being restarted, or gone meanwhile)."""
    from ftactors.runtime.api import user_namespace

    text = str(exc).strip()
    group = entry["name"][len(ROUTER_PREFIX):-len(ROUTER_SUFFIX)]  # all that is known without the router
    return {"group": group, "namespace": user_namespace(entry["namespace"]),
            "error": f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:200]}


def collect(timeout_s: float = 10.0) -> List[Dict[str, Any]]:
    """One row per group of every namespace (Ray must be initialised), sorted by group.

    Args:
        timeout_s: how long to wait for each router.

    Returns:
        :func:`status_row` rows; an unreachable router's row has an ``error`` field instead.
    """
    import ray

    from ftactors.runtime.api import group_info

    rows = []
    for entry in find_routers():
        try:
            router = ray.get_actor(entry["name"], namespace=entry["namespace"])
            meta = ray.get(router.handle_info.remote(), timeout=timeout_s)
            rows.append(status_row(meta, group_info(ray.get(router.describe.remote(), timeout=timeout_s))))
        except Exception as exc:  # a router being restarted, or gone meanwhile
            rows.append(_error_row(entry, exc))
    return sorted(rows, key=lambda r: (str(r["group"]), str(r["namespace"])))


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

"""The fault primitives: the one set that the chaos campaign, the demo, the examples and the tests use.

Kill a replica (SIGKILL of its process, or ``ray.kill`` of its actor), kill the router, pause and
resume a replica (SIGSTOP / SIGCONT), remove and add a node of a ``ray.cluster_utils.Cluster``.

Signals act on processes by pid, so they reach replicas that run on this machine (a local Ray, or
``Cluster`` nodes on one machine). A replica whose process is not on this machine is killed with
``ray.kill`` instead. The choices (which replica, which backup, which node) are pure functions of
what ``ftactors.describe`` reported, tested without Ray (``tests/test_chaos_units.py``).
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ftactors.chaos.errors import FaultError
from ftactors.runtime.api import GroupInfo, ReplicaInfo, ReplicatedHandle

ROLES = ("primary", "backup")

# ------------------------------------------------------------ choices (pure)


def check_pid(pid: Any, who: str, own_pid: Optional[int] = None) -> int:
    """A process id that is safe to signal.

    ``describe`` reports pid -1 for a replica it could not reach, and ``os.kill(-1, ...)``
    signals every process the user owns; ``0`` signals the process group.

    Args:
        pid: the candidate.
        who: what it belongs to, for the message.
        own_pid: this process's id (never signalled); default ``os.getpid()``.

    Returns:
        ``pid``.

    Raises:
        FaultError: not an int, <= 1, or this process.
    """
    own = os.getpid() if own_pid is None else own_pid
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or pid == own:
        raise FaultError(f"{who}: no usable process id ({pid!r}); replica unreachable? not signalling")
    return pid


def choose_replica(info: GroupInfo, role: str = "primary", index: int = 0) -> ReplicaInfo:
    """The primary, or the ``index``-th backup, of a described group.

    Args:
        info: what ``ftactors.describe`` reported.
        role: ``"primary"`` or ``"backup"``.
        index: which backup (0 is the first).

    Returns:
        That replica.

    Raises:
        ValueError: an unknown role.
        FaultError: the group has no such replica now.
    """
    if role not in ROLES:
        raise ValueError(f"role must be 'primary' or 'backup', got {role!r}")
    if role == "primary":
        if info.primary is None:
            raise FaultError(f"{info.group} has no primary")
        return info.primary
    if not 0 <= index < len(info.backups):
        raise FaultError(f"{info.group} has {len(info.backups)} backups; no backup {index}")
    return info.backups[index]


def backup_index(backups: int, key: Any) -> int:
    """Which backup a planned fault hits: drawn from ``random.Random(key)``, so a replay hits the same.

    Args:
        backups: how many backups the group has (>= 1).
        key: the fault's seed (the campaign uses its planned time).

    Returns:
        An index in ``range(backups)``.

    Raises:
        FaultError: no backups.
    """
    if backups < 1:
        raise FaultError("no backup")
    return random.Random(key).randrange(backups)


def members_by_node(info: GroupInfo) -> Dict[str, List[str]]:
    """The group's members on each node.

    Args:
        info: the group, as described.

    Returns:
        node id -> the replica ids of the members on it (primary first).
    """
    out: Dict[str, List[str]] = {}
    for r in info.replicas:
        out.setdefault(r.node_id, []).append(r.replica_id)
    return out


def removal_order(info: GroupInfo, head: str, router_node: str) -> List[ReplicaInfo]:
    """Replicas whose node may be removed, best first, within the fault model.

    Never the head node (its GCS is the cluster's; not tolerated), never the primary's node when it
    holds the router too (primary and router together: not tolerated), never a node holding two
    members of the group (two members at once: not one fault); a node without the router is
    preferred (a router restart would be a second fault).

    Args:
        info: the group, as described.
        head: the head node's id.
        router_node: the node id of the group's router.

    Returns:
        The candidates, each alone on its node: the primary first when its node is free of the
        router, then the backups on nodes without the router, then a backup sharing the router's
        node (if the primary does not share it).
    """
    alone = {node for node, members in members_by_node(info).items() if len(members) == 1}
    order: List[ReplicaInfo] = []
    if info.primary is not None and info.primary.node_id not in (head, router_node):
        order.append(info.primary)
    order += [b for b in info.backups if b.node_id not in (head, router_node)]
    primary_with_router = info.primary is not None and info.primary.node_id == router_node
    if not primary_with_router:
        order += [b for b in info.backups if b.node_id == router_node and b.node_id != head]
    return [r for r in order if r.node_id in alone]


# -------------------------------------------------------------- processes


def signal_process(pid: Any, sig: int, who: str) -> int:
    """Send ``sig`` to ``pid`` after :func:`check_pid`.

    Returns:
        The pid signalled.

    Raises:
        FaultError: an unusable pid.
        ProcessLookupError: no such process (on this machine).
    """
    os.kill(check_pid(pid, who), sig)
    return int(pid)


def kill(victim: ReplicaInfo, how: str = "sigkill") -> ReplicaInfo:
    """Kill a replica already chosen: SIGKILL its process, or ``ray.kill`` its actor.

    Args:
        victim: the replica (from ``ftactors.describe``).
        how: ``"sigkill"`` (falls back to ``ray.kill`` when the process is not on this
            machine) or ``"ray"``.

    Returns:
        ``victim``.

    Raises:
        ValueError: an unknown ``how``.
        FaultError: an unusable pid.
    """
    import ray

    if how not in ("sigkill", "ray"):
        raise ValueError(f"how must be 'sigkill' or 'ray', got {how!r}")
    if how == "sigkill":
        try:
            signal_process(victim.pid, signal.SIGKILL, victim.replica_id)
            return victim
        except (ProcessLookupError, PermissionError):  # not on this machine: let Ray kill the actor
            if victim.actor is None:
                raise FaultError(f"{victim.replica_id}: process {victim.pid} not here, and no actor handle") from None
    ray.kill(victim.actor, no_restart=True)
    return victim


def pick(handle: ReplicatedHandle, role: str = "primary", index: int = 0, timeout_s: float = 30.0) -> ReplicaInfo:
    """The primary, or the ``index``-th backup, of a group, once its process id is known.

    During a failover or a join the group may have no primary, fewer backups, or a replica that
    did not answer (pid -1): this asks again until ``timeout_s``.

    Args:
        handle: the group.
        role: ``"primary"`` or ``"backup"``.
        index: which backup.
        timeout_s: how long to wait for such a replica with a usable pid.

    Returns:
        The replica.

    Raises:
        ValueError: an unknown role.
        FaultError: no such replica with a usable pid within ``timeout_s``.
    """
    from ftactors.runtime import api

    if role not in ROLES:
        raise ValueError(f"role must be 'primary' or 'backup', got {role!r}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            victim = choose_replica(api.describe(handle, timeout_s=max(timeout_s, 15.0)), role, index)
            check_pid(victim.pid, victim.replica_id)
            return victim
        except FaultError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.1)


def kill_replica(handle: ReplicatedHandle, role: str = "primary", index: int = 0, how: str = "sigkill",
                 timeout_s: float = 30.0) -> ReplicaInfo:
    """Kill a replica of the group (see :func:`pick` and :func:`kill`).

    Returns:
        The replica killed.

    Raises:
        ValueError: an unknown role or ``how``.
        FaultError: no such replica with a usable pid within ``timeout_s``.
    """
    return kill(pick(handle, role, index, timeout_s), how)


def pause_replica(handle: ReplicatedHandle, role: str = "primary", index: int = 0,
                  timeout_s: float = 30.0) -> ReplicaInfo:
    """Stop a replica's process (SIGSTOP): it hangs without dying. :func:`resume` continues it.

    Returns:
        The replica paused.

    Raises:
        FaultError: no such replica with a usable pid within ``timeout_s``.
    """
    victim = pick(handle, role, index, timeout_s)
    signal_process(victim.pid, signal.SIGSTOP, victim.replica_id)
    return victim


def resume(pid: int) -> None:
    """Continue a process stopped by :func:`pause_replica` (SIGCONT); no error if it is gone.

    Raises:
        FaultError: an unusable pid.
    """
    try:
        signal_process(pid, signal.SIGCONT, "resume")
    except ProcessLookupError:
        pass


def router_pid(handle: ReplicatedHandle, timeout_s: float = 30.0) -> int:
    """The pid of the group's router actor."""
    import ray

    return int(ray.get(handle._router.__ray_call__.remote(lambda self: os.getpid()), timeout=timeout_s))


def router_node(handle: ReplicatedHandle, timeout_s: float = 15.0) -> str:
    """The node id of the group's router actor."""
    import ray

    return str(ray.get(handle._router.__ray_call__.remote(
        lambda self: ray.get_runtime_context().get_node_id()), timeout=timeout_s))


def kill_router(handle: ReplicatedHandle) -> int:
    """SIGKILL the group's router; Ray restarts it.

    Returns:
        The old pid.

    Raises:
        FaultError: an unusable pid.
    """
    return signal_process(router_pid(handle), signal.SIGKILL, "router")


def primary_node(handle: ReplicatedHandle) -> Optional[str]:
    """The node id hosting the primary (None during a failover)."""
    from ftactors.runtime import api

    info = api.describe(handle)
    return info.primary.node_id if info.primary else None


# ------------------------------------------------------------------ nodes


def remove_node(cluster: Any, node_id: str) -> None:
    """Remove a worker node of a ``ray.cluster_utils.Cluster`` at once (not gracefully).

    Raises:
        FaultError: ``node_id`` is not a worker node of ``cluster``.
    """
    by_id = {n.node_id: n for n in cluster.worker_nodes}
    if node_id not in by_id:
        raise FaultError(f"node {node_id[:8]} is not a worker node of this cluster")
    cluster.remove_node(by_id[node_id], allow_graceful=False)


def add_node(cluster: Any, num_cpus: int = 1, wait: bool = False) -> Any:
    """Start a fresh worker node. Call from the main thread: Ray's node registers signal handlers.

    Args:
        cluster: the local ``Cluster``.
        num_cpus: the node's CPUs.
        wait: return only once the node is in the cluster's node table (alive, where the routers'
            placement sees it); Ray gives up after 30 s.

    Returns:
        The node (``.node_id``).

    Raises:
        TimeoutError: ``wait`` and the node did not join within Ray's 30 s.
    """
    return cluster.add_node(num_cpus=num_cpus, wait=wait)


@dataclass(frozen=True)
class NodeRemoval:
    """What :func:`replace_replica_node` did.

    Args:
        victim: the replica whose node was removed.
        members: the group's members that were on that node (the victim alone).
        fresh_node: the id of the node added before the removal ("" when none was).
    """

    victim: ReplicaInfo
    members: Tuple[str, ...]
    fresh_node: str = ""


def _removable(cluster: Any, handle: ReplicatedHandle) -> Tuple[Optional[ReplicaInfo], Tuple[str, ...]]:
    """The first replica of :func:`removal_order` on a worker node of ``cluster``, and the members
    on its node; (None, ()) when there is none."""
    from ftactors.runtime import api

    info = api.describe(handle, timeout_s=15)
    workers = {n.node_id for n in cluster.worker_nodes}
    for victim in removal_order(info, cluster.head_node.node_id, router_node(handle)):
        if victim.node_id in workers:
            return victim, tuple(members_by_node(info)[victim.node_id])
    return None, ()


def remove_replica_node(cluster: Any, handle: ReplicatedHandle) -> Optional[ReplicaInfo]:
    """Remove the node of one replica of the group, chosen by :func:`removal_order` (a node holding
    that replica alone). No node is added: see :func:`replace_replica_node`.

    Returns:
        The replica whose node was removed, or None when no replica is alone on a removable node.
    """
    victim, _ = _removable(cluster, handle)
    if victim is not None:
        remove_node(cluster, victim.node_id)
    return victim


def replace_replica_node(cluster: Any, handle: ReplicatedHandle, num_cpus: int = 1) -> Optional[NodeRemoval]:
    """One node fault, one member: start a fresh worker node, wait until it joined, then remove the
    node of one replica, chosen by :func:`removal_order` (a node holding that replica alone).

    The fresh node joins first so that the router's replacement finds a node free of the group's
    members (``placement="spread"`` is soft: without one it goes beside a member, and removing
    that node later would take two members at once). Call from the main thread (see :func:`add_node`).

    Args:
        cluster: the local ``Cluster``.
        handle: the group.
        num_cpus: the fresh node's CPUs.

    Returns:
        What was removed, or None when no replica is alone on a removable node (then no node is added).

    Raises:
        FaultError: the fresh node did not join (nothing was removed).
    """
    victim, _ = _removable(cluster, handle)
    if victim is None:
        return None
    try:
        fresh = add_node(cluster, num_cpus, wait=True)
    except Exception as exc:
        raise FaultError(f"the fresh node did not join, no node removed: {type(exc).__name__}: {exc}") from exc
    victim, members = _removable(cluster, handle)  # again, now that the fresh node is up
    if victim is None:
        return None
    remove_node(cluster, victim.node_id)
    return NodeRemoval(victim, members, str(getattr(fresh, "node_id", "") or ""))

"""Fault injection against replicated groups on a real Ray cluster.

These act on processes by pid, so they work where the replica runs on this
machine (a local Ray, or ``ray.cluster_utils.Cluster`` nodes on one machine).
On a real multi-machine cluster use ``kill_replica(..., how="ray")``.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

import ray

from ftactors.runtime.api import ReplicaInfo, ReplicatedHandle, describe


def pick(handle: ReplicatedHandle, role: str = "primary", index: int = 0) -> ReplicaInfo:
    """The primary, or the ``index``-th backup, of a group.

    Raises:
        ValueError: no such replica, or its process id is unknown (it did not answer).
    """
    info = describe(handle)
    if role == "primary":
        if info.primary is None:
            raise ValueError(f"{handle.group} has no primary")
        victim = info.primary
    elif role == "backup":
        if index >= len(info.backups):
            raise ValueError(f"{handle.group} has {len(info.backups)} backups")
        victim = info.backups[index]
    else:
        raise ValueError(f"role must be 'primary' or 'backup', got {role!r}")
    _check_pid(victim.pid, victim.replica_id)
    return victim


def _check_pid(pid: int, what: str) -> None:
    """Refuse anything but a real process id: os.kill(-1 or 0, ...) signals every process."""
    if not isinstance(pid, int) or pid <= 1:
        raise ValueError(f"{what}: no valid process id ({pid!r}); not signalling")


def kill_replica(handle: ReplicatedHandle, role: str = "primary", index: int = 0, how: str = "sigkill") -> ReplicaInfo:
    """Kill a replica's process (SIGKILL) or its actor (``how="ray"``, ``ray.kill``).

    Returns:
        The replica that was killed.
    """
    victim = pick(handle, role, index)
    if how == "ray":
        ray.kill(victim.actor, no_restart=True)
    else:
        os.kill(victim.pid, signal.SIGKILL)
    return victim


def pause_replica(handle: ReplicatedHandle, role: str = "primary", index: int = 0) -> ReplicaInfo:
    """Stop a replica's process (SIGSTOP): it hangs without dying."""
    victim = pick(handle, role, index)
    _check_pid(victim.pid, victim.replica_id)
    os.kill(victim.pid, signal.SIGSTOP)
    return victim


def resume(pid: int) -> None:
    """Continue a process stopped by :func:`pause_replica` (SIGCONT); no error if it is gone."""
    _check_pid(pid, "resume")
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def router_pid(handle: ReplicatedHandle) -> int:
    """The pid of the group's router actor."""
    return ray.get(handle._router.__ray_call__.remote(lambda self: os.getpid()))


def kill_router(handle: ReplicatedHandle) -> int:
    """SIGKILL the group's router; Ray restarts it. Returns the old pid."""
    pid = router_pid(handle)
    _check_pid(pid, "router")
    os.kill(pid, signal.SIGKILL)
    return pid


def primary_node(handle: ReplicatedHandle) -> Optional[str]:
    """The node id hosting the primary."""
    info = describe(handle)
    return info.primary.node_id if info.primary else None


__all__ = ["kill_replica", "kill_router", "pause_replica", "pick", "primary_node", "resume", "router_pid"]

"""How a restarted router rebuilds its group's view from what the replicas say (pure).

Ray restarts a dead router as a new process that knows only the group's spec. It asks every
replica it can find (by name, so replicas spawned after start count too) for ``(view, members,
role)`` and takes over the highest view any live member reports. The Ray router and the
simulator's router both call :func:`rebuilt_view`, so the simulator checks the same choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

#: Roles of replicas that belong to a view (the others are joining, fenced or retired).
LIVE_ROLES = frozenset({"primary", "backup"})

#: Replica numbers a rebuilt router skips, so a replica it spawns never reuses the name of one
#: that a dead incarnation may have started without any survivor knowing.
SPAWN_INDEX_GAP = 100


@dataclass(frozen=True, slots=True)
class RebuiltView:
    """The view a restarted router takes over.

    Args:
        view: the highest view a live replica reported.
        members: its members that answered, in rank order (the primary first, if it answered).
        next_replica_index: the number for the next replica the router spawns.
        orphans: every other replica heard of (answered or not): a member that did not answer (a
            stopped one), a deposed one still running, a joiner of the dead incarnation. No view
            the router takes over holds them and nothing else would tell them, so the router
            retires them (a dead one: nothing happens).
    """

    view: int
    members: Tuple[str, ...]
    next_replica_index: int
    orphans: Tuple[str, ...] = ()


def replica_index(replica_id: str) -> Optional[int]:
    """The number in a replica id (``"g-r7"`` -> 7), or None if it has none."""
    _, sep, tail = replica_id.rpartition("-r")
    return int(tail) if sep and tail.isdigit() else None


def rebuilt_view(reports: Dict[str, Tuple[int, Tuple[str, ...], str]], known: Iterable[str] = ()) -> RebuiltView:
    """Choose the view a restarted router takes over.

    Args:
        reports: ``replica id -> (view, members, role)`` from every replica that answered.
        known: every replica id the router heard of (answered or not), for the spawn numbering.

    Returns:
        The highest view reported by a live replica, with its members that answered, and the
        orphans: every replica in ``reports`` or ``known`` that is not one of them.

    Raises:
        LookupError: no live replica answered (the group is lost).
    """
    live = {rid: r for rid, r in reports.items() if r[2] in LIVE_ROLES and r[0] > 0}
    if not live:
        raise LookupError("no replica of the group answered as a member of a view")
    view, members, _ = max(live.values(), key=lambda r: r[0])
    alive = tuple(m for m in members if m in live)
    if not alive:  # the reporter lists itself in its own view: this cannot be empty
        raise AssertionError(f"view {view} has no live member among {sorted(live)}")
    indices = [i for i in map(replica_index, set(reports) | set(known)) if i is not None]
    orphans = tuple(sorted((set(reports) | set(known)) - set(alive)))
    return RebuiltView(view, alive, 1 + max(indices, default=0) + SPAWN_INDEX_GAP, orphans)

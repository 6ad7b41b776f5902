"""Where a replica goes: the one placement policy, for a group's creation and for its replacements.

Pure: the host gives the alive nodes (in order of preference) and the nodes of the group's
current members; the policy names a node, or None to let Ray choose. Group creation
(``runtime/api.py``) asks once per replica, adding each choice to the members' nodes; the
router asks when it starts a replacement replica (``runtime/router_actor.py``), and checks with
:func:`misplaced` where Ray started it.
"""

from __future__ import annotations

from collections import Counter
from typing import List, Optional, Sequence

from ftactors.core.errors import ConfigError

#: the settings of ``placement=`` (``ReplicationSettings.placement``)
PLACEMENTS = ("spread", "strict-spread", "pack")


class PlacementError(ConfigError):
    """``placement="strict-spread"`` and every alive node already holds a replica of the group."""


def choose_node(nodes: Sequence[str], taken: Sequence[Optional[str]], placement: str,
                lost: Sequence[str] = ()) -> Optional[str]:
    """The node for one more replica of a group.

    ``spread`` takes the node holding the fewest of the group's replicas, the earliest in
    ``nodes`` among equals: a node without one while there is such a node, and the load
    evened out when every node has one. ``strict-spread`` takes only a node without one.
    ``pack`` and a cluster of one node leave the choice to Ray.

    Args:
        nodes: the alive node ids, in order of preference (the host puts worker nodes first and
            the head node, whose loss is the cluster's, last).
        taken: the node of each current member (None: not known yet, which counts nowhere).
        placement: ``"spread"``, ``"strict-spread"`` or ``"pack"``.
        lost: the nodes of members the group lost lately, once per member: among nodes holding
            as many members, one that lost fewer comes first. A removed node stays in Ray's list
            of alive nodes until its heartbeats time out, and a replacement sent there (soft
            affinity) lands wherever Ray puts it, beside another member.

    Returns:
        A node id, or None: let Ray choose.

    Raises:
        ConfigError: an unknown ``placement``.
        PlacementError: ``strict-spread`` and every node of ``nodes`` holds a member.
    """
    if placement not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    if placement == "pack":
        return None
    load = Counter(n for n in taken if n is not None)
    losses = Counter(lost)
    if placement == "strict-spread":
        free = [n for n in nodes if load[n] == 0]
        if not free:
            raise PlacementError(f"placement='strict-spread': each of the {len(nodes)} Ray nodes already "
                                 f"holds a replica of this group")
        return min(free, key=lambda n: losses[n])  # min keeps the first of equals
    if len(nodes) <= 1:
        return None
    return min(nodes, key=lambda n: (load[n], losses[n]))


def misplaced(nodes: Sequence[str], taken: Sequence[Optional[str]], placement: str, asked: Optional[str],
              landed: str, lost: Sequence[str] = ()) -> bool:
    """Whether a new replica Ray started on ``landed`` should be placed again: it holds more of the
    group than another alive node does (for ``spread``, a node without a member while one is alive).

    ``choose_node``'s answer is a soft node affinity: Ray puts the replica elsewhere when the node
    deciding does not know the chosen node yet (its view of the cluster lags Ray's node list) or
    finds it dead or unable to take it. A node asked for that lost a member lately and that Ray
    did not take is presumably removed, still listed until its heartbeats time out: it does not
    count as a better node (placing again would end beside a member again).

    Args:
        nodes: the alive node ids (read after the replica started).
        taken: the node of each other member, joiner and ready spare (None: not known yet).
        placement: the group's setting.
        asked: the node the replica was asked for (None: Ray chose; nothing to check).
        landed: the node the replica runs on.
        lost: the nodes of members the group lost lately (``choose_node``'s ``lost``).

    Returns:
        True: stop this replica and start another.

    Raises:
        ConfigError: an unknown ``placement``.
    """
    if placement not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    if placement == "pack" or asked is None or len(nodes) <= 1:
        return False
    load = Counter(n for n in taken if n is not None)
    removed = asked if asked != landed and asked in lost else None
    others = [n for n in nodes if n != landed and n != removed]
    return bool(others) and load[landed] > min(load[n] for n in others)


def plan_nodes(nodes: Sequence[str], replicas: int, placement: str) -> List[Optional[str]]:
    """A node for each replica of a new group (:func:`choose_node`, one replica after another).

    Args:
        nodes: the alive node ids, in order of preference.
        replicas: how many replicas the group starts with.
        placement: the group's setting.

    Returns:
        One node id (or None: let Ray choose) per replica, primary first.

    Raises:
        ConfigError: an unknown ``placement``.
        PlacementError: ``strict-spread`` with fewer nodes than replicas.
    """
    if placement == "strict-spread" and len(nodes) < replicas:
        raise PlacementError(f"placement='strict-spread' needs {replicas} Ray nodes; the cluster has {len(nodes)}")
    chosen: List[Optional[str]] = []
    for _ in range(replicas):
        chosen.append(choose_node(nodes, chosen, placement))
    return chosen

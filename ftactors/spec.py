"""The one description of a replicated group, used by the Ray runtime and by the simulator.

Pure data: no Ray, no I/O. The runtime ships it to the router and to every replica (the
router gets it without the class and the constructor's arguments, and fetches them from the
replicas once it is up); the simulator builds its cores from it. What only the
simulator has (the application model a replica runs in-process) stays in the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ftactors.core.config import CoreConfig


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """Everything needed to build a router or a replica of one group.

    Args:
        group: the group's name.
        config: the protocol's settings, in ticks and counts (every core of the group gets them).
        scheduling: the primary's scheduler: a name (``"reception"``, ``"priority"``, ...) or a
            ``ftactors.Scheduler``.
        settings: the runtime's ``ReplicationSettings`` as a dict (seconds, placement, bounds of
            the host); empty in the simulator, which counts in ticks.
        cls_bytes: the user's class, cloudpickled (runtime; empty for the router until it fetched it).
        init_bytes: the constructor's (args, kwargs), cloudpickled (runtime).
        actor_options: Ray actor options of each replica (``num_cpus``, ``resources``, ...).
        namespace: the Ray namespace of the group's named actors.
        secret: the direct data plane's per-group secret (runtime; never sent on its connections,
            never shown by ``repr``).
    """

    group: str
    config: CoreConfig
    scheduling: Any = "reception"
    settings: Dict[str, Any] = field(default_factory=dict)
    cls_bytes: bytes = b""
    init_bytes: bytes = b""
    actor_options: Dict[str, Any] = field(default_factory=dict)
    namespace: Optional[str] = None
    secret: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.group, str) or not self.group:
            raise ValueError(f"a group needs a non-empty name, got {self.group!r}")
        if not isinstance(self.config, CoreConfig):
            raise TypeError(f"config must be a CoreConfig, got {type(self.config).__name__}")

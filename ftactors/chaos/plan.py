"""The fault plan of a chaos run: which fault, when, drawn up front from the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from ftactors.chaos.errors import CampaignError

#: every fault kind a campaign can inject (see :class:`ftactors.chaos.campaign.Injector`)
FAULTS = ("kill-primary", "kill-backup", "kill-router", "pause-primary", "remove-node")


@dataclass(frozen=True)
class Fault:
    """A planned fault: ``kind`` at ``at_s`` seconds after the clients start.

    Args:
        at_s: when (seconds since the clients started).
        kind: one of :data:`FAULTS`.
        pause_s: ``pause-primary``: SIGCONT this long after the SIGSTOP.
    """

    at_s: float
    kind: str
    pause_s: float = 0.0


@dataclass
class FaultRecord:
    """What happened to a planned fault.

    Args:
        kind: the fault kind.
        planned_s: when it was planned.
        at_s: when it was injected (None: it was not).
        waited_s: how long it waited for the group to be back to full size.
        victim: the replica id (or ``router``).
        pid: the victim's process id.
        node: the victim's node id (first 8 characters).
        skipped: why it was not injected.
        pause_s: the callers' longest gap in completions around it.
        members_taken: the group's members the fault took (a kill or pause: 1; the router: 0;
            a node removal: the members on that node).
    """

    kind: str
    planned_s: float
    at_s: Optional[float] = None
    waited_s: float = 0.0
    victim: str = ""
    pid: int = -1
    node: str = ""
    skipped: str = ""
    pause_s: Optional[float] = None
    members_taken: int = 0


def parse_faults(spec: Union[str, Sequence[str]]) -> List[str]:
    """``"kill-primary,pause-primary"`` (or a list) -> a list of fault kinds.

    Raises:
        CampaignError: empty, or an unknown fault.
    """
    items = [str(s).strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    if not items:
        raise CampaignError(f"--faults is empty; choose from {', '.join(FAULTS)}")
    bad = [s for s in items if s not in FAULTS]
    if bad:
        raise CampaignError(f"unknown fault {bad[0]!r}; choose from {', '.join(FAULTS)}")
    return items


def plan_faults(seed: int, kinds: Sequence[str], every_s: float, duration_s: Optional[float] = None,
                faults_max: Optional[int] = None, pause_s: float = 3.0, tail_s: Optional[float] = None) -> List[Fault]:
    """The fault plan, drawn from ``random.Random(seed)`` before the run starts.

    Faults come every ``every_s`` seconds on average (uniform 0.75x-1.25x), until
    ``duration_s`` minus a quiet tail or ``faults_max`` faults.

    Args:
        seed: the same seed gives the same plan.
        kinds: the fault kinds to draw from.
        every_s: mean seconds between faults.
        duration_s: the run's length, or None with ``faults_max``.
        faults_max: stop after this many faults.
        pause_s: ``pause-primary``'s length.
        tail_s: no fault in the last ``tail_s`` seconds (default ``every_s / 2``).

    Returns:
        The faults in time order.

    Raises:
        CampaignError: ``every_s`` <= 0, or neither ``duration_s`` nor ``faults_max``.
    """
    if every_s <= 0:
        raise CampaignError("--fault-every-s must be > 0")
    if duration_s is None and not faults_max:
        raise CampaignError("give --duration-s or --faults-max")
    rng = random.Random(seed)
    tail = every_s * 0.5 if tail_s is None else tail_s
    plan: List[Fault] = []
    t = 0.0
    while True:
        t += every_s * rng.uniform(0.75, 1.25)
        kind = rng.choice(list(kinds))
        if duration_s is not None and t > duration_s - tail:
            break
        if faults_max is not None and len(plan) >= faults_max:
            break
        plan.append(Fault(round(t, 3), kind, pause_s if kind == "pause-primary" else 0.0))
    return plan

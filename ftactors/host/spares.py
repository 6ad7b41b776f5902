"""Warm spare replicas: processes started and constructed ahead of a failure, not members (pure).

A spare is a replica process the router started (its class loaded, its constructor run) that is
not in the view: it receives no Delivers and holds no state. When a member fails and the core asks
for a replacement, the router host makes a ready spare the replacement (it joins by state transfer
like any new replica) instead of starting a process, so no process starts during the failover.
The pool then starts a new spare, no sooner than ``respawn_ticks`` after the last one was taken or
lost. The router pings each spare every ``heartbeat_ticks``; a spare that dies (the ping fails) or
stays silent ``timeout_ticks`` is dropped and replaced, without touching the group. The pings also
keep a spare's orphan watch informed (a spare whose router is gone for good exits, as members do).

:class:`Spares` holds the decisions; :class:`ftactors.host.router.RouterHost` runs it, in Ray
(``runtime/router_actor.py``) and in the simulator alike.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

#: spares per group at most (each is one more process)
SPARES_MAX = 8


@dataclass(frozen=True, slots=True)
class SpareSettings:
    """How many warm spares a group keeps, in ticks.

    Args:
        spares: spare processes to keep (0: none, the default; at most ``SPARES_MAX``).
        respawn_ticks: after a spare was promoted or lost, wait this long before starting the next.
        heartbeat_ticks: ping a spare not heard from for this long.
        timeout_ticks: a spare not heard from for this long is presumed dead (hung) and replaced.

    Raises:
        ValueError: a count or duration out of range.
    """

    spares: int = 0
    respawn_ticks: int = 0
    heartbeat_ticks: int = 25
    timeout_ticks: int = 200

    def __post_init__(self) -> None:
        if not 0 <= self.spares <= SPARES_MAX:
            raise ValueError(f"spares must be in 0..{SPARES_MAX}, got {self.spares!r}")
        if self.respawn_ticks < 0:
            raise ValueError(f"respawn_ticks must be >= 0, got {self.respawn_ticks!r}")
        if self.heartbeat_ticks < 1 or self.timeout_ticks <= self.heartbeat_ticks:
            raise ValueError(f"need 1 <= heartbeat_ticks < timeout_ticks, got {self.heartbeat_ticks!r}, "
                             f"{self.timeout_ticks!r}")


@dataclass(frozen=True, slots=True)
class SpareActions:
    """What the pool asks for at a tick.

    Args:
        pings: ready spares to ping.
        lost: spares presumed dead (silent ``timeout_ticks``): the host stops them.
    """

    pings: Tuple[str, ...] = ()
    lost: Tuple[str, ...] = ()


class Spares:
    """The warm spares of one router incarnation.

    Args:
        settings: the pool's size and timings.
    """

    def __init__(self, settings: SpareSettings) -> None:
        self.settings = settings
        self.starting: Set[str] = set()  # asked for, not started yet
        # started and constructed: replica id -> (last heard, last pinged), oldest first
        self.ready: "OrderedDict[str, List[int]]" = OrderedDict()
        self.next_start_tick = 0
        self.counts: Dict[str, int] = {"started": 0, "promoted": 0, "lost": 0, "start_failed": 0}

    def is_spare(self, rid: str) -> bool:
        """Whether ``rid`` is a spare of this pool (starting or ready)."""
        return rid in self.starting or rid in self.ready

    def missing(self, now: int) -> int:
        """How many spares to start now: the pool's deficit once ``respawn_ticks`` passed."""
        if now < self.next_start_tick:
            return 0
        return max(0, self.settings.spares - len(self.starting) - len(self.ready))

    def starts(self, rid: str) -> None:
        """The host starts spare ``rid``."""
        assert len(self.starting) < SPARES_MAX, f"over {SPARES_MAX} spares starting"
        self.starting.add(rid)

    def started(self, rid: str, now: int) -> bool:
        """Spare ``rid`` is up and constructed.

        Returns:
            False if ``rid`` is not a spare being started (not this pool's).
        """
        if rid not in self.starting:
            return False
        self.starting.discard(rid)
        self.ready[rid] = [now, now]
        self.counts["started"] += 1
        return True

    def start_failed(self, rid: str, now: int) -> bool:
        """Spare ``rid`` could not be started: another is started after ``respawn_ticks``.

        Returns:
            False if ``rid`` is not a spare being started.
        """
        if rid not in self.starting:
            return False
        self.starting.discard(rid)
        self.counts["start_failed"] += 1
        self._later(now)
        return True

    def take(self, now: int) -> Optional[str]:
        """The oldest ready spare, for a replacement (it leaves the pool), or None.

        Args:
            now: the current tick (the next spare starts ``respawn_ticks`` from now).
        """
        if not self.ready:
            return None
        rid, _ = self.ready.popitem(last=False)
        self.counts["promoted"] += 1
        self._later(now)
        return rid

    def heard(self, rid: str, now: int) -> bool:
        """Spare ``rid`` answered a ping.

        Returns:
            False if ``rid`` is not a ready spare.
        """
        seen = self.ready.get(rid)
        if seen is None:
            return False
        seen[0] = now
        return True

    def failed(self, rid: str, now: int) -> bool:
        """A call to spare ``rid`` failed (it died): it leaves the pool, replaced after ``respawn_ticks``.

        Returns:
            False if ``rid`` is not a spare.
        """
        if rid in self.ready:
            del self.ready[rid]
        elif rid in self.starting:  # its start reports the failure too; count it once, here
            self.starting.discard(rid)
        else:
            return False
        self.counts["lost"] += 1
        self._later(now)
        return True

    def tick(self, now: int) -> SpareActions:
        """The pings due and the spares silent past ``timeout_ticks`` (removed from the pool)."""
        s = self.settings
        pings: List[str] = []
        lost: List[str] = []
        for rid, seen in self.ready.items():
            if now - seen[0] > s.timeout_ticks:
                lost.append(rid)
            elif now - max(seen) >= s.heartbeat_ticks:
                seen[1] = now
                pings.append(rid)
        for rid in lost:
            self.failed(rid, now)
        return SpareActions(tuple(pings), tuple(lost))

    def excuse(self, gap_ticks: int) -> None:
        """The router did not run for ``gap_ticks``: the spares' silence meanwhile proves nothing."""
        for seen in self.ready.values():
            seen[0] += gap_ticks

    def _later(self, now: int) -> None:
        self.next_start_tick = max(self.next_start_tick, now + self.settings.respawn_ticks)

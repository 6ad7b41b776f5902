"""Schedulers: how the primary picks the next message to execute (claims 5, 39, 55).

Only the primary schedules. Backups never choose: they follow announcements.
A scheduler is a plain object; give one to ``@replicated(scheduling=...)`` or
name a built-in: "reception", "sequence", "priority", "deadline", "fair",
"resources".

Every scheduler here is deterministic: ties are broken by reception order.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterator, List, Mapping, Optional, Type

from ftactors.core.errors import ConfigError
from ftactors.core.messages import MsgId, Request


@dataclass(frozen=True, slots=True)
class Queued:
    """A request waiting at the primary.

    Args:
        request: the request.
        arrival: reception index at this replica (0, 1, 2...).
        arrival_tick: the tick it arrived.
    """

    request: Request
    arrival: int
    arrival_tick: int


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """What a scheduler may look at besides its queue.

    Args:
        now_tick: the current tick.
        unavailable: resources that are not available now.
        next_seq: per source, the lowest sequence number not yet executed.
        sequence_gap_ticks: see :class:`ftactors.core.config.CoreConfig`.
    """

    now_tick: int
    unavailable: FrozenSet[str] = frozenset()
    next_seq: Mapping[str, int] = None  # type: ignore[assignment]
    sequence_gap_ticks: int = 20


class Scheduler:
    """Base scheduler: a bounded bag of queued requests; subclasses choose ``pick``."""

    name = "base"
    #: sources a scheduler remembers anything about at most (``CoreConfig.sources_max``)
    sources_max = 100_000

    def __init__(self) -> None:
        self._items: Dict[MsgId, Queued] = {}

    def push(self, item: Queued) -> None:
        """Add a request. Raises AssertionError if it is already queued (our bug)."""
        assert item.request.msg_id not in self._items, f"double push of {item.request.msg_id}"
        self._items[item.request.msg_id] = item

    def remove(self, msg_id: MsgId) -> bool:
        """Drop a request if queued. Returns True if it was there."""
        return self._items.pop(msg_id, None) is not None

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Queued]:
        return iter(sorted(self._items.values(), key=lambda q: q.arrival))

    def pop(self, ctx: ScheduleContext) -> Optional[Queued]:
        """Remove and return the next request to execute, or None if none may run now."""
        eligible = [q for q in self._items.values() if self._eligible(q, ctx)]
        if not eligible:
            return None
        chosen = self.pick(eligible, ctx)
        del self._items[chosen.request.msg_id]
        return chosen

    def _eligible(self, item: Queued, ctx: ScheduleContext) -> bool:
        return not ctx.unavailable or not (set(item.request.resources) & ctx.unavailable)

    def pick(self, eligible: List[Queued], ctx: ScheduleContext) -> Queued:
        """Choose among eligible requests. Default: reception order."""
        return min(eligible, key=lambda q: q.arrival)


class ReceptionOrder(Scheduler):
    """First received, first executed."""

    name = "reception"


class SequenceOrder(Scheduler):
    """Each source's requests run in its sequence-number order.

    A request waits for the earlier ones of its source for up to
    ``sequence_gap_ticks``; across sources, reception order.
    """

    name = "sequence"

    def _eligible(self, item: Queued, ctx: ScheduleContext) -> bool:
        if not super()._eligible(item, ctx):
            return False
        req = item.request
        expected = max((ctx.next_seq or {}).get(req.msg_id.source, 1), req.ack_below, 1)
        if req.msg_id.seq <= expected:
            return True
        earlier_queued = any(
            q.request.msg_id.source == req.msg_id.source and q.request.msg_id.seq < req.msg_id.seq
            for q in self._items.values()
        )
        if earlier_queued:
            return False
        return ctx.now_tick - item.arrival_tick >= ctx.sequence_gap_ticks

    def pick(self, eligible: List[Queued], ctx: ScheduleContext) -> Queued:
        return min(eligible, key=lambda q: (q.request.msg_id.seq, q.arrival))


class PriorityOrder(Scheduler):
    """Highest ``priority`` first; ties in reception order."""

    name = "priority"

    def pick(self, eligible: List[Queued], ctx: ScheduleContext) -> Queued:
        return min(eligible, key=lambda q: (-q.request.priority, q.arrival))


class DeadlineOrder(Scheduler):
    """Earliest ``deadline_tick`` first; requests without a deadline last."""

    name = "deadline"

    def pick(self, eligible: List[Queued], ctx: ScheduleContext) -> Queued:
        def key(q: Queued) -> tuple:
            d = q.request.deadline_tick
            return (d is None, d if d is not None else 0, q.arrival)

        return min(eligible, key=key)


class FairOrder(Scheduler):
    """Round-robin across sources, each source's requests in reception order."""

    name = "fair"

    def __init__(self) -> None:
        super().__init__()
        # source -> the turn it was last served, least recent first; at most ``sources_max``:
        # the ones forgotten were served before every remembered one, and -1 keeps them there
        self._served: "OrderedDict[str, int]" = OrderedDict()
        self._turn = 0

    def pick(self, eligible: List[Queued], ctx: ScheduleContext) -> Queued:
        self._turn += 1
        # the source served least recently goes first; then reception order
        chosen = min(eligible, key=lambda q: (self._served.get(q.request.msg_id.source, -1), q.arrival))
        self._served.pop(chosen.request.msg_id.source, None)
        self._served[chosen.request.msg_id.source] = self._turn
        while len(self._served) > self.sources_max:
            self._served.popitem(last=False)
        return chosen


class ResourceOrder(Scheduler):
    """Reception order among requests whose resources are all available."""

    name = "resources"


BUILTIN: Dict[str, Type[Scheduler]] = {
    cls.name: cls
    for cls in (ReceptionOrder, SequenceOrder, PriorityOrder, DeadlineOrder, FairOrder, ResourceOrder)
}


def make_scheduler(spec: object, sources_max: Optional[int] = None) -> Scheduler:
    """Build a scheduler from a name, a Scheduler subclass, or an instance's class.

    Args:
        spec: a built-in name, a :class:`Scheduler` subclass, or an instance
            (its class is instantiated again, so every replica gets its own).
        sources_max: sources it may remember (``CoreConfig.sources_max``); None
            keeps the class default.

    Returns:
        A fresh scheduler.

    Raises:
        ConfigError: if ``spec`` names no scheduler.
    """
    sched: Scheduler
    if isinstance(spec, str):
        if spec not in BUILTIN:
            raise ConfigError(f"scheduling must be one of {sorted(BUILTIN)} or a Scheduler, got {spec!r}")
        sched = BUILTIN[spec]()
    elif isinstance(spec, type) and issubclass(spec, Scheduler):
        sched = spec()
    elif isinstance(spec, Scheduler):
        sched = type(spec)()
    else:
        raise ConfigError(f"scheduling must be one of {sorted(BUILTIN)} or a Scheduler, got {spec!r}")
    if sources_max is not None:
        sched.sources_max = sources_max
    return sched

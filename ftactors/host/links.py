"""The data plane's fault decisions, written once: the router's direct link to each replica.

The Ray router actor (``runtime/router_actor.py``, over :mod:`ftactors.runtime.wire`) and the
simulator's router (``testing/hosts.py``, over a seeded link) both feed this table what their
transport saw and carry out what it decides. It has no sockets, threads or clock of its own: time
comes in as ticks, and the answers are plain values.

What it decides, per replica (a link's state is one of :class:`LinkState`)::

    opening      want_link(rid)        -> True once: open a link (CONNECTING)
                 on_up(rid, now)       -> UP: Delivers that fit a frame go on it
                 on_unreachable(rid)   -> FALLBACK: the port is closed between the nodes, not a failed
                                          replica; its Delivers take Ray calls (True: warn, once)
    sending      route(rid, fits)      -> WIRE, RAY (fallback, an ObjectRef or over a frame) or NONE
                                          (closed: the replica is suspected, nothing goes)
    answers      on_answer(rid, now)   -> heard; a retiring link with nothing pending is closed
                 on_parked(rid)        -> (FETCH, ticket): a Ray call by call id, or DROP (the link is closed)
                 on_wire_answer(rid, a) -> the answers to hand the core now: a replica's answers reach the
                                          core in the order they came on its link, so one that comes
                                          after a parked answer waits for that fetch (else the primary
                                          crashing meanwhile loses the parked announcements while a
                                          later reply, ordered after them, is released)
                 on_ray_answer(rid, a)  -> the same for an answer that came by a Ray call (a Deliver that
                                          did not fit the link, or sent while it opened): it came after
                                          any answer parked on the link, and waits for it too
                 on_fetched(rid, t, a) / on_fetch_lost(rid, t) -> the answers now free / the fetch failed:
                                          what came after it is dropped (the replica is failed anyway)
    failure      on_closed(rid, why)   -> True: a suspicion at once (UP or CONNECTING closed; a
                                          retiring link's close is not a failure)
                 tick(now)             -> heartbeats to send on open links silent for
                                          ``heartbeat_interval_ticks`` (traffic counts as liveness),
                                          suspects: ``heartbeat_misses_max`` heartbeats in a row missed
                                          (a hung or partitioned replica: no close comes); its link
                                          retires (or closes if nothing is pending on it)
    leaving      retire(rid)           -> True: close now; else RETIRING until its pending answers
                                          came, however late (a hung replica that resumes sends its
                                          output to the router, which fences it off by view)
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

from ftactors.core.errors import ConfigError

#: Links one router incarnation holds at most (members, joiners and retiring ones).
LINKS_MAX = 10_000
#: Delivers awaiting their answer on one link at most (the core bounds the batches in flight).
PENDING_PER_LINK_MAX = 100_000


class LinkState(str, enum.Enum):
    """Where one replica's direct link stands."""

    CONNECTING = "connecting"
    UP = "up"
    RETIRING = "retiring"  # the replica left the view: closed once its pending answers came
    CLOSED = "closed"
    FALLBACK = "fallback"  # no link could be opened: Ray calls carry its Delivers


class Route(str, enum.Enum):
    """The path of one Deliver."""

    WIRE = "wire"
    RAY = "ray"
    NONE = "none"  # the link closed: the replica is suspected, the Deliver goes nowhere


class Parked(str, enum.Enum):
    """What to do with an answer the replica parked (it holds an ObjectRef or is over a frame)."""

    FETCH = "fetch"  # at once, with a Ray call by call id
    DROP = "drop"  # the link is closed: the replica is out, and the fetch could hang on it


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """How the router watches its direct links.

    Args:
        heartbeat_interval_ticks: a link silent this long gets a heartbeat; each further interval
            with the heartbeat unanswered is a miss.
        heartbeat_misses_max: misses in a row that make the replica suspected.
        links_max: links held at most.

    Raises:
        ConfigError: a value below 1.
    """

    heartbeat_interval_ticks: int = 25
    heartbeat_misses_max: int = 4
    links_max: int = LINKS_MAX

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval_ticks", "heartbeat_misses_max", "links_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    @property
    def suspicion_bound_ticks(self) -> int:
        """The longest a hung replica's link stays unsuspected after it was last heard from."""
        return (self.heartbeat_misses_max + 1) * self.heartbeat_interval_ticks


@dataclass(slots=True)
class Link:
    """One replica's link as the table sees it.

    Args:
        state: where it stands.
        last_heard: the tick a frame (an answer, a heartbeat's answer) last came from the replica.
        beat_at: the tick the unanswered heartbeat went out, if one did.
        misses: heartbeats missed in a row.
        pending: Delivers sent on it, not answered yet.
        why: why it closed or fell back.
        order: answers in the order they came, while a parked one at the head is being fetched:
            ``[ticket, answer]`` (a parked answer's ticket with ``None`` until it is fetched).
    """

    state: LinkState
    last_heard: int = 0
    beat_at: Optional[int] = None
    misses: int = 0
    pending: int = 0
    why: str = ""
    order: Deque[List[Any]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class LinkActions:
    """What a tick of the table asks for.

    Args:
        heartbeats: replicas to send a heartbeat to on their link.
        suspects: replicas suspected (heartbeats missed): fail them (their links retire, or close).
        close: links to close now.
    """

    heartbeats: Tuple[str, ...] = ()
    suspects: Tuple[str, ...] = ()
    close: Tuple[str, ...] = ()


@dataclass(slots=True)
class Links:
    """The router's direct links, one per replica: their state and the decisions on them.

    Args:
        settings: heartbeat interval and misses.
    """

    settings: LinkSettings = field(default_factory=LinkSettings)
    links: Dict[str, Link] = field(default_factory=dict)
    last_tick: Optional[int] = None
    _tickets: int = 0
    counts: Dict[str, int] = field(default_factory=lambda: {
        "up": 0, "closed": 0, "close_suspicions": 0, "heartbeat_suspicions": 0, "heartbeats": 0,
        "heartbeat_misses": 0, "parked_fetched": 0, "parked_dropped": 0, "answers_held": 0, "answers_dropped": 0,
        "ray_answers_held": 0, "fallbacks": 0, "ray_routed": 0,
        "retired": 0})

    # ------------------------------------------------------------ opening

    def want_link(self, rid: str) -> bool:
        """Whether to open a link to ``rid`` now (once: it is CONNECTING from here)."""
        if rid in self.links:
            return False
        assert len(self.links) < self.settings.links_max, f"over {self.settings.links_max} links"
        self.links[rid] = Link(LinkState.CONNECTING)
        return True

    def on_up(self, rid: str, now: int) -> None:
        """The link to ``rid`` is open and authenticated."""
        link = self.links.get(rid)
        if link is None or link.state != LinkState.CONNECTING:
            return  # retired or closed meanwhile: the driver closes it on the next tick's ``close``
        link.state, link.last_heard, link.beat_at, link.misses = LinkState.UP, now, None, 0
        self.counts["up"] += 1

    def on_unreachable(self, rid: str, why: str) -> bool:
        """No link could be opened to ``rid`` (a port closed between the nodes): not a failure.

        Returns:
            True the first time (the driver warns once: its Delivers now take Ray calls).
        """
        link = self.links.get(rid)
        if link is None or link.state != LinkState.CONNECTING:
            return False
        link.state, link.why = LinkState.FALLBACK, why
        self.counts["fallbacks"] += 1
        return True

    # ------------------------------------------------------------ sending

    def route(self, rid: str, fits_wire: bool = True) -> Route:
        """The path of a Deliver to ``rid``.

        Args:
            rid: the replica.
            fits_wire: False when the message holds an ObjectRef (the object store must track it)
                or is over a frame.

        Returns:
            WIRE on an open link, RAY when it has none (fallback, not opened) or the message does not
            fit, NONE once the link closed or retires (the replica is out).
        """
        link = self.links.get(rid)
        if link is not None and link.state in (LinkState.CLOSED, LinkState.RETIRING):
            return Route.NONE
        if link is None or link.state != LinkState.UP or not fits_wire:
            self.counts["ray_routed"] += 1
            return Route.RAY
        return Route.WIRE

    def is_up(self, rid: str) -> bool:
        """Whether ``route(rid)`` is WIRE for a message that fits (asked without counting a route)."""
        link = self.links.get(rid)
        return link is not None and link.state == LinkState.UP

    def on_sent(self, rid: str) -> None:
        """A Deliver went on ``rid``'s link."""
        link = self.links[rid]
        link.pending += 1
        assert link.pending <= PENDING_PER_LINK_MAX, f"{rid}: over {PENDING_PER_LINK_MAX} Delivers pending"

    # ------------------------------------------------------------ answers

    def on_heard(self, rid: str, now: int) -> None:
        """A frame came from ``rid`` (an answer or a heartbeat's answer): it is alive."""
        link = self.links.get(rid)
        if link is not None and link.state in (LinkState.UP, LinkState.RETIRING):
            link.last_heard, link.beat_at, link.misses = max(link.last_heard, now), None, 0

    def on_answer(self, rid: str, now: int, heard: bool = True) -> bool:
        """A Deliver sent on ``rid``'s link was answered (or its wait ended: ``heard`` False).

        Returns:
            True if the link is to be closed now: it retires and nothing is pending on it any more.
        """
        link = self.links.get(rid)
        if link is None:
            return False
        link.pending = max(0, link.pending - 1)
        if heard:
            self.on_heard(rid, now)
        if link.state == LinkState.RETIRING and link.pending == 0:
            self._close(link, "retired")
            self.counts["retired"] += 1
            return True
        return False

    def on_parked(self, rid: str) -> Tuple[Parked, int]:
        """``rid`` parked an answer: fetch it with a Ray call, unless its link is closed.

        Returns:
            (FETCH, the ticket for :meth:`on_fetched` / :meth:`on_fetch_lost`), or (DROP, 0).
        """
        link = self.links.get(rid)
        if link is None or link.state == LinkState.CLOSED:
            self.counts["parked_dropped"] += 1
            return Parked.DROP, 0
        self.counts["parked_fetched"] += 1
        self._tickets += 1
        assert len(link.order) < PENDING_PER_LINK_MAX, f"{rid}: over {PENDING_PER_LINK_MAX} answers held"
        link.order.append([self._tickets, None])
        return Parked.FETCH, self._tickets

    def on_wire_answer(self, rid: str, answer: Any) -> Tuple[Any, ...]:
        """An answer came on ``rid``'s link (not parked).

        Returns:
            The answers to hand the core now: this one, or none while a parked answer that came
            before it is being fetched (it is held, and handed over after that one).
        """
        return self._after_parked(rid, answer, "answers_held")

    def on_ray_answer(self, rid: str, answer: Any) -> Tuple[Any, ...]:
        """An answer of ``rid`` came by a Ray call, not on its link (a Deliver that did not fit a frame
        or held an object reference, or went while the link opened or after it fell back).

        It came after every answer parked on the link so far, and the replica applies its Delivers in
        their order whatever the path: so it may hold positions, replies or announcements after theirs.
        Handed to the core first, the router would release or apply it ahead of them, and if a parked
        fetch is lost (the replica died) the later answer would stand without the earlier ones.

        Returns:
            The answers to hand the core now: this one, or none while a parked answer that came before
            it is being fetched (it is held, handed over after that one, or dropped if that fetch is lost).
        """
        return self._after_parked(rid, answer, "ray_answers_held")

    def _after_parked(self, rid: str, answer: Any, counter: str) -> Tuple[Any, ...]:
        """``answer`` of ``rid`` now, or held (counted in ``counter``) behind a parked answer of its
        link being fetched.

        Returns:
            ``(answer,)``, or ``()`` when it is held.
        """
        link = self.links.get(rid)
        if link is None or not link.order:
            return (answer,)
        assert len(link.order) < PENDING_PER_LINK_MAX, f"{rid}: over {PENDING_PER_LINK_MAX} answers held"
        link.order.append([0, answer])
        self.counts[counter] += 1
        return ()

    def on_fetched(self, rid: str, ticket: int, answer: Any) -> Tuple[Any, ...]:
        """The parked answer ``ticket`` was fetched.

        Returns:
            The answers to hand the core now, in the order they came on the link.
        """
        link = self.links.get(rid)
        slot = None if link is None else next((s for s in link.order if s[0] == ticket), None)
        if link is None or slot is None:  # the link closed meanwhile: what it held was dropped
            return ()
        slot[0], slot[1] = 0, answer
        out = []
        while link.order and link.order[0][0] == 0:
            out.append(link.order.popleft()[1])
        return tuple(out)

    def on_fetch_lost(self, rid: str, ticket: int) -> None:
        """Fetching the parked answer ``ticket`` failed (the replica died): it and every answer that
        came after it are dropped (never handed to the core, as if they never came)."""
        link = self.links.get(rid)
        if link is None:
            return
        kept = []
        for slot in link.order:
            if slot[0] == ticket:
                break
            kept.append(slot)
        if len(kept) < len(link.order):
            self.counts["answers_dropped"] += len(link.order) - len(kept) - 1  # those after the lost one
        link.order = deque(kept)

    # ------------------------------------------------------------ failure

    def on_closed(self, rid: str, why: str) -> bool:
        """``rid``'s link closed (the replica's process is gone, or a bad frame).

        Returns:
            True if that makes ``rid`` suspected at once (an open or opening link closed; a retiring
            link's close, or a second report of one close, is not a failure).
        """
        link = self.links.get(rid)
        if link is None or link.state in (LinkState.CLOSED, LinkState.FALLBACK):
            return False
        suspect = link.state in (LinkState.UP, LinkState.CONNECTING)
        self._close(link, why)
        if suspect:
            self.counts["close_suspicions"] += 1
        return suspect

    def tick(self, now: int) -> LinkActions:
        """Time passed: heartbeats for silent links, suspicion after ``heartbeat_misses_max`` misses.

        A link heard from within ``heartbeat_interval_ticks`` gets no heartbeat (traffic is
        liveness). A router that did not run for longer than an interval (starved, paused) excuses
        its links that long: silence meanwhile proves nothing. After any gap (the router did not
        run for a tick or more), a heartbeat that became unanswered for an interval meanwhile is
        judged on the next tick, not this one: its answer may have come while the router did not
        run and wait, unread, until after this tick (a router's timer may run before its reads).
        """
        interval = self.settings.heartbeat_interval_ticks
        prev = self.last_tick
        gap = 0 if prev is None else now - prev
        self.last_tick = now
        beats: List[str] = []
        suspects: List[str] = []
        close: List[str] = []
        for rid, link in self.links.items():
            if link.state != LinkState.UP:
                continue
            if gap > interval:
                link.last_heard += gap
                link.beat_at = None if link.beat_at is None else link.beat_at + gap
            if now - link.last_heard < interval:
                continue
            if link.beat_at is not None and now - link.beat_at < interval:
                continue
            if link.beat_at is not None and gap > 1 and prev is not None and prev - link.beat_at < interval:
                continue  # due only since the router last ran: read what came meanwhile first
            if link.beat_at is not None:
                link.misses += 1
                self.counts["heartbeat_misses"] += 1
            if link.misses >= self.settings.heartbeat_misses_max:
                self.counts["heartbeat_suspicions"] += 1
                suspects.append(rid)
                if link.pending:  # kept for its late output (fenced), like any retiring link
                    link.state, link.why, link.beat_at = LinkState.RETIRING, f"missed {link.misses} heartbeats", None
                else:
                    self._close(link, f"missed {link.misses} heartbeats")
                    close.append(rid)
                continue
            link.beat_at = now
            self.counts["heartbeats"] += 1
            beats.append(rid)
        return LinkActions(tuple(beats), tuple(suspects), tuple(close))

    # ------------------------------------------------------------ leaving

    def retire(self, rid: str) -> bool:
        """``rid`` left the view.

        Returns:
            True if its link is to be closed (or, fallen back, forgotten) now: nothing pending, or
            no open link; else it retires until its pending answers came.
        """
        link = self.links.get(rid)
        if link is None or link.state == LinkState.CLOSED:
            return False
        if link.state in (LinkState.UP, LinkState.RETIRING) and link.pending:
            link.state = LinkState.RETIRING
            return False
        self._close(link, "retired")
        self.counts["retired"] += 1
        return True

    def state(self, rid: str) -> Optional[LinkState]:
        """The state of ``rid``'s link (None: none was opened)."""
        link = self.links.get(rid)
        return None if link is None else link.state

    def _close(self, link: Link, why: str) -> None:
        if link.order:
            self.counts["answers_dropped"] += len(link.order)
        link.state, link.why, link.pending, link.beat_at, link.order = LinkState.CLOSED, why, 0, None, deque()
        self.counts["closed"] += 1

"""The router's intake: which request of which source goes to the replicas, and when.

Per source it keeps the next sequence number it expects, so that one client's
calls are multicast in the order it made them (as a sync Ray actor runs one
caller's calls; the transport may reorder them), and holds a call that arrived
before an earlier one of its source, at most ``sequence_gap_ticks``. It knows
who waits for a reply (``pending``), caches released replies for duplicates
(``reply_cache_max``), forgets them once the source acknowledged them by
``ack_below``, and fences nested calls from a deposed primary of the calling
group. Every per-source map is bounded (``inflight_max`` sources).

A transcript::

    intake.admit(c#2, now=0)   # []: held, c#1 is missing
    intake.admit(c#1, now=1)   # [c#1, c#2]: both go out, in c's order
    intake.settle(reply_c1)    # True: release it to c (cached for a retry)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Set, Tuple

from ftactors.core.config import CoreConfig
from ftactors.core.dedup import forget_acknowledged
from ftactors.core.errors import StaleViewError
from ftactors.core.messages import MsgId, Reply, Request
from ftactors.core.routing.log import OrderLog


class Intake:
    """Per-source admission, held calls, waiting callers and the reply cache.

    Args:
        config: protocol settings (``inflight_max``, ``reply_cache_max``).
        counts: the router's counters (``fenced``).
        log: the router's order log (a source new to the router skips what it holds).
    """

    def __init__(self, config: CoreConfig, counts: Dict[str, int], log: OrderLog) -> None:
        self.config = config
        self.counts = counts
        self.log = log
        self.pending: Set[MsgId] = set()
        self.replies: "OrderedDict[MsgId, Reply]" = OrderedDict()
        self.reply_floor: "OrderedDict[str, int]" = OrderedDict()  # source -> its last ack_below
        self.expect: Dict[str, int] = {}
        self.held: Dict[str, Dict[int, Tuple[Request, int]]] = {}
        self.coming: Set[MsgId] = set()  # at the router, not submitted yet (see ``expect_soon``)
        # calls their caller gave up before this router took them (``abandon``): never run, not waited for
        self.abandoned: "OrderedDict[MsgId, None]" = OrderedDict()
        self.source_views: Dict[str, int] = {}
        self.peer_groups: Set[str] = set()

    # -------------------------------------------------------------- queries

    def lookup(self, msg_id: MsgId) -> Tuple[str, Optional[Reply]]:
        """Where a request stands: ("released", reply), ("pending", None) or ("unknown", None)."""
        rep = self.replies.get(msg_id)
        if rep is not None:
            return "released", rep
        if msg_id in self.pending:
            return "pending", None
        return "unknown", None

    def held_count(self) -> int:
        """How many requests wait here for an earlier call of their source (each source's are
        released together, so the router counts them as relayed already)."""
        return sum(len(held) for held in self.held.values())

    def holds(self, msg_id: MsgId) -> bool:
        """Whether ``msg_id`` waits here for an earlier call of its source."""
        return msg_id.seq in self.held.get(msg_id.source, ())

    def acknowledged(self, msg_id: MsgId) -> Optional[int]:
        """The source's ``ack_below`` if it already holds the reply of ``msg_id``; else None."""
        floor = self.reply_floor.get(msg_id.source, 1)
        return floor if msg_id.seq < floor else None

    # --------------------------------------------------------------- checks

    def check_source_view(self, req: Request) -> None:
        """Fence a nested request from a deposed primary of the calling group.

        Raises:
            StaleViewError: ``req.source_view`` is below a view of its group seen before.
        """
        if req.source_view is None:
            return
        src_group = req.msg_id.source.split("|", 1)[0]
        self.peer_groups.add(src_group)
        seen = self.source_views.get(src_group, 0)
        if req.source_view < seen:
            self.counts["fenced"] += 1
            raise StaleViewError(f"request from view {req.source_view} of {src_group}, which is at {seen}")
        self.source_views[src_group] = req.source_view

    def learn_source_views(self, views: Tuple[Tuple[str, int], ...]) -> None:
        """Views of calling groups a replica saw on the nested requests it accepted (its
        ``StateReport``): a rebuilt router fences those groups' deposed primaries as its
        predecessor did. Only raises what is known.

        Args:
            views: (calling group, view) pairs (``StateReport.source_views``).
        """
        for group, view in views:
            if view > self.source_views.get(group, 0):
                self.source_views[group] = view
                self.peer_groups.add(group)

    def forget_replies(self, source: str, ack_below: int) -> None:
        """The source holds every reply below ``ack_below``: a retry can no longer ask for them."""
        floor = self.reply_floor.get(source, 1)
        if ack_below <= floor:
            return
        forget_acknowledged(self.replies, source, floor, ack_below)
        self.reply_floor.pop(source, None)
        self.reply_floor[source] = ack_below  # most recent last: the oldest sources are forgotten first
        while len(self.reply_floor) > self.config.inflight_max:
            self.reply_floor.popitem(last=False)

    # ------------------------------------------------------------ admission

    def wait_for(self, req: Request) -> None:
        """Someone waits for ``req``'s reply (if it wants one)."""
        if req.wants_reply:
            self.pending.add(req.msg_id)

    def expect_soon(self, msg_id: MsgId) -> None:
        """``msg_id`` reached the router and will be submitted once its host is done with it (an
        argument by reference being fetched): the later calls of its source wait for it past
        ``sequence_gap_ticks`` until it is submitted or ``forget_coming``. At most
        ``inflight_max`` are remembered; beyond, a later call waits the gap only."""
        if len(self.coming) < self.config.inflight_max:
            self.coming.add(msg_id)

    def forget_coming(self, msg_id: MsgId) -> None:
        """``msg_id`` will not be submitted after all (its argument could not be fetched)."""
        self.coming.discard(msg_id)

    def abandon(self, msg_id: MsgId) -> bool:
        """The caller gave ``msg_id`` up before this router took it (Ray cancelled its task while it
        was queued): the later calls of its source no longer wait for it (the next tick releases
        them, ``release_gaps``), and if it comes after all it is refused (``is_abandoned``), so it
        never runs. At most ``inflight_max`` are remembered, the oldest forgotten first.

        Args:
            msg_id: the call given up.

        Returns:
            False if this router knows it already (held, being fetched, ordered or released): it
            runs, or ran, as any call; True if it is given up.
        """
        src, seq = msg_id.source, msg_id.seq
        if self.holds(msg_id) or msg_id in self.coming or msg_id in self.pending or seq < self.reply_floor.get(src, 1):
            return False
        if msg_id in self.replies or msg_id in self.log.requests or msg_id in self.log.pos_of:
            return False
        self.abandoned[msg_id] = None
        while len(self.abandoned) > self.config.inflight_max:
            self.abandoned.popitem(last=False)
        return True

    def is_abandoned(self, msg_id: MsgId) -> bool:
        """Whether the caller gave ``msg_id`` up before this router took it (:meth:`abandon`)."""
        return msg_id in self.abandoned

    def _first_coming(self, src: str) -> Optional[int]:
        """The lowest sequence number of ``src`` announced by ``expect_soon`` and not yet submitted."""
        return min((m.seq for m in self.coming if m.source == src), default=None)

    def admit(self, req: Request, now: int) -> List[Request]:
        """A client's request, in its source's sequence order.

        Args:
            req: the request (not a duplicate).
            now: the current tick (a held request waits from then).

        Returns:
            The requests to multicast now, in order: none while an earlier one of its
            source is missing (``req`` is held, and its caller counted as waiting), else
            ``req`` and the held ones it unblocks (the caller passes each to ``wait_for``).
        """
        src, seq = req.msg_id.source, req.msg_id.seq
        self.coming.discard(req.msg_id)
        expect = self.expect.get(src)
        if expect is None:
            # a source new to this router (a restarted one, or one it forgot): its requests below
            # ``ack_below`` are settled; those from there on may still come (Ray's retries)
            expect = self._skip_known(src, max(1, req.ack_below))
        if seq > expect:
            self.held.setdefault(src, {})[seq] = (req, now)
            self.wait_for(req)
            return []
        out = [req]
        if seq == expect:
            out += self._drain(src, seq + 1)
        return out

    def _skip_known(self, src: str, seq: int) -> int:
        """The first sequence number from ``seq`` on that this router does not already hold
        (from the replicas' reports, or released) and that its caller did not give up (``abandon``)."""
        while MsgId(src, seq) in self.log.requests or MsgId(src, seq) in self.replies or \
                MsgId(src, seq) in self.log.pos_of or (self.abandoned and MsgId(src, seq) in self.abandoned):
            seq += 1
        return seq

    def _drain(self, src: str, expect: int) -> List[Request]:
        """The held requests of ``src`` from ``expect`` on, up to the next missing one."""
        held = self.held.get(src, {})
        out = []
        expect = self._skip_known(src, expect)
        while expect in held:
            out.append(held.pop(expect)[0])
            expect = self._skip_known(src, expect + 1)
        self.expect.pop(src, None)
        self.expect[src] = expect  # most recent last: the oldest sources are forgotten first
        while len(self.expect) > self.config.inflight_max:
            del self.expect[next(iter(self.expect))]
        if not held:
            self.held.pop(src, None)
        return out

    def release_gaps(self, now: int, gap_ticks: Callable[[int], int]) -> List[Request]:
        """A missing request (its caller died, or the transport lost it) holds the rest at most
        ``gap_ticks(arrival)``; one that reached the router and is not submitted yet
        (``expect_soon``) holds the later ones until it is. Once the router knows every earlier
        one (a restarted router learns them from the replicas after it took the later ones),
        the held ones go on at once.

        Returns:
            The held requests whose wait is over, to multicast now in this order.
        """
        out: List[Request] = []
        for src in list(self.held):
            held = self.held[src]
            if held and self._settled_below(src, held):
                out += self._drain(src, min(held))  # what was missing is known now: no reason to wait
            elif held and min(t + gap_ticks(t) for _, t in held.values()) <= now:
                coming = self._first_coming(src)
                if coming is not None and coming < min(held):
                    continue
                out += self._drain(src, min(held))
        return out

    def excuse(self, idle_ticks: int) -> None:
        """The router did not run for ``idle_ticks`` (its loop starved or paused): that time does not
        count toward a held call's wait. The missing call may have reached the router meanwhile and
        wait, unread, behind the tick that ends the starvation (docs/faults.md, row 40)."""
        for src, held in self.held.items():
            self.held[src] = {seq: (req, t + idle_ticks) for seq, (req, t) in held.items()}

    def _settled_below(self, src: str, held: Dict[int, Tuple[Request, int]]) -> bool:
        """Whether every call of ``src`` before its first held one is known to this router now
        (retained, ordered or released, e.g. learnt from the replicas after a restart, or settled
        below an ``ack_below``): the held ones need not wait for the gap."""
        first = min(held)
        start = self.expect.get(src)
        if start is None:  # a source new to this router: from its acknowledged floor
            start = max(1, max(req.ack_below for req, _ in held.values()))
        return self._skip_known(src, start) >= first

    # -------------------------------------------------------------- replies

    def settle(self, rep: Reply) -> bool:
        """The primary answered ``rep.msg_id``.

        A call answered while it waited for an earlier one of its source (a restarted
        router's primary held it already) is no longer held: accepting it later would
        release it a second time.

        Returns:
            True if a caller waits for it (release it now, once); False otherwise (a reply
            with a position is still cached, for a retry of a caller that comes later).
        """
        mid = rep.msg_id
        held = self.held.get(mid.source)
        if held is not None and held.pop(mid.seq, None) is not None:
            if not held:
                del self.held[mid.source]
        if mid not in self.pending:
            if rep.position and mid not in self.replies:
                self.cache(rep)  # nobody waits now (a restarted router): a retry finds it
            return False
        self.pending.discard(mid)
        self.cache(rep)
        return True

    def cache(self, rep: Reply) -> None:
        """Keep ``rep`` for duplicates (the oldest go beyond ``reply_cache_max``)."""
        self.replies[rep.msg_id] = rep
        while len(self.replies) > self.config.reply_cache_max:
            self.replies.popitem(last=False)

    def fail_all(self) -> List[MsgId]:
        """Every waiting call, in order, forgotten: the group is lost."""
        out = sorted(self.pending)
        self.pending.clear()
        return out

"""The router's order log: the requests it retains and the primary's announced order.

What a router keeps so that a backup (or a new primary) can catch up: every
request some member may still need, the announcement of each position not yet
acknowledged by every member, and the primary's state digests for those
positions. The log is trimmed to the lowest position every member acknowledged
(``trimmed``); nothing at or below it is ever held again.

A transcript::

    log = OrderLog(config)
    log.retain(req)                      # a request went out to the members
    log.merge(Announcement(..., 1, ...)) # True: position 1 is now ordered
    log.trim(1)                          # every member acknowledged position 1
    log.trimmed                          # 1; position 1's request is forgotten
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ftactors.core.config import CoreConfig
from ftactors.core.messages import Announcement, MsgId, Reply, Request

#: The primary's state digests a router keeps, beyond one per ``digest_every_messages`` positions
#: of ``log_max`` (the most a backup can lag before it is removed); trimmed positions go first.
DIGESTS_MIN = 64


class OrderLog:
    """Retained requests, announced order and the primary's digests, trimmed together.

    Args:
        config: protocol settings (``log_max``, ``digest_every_messages``).
    """

    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.requests: "OrderedDict[MsgId, Request]" = OrderedDict()
        self.order: Dict[int, Announcement] = {}
        self.pos_of: Dict[MsgId, int] = {}
        self.trimmed = 0
        self.highest = 0  # the highest position merged (positions leave the order only when trimmed)
        self._announced_upto = 0  # every position in (trimmed, here] is announced (see announced_upto)
        self.primary_digests: "OrderedDict[int, str]" = OrderedDict()
        # nested reply -> (its calling message, the copy): at most reply_copies_max
        self.copies: "OrderedDict[MsgId, Tuple[MsgId, Reply]]" = OrderedDict()

    # ------------------------------------------------------------- requests

    def retain(self, req: Request) -> None:
        """Keep ``req`` until every member executed it (or it was answered without a position)."""
        self.requests[req.msg_id] = req

    def knows(self, msg_id: MsgId) -> bool:
        """Whether ``msg_id`` is retained or has a known position."""
        return msg_id in self.requests or msg_id in self.pos_of

    def unexecuted(self, floor: int) -> int:
        """How many retained requests some member has not executed yet: those a trim to ``floor``
        would keep. While a replica joins, the router trims nothing (``RouterCore._trim``), and the
        requests it keeps for the joiner below ``floor`` are held by no member.

        Args:
            floor: the lowest position every member acknowledged (``LinkTracker.floor``).

        Returns:
            The retained requests without a position at or below ``floor`` (all of them if
            ``floor`` is not above ``trimmed``).
        """
        if floor <= self.trimmed:
            return len(self.requests)
        started = {self.order[p].msg_id for p in range(self.trimmed + 1, floor + 1) if p in self.order}
        return sum(1 for mid in self.requests if mid not in started and self.pos_of.get(mid, floor + 1) > floor)

    def overfull(self) -> bool:
        """Whether more than ``log_max`` requests, or announced positions, are retained (a backup lags
        too far). With async steps a call takes several positions, so the positions can outgrow the
        requests: a backup holds at most ``log_max`` announcements."""
        return len(self.requests) > self.config.log_max or len(self.order) > self.config.log_max

    def settle(self, rep: Reply) -> None:
        """Record where the request ``rep`` answers stands in the order.

        A reply at a trimmed position is a late duplicate (every member executed it); one
        with a position gives its request that position; one without a position was
        answered without executing (an error), and its request needs no retaining.

        Args:
            rep: the reply the primary sent.
        """
        mid = rep.msg_id
        if rep.position and rep.position <= self.trimmed:
            self.requests.pop(mid, None)
        elif rep.position:
            self.pos_of[mid] = rep.position
        elif mid in self.requests and mid not in self.pos_of:
            del self.requests[mid]

    def adopt_reported(self, requests: Iterable[Request], done: Set[MsgId]) -> None:
        """Retain the requests a member reported in recovery that the log lacks.

        Args:
            requests: a StateReport's requests.
            done: those executed at or below ``trimmed`` by every member (not retained again).
        """
        for req in requests:
            # keep it even if its position is known: it is not trimmed, so a member still needs it
            if req.msg_id not in self.requests and req.msg_id not in done:
                self.requests[req.msg_id] = req

    # ---------------------------------------------------------------- order

    def merge(self, ann: Announcement) -> bool:
        """Take an announcement of the order.

        Returns:
            True if it is new (to relay to the backups); False for a trimmed position, a
            repeat, or an older view's announcement of a position already announced.
        """
        if ann.position <= self.trimmed:
            return False
        old = self.order.get(ann.position)
        if old is not None and (old.view > ann.view or old == ann):
            return False
        if old is not None and old.msg_id != ann.msg_id and self.pos_of.get(old.msg_id) == ann.position:
            # a later view put another message there (the old order was given up): the old one holds no
            # position now; kept, the router's intake took it for known and held it for good (swarm seed
            # 102094, docs/faults.md row 82)
            del self.pos_of[old.msg_id]
        self.order[ann.position] = ann
        self.pos_of[ann.msg_id] = ann.position
        self.highest = max(self.highest, ann.position)
        return True

    def after(self, position: int) -> List[Announcement]:
        """The announcements of the positions above ``position``, in order."""
        return [self.order[p] for p in sorted(self.order) if p > position]

    def announced(self) -> Set[MsgId]:
        """The messages that hold a position in the retained order."""
        return {a.msg_id for a in self.order.values()}

    def announced_upto(self, executed_by_all: int = 0) -> int:
        """The highest position up to which the order is safe: every position in
        (max(``trimmed``, ``executed_by_all``), it] has its announcement here. Amortised O(1)
        (positions leave the order only when trimmed, so the mark only rises).

        Args:
            executed_by_all: a position every member executed (a rebuilt router knows no
                announcement below the order it learnt, and trims nothing while a replica joins).

        Returns:
            That position (the base if the next position is not announced).
        """
        upto = max(self._announced_upto, self.trimmed, executed_by_all)
        while upto + 1 in self.order:
            upto += 1
        self._announced_upto = upto
        return upto

    def lacks_order_upto(self, acked: int) -> bool:
        """Whether some position in (``trimmed``, ``acked``] has no announcement here.

        O(1): the order must hold at least that many entries, ``acked`` among them (exact
        unless a peer or a report announced further ahead).
        """
        return not (acked in self.order and len(self.order) >= acked - self.trimmed)

    def can_replay(self, executed: int, upto: int, own: Set[MsgId]) -> bool:
        """Whether every position in (``executed``, ``upto``] has its announcement here and its
        request here or in ``own`` (what the member holds itself)."""
        for pos in range(executed + 1, upto + 1):
            ann = self.order.get(pos)
            if ann is None or (ann.msg_id not in self.requests and ann.msg_id not in own):
                return False
        return True

    def lost_request_at(self, position: int) -> bool:
        """Whether ``position`` is announced but its request is not retained here."""
        ann = self.order.get(position)
        return ann is not None and ann.msg_id not in self.requests

    def trim(self, floor: int) -> None:
        """Forget every position up to ``floor`` (acknowledged by every member).

        Args:
            floor: the new ``trimmed``; above the current one.
        """
        assert floor > self.trimmed, (floor, self.trimmed)
        for pos in range(self.trimmed + 1, floor + 1):
            ann = self.order.pop(pos, None)
            if ann is not None:
                self.requests.pop(ann.msg_id, None)
        # an async call holds a position per step: forget its position only once the one it
        # holds (its latest step or reply) is trimmed, not with its first step
        for mid in [m for m, p in self.pos_of.items() if p <= floor]:
            self.requests.pop(mid, None)
            del self.pos_of[mid]
        self.trimmed = floor
        for nested in [n for n, (caller, _) in self.copies.items() if caller not in self.pos_of]:
            del self.copies[nested]  # every member executed the calling message
        # every member reported its digest for these positions with the acknowledgement that trimmed them
        while self.primary_digests and next(iter(self.primary_digests)) <= floor:
            self.primary_digests.popitem(last=False)

    # ---------------------------------------------------------- reply copies

    def keep_copy(self, caller: MsgId, rep: Reply) -> bool:
        """Keep a nested reply copy the primary pushed, for a replica that joins or is repaired by
        state transfer later and replays ``caller`` from the retained log (claim 48). Kept while
        ``caller`` holds a position above ``trimmed``; at most ``reply_copies_max``, the oldest
        dropped first.

        Args:
            caller: the message whose execution made the nested call.
            rep: the reply copy.

        Returns:
            False if the oldest copy was dropped to make room (a joiner that needs it pulls it).
        """
        if caller not in self.pos_of:
            return True  # every member executed it already (a late answer): nobody replays it
        self.copies[rep.msg_id] = (caller, rep)
        if len(self.copies) > self.config.reply_copies_max:
            self.copies.popitem(last=False)
            return False
        return True

    def copies_after(self, position: int) -> List[Reply]:
        """The kept copies whose calling message holds a position above ``position`` (a
        checkpoint's): those a replica restored from that checkpoint replays, oldest first."""
        return [rep for caller, rep in self.copies.values() if self.pos_of.get(caller, 0) > position]

    # -------------------------------------------------------------- digests

    def record_digests(self, digests: Tuple[Tuple[int, str], ...]) -> None:
        """Keep the primary's digests until every member passed their positions (see ``trim``).

        A lagging backup's digest must still find the primary's; the cap only guards
        against a position never trimmed.
        """
        for pos, digest in digests:
            self.primary_digests[pos] = digest
        cap = DIGESTS_MIN + self.config.log_max // max(1, self.config.digest_every_messages)
        while len(self.primary_digests) > cap:
            self.primary_digests.popitem(last=False)

    def divergence(self, digests: Tuple[Tuple[int, str], ...]) -> Optional[int]:
        """The first position whose digest differs from the primary's, or None."""
        for pos, digest in digests:
            ref = self.primary_digests.get(pos)
            if ref is not None and ref != digest:
                return pos
        return None

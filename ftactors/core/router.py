"""The group router as a pure state machine: the multicast endpoint of one group.

Every message to a group enters through its router, which multicasts it to all
replicas (claims 6, 36): request copies to the primary and the backups, and the
primary's announcements, piggybacked on the next Deliver that goes to each
backup anyway (claims 42-45), or in a null message after ``null_message_ticks``
of silence (claim 46). Senders never learn how many replicas a group has
(claim 37). The router releases each reply to its source once (exactly once),
keeps what backups have not acknowledged (bounded by ``log_max``), detects
failures, changes views, runs recovery from the replicas' reports (claim 65)
and admits new replicas by state transfer.

Host loop (the Ray router actor or the simulator)::

    core.submit(request)          # a client or peer group sent a request
    core.on_delivered(answer)     # a replica answered a Deliver
    core.on_pong(replica) / core.on_failure(replica) / core.tick(now)
    ready = core.ready()          # sends, released replies, pings, queries, spawns
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from ftactors.core.dedup import forget_acknowledged
from ftactors.core.config import CoreConfig
from ftactors.core.errors import AcknowledgedDuplicateError, GroupOverloadedError, LocalProtocolError, RemoteProtocolError, StaleViewError
from ftactors.core.messages import (
    Announcement,
    Checkpoint,
    Deliver,
    Delivered,
    MsgId,
    NewView,
    Reply,
    Request,
    StateReport,
)


class Phase(str, enum.Enum):
    """What the router is doing."""

    NORMAL = "normal"
    RECOVERING = "recovering"  # collecting state reports before a new primary starts
    LOST = "lost"  # no replica left


#: The primary's state digests a router keeps, beyond one per ``digest_every_messages`` positions
#: of ``log_max`` (the most a backup can lag before it is removed); trimmed positions go first.
DIGESTS_MIN = 64

#: Rounds of state queries a recovery makes while no member has reported, before giving up.
RECOVERY_ROUNDS_MAX = 10

#: (phase, event) -> new phase. Anything else is illegal and raises.
TRANSITIONS: Dict[Tuple[Phase, str], Phase] = {
    (Phase.NORMAL, "primary_failed"): Phase.RECOVERING,
    (Phase.NORMAL, "backup_failed"): Phase.NORMAL,
    (Phase.RECOVERING, "primary_failed"): Phase.RECOVERING,
    (Phase.RECOVERING, "backup_failed"): Phase.RECOVERING,
    (Phase.RECOVERING, "recovered"): Phase.NORMAL,
    (Phase.NORMAL, "all_failed"): Phase.LOST,
    (Phase.RECOVERING, "all_failed"): Phase.LOST,
}


@dataclass(slots=True)
class _Link:
    """The router's view of one replica."""

    requests: List[Request] = field(default_factory=list)
    announcements: List[Announcement] = field(default_factory=list)
    anns_since: Optional[int] = None
    reqs_since: Optional[int] = None
    checkpoint: Optional[Checkpoint] = None
    new_view: Optional[NewView] = None
    join: bool = False
    snapshot_wanted: bool = False
    inflight: int = 0
    acked: int = 0
    last_heard: int = 0
    last_ping: int = 0
    last_sent: int = 0
    progress_tick: int = 0  # when ``acked`` last advanced
    suspended: int = 0  # messages the replica holds suspended (async methods), as it last said


@dataclass(frozen=True, slots=True)
class RouterReady:
    """Everything the host must do now, in this order.

    Args:
        sends: (replica, Deliver) pairs to send.
        released: replies to hand to the waiting sources (each exactly once).
        failed: (msg_id, reason) for waiting sources whose request cannot complete.
        pings: replicas to ping (answer with ``on_pong``).
        queries: replicas to ask for a StateReport (answer with ``on_state_report``).
        spawns: new replica ids to create (answer with ``replica_started``).
        retired: replicas removed from the view (the host may stop them).
    """

    sends: Tuple[Tuple[str, Deliver], ...] = ()
    released: Tuple[Reply, ...] = ()
    failed: Tuple[Tuple[MsgId, str], ...] = ()
    pings: Tuple[str, ...] = ()
    queries: Tuple[str, ...] = ()
    spawns: Tuple[str, ...] = ()
    retired: Tuple[str, ...] = ()


class RouterCore:
    """The protocol state machine of a group's router.

    Args:
        group: the group name.
        config: protocol settings.
        members: the initial replicas in rank order (primary first).
        view: the initial view number.
        next_replica_index: numbering of replicas spawned later.
    """

    def __init__(self, group: str, config: CoreConfig, members: Tuple[str, ...], view: int = 1,
                 next_replica_index: Optional[int] = None) -> None:
        if not members:
            raise LocalProtocolError("a group needs at least one replica")
        self.group = group
        self.config = config
        self.view = view
        self.members: List[str] = list(members)
        self.primary_since = view
        self.phase = Phase.NORMAL
        self.now = 0
        self.requests: "OrderedDict[MsgId, Request]" = OrderedDict()
        self.order: Dict[int, Announcement] = {}
        self.pos_of: Dict[MsgId, int] = {}
        self.pending: Set[MsgId] = set()
        self.replies: "OrderedDict[MsgId, Reply]" = OrderedDict()
        self.reply_floor: "OrderedDict[str, int]" = OrderedDict()  # source -> its last ack_below
        self.trimmed = 0
        self.links: Dict[str, _Link] = {m: _Link(last_heard=0) for m in members}
        self.joining: Dict[str, int] = {}  # replica -> tick the snapshot was asked for
        self.spawning: Set[str] = set()  # asked for with ``spawns``, not yet started
        self.resync: Set[str] = set()  # members whose state diverged: state transfer in place
        # per-source FIFO: a source's requests are multicast in its sequence order, as a
        # sync Ray actor runs one caller's calls (the transport may reorder them)
        self.expect: Dict[str, int] = {}
        self.held: Dict[str, Dict[int, Tuple[Request, int]]] = {}
        # a rebuilt router does not know where each source stands, nor holds every request and
        # announcement past ``trimmed``; one that never restarted saw all of them pass
        self.rebuilt_at = 0  # when a restarted router was rebuilt (its grace for late retries)
        self.restarted = False
        self.reports: Dict[str, StateReport] = {}
        self.recovery_started = 0
        self._recovery_rounds = 0
        self.source_views: Dict[str, int] = {}
        self.primary_digests: "OrderedDict[int, str]" = OrderedDict()
        self.diverged: List[Tuple[str, int]] = []
        self.peer_groups: Set[str] = set()
        self.rebuilt_primary: Optional[Tuple[str, int]] = None  # see ``rebuilt``
        self.gap_queried: Optional[int] = None  # tick a rebuilt router last asked its primary for lost order
        self._next_index = next_replica_index if next_replica_index is not None else len(members)
        self._released: List[Reply] = []
        self._failed: List[Tuple[MsgId, str]] = []
        self._queries: List[str] = []
        self._spawns: List[str] = []
        self._retired: List[str] = []
        self.counts: Dict[str, int] = {
            "requests": 0, "replies": 0, "copies": 0, "duplicates": 0, "announcements_piggybacked": 0,
            "announcements_in_null": 0, "null_messages": 0, "heartbeats": 0, "checkpoints": 0,
            "view_changes": 0, "failovers": 0, "recovery_messages": 0, "fenced": 0, "joins": 0,
            "divergences": 0, "delivers": 0, "resyncs": 0, "polls": 0, "reply_copies": 0,
            "announcements_carried_back": 0, "order_gap_queries": 0,
        }
        for m in members:
            self.links[m].new_view = NewView(view, tuple(members))

    @classmethod
    def rebuilt(cls, group: str, config: CoreConfig, members: Tuple[str, ...], view: int,
                next_replica_index: int, now: int = 0) -> "RouterCore":
        """A router restarted after a crash: it knows only what the replicas report.

        It starts in recovery: it asks every member for a StateReport, merges
        them, and installs a new view led by the most advanced member.

        Args:
            group: the group name.
            config: protocol settings.
            members: the members of the highest view the surviving replicas report,
                alive ones only, in rank order.
            view: that view's number.
            next_replica_index: numbering of replicas spawned from now on (above
                any used before the crash).
            now: the current tick.
        """
        core = cls(group, config, members, view=view, next_replica_index=next_replica_index)
        core.now = now
        for link in core.links.values():
            link.new_view = None
            link.last_heard = now
        core.primary_since = view + 1  # no output is accepted until recovery installs a view
        # ...except from the primary of ``view``: nothing deposed it, and it keeps executing
        # what it already holds; its announcements must not be lost meanwhile
        core.rebuilt_primary = (members[0], view)
        core.restarted = True
        core.rebuilt_at = now
        core._transition("primary_failed")
        core._start_recovery(primary_lost=False)
        return core

    # --------------------------------------------------------------- queries

    @property
    def primary(self) -> Optional[str]:
        """The current primary, or None if the group is lost."""
        return self.members[0] if self.members else None

    def lookup(self, msg_id: MsgId) -> Tuple[str, Optional[Reply]]:
        """Where a request stands: ("released", reply), ("pending", None) or ("unknown", None)."""
        rep = self.replies.get(msg_id)
        if rep is not None:
            return "released", rep
        if msg_id in self.pending:
            return "pending", None
        return "unknown", None

    # ---------------------------------------------------------------- inputs

    def submit(self, req: Request, copy: bool = False) -> Optional[Reply]:
        """A request arrives from a client or a peer group.

        ``copy`` marks a backup of the calling group fetching the reply copy of a
        nested request its primary sends (claim 48): counted as a copy, not a duplicate,
        and never fenced. A lagging backup may still be in a view its group has left;
        its fetch cannot make anything run twice (the request is the one its primary
        sends, under the same MsgId, and the replicas execute a MsgId once), and
        refusing it would leave that backup unable to finish the calling message.

        Returns:
            The cached reply if this is a duplicate of a released request; else None
            (wait for the reply in ``ready().released``).

        Raises:
            RemoteProtocolError: the request is for another group.
            AcknowledgedDuplicateError: a duplicate whose reply the source already holds.
            StaleViewError: a nested request (not a copy fetch) from a deposed primary of the
                source group.
            GroupOverloadedError: ``inflight_max`` requests are already waiting.
        """
        if req.group != self.group:
            raise RemoteProtocolError(f"request for {req.group!r} sent to router of {self.group!r}")
        if not copy:
            self._check_source_view(req)
        self._forget_replies(req.msg_id.source, req.ack_below)
        for ann in req.peer_announcements:
            if ann.group == self.group:
                self.counts["announcements_carried_back"] += 1
                self._merge_announcement(ann)
        mid = req.msg_id
        if mid in self.replies:
            self.counts["reply_copies" if copy else "duplicates"] += 1
            return self.replies[mid]
        if mid.seq < self.reply_floor.get(mid.source, 1):
            self.counts["duplicates"] += 1
            raise AcknowledgedDuplicateError(f"{mid}: its source acknowledged the reply (ack_below "
                                             f"{self.reply_floor[mid.source]})")
        if mid in self.pending or mid in self.requests or mid.seq in self.held.get(mid.source, ()):
            self.counts["reply_copies" if copy else "duplicates"] += 1
            if req.wants_reply and mid not in self.pending:
                self.pending.add(mid)  # known from a StateReport (restarted router): now someone waits
            if req.wants_reply and self.restarted and mid.seq not in self.held.get(mid.source, ()):
                self._ask_primary_again(req)  # its reply may have gone to the incarnation that died
            return None
        if self.phase == Phase.LOST:
            self._failed.append((mid, "all replicas of the group failed"))
            return None
        if len(self.pending) >= self.config.inflight_max:
            raise GroupOverloadedError(f"{self.group}: {self.config.inflight_max} requests in flight")
        if copy or req.source_view is not None:
            self._accept(req)  # nested sources number calls per execution: no FIFO to keep
        else:
            self._in_order(req)
        return None

    def _forget_replies(self, source: str, ack_below: int) -> None:
        """The source holds every reply below ``ack_below``: a retry can no longer ask for them."""
        floor = self.reply_floor.get(source, 1)
        if ack_below <= floor:
            return
        forget_acknowledged(self.replies, source, floor, ack_below)
        self.reply_floor.pop(source, None)
        self.reply_floor[source] = ack_below  # most recent last: the oldest sources are forgotten first
        while len(self.reply_floor) > self.config.inflight_max:
            self.reply_floor.popitem(last=False)

    def _in_order(self, req: Request) -> None:
        """Accept a client's request in its sequence order; hold it while an earlier one is missing."""
        src, seq = req.msg_id.source, req.msg_id.seq
        expect = self.expect.get(src)
        if expect is None:
            # a source new to this router (a restarted one, or one it forgot): its requests below
            # ``ack_below`` are settled; those from there on may still come (Ray's retries)
            expect = self._skip_known(src, max(1, req.ack_below))
        if seq > expect:
            self.held.setdefault(src, {})[seq] = (req, self.now)
            if req.wants_reply:
                self.pending.add(req.msg_id)
            return
        self._accept(req)
        if seq == expect:
            self._drain(src, seq + 1)

    def _skip_known(self, src: str, seq: int) -> int:
        """The first sequence number from ``seq`` on that this router does not already hold
        (from the replicas' reports, or released)."""
        while MsgId(src, seq) in self.requests or MsgId(src, seq) in self.replies or MsgId(src, seq) in self.pos_of:
            seq += 1
        return seq

    def _drain(self, src: str, expect: int) -> None:
        held = self.held.get(src, {})
        expect = self._skip_known(src, expect)
        while expect in held:
            self._accept(held.pop(expect)[0])
            expect = self._skip_known(src, expect + 1)
        self.expect.pop(src, None)
        self.expect[src] = expect  # most recent last: the oldest sources are forgotten first
        while len(self.expect) > self.config.inflight_max:
            del self.expect[next(iter(self.expect))]
        if not held:
            self.held.pop(src, None)

    def _release_gaps(self) -> None:
        """A missing request (its caller died, or the transport lost it) holds the rest at most
        ``sequence_gap_ticks``."""
        for src in list(self.held):
            held = self.held[src]
            if held and min(t + self._gap_ticks(t) for _, t in held.values()) <= self.now:
                self._drain(src, min(held))

    def _gap_ticks(self, arrived: int) -> int:
        """How long a request that arrived at tick ``arrived`` waits for an earlier one of its source:
        ``sequence_gap_ticks``; for a restarted router's first ``failure_timeout_ticks``, that long
        instead: Ray resubmits the calls the dead router had taken once the new one is up, behind
        the calls made meanwhile, and one caller's calls must still run in its order."""
        if self.restarted and arrived - self.rebuilt_at <= self.config.failure_timeout_ticks:
            return max(self.config.sequence_gap_ticks, self.config.failure_timeout_ticks)
        return self.config.sequence_gap_ticks

    def _accept(self, req: Request) -> None:
        mid = req.msg_id
        self.counts["requests"] += 1
        self.requests[mid] = req
        if req.wants_reply:
            self.pending.add(mid)
        for link in self.links.values():
            if not link.requests:
                link.reqs_since = self.now
            link.requests.append(req)

    def on_delivered(self, d: Delivered) -> None:
        """A replica answered a Deliver."""
        link = self.links.get(d.replica)
        if link is None:
            self.counts["fenced"] += 1
            return
        link.inflight = max(0, link.inflight - 1)
        link.last_heard = self.now
        link.suspended = d.suspended
        if d.acked_position > link.acked:
            link.progress_tick = self.now
        link.acked = max(link.acked, d.acked_position)
        from_primary = False
        if d.replica == self.primary and self.phase == Phase.NORMAL and self.primary_since <= d.view <= self.view:
            self._from_primary(d)
            from_primary = True
        elif self.phase == Phase.RECOVERING and self.rebuilt_primary == (d.replica, d.view) and d.view == self.view:
            self._take_order_and_replies(d)  # the undeposed primary of a rebuilt router
        elif d.replies or d.announcements:
            self.counts["fenced"] += 1  # a deposed primary's output: fenced off
        self._check_digests(d)
        self._trim()
        if from_primary:
            self._check_order_gap(link.acked)

    def on_pong(self, replica: str) -> None:
        """A replica answered a ping: it is alive."""
        link = self.links.get(replica)
        if link is not None:
            link.last_heard = self.now

    def on_failure(self, replica: str) -> None:
        """The host saw ``replica`` die (for instance Ray's ActorDiedError)."""
        if replica in self.joining:
            del self.joining[replica]
        if replica in self.links:
            self._remove_members({replica}, "failure")

    def on_state_report(self, rep: StateReport) -> None:
        """A surviving replica reports what it holds (recovery), or the primary answers a
        rebuilt router's question about order it lost (see ``_check_order_gap``)."""
        if self.phase == Phase.NORMAL and rep.replica == self.primary and self.gap_queried is not None:
            self._learn_lost_order(rep)
            return
        if self.phase != Phase.RECOVERING or rep.replica not in self.links:
            return
        self.reports[rep.replica] = rep
        self.links[rep.replica].last_heard = self.now
        self._maybe_finish_recovery()

    def on_peer_announcements(self, anns: Tuple[Announcement, ...]) -> None:
        """Announcements of this group obtained from a peer group's replicas (claims 65, 69)."""
        for ann in anns:
            if ann.group == self.group:
                self._merge_announcement(ann)

    def replica_started(self, replica: str) -> None:
        """A replica asked for with ``spawns`` (or a diverged one) is ready to join."""
        if replica in self.links:
            raise LocalProtocolError(f"{replica} is already a member")
        self.spawning.discard(replica)
        self.joining[replica] = self.now
        if self.primary is not None:
            self.links[self.primary].snapshot_wanted = True

    def spawn_failed(self, replica: str) -> None:
        """The host could not create a replica asked for with ``spawns``: ask for another."""
        self.spawning.discard(replica)
        self._want_replicas()

    def tick(self, now: int) -> None:
        """Advance time: failure detection and recovery timeouts."""
        cfg = self.config
        gap = now - self.now
        self.now = now
        if gap > cfg.heartbeat_ticks:
            # the router itself did not run (starved, paused): silence meanwhile proves nothing
            for link in self.links.values():
                link.last_heard += gap
        dead = {r for r, l in self.links.items() if now - l.last_heard > cfg.failure_timeout_ticks}
        if dead and dead == set(self.links):
            # every member silent at once points at the router's side; keep the freshest
            dead.discard(max(self.links, key=lambda r: (self.links[r].last_heard, r == self.primary)))
        if dead:
            self._remove_members(dead, "timeout")
        if self.held:
            self._release_gaps()
        if self.phase == Phase.RECOVERING and now - self.recovery_started > cfg.recovery_timeout_ticks:
            self._recovery_timed_out()
        self._replace_stuck_backups()

    def _recovery_timed_out(self) -> None:
        """No report from some members within ``recovery_timeout_ticks``.

        If others reported, the silent ones are dropped and the reporters go on.
        If nobody reported, the survivors are more likely slow (a CPU storm while
        a node is lost or added) than all dead: ask again, up to
        ``RECOVERY_ROUNDS_MAX`` times, before giving the group up. Dead members
        are removed meanwhile by the failure detector or by their hosts' errors.
        """
        missing = {r for r in self.links if r not in self.reports}
        if missing and len(missing) == len(self.links) and self._recovery_rounds < RECOVERY_ROUNDS_MAX:
            self._recovery_rounds += 1
            self.recovery_started = self.now
            self._query(sorted(missing))
            return
        if missing:
            self._remove_members(missing, "no state report")
        self._maybe_finish_recovery(force=True)

    def _replace_stuck_backups(self) -> None:
        """Repair, by state transfer, a backup blocked on a request nobody can send it.

        The next position it needs is announced, the router does not hold that
        request (it was lost with a crashed router), and it has not advanced for
        ``2 * failure_timeout_ticks`` although it was sent everything else.
        """
        if self.phase != Phase.NORMAL or len(self.members) < 2:
            return
        patience = 2 * self.config.failure_timeout_ticks
        stuck = set()
        for m in self.members[1:]:
            link = self.links[m]
            ann = self.order.get(link.acked + 1)
            if ann is None or ann.msg_id in self.requests or link.requests or link.announcements or link.inflight:
                continue
            if self.now - max(link.progress_tick, self.recovery_started) > patience:
                stuck.add(m)
        if stuck:
            self.counts["resyncs"] += len(stuck)
            self._remove_members(stuck, "blocked on a request that was lost")

    # --------------------------------------------------------------- outputs

    def ready(self) -> RouterReady:
        """Collect what the host must do now; clears it from the core."""
        sends = self._sends() if self.phase == Phase.NORMAL else []
        pings = self._pings()
        out = RouterReady(
            sends=tuple(sends), released=tuple(self._released), failed=tuple(self._failed),
            pings=tuple(pings), queries=tuple(self._queries), spawns=tuple(self._spawns),
            retired=tuple(self._retired),
        )
        self._released, self._failed, self._queries, self._spawns, self._retired = [], [], [], [], []
        return out

    def describe(self) -> Dict[str, object]:
        """A plain summary for observability."""
        return {
            "group": self.group, "view": self.view, "phase": self.phase.value, "members": list(self.members),
            "primary": self.primary, "joining": sorted(set(self.joining) | self.spawning),
            "acked": {r: l.acked for r, l in self.links.items()}, "pending": len(self.pending),
            "retained_requests": len(self.requests), "retained_order": len(self.order),
            "retained_replies": len(self.replies),
            "diverged": list(self.diverged), "counts": dict(self.counts),
        }

    # ------------------------------------------------------------- internals

    def _transition(self, event: str) -> None:
        new = TRANSITIONS.get((self.phase, event))
        if new is None:
            raise LocalProtocolError(f"router {self.group}: illegal {event} in phase {self.phase.value}")
        self.phase = new

    def _check_source_view(self, req: Request) -> None:
        if req.source_view is None:
            return
        src_group = req.msg_id.source.split("|", 1)[0]
        self.peer_groups.add(src_group)
        seen = self.source_views.get(src_group, 0)
        if req.source_view < seen:
            self.counts["fenced"] += 1
            raise StaleViewError(f"request from view {req.source_view} of {src_group}, which is at {seen}")
        self.source_views[src_group] = req.source_view

    def _merge_announcement(self, ann: Announcement) -> None:
        if ann.position <= self.trimmed:
            return
        old = self.order.get(ann.position)
        if old is not None and (old.view > ann.view or old == ann):
            return
        self.order[ann.position] = ann
        self.pos_of[ann.msg_id] = ann.position
        for name, link in self.links.items():
            if name != self.primary or self.phase != Phase.NORMAL:
                if link.anns_since is None:
                    link.anns_since = self.now
                link.announcements.append(ann)

    def _from_primary(self, d: Delivered) -> None:
        self._take_order_and_replies(d)
        if d.checkpoint is not None:
            self.counts["checkpoints"] += 1
            self._relay_checkpoint(d.checkpoint)
        for pos, digest in d.digests:
            self.primary_digests[pos] = digest
        # kept until every member passed the position (see ``_trim``): a lagging backup's digest
        # must still find the primary's; the cap only guards against a position never trimmed
        cap = DIGESTS_MIN + self.config.log_max // max(1, self.config.digest_every_messages)
        while len(self.primary_digests) > cap:
            self.primary_digests.popitem(last=False)

    def _take_order_and_replies(self, d: Delivered) -> None:
        """Merge the primary's announcements, then release its replies (in that order: a reply is
        released only once the router holds the announcement that orders it). A reply carries
        its own announcement: a cached reply answering a duplicate brings it again, when the
        Delivered that first carried it went to a router incarnation that died."""
        for ann in d.announcements + tuple(a for rep in d.replies for a in rep.announcements):
            if ann.group != self.group:
                raise RemoteProtocolError(f"announcement of {ann.group!r} from primary of {self.group!r}")
            self._merge_announcement(ann)
        for rep in d.replies:
            self._release(rep)

    def _check_order_gap(self, acked: int) -> None:
        """A rebuilt router: the primary executed positions it holds no announcement for.

        Output the primary made after this router's state query went to the incarnation
        that died (a long call running across the restart): without the announcement the
        backups stall at that position, and a later failover gives the order up, moving
        acknowledged calls. Ask the primary for its StateReport (its recent history holds
        the announcement), at most once per ``heartbeat_ticks``.
        """
        if not self.restarted or acked <= self.trimmed or self.primary is None:
            return
        if self.gap_queried is not None and self.now - self.gap_queried < self.config.heartbeat_ticks:
            return
        # every position in (trimmed, acked] held: at least that many entries, acked among them
        # (O(1); the order holds nothing beyond what the primary announced, so this is exact
        # unless a peer or a report announced further ahead)
        if acked in self.order and len(self.order) >= acked - self.trimmed:
            return
        self.gap_queried = self.now
        self.counts["order_gap_queries"] += 1
        self._query([self.primary])

    def _ask_primary_again(self, req: Request) -> None:
        """A rebuilt router: the caller of ``req`` retries, and its reply may have gone to the
        incarnation that died. The primary answers a duplicate of an executed request with
        its cached reply, and ignores one it holds or executes (nothing runs twice)."""
        link = self.links.get(self.primary) if self.primary is not None else None
        if link is None or any(r.msg_id == req.msg_id for r in link.requests):
            return
        if not link.requests:
            link.reqs_since = self.now
        link.requests.append(req)

    def _learn_lost_order(self, rep: StateReport) -> None:
        """Merge the primary's announcements; relay the requests they order that this router
        does not hold to the backups; re-send to the primary those whose caller still waits
        (it answers a duplicate with the cached reply)."""
        self.gap_queried = None
        for ann in rep.announcements:
            if ann.group == self.group:
                self._merge_announcement(ann)
        announced = {a.msg_id for a in self.order.values()}
        for req in rep.requests:
            mid = req.msg_id
            if mid in announced and mid not in self.requests:
                self.requests[mid] = req
                for name, link in self.links.items():
                    if name != rep.replica:
                        if not link.requests:
                            link.reqs_since = self.now
                        link.requests.append(req)
            if mid in self.pending and mid in self.pos_of:
                self._ask_primary_again(req)

    def _release(self, rep: Reply) -> None:
        mid = rep.msg_id
        held = self.held.get(mid.source)
        if held is not None and held.pop(mid.seq, None) is not None:
            # answered while it waited for an earlier call of its source (a restarted router's
            # primary held it already): accepting it later would release it a second time
            if not held:
                del self.held[mid.source]
        if rep.position and rep.position <= self.trimmed:
            self.requests.pop(mid, None)  # a late duplicate: every member executed it already
        elif rep.position:
            self.pos_of[mid] = rep.position
        elif mid in self.requests and mid not in self.pos_of:
            del self.requests[mid]  # answered without executing (an error): nothing to retain
        if mid not in self.pending:
            if rep.position and mid not in self.replies:
                self._cache_reply(rep)  # nobody waits now (a restarted router): a retry finds it
            return
        self.pending.discard(mid)
        self.counts["replies"] += 1
        self._released.append(rep)
        self._cache_reply(rep)

    def _cache_reply(self, rep: Reply) -> None:
        self.replies[rep.msg_id] = rep
        while len(self.replies) > self.config.reply_cache_max:
            self.replies.popitem(last=False)

    def _relay_checkpoint(self, cp: Checkpoint) -> None:
        for name, link in self.links.items():
            if name != self.primary and self.config.style == "passive":
                link.checkpoint = cp
        for replica in sorted(self.resync):
            self._transfer_state(replica, cp)
        self.resync.clear()
        if self.joining and cp.position < self.trimmed:
            # older than the retained log (a promoted backup still replaying): the joiner
            # could not get the positions in between; ask for a newer snapshot
            self.links[self.members[0]].snapshot_wanted = True
            return
        for replica in list(self.joining):
            self._admit(replica, cp)

    def _admit(self, replica: str, cp: Checkpoint) -> None:
        """Install a view with ``replica`` as the last backup, sending it ``cp`` plus the log."""
        del self.joining[replica]
        self.counts["joins"] += 1
        self._new_view(self.members + [replica])
        link = _Link(last_heard=self.now, acked=cp.position)
        link.new_view, link.join, link.checkpoint = NewView(self.view, tuple(self.members)), True, cp
        link.requests = list(self.requests.values())
        link.announcements = [self.order[p] for p in sorted(self.order) if p > cp.position]
        link.anns_since = self.now if link.announcements else None
        self.links[replica] = link

    def _transfer_state(self, replica: str, cp: Checkpoint) -> None:
        """Send a member the checkpoint plus the retained log (it restores, then catches up)."""
        link = self.links.get(replica)
        if link is None or replica == self.primary or cp.position < self.trimmed:
            return
        link.new_view, link.join, link.checkpoint = NewView(self.view, tuple(self.members)), True, cp
        link.requests = list(self.requests.values())
        link.announcements = [self.order[p] for p in sorted(self.order) if p > cp.position]
        link.anns_since = self.now if link.announcements else None
        link.acked = cp.position
        self.counts["resyncs"] += 1

    def _check_digests(self, d: Delivered) -> None:
        if d.replica == self.primary:
            return
        for pos, digest in d.digests:
            ref = self.primary_digests.get(pos)
            if ref is not None and ref != digest:
                self.counts["divergences"] += 1
                self.diverged.append((d.replica, pos))
                del self.diverged[:-64]
                self.resync.add(d.replica)  # repaired in place by state transfer, no view change
                if self.primary is not None:
                    self.links[self.primary].snapshot_wanted = True
                return

    def _trim(self) -> None:
        """Forget what every member has acknowledged (and no join still needs)."""
        if not self.links or self.phase != Phase.NORMAL:
            return
        floor = min(link.acked for link in self.links.values())
        if self.joining:
            floor = min(floor, self.trimmed)
        if floor <= self.trimmed:
            self._check_lag()
            return
        for pos in range(self.trimmed + 1, floor + 1):
            ann = self.order.pop(pos, None)
            if ann is not None:
                self.requests.pop(ann.msg_id, None)
                self.pos_of.pop(ann.msg_id, None)
        for mid in [m for m, p in self.pos_of.items() if p <= floor]:
            self.requests.pop(mid, None)
            del self.pos_of[mid]
        self.trimmed = floor
        # every member reported its digest for these positions with the acknowledgement that trimmed them
        while self.primary_digests and next(iter(self.primary_digests)) <= floor:
            self.primary_digests.popitem(last=False)
        self._check_lag()

    def _check_lag(self) -> None:
        if len(self.requests) <= self.config.log_max or len(self.members) < 2:
            return
        slowest = min(self.members[1:], key=lambda r: self.links[r].acked)
        self._remove_members({slowest}, "lagging beyond log_max")

    def _remove_members(self, gone: Set[str], why: str) -> None:
        gone = {g for g in gone if g in self.links}
        if not gone:
            return
        primary_lost = self.primary in gone
        for g in gone:
            del self.links[g]
            self._retired.append(g)
        survivors = [m for m in self.members if m not in gone]
        if not survivors:
            self._transition("all_failed")
            self.members = []
            for mid in sorted(self.pending):
                self._failed.append((mid, f"all replicas of {self.group} failed ({why})"))
            self.pending.clear()
            return
        if primary_lost or self.phase == Phase.RECOVERING:
            self._transition("primary_failed" if primary_lost else "backup_failed")
            self.members = survivors
            self._start_recovery(primary_lost)
        else:
            self._transition("backup_failed")
            self._new_view(survivors)
        self._want_replicas()

    def _start_recovery(self, primary_lost: bool) -> None:
        if primary_lost:
            self.counts["failovers"] += 1
        self.recovery_started = self.now
        self._recovery_rounds = 0
        self.reports = {}
        if not self.restarted and self.config.style == "semi-active" and not self.config.query_on_failover:
            # every request and announcement a survivor could hold passed through this router,
            # and a survivor's progress is at least what it acknowledged: nothing to ask for
            self._maybe_finish_recovery(force=True)
            return
        self._query(self.members)

    def _query(self, members: List[str]) -> None:
        """Ask ``members`` for their StateReports (recovery messages)."""
        for m in members:
            self._queries.append(m)
            self.counts["recovery_messages"] += 1

    def _maybe_finish_recovery(self, force: bool = False) -> None:
        if self.phase != Phase.RECOVERING:
            return
        if not force and any(m not in self.reports for m in self.members):
            return
        # every member executed what is at or below ``trimmed``: a report's recent history
        # repeats it, and retaining it again would re-grow the log at each recovery
        done = {a.msg_id for rep in self.reports.values() for a in rep.announcements if a.position <= self.trimmed}
        for rep in self.reports.values():
            for req in rep.requests:
                # keep it even if its position is known: it is not trimmed, so a member still needs it
                if req.msg_id not in self.requests and req.msg_id not in done:
                    self.requests[req.msg_id] = req
            for ann in rep.announcements:
                self._merge_announcement(ann)
        executed = {m: max(self.links[m].acked, self.reports[m].executed_position if m in self.reports else 0)
                    for m in self.members}
        # the most advanced survivor leads (it holds the longest prefix); ties by rank
        ranked = sorted(self.members, key=lambda m: (-executed[m], self.members.index(m)))
        undeposed = self.rebuilt_primary[0] if self.rebuilt_primary is not None else None
        if undeposed in ranked and ranked[0] != undeposed:
            # a primary is never made a backup (no replica accepts that view). Behind its backups
            # it is replaying an earlier primary's order (a long call): it keeps the lead if the
            # order it lacks is here; else it leaves the view and the most advanced backup leads
            ranked.remove(undeposed)
            if self._can_catch_up(undeposed, executed[undeposed], executed[ranked[0]]):
                ranked.insert(0, undeposed)
            else:
                del self.links[undeposed]
                self._retired.append(undeposed)
                self.counts["resyncs"] += 1
        stuck = {m for m in ranked[1:] if not self._can_catch_up(m, executed[m], executed[ranked[0]])}
        replenish = bool(stuck) or len(ranked) < len(self.members)
        if stuck:  # the order it lacks is gone (a restarted router): repair it by state transfer
            ranked = [m for m in ranked if m not in stuck]
            for m in sorted(stuck):
                del self.links[m]
                self._retired.append(m)
                self.counts["resyncs"] += 1
        self._transition("recovered")
        self.primary_since = self.view + 1
        if self.rebuilt_primary is not None and self.rebuilt_primary[0] == ranked[0]:
            # a restarted router keeps the undeposed primary: its output of the old view is its own
            self.primary_since = self.rebuilt_primary[1]
        self.rebuilt_primary = None
        self._new_view(ranked)
        for m in self.members:
            link = self.links[m]
            link.acked = executed[m]
            link.inflight = 0
            link.requests = list(self.requests.values())
            link.announcements = [self.order[p] for p in sorted(self.order) if p > executed[m]]
            link.anns_since = self.now if link.announcements else None
        self.reports = {}
        if replenish:
            self._want_replicas()
        if self.joining:
            self.links[self.members[0]].snapshot_wanted = True

    def _can_catch_up(self, member: str, executed: int, upto: int) -> bool:
        """Whether the router holds, for every position ``member`` lacks up to ``upto``, the
        announcement and the request (or the member holds the request itself)."""
        held = self.reports.get(member)
        own = {r.msg_id for r in held.requests} if held is not None else set()
        for pos in range(executed + 1, upto + 1):
            ann = self.order.get(pos)
            if ann is None or (ann.msg_id not in self.requests and ann.msg_id not in own):
                return False
        return True

    def _new_view(self, members: List[str]) -> None:
        self.view += 1
        self.counts["view_changes"] += 1
        self.members = list(members)
        nv = NewView(self.view, tuple(members))
        for m in members:
            if m in self.links:
                self.links[m].new_view = nv

    def _want_replicas(self) -> None:
        have = len(self.members) + len(self.joining) + len(self.spawning)
        while have < self.config.min_replicas and self.phase != Phase.LOST:
            rid = f"{self.group}-r{self._next_index}"
            self._next_index += 1
            self._spawns.append(rid)
            self.spawning.add(rid)
            have += 1

    def _sends(self) -> List[Tuple[str, Deliver]]:
        out = []
        for name in self.members:
            link = self.links[name]
            limit = self.config.primary_inflight_max if name == self.primary else self.config.backup_inflight_max
            if link.inflight >= limit + (1 if name == self.primary and link.suspended else 0):  # see _build
                continue
            msg = self._build(name, link)
            if msg is not None:
                link.inflight += 1
                link.last_sent = self.now
                self.counts["delivers"] += 1
                out.append((name, msg))
        return out

    def _build(self, name: str, link: _Link) -> Optional[Deliver]:
        cfg = self.config
        is_primary = name == self.primary
        reqs = link.requests[: cfg.batch_max]
        anns = link.announcements if not is_primary or link.new_view else []
        due_null = bool(anns) and link.anns_since is not None and self.now - link.anns_since >= cfg.null_message_ticks
        going_anyway = due_null or link.new_view is not None or link.checkpoint is not None
        if reqs and not is_primary and not going_anyway and len(link.requests) < cfg.batch_max and \
                link.reqs_since is not None and self.now - link.reqs_since < cfg.relay_delay_ticks:
            reqs = []  # relay to backups in batches, off the caller's critical path
        wanted = link.snapshot_wanted and is_primary
        # the primary may hold work that became possible later (a resource freed, a sequence
        # gap timed out): when callers wait and the link is idle, an empty Deliver collects it
        # a primary holding suspended messages (async methods waiting for a nested reply or a
        # timer) keeps one Deliver: it returns with the replies of the steps that resume them
        poll = is_primary and link.inflight == 0 and (link.suspended > 0 or bool(self.pending) and
                                                      self.now - link.last_sent >= cfg.heartbeat_ticks)
        if not (reqs or link.new_view or link.checkpoint or wanted or due_null or poll):
            return None
        if poll and not (reqs or link.new_view or link.checkpoint or wanted):
            self.counts["polls"] += 1
        msg = Deliver(view=self.view, requests=tuple(reqs), announcements=tuple(anns),
                      new_view=link.new_view, checkpoint=link.checkpoint, snapshot_wanted=wanted, join=link.join)
        del link.requests[: len(reqs)]
        link.reqs_since = self.now if link.requests else None
        if not is_primary:
            self.counts["copies"] += len(reqs)
        if msg.is_null:
            self.counts["null_messages"] += 1
            self.counts["announcements_in_null"] += len(anns)
        else:
            self.counts["announcements_piggybacked"] += len(anns)
        if anns:
            link.announcements, link.anns_since = [], None
        link.new_view, link.checkpoint, link.join = None, None, False
        if wanted:
            link.snapshot_wanted = False
        return msg

    def _pings(self) -> List[str]:
        out = []
        for name, link in self.links.items():
            quiet = self.now - max(link.last_heard, link.last_ping)
            if quiet >= self.config.heartbeat_ticks:
                link.last_ping = self.now
                self.counts["heartbeats"] += 1
                out.append(name)
        return out

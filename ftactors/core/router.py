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

``RouterCore`` is the façade: it owns the view, the phase table ``TRANSITIONS``
and the ``ready()`` bundle, and decides; its parts in ``ftactors.core.routing``
each keep one kind of state (as etcd raft keeps ``tracker/`` and ``log.go``
apart from ``raft.go``):

* ``Intake`` (``routing/intake.py``): per-source admission, held calls, waiting callers, reply cache;
* ``OrderLog`` (``routing/log.py``): retained requests, announced order, digests, trimming;
* ``LinkTracker`` (``routing/links.py``): each replica's link, liveness, pings, joiners;
* ``Recovery`` (``routing/recovery.py``): state reports and the ranking of the new view;
* ``Outbox`` (``routing/outbox.py``): the Delivers built from the links.

Host loop (the Ray router actor or the simulator)::

    core.submit(request)          # a client or peer group sent a request
    core.on_delivered(answer)     # a replica answered a Deliver
    core.on_pong(replica) / core.on_failure(replica) / core.tick(now)
    ready = core.ready()          # sends, released replies, pings, queries, spawns
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from ftactors.core.config import CoreConfig
from ftactors.core.errors import (
    AcknowledgedDuplicateError,
    CallGivenUpError,
    GroupOverloadedError,
    LocalProtocolError,
    RemoteProtocolError,
)
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
    caller_of,
)
from ftactors.core.routing.intake import Intake
from ftactors.core.routing.links import Link, LinkTracker
from ftactors.core.routing.log import DIGESTS_MIN, OrderLog
from ftactors.core.routing.outbox import Outbox
from ftactors.core.routing.recovery import RECOVERY_ROUNDS_MAX, Recovery

__all__ = ["DIGESTS_MIN", "RECOVERY_ROUNDS_MAX", "TRANSITIONS", "Phase", "RouterCore", "RouterReady"]

#: calls back into a group (from a call waiting at its router) are admitted past ``inflight_max``,
#: up to this many times ``inflight_max`` requests waiting in all
REENTRANT_INFLIGHT_FACTOR = 2
#: the most calling levels a request's source is walked up to find a call of this group
REENTRANT_DEPTH_MAX = 32


class Abandoned(str, enum.Enum):
    """The router's answer to the notice of a call its caller cancelled (:meth:`RouterCore.abandon`)."""

    GIVEN_UP = "given up"  # the router had not taken it: it never runs (the caller settles it)
    RAN = "ran"  # its reply was released (or its caller's ack_below passed it): the caller settles it
    RUNS = "runs"  # the router holds it: it runs, and its reply is awaited (``pending``); then RAN
    UNKNOWN = "unknown"  # the router cannot tell (recovering, its argument being fetched...): unsettled


class Phase(str, enum.Enum):
    """What the router is doing."""

    NORMAL = "normal"
    RECOVERING = "recovering"  # collecting state reports before a new primary starts
    LOST = "lost"  # no replica left


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


@dataclass(frozen=True, slots=True)
class RouterReady:
    """Everything the host must do now, in this order.

    Args:
        sends: (replica, Deliver) pairs to send.
        released: replies to hand to the waiting sources (each exactly once).
        failed: (msg_id, reason) for waiting sources whose request cannot complete.
        fenced: nested requests admitted during a recovery, before the members' reports showed that
            their calling group had moved to a later view (a deposed primary's): never relayed; the
            host fails their waiters with ``StaleViewError``, as ``submit`` would have.
        pings: replicas to ping (answer with ``on_pong``).
        queries: replicas to ask for a StateReport (answer with ``on_state_report``).
        spawns: new replica ids to create (answer with ``replica_started``).
        retired: replicas removed from the view (the host may stop them).
    """

    sends: Tuple[Tuple[str, Deliver], ...] = ()
    released: Tuple[Reply, ...] = ()
    failed: Tuple[Tuple[MsgId, str], ...] = ()
    fenced: Tuple[MsgId, ...] = ()
    pings: Tuple[str, ...] = ()
    queries: Tuple[str, ...] = ()
    spawns: Tuple[str, ...] = ()
    retired: Tuple[str, ...] = ()


#: what :meth:`RouterCore.ready` returns when there is nothing to do (frozen: one instance serves)
NOTHING_READY = RouterReady()


class RouterCore:
    """The protocol state machine of a group's router.

    Args:
        group: the group name.
        config: protocol settings.
        members: the initial replicas in rank order (primary first).
        view: the initial view number.
        next_replica_index: numbering of replicas spawned later.

    Raises:
        LocalProtocolError: ``members`` is empty.
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
        self.counts: Dict[str, int] = {
            "requests": 0, "replies": 0, "copies": 0, "duplicates": 0, "announcements_piggybacked": 0,
            "announcements_in_null": 0, "null_messages": 0, "heartbeats": 0, "checkpoints": 0,
            "view_changes": 0, "failovers": 0, "recovery_messages": 0, "fenced": 0, "joins": 0,
            "divergences": 0, "delivers": 0, "resyncs": 0, "polls": 0, "reply_copies": 0,
            "announcements_carried_back": 0, "order_gap_queries": 0,
            "reply_copies_pushed": 0, "reply_copies_piggybacked": 0, "reply_copies_in_null": 0,
            "reply_copies_dropped": 0, "reply_copies_unkept": 0, "orders_given_up": 0, "lost_replies": 0,
            "replies_held_for_order": 0, "replies_held_for_backup": 0,
            "oneway_taken_relayed": 0, "oneway_taken_dropped": 0,
        }
        self.log = OrderLog(config)
        self.intake = Intake(config, self.counts, self.log)
        self.tracker = LinkTracker(members)
        self.recovery = Recovery()
        # members that reported a nested reply gone (Delivered.lost_reply), awaiting their state
        # transfer, and the lost reply each was repaired for (its Delivereds sent before the join
        # still carry it); both hold members only
        self.lost_replies: Dict[str, MsgId] = {}
        self.lost_repaired: Dict[str, MsgId] = {}
        self.outbox = Outbox(config, self.counts)
        # a rebuilt router does not know where each source stands, nor holds every request and
        # announcement past ``trimmed``; one that never restarted saw all of them pass
        self.rebuilt_at = 0  # when a restarted router was rebuilt (its grace for late retries)
        self.restarted = False
        self.gap_queried: Optional[int] = None  # tick a rebuilt router last asked its primary for lost order
        # (view, position, since): the primary's next position is one whose message nobody holds, since
        # that tick of the router's running time; and the (view, position) it was last told to give up
        self._lost_order: Optional[Tuple[int, int, int]] = None
        self._gave_up: Optional[Tuple[int, int]] = None
        self._next_index = next_replica_index if next_replica_index is not None else len(members)
        # calls refused at pending_max, oldest first, with the tick of their last refusal: their
        # retransmissions are admitted before later calls (at most inflight_max, refused_hold_ticks)
        self.refused: OrderedDict[MsgId, int] = OrderedDict()
        self._released: List[Reply] = []
        # replies of the primary whose position lies past an order position this router lacks (an
        # answer of the primary that overtook its earlier one): released once the order up to them is
        # here, dropped if the primary changes first or another call takes their position; one per
        # pending call at most
        self._held_replies: "OrderedDict[MsgId, Tuple[Reply, Optional[str]]]" = OrderedDict()
        # replies_wait_for_backup: the highest position of a reply released while no backup was in the
        # view (a group of one does not wait); such a call survives the primary's crash followed by the
        # router's only once a backup executed its position (a replacement joined and caught up)
        self.released_alone_upto = 0
        self._failed: List[Tuple[MsgId, str]] = []
        self._fenced: List[MsgId] = []
        # nested requests admitted while recovering: fenced again with the members' reported views
        self._unfenced: Set[MsgId] = set()
        self._queries: List[str] = []
        self._spawns: List[str] = []
        self._retired: List[str] = []
        self.tracker.install_view(NewView(view, tuple(members)))

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

        Returns:
            The router, recovering.

        Raises:
            LocalProtocolError: ``members`` is empty.
        """
        core = cls(group, config, members, view=view, next_replica_index=next_replica_index)
        core.now = now
        for link in core.links.values():
            link.new_view = None
            link.last_heard = now
        core.primary_since = view + 1  # no output is accepted until recovery installs a view
        # ...except from the primary of ``view``: nothing deposed it, and it keeps executing
        # what it already holds; its announcements must not be lost meanwhile
        core.recovery.rebuilt_primary = (members[0], view)
        core.restarted = True
        core.rebuilt_at = now
        core._transition("primary_failed")
        core._start_recovery(primary_lost=False)
        return core

    # ---------------------------------------------------------- the parts' state

    @property
    def requests(self) -> "OrderedDict[MsgId, Request]":
        """Retained requests (``OrderLog.requests``)."""
        return self.log.requests

    @property
    def order(self) -> Dict[int, Announcement]:
        """Announced order by position (``OrderLog.order``)."""
        return self.log.order

    @property
    def pos_of(self) -> Dict[MsgId, int]:
        """Known positions by message (``OrderLog.pos_of``)."""
        return self.log.pos_of

    @property
    def trimmed(self) -> int:
        """Every member acknowledged up to here (``OrderLog.trimmed``)."""
        return self.log.trimmed

    @property
    def primary_digests(self) -> "OrderedDict[int, str]":
        """The primary's state digests by position (``OrderLog.primary_digests``)."""
        return self.log.primary_digests

    @property
    def pending(self) -> Set[MsgId]:
        """Calls whose caller waits for the reply (``Intake.pending``)."""
        return self.intake.pending

    @property
    def replies(self) -> "OrderedDict[MsgId, Reply]":
        """Released replies kept for duplicates (``Intake.replies``)."""
        return self.intake.replies

    @property
    def held(self) -> Dict[str, Dict[int, Tuple[Request, int]]]:
        """Calls waiting for an earlier one of their source (``Intake.held``)."""
        return self.intake.held

    @property
    def source_views(self) -> Dict[str, int]:
        """The highest view seen of each calling group (``Intake.source_views``)."""
        return self.intake.source_views

    @property
    def links(self) -> Dict[str, Link]:
        """Each member's link (``LinkTracker.links``)."""
        return self.tracker.links

    @property
    def joining(self) -> Dict[str, int]:
        """Replicas started and waiting for a snapshot to join (``LinkTracker.joining``)."""
        return self.tracker.joining

    @property
    def spawning(self) -> Set[str]:
        """Replicas asked for, not started yet (``LinkTracker.spawning``)."""
        return self.tracker.spawning

    @property
    def resync(self) -> Set[str]:
        """Diverged members awaiting state transfer (``LinkTracker.resync``)."""
        return self.tracker.resync

    @property
    def diverged(self) -> List[Tuple[str, int]]:
        """Recent divergences, (replica, position) (``LinkTracker.diverged``)."""
        return self.tracker.diverged

    # --------------------------------------------------------------- queries

    @property
    def primary(self) -> Optional[str]:
        """The current primary, or None if the group is lost."""
        return self.members[0] if self.members else None

    def lookup(self, msg_id: MsgId) -> Tuple[str, Optional[Reply]]:
        """Where a request stands: ("released", reply), ("pending", None) or ("unknown", None)."""
        return self.intake.lookup(msg_id)

    # ---------------------------------------------------------------- inputs

    def expect_soon(self, msg_id: MsgId) -> None:
        """A client's request reached the host, which submits it later (it fetches its argument
        first): the later ones of its source wait for it (``Intake.expect_soon``)."""
        self.intake.expect_soon(msg_id)

    def forget_coming(self, msg_id: MsgId) -> None:
        """The request announced by ``expect_soon`` will not be submitted."""
        self.intake.forget_coming(msg_id)

    def abandon(self, msg_id: MsgId) -> Abandoned:
        """A client cancelled ``msg_id`` (``ray.cancel``). If this router has not taken it, it gives it up
        (``Intake.abandon``): the client's later calls no longer wait ``sequence_gap_ticks`` for it, and
        it never runs. If the router holds it, it runs: as for a duplicate, someone now waits for its
        reply (``pending``; a rebuilt router asks the primary again, its reply may have gone to the
        incarnation that died), so that the client learns when it ran and settles it then: until then
        its ``ack_below`` must not pass it (docs/faults.md rows 72, 82).

        Args:
            msg_id: the client's call.

        Returns:
            ``GIVEN_UP``; ``RAN`` (its reply is cached, or the client acknowledged it); ``RUNS`` (its reply
            is released later, as any); or ``UNKNOWN``: a recovering router learns from the members'
            reports what its predecessor relayed, and gave up a call a replica held, which then ran (row
            72b); a call whose argument is being fetched, or one only ordered, with no request or reply
            here, is not waited for.
        """
        if self.phase != Phase.NORMAL:
            return Abandoned.UNKNOWN
        if self.intake.abandon(msg_id):
            self.counts["abandoned"] = self.counts.get("abandoned", 0) + 1  # only where it happens
            return Abandoned.GIVEN_UP
        if msg_id in self.replies or self.intake.acknowledged(msg_id) is not None:
            return Abandoned.RAN
        held = self.intake.holds(msg_id)
        req = self.requests.get(msg_id)
        if msg_id not in self.pending and not held and req is None:
            return Abandoned.UNKNOWN
        if msg_id not in self.pending:
            self.pending.add(msg_id)  # known from a StateReport (restarted router): now someone waits
            if self.restarted and req is not None and not held:
                self._ask_primary_again(req)  # its reply may have gone to the incarnation that died
        return Abandoned.RUNS

    def submit(self, req: Request, copy: bool = False) -> Optional[Reply]:
        """A request arrives from a client or a peer group.

        ``copy`` marks a backup of the calling group pulling the reply copy of a
        nested request its primary sends (claim 48), the fallback when the pushed copy
        (``Delivered.reply_copies``) did not reach it: counted as a copy, not a duplicate,
        and never fenced. A lagging backup may still be in a view its group has left;
        its fetch cannot make anything run twice (the request is the one its primary
        sends, under the same MsgId, and the replicas execute a MsgId once), and
        refusing it would leave that backup unable to finish the calling message.

        Args:
            req: the request.
            copy: a backup's fetch of a nested reply copy.

        Returns:
            The cached reply if this is a duplicate of a released request; else None
            (wait for the reply in ``ready().released``).

        Raises:
            RemoteProtocolError: the request is for another group.
            AcknowledgedDuplicateError: a duplicate whose reply the source already holds.
            CallGivenUpError: its caller gave it up (:meth:`abandon`) before: it never runs.
            StaleViewError: a nested request (not a copy fetch) from a deposed primary of the
                source group.
            GroupOverloadedError: ``inflight_max`` requests are already waiting (a call back into
                this group from one of them, as in a ring A -> B -> A, up to twice as many), or
                ``pending_max`` are retained (relayed and not yet executed by every member).
        """
        if req.group != self.group:
            raise RemoteProtocolError(f"request for {req.group!r} sent to router of {self.group!r}")
        if not copy:
            self.intake.check_source_view(req)
        self.intake.forget_replies(req.msg_id.source, req.ack_below)
        for ann in req.peer_announcements:
            if ann.group == self.group:
                self.counts["announcements_carried_back"] += 1
                self._merge_announcement(ann)
        mid = req.msg_id
        if mid in self.replies:
            self.counts["reply_copies" if copy else "duplicates"] += 1
            return self.replies[mid]
        if self.intake.is_abandoned(mid):  # its caller gave it up (ray.cancel): it must never run
            # before the floor: the caller settled it, so a later call's ack_below may pass it, and this is
            # the call itself, late (the notice overtook it), not a retransmission (row 82)
            raise CallGivenUpError(f"{mid} was given up by its caller before this router took it")
        floor = self.intake.acknowledged(mid)
        if floor is not None:
            self.counts["duplicates"] += 1
            raise AcknowledgedDuplicateError(f"{mid}: its source acknowledged the reply (ack_below {floor})")
        if mid in self.pending or mid in self.requests or self.intake.holds(mid):
            self.counts["reply_copies" if copy else "duplicates"] += 1
            if req.wants_reply and mid not in self.pending:
                self.pending.add(mid)  # known from a StateReport (restarted router): now someone waits
            if req.wants_reply and self.restarted and not self.intake.holds(mid):
                self._ask_primary_again(req)  # its reply may have gone to the incarnation that died
            return None
        if self.phase == Phase.LOST:
            self._failed.append((mid, "all replicas of the group failed"))
            return None
        reentrant = self._reentrant(req)
        if len(self.pending) >= self.config.inflight_max and not reentrant:
            raise GroupOverloadedError(f"{self.group}: {self.config.inflight_max} requests in flight")
        if len(self.pending) >= REENTRANT_INFLIGHT_FACTOR * self.config.inflight_max:
            raise GroupOverloadedError(f"{self.group}: {self.config.inflight_max} requests in flight, and as many "
                                       f"calls back into the group")
        # a replica holds at most what this router retains (requests some member has not yet executed):
        # refused here, before any replica has a copy, it never meets pending_max; a call back into the
        # group (a ring) may take inflight_max more, as above (ReplicaCore.requests_max counts them)
        retained = len(self.log.requests) + self.intake.held_count()
        if reentrant:
            # requests every member executed, kept only for a joiner (``_trim``), are held by no member (the
            # joiner drops those its checkpoint covers; ``requests_max`` leaves it ``log_max`` for the rest):
            # counting them refused the call back that a suspended call, and the joiner's checkpoint
            # waiting for it, needed (docs/faults.md, row 52)
            floor = self.tracker.floor() if self.links else self.trimmed
            if self.log.unexecuted(floor) + self.intake.held_count() >= self.config.pending_max + self.config.inflight_max:
                raise GroupOverloadedError(f"{self.group}: {self.config.pending_max} requests not yet executed "
                                           f"by every replica (pending_max), and as many calls back")
        elif retained + self._places_ahead(mid) >= self.config.pending_max:
            self._keep_place(mid)
            raise GroupOverloadedError(f"{self.group}: {self.config.pending_max} requests not yet executed "
                                       f"by every replica (pending_max)")
        self.refused.pop(mid, None)
        if copy or req.source_view is not None:
            self._accept(req)  # nested sources number calls per execution: no FIFO to keep
            if not copy and self.phase == Phase.RECOVERING:
                self._unfenced.add(mid)  # the reports may show its calling group's later view
        else:
            for ready in self.intake.admit(req, self.now):
                self._accept(ready)
        return None

    def _places_ahead(self, mid: MsgId) -> int:
        """How many calls refused at ``pending_max`` before ``mid`` keep their place (all of them
        if ``mid`` was never refused): room for them comes first. Places older than
        ``refused_hold_ticks`` (their caller gave up) are freed here.

        Args:
            mid: the call being admitted.

        Returns:
            The places kept ahead of ``mid``.
        """
        for kept, at in list(self.refused.items()):
            if self.now - at > self.config.refused_hold_ticks:
                del self.refused[kept]
        ahead = 0
        for kept in self.refused:
            if kept == mid:
                break
            ahead += 1
        return ahead

    def _keep_place(self, mid: MsgId) -> None:
        """Keep the place of a call refused at ``pending_max`` for its retransmission: its first
        refusal's place in line, its time renewed. Beyond ``inflight_max`` places none is kept (the
        kept ones are not pushed out, or callers retrying in turn would each find theirs gone)."""
        if mid in self.refused or len(self.refused) < self.config.inflight_max:
            self.refused[mid] = self.now  # an update keeps its place in line


    def _reentrant(self, req: Request) -> bool:
        """Whether ``req`` descends from a call that waits for its reply at this router (a ring
        A -> B -> A: its source names the calling groups' messages up to a call of this group).
        Refusing it would leave that call unable to finish, and with it the calls that fill the
        bound: it is admitted past ``inflight_max`` (docs/faults.md, row 18)."""
        source = req.msg_id.source
        for _ in range(REENTRANT_DEPTH_MAX):
            if "|" not in source:
                return False
            group, caller = source.split("|", 1)
            caller_source, sep, seq = caller.rpartition("#")
            if not sep or not seq.isdigit() or int(seq) < 1 or not caller_source:
                return False
            calling = MsgId(caller_source, int(seq))
            # waiting here; or refused at pending_max while its caller retries it: a call back descending
            # from it proves the replicas run it (a rebuilt router that never learnt it, docs/faults.md)
            if group == self.group and (calling in self.pending or calling in self.refused):
                return True
            source = caller_source
        return False

    def _gap_ticks(self, arrived: int) -> int:
        """How long a request that arrived at tick ``arrived`` waits for an earlier one of its source:
        ``sequence_gap_ticks``; for a restarted router's first ``failure_timeout_ticks``, that long
        instead: Ray resubmits the calls the dead router had taken once the new one is up, behind
        the calls made meanwhile, and one caller's calls must still run in its order."""
        if self.restarted and arrived - self.rebuilt_at <= self.config.failure_timeout_ticks:
            return max(self.config.sequence_gap_ticks, self.config.failure_timeout_ticks)
        return self.config.sequence_gap_ticks

    def _accept(self, req: Request) -> None:
        """Multicast ``req``: retain it, note its caller waits, queue it on every link."""
        self.counts["requests"] += 1
        self.log.retain(req)
        self.intake.wait_for(req)
        self.tracker.queue_request(req, self.now)

    def on_delivered(self, d: Delivered) -> None:
        """A replica answered a Deliver.

        Raises:
            RemoteProtocolError: the primary sent an announcement of another group.
        """
        link = self.tracker.acknowledge(d.replica, d.acked_position, self.now, d.busy_poll)
        if link is None:
            self.counts["fenced"] += 1
            return
        link.suspended = d.suspended
        from_primary = False
        if d.replica == self.primary and self.phase == Phase.NORMAL and self.primary_since <= d.view <= self.view:
            self._from_primary(d)
            from_primary = True
        elif self.phase == Phase.RECOVERING and self.recovery.rebuilt_primary == (d.replica, d.view) and \
                d.view == self.view:
            self._take_order_and_replies(d)  # the undeposed primary of a rebuilt router
        elif d.replies or d.announcements:
            self.counts["fenced"] += 1  # a deposed primary's output: fenced off
        self._check_digests(d)
        if d.lost_reply is not None:
            self._resync_lost_reply(d.replica, d.lost_reply)
        self._trim()
        if from_primary:
            self._check_order_gap(link.acked)

    def on_pong(self, replica: str) -> None:
        """A replica answered a ping: it is alive."""
        self.tracker.heard(replica, self.now)

    def on_failure(self, replica: str) -> None:
        """The host saw ``replica`` die (for instance Ray's ActorDiedError)."""
        if replica in self.joining:  # a replacement died before it was admitted: ask for another
            del self.joining[replica]
            self._want_replicas()
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
        self.intake.learn_source_views(rep.source_views)
        self.recovery.report(rep)
        self.tracker.heard(rep.replica, self.now)
        self._maybe_finish_recovery()

    def on_peer_announcements(self, anns: Tuple[Announcement, ...]) -> None:
        """Announcements of this group obtained from a peer group's replicas (claims 65, 69)."""
        for ann in anns:
            if ann.group == self.group:
                self._merge_announcement(ann)

    def replica_started(self, replica: str) -> None:
        """A replica asked for with ``spawns`` (or a diverged one) is ready to join.

        Raises:
            LocalProtocolError: ``replica`` is already a member.
        """
        if replica in self.links:
            raise LocalProtocolError(f"{replica} is already a member")
        self.spawning.discard(replica)
        self.joining[replica] = self.now
        self.tracker.want_snapshot(self.primary)

    def adopt_spare(self, asked: str, spare: str) -> None:
        """The host makes a warm spare ``spare`` (a replica already started, not a member) the
        replacement it was asked for as ``asked`` (``spawns``): ``spare`` joins instead.

        Args:
            asked: the replica id of the ``spawns`` entry (no longer expected).
            spare: the spare's replica id (from :meth:`new_replica_id`).

        Raises:
            LocalProtocolError: ``spare`` is already a member.
        """
        self.replica_started(spare)
        self.spawning.discard(asked)

    def new_replica_id(self) -> str:
        """A replica id never used in this group (the numbering of spawned replicas)."""
        rid = f"{self.group}-r{self._next_index}"
        self._next_index += 1
        return rid

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
            self.tracker.excuse(gap)
            # nor toward a busy poll: the primary's answer may be unread (busy_poll_ticks). A tick
            # late by less (a loaded router runs its clock a few ticks at a time) counts: excused,
            # the poll waited busy_poll_ticks runs of the router (docs/faults.md row 87)
            self.tracker.excuse_busy(gap - 1)
        if gap > 1 and self.held:
            # nor does that time count toward a held call's wait: its predecessor may be unread yet
            self.intake.excuse(gap - 1)
        if gap > 1 and self.phase == Phase.RECOVERING:
            # nor toward the recovery's: a member's report may be unread yet (seed 3275, docs/faults.md row 52)
            self.recovery.excuse(gap - 1)
        dead = self.tracker.silent(now, cfg.failure_timeout_ticks, self.primary)
        if dead:
            self._remove_members(dead, "timeout")
        if self.held and len(self.log.requests) + self.intake.held_count() <= cfg.pending_max:
            # (held calls counted at their admission; a recovery may have retained more meanwhile:
            # they wait, so that no replica is sent more than pending_max)
            for req in self.intake.release_gaps(self.now, self._gap_ticks):
                self._accept(req)
        if self.phase == Phase.RECOVERING and now - self.recovery.started > cfg.recovery_timeout_ticks:
            self._recovery_timed_out()
        self._replace_stuck_backups()
        self._watch_lost_order(gap)

    def _watch_lost_order(self, gap: int) -> None:
        """Tell a new primary to give up the order it took over once nobody holds its next message.

        The primary replays the announced order as the requests of its positions come; the router
        retains every request and announcement until all members acknowledge them and merged the
        survivors' reports into the recovery, so a message of that order it does not hold, nobody
        alive holds (only a restarted router can have lost one) unless the primary itself does.
        After ``recovery_timeout_ticks`` of the router's own running time without it (a caller's
        retry may still bring it; time the router was starved does not count), the primary's next
        Deliver carries ``give_up_from``, once per view and position; the primary gives the order up
        only if it is blocked there. It never gives up on its own clock: that ran on while a starved
        router held the request unsent, and an acknowledged position moved (docs/faults.md, row 44).

        Args:
            gap: ticks since the router's previous tick (more than one: it did not run meanwhile).
        """
        primary = self.primary
        if self.phase != Phase.NORMAL or primary is None:
            self._lost_order = None
            return
        pos = self.links[primary].acked + 1
        if not self._order_lost_at(pos):
            self._lost_order = None
            return
        lost = self._lost_order
        if lost is None or lost[:2] != (self.view, pos):
            self._lost_order = (self.view, pos, self.now)
            return
        since = lost[2] + max(gap - 1, 0)  # a tick after a starvation: the starvation does not count
        self._lost_order = (self.view, pos, since)
        if self.now - since >= self.config.recovery_timeout_ticks and self._gave_up != (self.view, pos):
            self._gave_up = (self.view, pos)
            self.links[primary].give_up_from = pos
            self.counts["orders_given_up"] += 1

    def _order_lost_at(self, position: int) -> bool:
        """Whether the retained order goes past ``position`` and the router holds neither its
        announcement nor, for a message starting there, its request."""
        ann = self.log.order.get(position)
        if ann is None:
            return self.log.highest > position  # (above ``trimmed``: the primary acknowledged ``position - 1``)
        return ann.resume == 0 and ann.msg_id not in self.log.requests

    def _recovery_timed_out(self) -> None:
        """No report from some members within ``recovery_timeout_ticks``.

        If others reported, the silent ones are dropped and the reporters go on.
        If nobody reported, the survivors are more likely slow (a CPU storm while
        a node is lost or added) than all dead: ask again, up to
        ``RECOVERY_ROUNDS_MAX`` times, before giving the group up. Dead members
        are removed meanwhile by the failure detector or by their hosts' errors.
        """
        members = list(self.links)
        missing = self.recovery.missing(members)
        if self.recovery.ask_again(self.now, missing, members):
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
            if not self.log.lost_request_at(self.links[m].acked + 1):
                continue
            idle = self.tracker.idle_since(m)
            if idle is not None and self.now - max(idle, self.recovery.started) > patience:
                stuck.add(m)
        if stuck:
            self.counts["resyncs"] += len(stuck)
            self._remove_members(stuck, "blocked on a request that was lost")

    def _resync_lost_reply(self, replica: str, lost: MsgId) -> None:
        """A member gave up replaying a step: the reply of its nested request ``lost`` is gone at
        the callee (``ReplicaCore.pulled_reply_gone``), so its state is that of a step half run.

        A backup is repaired in place by state transfer, as a diverged one is (the primary's next
        checkpoint, ``_relay_checkpoint``); it executes nothing meanwhile, and is never made primary:
        should the primary fail first, it leaves the view with it (``_remove_members``). A member
        that reports it as the primary (promoted before its report came), or during a recovery,
        is removed (it cannot serve; a replacement joins by state transfer).

        Args:
            replica: the member that reported it.
            lost: the nested request whose reply is gone.
        """
        if self.lost_repaired.get(replica) == lost:
            return  # a report sent before the state transfer that repaired it
        if replica not in self.lost_replies:
            self.counts["lost_replies"] += 1
        self.lost_replies[replica] = lost
        if replica == self.primary or self.phase != Phase.NORMAL:
            self.counts["resyncs"] += 1
            self._remove_members({replica}, "lost a nested reply")
            return
        if replica not in self.resync:
            self.tracker.resync.add(replica)
            self.tracker.want_snapshot(self.primary)

    # --------------------------------------------------------------- outputs

    def _work_waits(self) -> bool:
        """Whether an idle primary is to be polled (``Outbox.sends``' ``callers_wait``): a caller waits
        for a reply, or the primary holds a call it has not run. A call nobody waits for any more (its
        caller cancelled it, and no retry reaches a restarted router) still runs; polled only while
        callers waited, it sat at the primary until some later call came (swarm seed 102169 with
        cancels). The log is scanned only when the primary's link has been idle a heartbeat.
        """
        if self.pending:
            return True
        if not self.members:
            return False
        link = self.tracker.links[self.members[0]]
        if link.inflight or self.now - link.last_sent < self.config.heartbeat_ticks:
            return False
        pos_of = self.log.pos_of
        return any(mid not in pos_of for mid in self.log.requests)

    def ready(self) -> RouterReady:
        """Collect what the host must do now; clears it from the core.

        Returns:
            The bundle of sends, released and failed calls, pings, queries, spawns and
            retirements, to handle in that order.
        """
        self._release_held_replies()  # a trim or a merge may have filled the order below them
        # replies waiting for a backup (replies_wait_for_backup): its copies and announcements go at once
        urgent = bool(self._held_replies) and self.config.replies_wait_for_backup
        sends = self.outbox.sends(self.tracker, self.members, self.view, self.now, self._work_waits(), urgent) \
            if self.phase == Phase.NORMAL else []
        pings = self.tracker.pings(self.now, self.config.heartbeat_ticks)
        if pings:
            self.counts["heartbeats"] += len(pings)
        released, failed, fenced = self._released, self._failed, self._fenced
        queries, spawns, retired = self._queries, self._spawns, self._retired
        if not (sends or pings or released or failed or fenced or queries or spawns or retired):
            return NOTHING_READY  # most of a tick's calls, and a step that only took an answer in
        out = RouterReady(
            sends=tuple(sends), released=tuple(released), failed=tuple(failed), fenced=tuple(fenced),
            pings=tuple(pings), queries=tuple(queries), spawns=tuple(spawns), retired=tuple(retired),
        )
        for taken in (released, failed, fenced, queries, spawns, retired):
            taken.clear()
        return out

    def describe(self) -> Dict[str, object]:
        """A plain summary for observability."""
        return {
            "group": self.group, "view": self.view, "phase": self.phase.value, "members": list(self.members),
            "primary": self.primary, "joining": sorted(set(self.joining) | self.spawning),
            "acked": {r: link.acked for r, link in self.links.items()}, "pending": len(self.pending),
            "retained_requests": len(self.requests), "retained_order": len(self.order),
            "retained_replies": len(self.replies),
            "diverged": list(self.diverged), "counts": dict(self.counts),
            "links": {r: self._link_summary(link) for r, link in self.links.items()},
        }

    def _link_summary(self, link: Link) -> Dict[str, int]:
        """What the router holds for one member, for a user asking why it lags: the position it
        acknowledged, Delivers in flight, what waits to go, and how long ago (ticks) it was last
        sent to, heard from and seen advancing."""
        return {"acked": link.acked, "inflight": link.inflight, "queued_requests": len(link.requests),
                "queued_announcements": len(link.announcements),
                "sent_ago_ticks": self.now - link.last_sent, "heard_ago_ticks": self.now - link.last_heard,
                "progress_ago_ticks": self.now - link.progress_tick}

    # ------------------------------------------------------------- internals

    def _transition(self, event: str) -> None:
        """Move the phase by ``TRANSITIONS``; any other event raises LocalProtocolError."""
        new = TRANSITIONS.get((self.phase, event))
        if new is None:
            raise LocalProtocolError(f"router {self.group}: illegal {event} in phase {self.phase.value}")
        self.phase = new

    def _merge_announcement(self, ann: Announcement) -> None:
        """Take ``ann`` into the order and queue it for the backups (and for a recovering primary)."""
        if self.log.merge(ann):
            skip = self.primary if self.phase == Phase.NORMAL else None
            self.tracker.queue_announcement(ann, self.now, skip)

    def _from_primary(self, d: Delivered) -> None:
        """The primary's output in the current view: order, replies, checkpoint, digests."""
        self._take_order_and_replies(d)
        if d.checkpoint is not None:
            self.counts["checkpoints"] += 1
            self._relay_checkpoint(d.checkpoint)
        self.log.record_digests(d.digests)

    def _take_order_and_replies(self, d: Delivered) -> None:
        """Merge the primary's announcements, then release its replies (in that order: a reply is
        released only once the router holds the announcement that orders it). A reply carries
        its own announcement: a cached reply answering a duplicate brings it again, when the
        Delivered that first carried it went to a router incarnation that died.

        Raises:
            RemoteProtocolError: an announcement of another group.
        """
        for ann in d.announcements + tuple(a for rep in d.replies for a in rep.announcements):
            if ann.group != self.group:
                raise RemoteProtocolError(f"announcement of {ann.group!r} from primary of {self.group!r}")
            self._merge_announcement(ann)
        for rep in d.replies:
            if not rep.position and rep.msg_id in self._held_replies:
                continue  # a retry answered "expired" (its reply left the cache): the held reply is the call's
            if rep.position and rep.position > self._order_safe_upto():
                self._held_replies[rep.msg_id] = (rep, self.primary)
                ordered = rep.position <= self.log.announced_upto(self.tracker.floor() if self.links else 0)
                self.counts["replies_held_for_backup" if ordered else "replies_held_for_order"] += 1
            else:
                self._release(rep)
        self._release_held_replies()
        self._push_reply_copies(d.reply_copies)
        self._pass_oneway_taken(d.replica, d.oneway_taken)

    def _order_safe_upto(self) -> int:
        """The position up to which the order is here or executed by every member (a reply at or
        below it may be released: a new primary can replay every position before it); with
        ``replies_wait_for_backup``, also acknowledged by a backup (``_backup_holds_upto``).

        Returns:
            The highest position a reply may be released at.
        """
        safe = self.log.announced_upto(self.tracker.floor() if self.links else 0)
        held = self._backup_holds_upto() if self.config.replies_wait_for_backup else None
        return safe if held is None else min(safe, held)

    def _backup_holds_upto(self) -> Optional[int]:
        """``replies_wait_for_backup``: the highest position some backup of the view acknowledged
        (executed it, semi-active; logged its request and announcement, passive), so that the call
        survives the primary's crash followed by this router's (a rebuilt router learns the order
        from the survivors' reports, docs/faults.md row 65).

        Returns:
            That position; None without a backup in the view (a group of one: nothing could hold
            a copy, a reply is released as without the setting).
        """
        backups = [self.links[m].acked for m in self.members[1:] if m in self.links]
        return max(backups) if backups else None

    def _release_held_replies(self) -> None:
        """Release the held replies (``_held_replies``) whose order the router now holds up to their
        position, in position order; drop those of a primary that is no longer the primary, or whose
        position the order gives another call (the new primary executes their calls again, wherever
        its order puts them: swarm seed 104085, docs/faults.md row 56). With ``replies_wait_for_backup``
        a held reply of a primary that is gone stays held while the order up to its position stands
        here (``_stands``), and is released once a member executed its position: the new primary
        replays it, and may hold the call as executed, with no request of it retained here to answer
        again (swarm seed 9 of the draw)."""
        if not self._held_replies:
            return
        upto = self._order_safe_upto()
        for mid, (rep, primary) in sorted(self._held_replies.items(), key=lambda kv: kv[1][0].position):
            ann = self.log.order.get(rep.position)
            if ann is not None and ann.msg_id != rep.msg_id:
                del self._held_replies[mid]
            elif primary != self.primary:
                if not self._stands(rep):
                    del self._held_replies[mid]
                elif rep.position <= max((link.acked for link in self.links.values()), default=0):
                    del self._held_replies[mid]
                    self._release(rep)
            elif rep.position <= upto:
                del self._held_replies[mid]
                self._release(rep)

    def _stands(self, rep: Reply) -> bool:
        """``replies_wait_for_backup``: whether the held reply ``rep`` of a primary that is gone keeps its
        position: the router holds the order up to it (or every member executed it), so the new primary
        replays the call there.

        Args:
            rep: a held reply (its announcement at its position, if any, names its call).

        Returns:
            False without the setting (the reply is dropped, as before it).
        """
        if not self.config.replies_wait_for_backup:
            return False
        return rep.position <= self.log.announced_upto(self.tracker.floor() if self.links else 0)

    def _push_reply_copies(self, copies: Tuple[Reply, ...]) -> None:
        """The primary's nested replies: queue a copy for each backup (claim 48). It rides on the
        Deliver that carries the calling message's announcement, which the primary sends no
        earlier, so a backup reaching the nested call holds the copy without a message of its
        own (no pull from the callee's router)."""
        skip = self.primary if self.phase == Phase.NORMAL else None
        for rep in copies:
            self.counts["reply_copies_pushed"] += len(self.links) - (skip in self.links)
            self.counts["reply_copies_dropped"] += self.tracker.queue_reply_copy(
                rep, self.now, skip, self.config.reply_copies_max)
            caller = caller_of(self.group, rep.msg_id.source)
            if caller is not None and not self.log.keep_copy(caller, rep):
                self.counts["reply_copies_unkept"] += 1

    def _pass_oneway_taken(self, primary: str, taken: Tuple[MsgId, ...]) -> None:
        """The one-way nested calls the primary learnt taken: queue them for each other member, to ride on
        its next Deliver (``Deliver.oneway_taken``), so that a backup promoted later does not send them
        again (docs/faults.md, row 69). At most ``ONEWAY_TAKEN_MAX`` wait per link (the oldest dropped,
        counted ``oneway_taken_dropped``: that backup keeps those calls, as before).

        Args:
            primary: the primary that named them (its own link gets none).
            taken: the one-way calls' ids.
        """
        for name, link in self.links.items() if taken else ():
            if name != primary:
                self.counts["oneway_taken_dropped"] += link.queue_oneway_taken(taken)

    def _send_kept_copies(self, link: Link, cp: Checkpoint) -> None:
        """A state transfer: the reply copies of the retained log after ``cp`` go with it, so the
        replica replaying those calls pulls none from the callees' routers (claim 48)."""
        queued = {r.msg_id for r in link.reply_copies}
        for rep in self.log.copies_after(cp.position):
            if rep.msg_id not in queued:
                self.counts["reply_copies_dropped"] += not link.queue_reply_copy(
                    rep, self.now, self.config.reply_copies_max)

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
        if not self.log.lacks_order_upto(acked):
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
        link.queue_request(req, self.now)

    def _learn_lost_order(self, rep: StateReport) -> None:
        """Merge the primary's announcements; relay the requests they order that this router
        does not hold to the backups; re-send to the primary those whose caller still waits
        (it answers a duplicate with the cached reply)."""
        self.gap_queried = None
        for ann in rep.announcements:
            if ann.group == self.group:
                self._merge_announcement(ann)
        announced = self.log.announced()
        for req in rep.requests:
            mid = req.msg_id
            if mid in announced and mid not in self.requests:
                self.log.retain(req)
                self.tracker.queue_request(req, self.now, skip=rep.replica)
            if mid in self.pending and mid in self.pos_of:
                self._ask_primary_again(req)

    def _release(self, rep: Reply) -> None:
        """The primary answered: release the reply to its waiting caller, once."""
        self.log.settle(rep)
        if self.intake.settle(rep):
            self.counts["replies"] += 1
            self._released.append(rep)
            if self.config.replies_wait_for_backup and len(self.members) < 2:
                self.released_alone_upto = max(self.released_alone_upto, rep.position)

    def _relay_checkpoint(self, cp: Checkpoint) -> None:
        """A checkpoint of the primary: to the passive backups, to repair diverged members, to admit joiners."""
        for name, link in self.links.items():
            if name != self.primary and self.config.style == "passive":
                link.checkpoint = cp
        for replica in sorted(self.resync):
            self._transfer_state(replica, cp)
        self.resync.clear()
        if self.joining and (cp.position < self.trimmed or self._requests_lost_after(cp.position)):
            # older than the retained log (a promoted backup still replaying), or than a position
            # whose request this router does not hold (a rebuilt router learnt its announcement
            # only): the joiner could not get the positions in between; ask for a newer snapshot
            self.links[self.members[0]].snapshot_wanted = True
            return
        for replica in list(self.joining):
            self._admit(replica, cp)

    def _requests_lost_after(self, position: int) -> bool:
        """Whether a message starting at an announced position after ``position`` has no request
        retained here (a member sent the log after ``position`` could not execute it)."""
        return any(ann.resume == 0 and ann.msg_id not in self.log.requests
                   for pos, ann in self.log.order.items() if pos > position)

    def _admit(self, replica: str, cp: Checkpoint) -> None:
        """Install a view with ``replica`` as the last backup, sending it ``cp`` plus the log."""
        del self.joining[replica]
        self.counts["joins"] += 1
        self._new_view(self.members + [replica])
        link = Link(last_heard=self.now, acked=cp.position)
        link.transfer(NewView(self.view, tuple(self.members)), cp, self.requests.values(), self.log.after(cp.position),
                      self.now)
        self._send_kept_copies(link, cp)
        self.links[replica] = link

    def _transfer_state(self, replica: str, cp: Checkpoint) -> None:
        """Send a member the checkpoint plus the retained log (it restores, then catches up)."""
        link = self.links.get(replica)
        if link is None or replica == self.primary or cp.position < self.trimmed:
            return
        link.transfer(NewView(self.view, tuple(self.members)), cp, self.requests.values(), self.log.after(cp.position),
                      self.now)
        self._send_kept_copies(link, cp)
        link.acked = cp.position
        self.counts["resyncs"] += 1
        lost = self.lost_replies.pop(replica, None)
        if lost is not None:
            self.lost_repaired[replica] = lost

    def _check_digests(self, d: Delivered) -> None:
        """A backup's digests against the primary's: a difference is repaired by state transfer."""
        if d.replica == self.primary:
            return
        pos = self.log.divergence(d.digests)
        if pos is not None:
            self.counts["divergences"] += 1
            self.tracker.flag_divergence(d.replica, pos)  # repaired in place, no view change
            self.tracker.want_snapshot(self.primary)

    def _trim(self) -> None:
        """Forget what every member has acknowledged (and no join still needs)."""
        if not self.links or self.phase != Phase.NORMAL:
            return
        floor = self.tracker.floor()
        if self.joining:
            floor = min(floor, self.trimmed)
        if floor > self.trimmed:
            self.log.trim(floor)
        self._check_lag()

    def _check_lag(self) -> None:
        """Remove the slowest backup when the log outgrows ``log_max``."""
        if not self.log.overfull() or len(self.members) < 2:
            return
        self._remove_members({self.tracker.slowest(self.members[1:])}, "lagging beyond log_max")

    def _remove_members(self, gone: Set[str], why: str) -> None:
        """Take ``gone`` out of the view: a new view, a recovery, or the group lost."""
        gone = {g for g in gone if g in self.links}
        if not gone:
            return
        # a held reply a backup acknowledged since the last ``ready()`` goes before the view changes: a
        # primary's change drops the rest (a new primary answers their calls again), and the router no
        # longer retains a request every member executed (replies_wait_for_backup, swarm seed 9)
        if self.config.replies_wait_for_backup:
            self._release_held_replies()
        primary_lost = self.primary in gone
        if primary_lost:  # a member half through a step whose nested reply is gone cannot take over
            gone |= {m for m in self.lost_replies if m in self.links}
        for g in gone:
            self.tracker.drop(g)
            self._retired.append(g)
            self.lost_replies.pop(g, None)
            self.lost_repaired.pop(g, None)
        survivors = [m for m in self.members if m not in gone]
        if not survivors:
            self._transition("all_failed")
            self.members = []
            for mid in self.intake.fail_all():
                self._failed.append((mid, f"all replicas of {self.group} failed ({why})"))
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
        """Collect the members' state reports (or, if this router holds everything, finish at once)."""
        if primary_lost:
            self.counts["failovers"] += 1
        self.recovery.start(self.now)
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
        """Install the new view once every member reported (or ``force``)."""
        if self.phase != Phase.RECOVERING:
            return
        if not force and not self.recovery.complete(self.members):
            return
        reports = self.recovery.reports
        self._fence_admitted_in_recovery()
        # every member executed what is at or below ``trimmed``: a report's recent history
        # repeats it, and retaining it again would re-grow the log at each recovery
        done = {a.msg_id for rep in reports.values() for a in rep.announcements if a.position <= self.trimmed}
        for rep in reports.values():
            self.log.adopt_reported(rep.requests, done)
            for ann in rep.announcements:
                self._merge_announcement(ann)
        executed = self.recovery.executed(self.members, {m: self.links[m].acked for m in self.members})
        ranked, dropped = self.recovery.rank(self.members, executed, self.log)
        for m in dropped:  # the order it lacks is gone (a restarted router): repair it by state transfer
            self.tracker.drop(m)
            self._retired.append(m)
            self.counts["resyncs"] += 1
        self._transition("recovered")
        self.primary_since = self.recovery.primary_since(ranked[0], self.view + 1) if ranked else self.view + 1
        self.recovery.rebuilt_primary = None
        self._new_view(ranked)
        for m in self.members:
            link = self.links[m]
            link.acked = executed[m]
            link.inflight, link.out_since, link.busy_poll_out = 0, None, False
            held = {r.msg_id for r in reports[m].requests} if m in reports else set()
            link.reload(self._catch_up_order(executed[m], held), self.log.after(executed[m]), self.now)
        self.recovery.reports = {}
        # below min_replicas: members dropped here, or (a rebuilt router) members that did not
        # answer the rebuild, such as a stopped one (docs/faults.md, row 34)
        self._want_replicas()
        if self.joining:
            self.links[self.members[0]].snapshot_wanted = True

    def _fence_admitted_in_recovery(self) -> None:
        """Fence the nested requests admitted while recovering whose calling group the members'
        reports show at a later view (``StateReport.source_views``; a rebuilt router knew no view
        of it when they came): a deposed primary's, as ``submit`` fences them. Nothing was relayed
        meanwhile; a member that holds one (relayed by a predecessor) reports it, and it is retained
        again with the rest (``adopt_reported``)."""
        for mid in self._unfenced:
            req = self.log.requests.get(mid)
            if req is None or req.source_view is None:
                continue
            if req.source_view < self.intake.source_views.get(mid.source.split("|", 1)[0], 0):
                del self.log.requests[mid]
                self.intake.pending.discard(mid)
                self.counts["fenced"] += 1
                self._fenced.append(mid)
        self._unfenced.clear()

    def _catch_up_order(self, executed: int, held: Set[MsgId]) -> List[Request]:
        """Every request held, those started at announced positions past ``executed`` first and in
        position order: a new primary replays the order as they arrive (``batch_max`` per Deliver) and
        gives it up after ``recovery_timeout_ticks`` without the next one, so the next one must come
        next. A resume position sends nothing: its message started earlier (the new primary holds it
        suspended, or gets it at its start's place), and sending it again would take the place of the
        start the primary needs; nor does a request the member reported holding (it goes after the
        others, in case): with async steps a backup holds many of the order's requests (docs/faults.md,
        row 19).

        Args:
            executed: the position the new primary executed up to.
            held: the requests the member reported holding (its ``StateReport``).

        Returns:
            The requests to reload its link with.
        """
        first: List[Request] = []
        ids: Set[MsgId] = set()
        for a in self.log.after(executed):
            # a resume's message started earlier: once, at its start's place (async steps)
            if a.resume == 0 and a.msg_id in self.requests and a.msg_id not in ids and a.msg_id not in held:
                first.append(self.requests[a.msg_id])
                ids.add(a.msg_id)
        return first + [r for r in self.requests.values() if r.msg_id not in ids]

    def _new_view(self, members: List[str]) -> None:
        """Install the next view with ``members`` (its NewView goes on their links)."""
        self.view += 1
        self.counts["view_changes"] += 1
        self.members = list(members)
        self.tracker.install_view(NewView(self.view, tuple(members)))

    def _want_replicas(self) -> None:
        """Ask the host for replicas until ``min_replicas`` are members, joining or spawning."""
        have = len(self.members) + len(self.joining) + len(self.spawning)
        while have < self.config.min_replicas and self.phase != Phase.LOST:
            rid = self.new_replica_id()
            self._spawns.append(rid)
            self.spawning.add(rid)
            have += 1

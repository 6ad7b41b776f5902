"""One replica of a group, as a pure state machine (no I/O, no clock).

The host (the Ray runtime or the simulator) drives it like etcd's RawNode:

    core.deliver(msg)                      # a Deliver from the router
    core.set_resumable(msg_ids)            # suspended messages whose awaited event arrived
    while (effect := core.next_effect()):  # Restore, Execute or Snapshot
        ...                                # carry it out, then report:
        core.executed(msg_id, outcome)     # after an Execute that finished its message
        core.suspend(msg_id)               # after an Execute whose method waits (async)
        core.snapshot_taken(pos, state, digest)  # after a Snapshot
    answer = core.take_delivered()         # the Delivered to return

Async methods run in *steps*: from their start, or a resume, to the next point where
they wait for something outside them (a nested reply, a timer). Each step holds one
position of the order: the primary chooses which suspended message resumes, or which
new message starts, and announces it (``Announcement.resume``/``wake``) like any other
position; backups and a new primary replaying the order resume in exactly that order
(claims 1, 5, 39). Sync methods are one step. Snapshots wait for a position at which
no message is suspended, so a checkpoint never holds a half-run coroutine.

Roles and their legal transitions are in :data:`TRANSITIONS`. The primary
chooses the order with its scheduler and announces it *after* starting a
message (claims 35, 55): the announcement rides on the Delivered that carries
the reply (claims 42-45). Semi-active backups execute in announced order
(claims 41, 63, 64); passive backups log and keep checkpoints. A reply to a
nested request is consumed at once, without an announcement (claim 48).
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

from ftactors.core.config import CoreConfig
from ftactors.core.dedup import DedupTable
from ftactors.core.errors import (
    AcknowledgedDuplicateError,
    LocalProtocolError,
    RemoteProtocolError,
    ReplyUnavailableError,
    StaleViewError,
)
from ftactors.core.messages import (
    Announcement,
    Checkpoint,
    Deliver,
    Delivered,
    Holds,
    Kind,
    MsgId,
    NewView,
    caller_of,
    calling_path,
    HOLD_RANGES_MAX,
    hold_runs,
    lineage,
    merge_holds,
    nested_source,
    Outcome,
    Reply,
    Request,
    StateReport,
)
from ftactors.core.scheduler import Queued, ScheduleContext, Scheduler, make_scheduler

#: one-way nested calls on their way a primary remembers at most (``ReplicaCore.oneway_out``); past
#: it the oldest is dropped (counted ``oneway_out_dropped``) and its calling message no longer held.
#: Also the most one-way calls a replica keeps to send again if it becomes primary
#: (``ReplicaCore.oneway_kept``, the oldest dropped first, counted ``oneway_kept_dropped``)
ONEWAY_OUT_MAX = 256


class Role(str, enum.Enum):
    """What a replica does in the current view."""

    PRIMARY = "primary"
    BACKUP = "backup"
    JOINING = "joining"
    FENCED = "fenced"


#: (role, event) -> new role. Anything else is illegal and raises.
TRANSITIONS: Dict[Tuple[Role, str], Role] = {
    (Role.PRIMARY, "view_primary"): Role.PRIMARY,
    (Role.PRIMARY, "view_removed"): Role.FENCED,
    (Role.BACKUP, "view_primary"): Role.PRIMARY,
    (Role.BACKUP, "view_backup"): Role.BACKUP,
    (Role.BACKUP, "view_removed"): Role.FENCED,
    (Role.BACKUP, "join"): Role.BACKUP,  # repaired by state transfer (its state diverged)
    (Role.JOINING, "join"): Role.BACKUP,
    (Role.JOINING, "view_removed"): Role.FENCED,
    (Role.FENCED, "join"): Role.BACKUP,
    (Role.FENCED, "view_removed"): Role.FENCED,
}


@dataclass(frozen=True, slots=True)
class Restore:
    """Effect: replace the application state with ``checkpoint.state``."""

    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class Execute:
    """Effect: run ``request`` as the ``position``-th message; report with ``executed``.

    ``replay`` is True when the order was announced by an earlier primary;
    ``nondet`` holds the values that primary chose, to be replayed.
    """

    position: int
    request: Request
    replay: bool
    nondet: Tuple[Any, ...] = ()
    resume: int = 0
    wake: Any = None


@dataclass(slots=True)
class _Held:
    """A message started but suspended (an async method waiting), and what its steps used."""

    request: Request
    resumes: int = 0  # steps after the first, so far
    nested_count: int = 0  # nested requests made so far (their ids continue across steps)
    # the step that suspended replayed one an earlier primary announced: that primary sent the nested
    # call it awaits, maybe long ago (a backup promoted since sends it again: suspended_reply_gone)
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Effect: capture the application state; report with ``snapshot_taken``.

    ``for_checkpoint``: the state itself is needed (a checkpoint); otherwise
    only its digest is (a divergence check).
    """

    position: int
    for_checkpoint: bool


Effect = Union[Restore, Execute, Snapshot]


#: client sources never contain it; nested sources do (:func:`~ftactors.core.messages.nested_source`)
NESTED_MARK = "|"


class ReplicaCore:
    """The protocol state machine of one replica.

    Args:
        group: the group name.
        replica_id: this replica's name, unique in the group forever.
        config: protocol settings.
        scheduling: a scheduler name, class or instance (primary only uses it).
        initial_view: the view at group creation (this replica starts as
            primary or backup with the initial application state); None for a
            replica that joins later by state transfer.

    Raises:
        ConfigError: for a bad scheduler.
    """

    def __init__(
        self,
        group: str,
        replica_id: str,
        config: CoreConfig,
        scheduling: object = "reception",
        initial_view: Optional[NewView] = None,
    ) -> None:
        self.group = group
        self.replica_id = replica_id
        self.config = config
        self._scheduling = scheduling
        self._sched: Scheduler = make_scheduler(scheduling, config.sources_max)
        self._sched_ctx: Optional[ScheduleContext] = None  # the last one given to the scheduler
        self.view = 0
        self.members: Tuple[str, ...] = ()
        self.role = Role.JOINING
        self.executed_upto = 0
        self.app_position = 0
        self.requests: Dict[MsgId, Request] = {}
        self.order: Dict[int, Announcement] = {}
        self.dedup = DedupTable(config.reply_cache_max, config.sources_max)
        self.checkpoint: Optional[Checkpoint] = None
        self.executing: Optional[Execute] = None
        self.suspended: "OrderedDict[MsgId, _Held]" = OrderedDict()  # at most suspended_max
        self._resumable: Tuple[MsgId, ...] = ()
        self.now = 0
        self.unavailable: frozenset = frozenset()
        self.next_seq: "OrderedDict[str, int]" = OrderedDict()  # at most sources_max, least recent first
        # calling group -> the highest view of its nested requests accepted here (StateReport.source_views);
        # at most sources_max groups, the least recently raised first
        self.source_views: "OrderedDict[str, int]" = OrderedDict()
        self._arrivals = 0
        self._effects: Deque[Effect] = deque()
        self._replies: List[Reply] = []
        self._announcements: List[Announcement] = []
        self._checkpoint_out: Optional[Checkpoint] = None
        self._digests: List[Tuple[int, str]] = []
        self._snapshot_pending: Optional[bool] = None
        self._nested_count = 0
        self._reply_copies: "OrderedDict[MsgId, Reply]" = OrderedDict()  # at most reply_copies_max
        self._copies_out: "OrderedDict[MsgId, Reply]" = OrderedDict()  # primary: to push, at most reply_copies_max
        self._recent: "OrderedDict[int, Tuple[Announcement, Request]]" = OrderedDict()  # for recovery
        self._carry: Dict[str, "OrderedDict[int, Announcement]"] = {}
        self.counts: Dict[str, int] = {"executed": 0, "replayed": 0, "duplicates": 0, "fenced": 0,
                                       "reply_copies_out": 0, "reply_copies_in": 0, "reply_copies_used": 0,
                                       "reply_copies_pulled": 0, "oneway_out_dropped": 0,
                                       "replies_lost": 0, "oneway_kept_dropped": 0, "oneway_resent": 0}
        # one-way nested calls this primary sent that the callee's router has not taken yet -> the
        # calling path (root, path) of their calling message, named in Request.holds meanwhile
        self.oneway_out: "OrderedDict[MsgId, Tuple[str, Tuple[int, ...]]]" = OrderedDict()
        # the one-way nested calls of the messages this replica executed (every role; a passive
        # backup: those its checkpoint carries), until known taken: a promoted primary sends them
        # again (take_resend), as it does not run their calling messages again (row 54)
        self.oneway_kept: "OrderedDict[MsgId, Request]" = OrderedDict()
        self._resend: List[Request] = []
        # the one-way calls this primary learnt taken since its last answer (Delivered.oneway_taken), and
        # those any replica learnt taken (a backup: Deliver.oneway_taken), so that it does not keep them
        # (row 69); each at most ONEWAY_OUT_MAX, the oldest dropped first
        self._taken_out: "OrderedDict[MsgId, None]" = OrderedDict()
        self.oneway_known_taken: "OrderedDict[MsgId, None]" = OrderedDict()
        # a nested reply this replica needed to replay an announced step read "expired" at its callee:
        # it gave the step up and executes nothing until a state transfer repairs it (pulled_reply_gone)
        self.lost_reply: Optional[MsgId] = None
        if initial_view is not None:
            self.role = Role.PRIMARY if initial_view.primary == replica_id else Role.BACKUP
            if replica_id not in initial_view.members:
                raise LocalProtocolError(f"{replica_id} is not in its initial view {initial_view.members}")
            self.view, self.members = initial_view.view, initial_view.members

    # ------------------------------------------------------------------ inputs

    def deliver(self, msg: Deliver) -> None:
        """Take one Deliver from the router.

        Raises:
            StaleViewError: the Deliver is from an older view (fencing); it was ignored.
            RemoteProtocolError: the Deliver is malformed for this replica's state.
        """
        if msg.view < self.view:
            self.counts["fenced"] += 1
            raise StaleViewError(f"{self.replica_id}: Deliver of view {msg.view} < {self.view}")
        if msg.view > self.view and msg.new_view is None:
            raise RemoteProtocolError(f"{self.replica_id}: view {msg.view} without NewView")
        if msg.join:
            self._join(msg)
        elif msg.new_view is not None:
            self._install_view(msg.new_view)
        if self.role in (Role.JOINING, Role.FENCED):
            return
        for req in msg.requests:
            self._accept_request(req)
        for ann in msg.announcements:
            self._accept_announcement(ann)
        if msg.checkpoint is not None and not msg.join:
            self._accept_checkpoint(msg.checkpoint)
        for rep in msg.reply_copies:
            self._accept_reply_copy(rep)
        for mid in msg.oneway_taken:
            self._learn_taken(mid)
        if msg.snapshot_wanted and self.role == Role.PRIMARY:
            self._want_snapshot(for_checkpoint=True)
        if msg.give_up_from and self._blocked_at(msg.give_up_from):
            self._give_up_order()

    def executed(self, msg_id: MsgId, outcome: Outcome, nondet: Tuple[Any, ...] = (), wake: Any = None) -> None:
        """Report the outcome of the current Execute: its message finished.

        Args:
            msg_id: the message executed.
            outcome: its value or exception.
            nondet: values the primary chose during execution (ignored on replay:
                the announced ones were used).
            wake: for a resume step, the host's name of the event that resumed it
                (ignored on replay).

        Raises:
            LocalProtocolError: nothing is executing, or it is another message.
        """
        ex = self._end_step(msg_id, "executed")
        req = ex.request
        ann = self._step_announcement(ex, nondet, wake)
        reply = Reply(msg_id, self.group, self.view, ex.position, outcome, (ann,)) if req.wants_reply else None
        self.dedup.record(msg_id, reply, holds=req.holds)
        # apply the source's acknowledgement only now: every seq below it was executed
        # before this message at every replica (a backup may hold it unexecuted before)
        self.dedup.acknowledge(msg_id.source, req.ack_below)
        self.executed_upto = self.app_position = ex.position
        self.order.pop(ex.position, None)
        self._drop_copies_of(msg_id)
        self._recent[ex.position] = (ann, req)
        while len(self._recent) > self.config.retain_executed_max:
            self._recent.popitem(last=False)
        self._advance_next_seq(msg_id)
        self.counts["executed"] += 1
        if self.role == Role.PRIMARY:
            self._announcements.append(ann)  # rides on the reply's Delivered (claims 42-45)
            if reply is not None:
                self._replies.append(reply)
        self._after_execution(ex.position)
        if self._snapshot_pending is not None:
            self._want_snapshot(self._snapshot_pending)

    def suspend(self, msg_id: MsgId, nondet: Tuple[Any, ...] = (), wake: Any = None) -> None:
        """Report that the current Execute ended with its (async) method waiting for something
        outside it: the step took its position; the message resumes at a later one.

        Args:
            msg_id: the message executing.
            nondet: values the primary chose during this step (ignored on replay).
            wake: for a resume step, the host's name of the event that resumed it.

        Raises:
            LocalProtocolError: nothing is executing, or it is another message.
        """
        ex = self._end_step(msg_id, "suspend")
        ann = self._step_announcement(ex, nondet, wake)
        assert len(self.suspended) < self.config.suspended_max or ex.replay, "suspended_max exceeded"
        self.suspended[msg_id] = _Held(ex.request, ex.resume, self._nested_count, ex.replay)
        self.executed_upto = self.app_position = ex.position
        self.order.pop(ex.position, None)
        self._recent[ex.position] = (ann, ex.request)
        while len(self._recent) > self.config.retain_executed_max:
            self._recent.popitem(last=False)
        if self.role == Role.PRIMARY:
            self._announcements.append(ann)
        self._after_execution(ex.position)  # a snapshot due here waits until nothing is suspended

    def set_resumable(self, msg_ids: Tuple[MsgId, ...]) -> None:
        """The host's suspended messages whose awaited event arrived, oldest first; the
        primary resumes the first of them before starting anything new (backups and a
        replaying primary follow the announced order instead).

        Args:
            msg_ids: messages the host can resume now.
        """
        self._resumable = tuple(msg_ids)

    def _end_step(self, msg_id: MsgId, what: str) -> Execute:
        ex = self.executing
        if ex is None or ex.request.msg_id != msg_id:
            raise LocalProtocolError(f"{what}({msg_id}) but executing {ex and ex.request.msg_id}")
        self.executing = None
        return ex

    def _step_announcement(self, ex: Execute, nondet: Tuple[Any, ...], wake: Any) -> Announcement:
        if ex.replay:
            return Announcement(self.group, self._announced_view(ex), ex.position, ex.request.msg_id,
                                ex.nondet, ex.resume, ex.wake)
        return Announcement(self.group, self.view, ex.position, ex.request.msg_id, tuple(nondet), ex.resume,
                            wake if ex.resume else None)

    def snapshot_taken(self, position: int, state: Any, digest: str) -> None:
        """Report a snapshot taken for a Snapshot effect.

        Args:
            position: the Snapshot's position (must equal the executed position).
            state: the application state (None if only the digest was wanted).
            digest: a digest of the state.
        """
        if position != self.executed_upto:
            raise LocalProtocolError(f"snapshot at {position} but executed {self.executed_upto}")
        self._digests.append((position, digest))
        if state is not None and self.role == Role.PRIMARY:
            self._checkpoint_out = Checkpoint(self.group, self.view, position, state, self.dedup.export(), digest,
                                              tuple(self.oneway_kept.values()))

    def tick(self, now: int) -> None:
        """Advance time to tick ``now`` (sequence gaps, deadlines). A new primary lacking a message of
        the order it took over does not give that order up on this clock: its router tells it to
        (``Deliver.give_up_from``; docs/faults.md, row 44)."""
        self.now = now

    def set_unavailable(self, resources: frozenset) -> None:
        """Resource scheduling: these resources are not available now."""
        self.unavailable = frozenset(resources)

    # ----------------------------------------------------------- nested calls

    def nested_request(
        self,
        target_group: str,
        method: str,
        payload: Any = None,
        kind: Kind = Kind.SYNC_REQUEST,
        priority: int = 0,
        deadline_tick: Optional[int] = None,
        resources: Tuple[str, ...] = (),
        size_bytes: int = 0,
    ) -> Tuple[Request, bool]:
        """Make the request for a nested invocation by the executing message.

        Returns:
            (request, send): ``send`` is True at the primary, which sends it; a
            backup does not send it and waits for the reply copy instead.

        Raises:
            LocalProtocolError: no message is executing.
        """
        ex = self.executing
        if ex is None:
            raise LocalProtocolError("nested_request outside an execution")
        self._nested_count += 1  # counts per message, across its steps: equal at every replica
        carry = self._carry.get(target_group)
        req = Request(
            kind=kind, msg_id=MsgId(nested_source(self.group, ex.request.msg_id), self._nested_count),
            group=target_group, method=method, payload=payload, priority=priority,
            deadline_tick=deadline_tick, resources=resources, source_view=self.view,
            peer_announcements=tuple(carry.values()) if carry else (), size_bytes=size_bytes,
            holds=self._holds(ex.request),
        )
        if carry:
            carry.clear()
        if kind == Kind.ONEWAY:
            self.keep_oneway(req)
            if self.role == Role.PRIMARY:
                self.oneway_sent(req.msg_id)
        return req, self.role == Role.PRIMARY

    def keep_oneway(self, req: Request) -> None:
        """Keep the one-way nested call ``req`` that the executing message made, at any role, to send it
        again if this replica becomes primary before the callee's router took it (the message is not
        run again then: a semi-active backup ran it, a checkpoint covers it). A call made with
        ``Kind.ONEWAY`` is kept by :meth:`nested_request` itself; a host whose one-way calls travel as
        acknowledged requests calls this, with the request as it can send it again (its argument by
        value). At most ``ONEWAY_OUT_MAX``; the oldest goes first (counted ``oneway_kept_dropped``).
        A primary forgets it once taken (:meth:`oneway_taken`); a backup when its primary names it taken
        (``Deliver.oneway_taken``, maybe before the backup made the call: it is not kept then), when a
        checkpoint says so, or when it is among the oldest past the bound.

        Args:
            req: the nested request.
        """
        if req.msg_id in self.oneway_known_taken and self.role != Role.PRIMARY:
            return  # a primary that makes it again (a promoted passive backup replaying) sends it: kept till taken
        self.oneway_kept[req.msg_id] = req
        while len(self.oneway_kept) > ONEWAY_OUT_MAX:
            self.oneway_kept.popitem(last=False)
            self.counts["oneway_kept_dropped"] += 1

    def take_resend(self) -> Tuple[Request, ...]:
        """The one-way nested calls this replica, just promoted, sends again (its dead primary may
        have died before the callees' routers took them; a callee drops the duplicates of those that
        arrived). Each is noted on its way (``oneway_out``) until the host reports it taken
        (:meth:`oneway_taken`), like a call sent from a method.

        Returns:
            The requests (their ``source_view`` the new view), each once; empty but after a promotion.
        """
        if not self._resend:  # every Deliver asks
            return ()
        out, self._resend = tuple(self._resend), []
        return out

    def oneway_sent(self, msg_id: MsgId) -> None:
        """This primary sends the one-way nested call ``msg_id``: until the callee's router took it
        (:meth:`oneway_taken`), its calling message stays named in the ``holds`` of the nested
        requests this replica makes, so no floor of the callee passes it while it is on its way
        (a call made with ``Kind.ONEWAY`` is noted by :meth:`nested_request` itself; a host whose
        one-way calls travel as acknowledged requests calls this). At most ``ONEWAY_OUT_MAX``
        are remembered; the oldest goes first (counted ``oneway_out_dropped``).

        Args:
            msg_id: the nested request's id (its source names the calling message).
        """
        caller = caller_of(self.group, msg_id.source)
        if caller is None:
            return
        self.oneway_out[msg_id] = calling_path(caller)
        while len(self.oneway_out) > ONEWAY_OUT_MAX:
            self.oneway_out.popitem(last=False)
            self.counts["oneway_out_dropped"] += 1

    def oneway_taken(self, msg_id: MsgId) -> None:
        """The callee's router took the one-way nested call ``msg_id`` (its invoke returned), or it
        failed: its calling message is no longer held for it.

        Args:
            msg_id: the nested request's id.
        """
        self.oneway_out.pop(msg_id, None)
        self.oneway_kept.pop(msg_id, None)
        if self.role == Role.PRIMARY:  # named on the next answer: the router passes it to the backups
            self._taken_out[msg_id] = None
            while len(self._taken_out) > ONEWAY_OUT_MAX:
                self._taken_out.popitem(last=False)

    def _learn_taken(self, msg_id: MsgId) -> None:
        """The primary says the callee's router took the one-way nested call ``msg_id`` (``Deliver.oneway_taken``):
        forget it, and do not keep it if this replica makes it later (it lags). At most ``ONEWAY_OUT_MAX``
        such ids are remembered, the oldest dropped first (docs/faults.md, row 69)."""
        self.oneway_kept.pop(msg_id, None)
        self.oneway_out.pop(msg_id, None)
        self.oneway_known_taken[msg_id] = None
        self.oneway_known_taken.move_to_end(msg_id)
        while len(self.oneway_known_taken) > ONEWAY_OUT_MAX:
            self.oneway_known_taken.popitem(last=False)

    def _holds(self, caller: Request) -> Holds:
        """The calling paths of ``caller``'s root held here unfinished besides ``caller`` (queued,
        suspended, or finished with a one-way nested call still on its way: ``oneway_out``), the
        earlier messages of ``caller``'s source that never ran here (:meth:`_not_yet_run`), and
        those ``caller``'s own caller held: a floor of the callee must not pass them
        (``Request.holds``). Scans the messages held (``requests_max`` at most) and ``oneway_out``.

        Args:
            caller: the message making a nested call.

        Returns:
            The paths as runs, the lowest ``HOLD_RANGES_MAX``.
        """
        root, own = calling_path(caller.msg_id)
        held = []
        for req in [h.request for h in self.suspended.values()] + list(self.requests.values()):
            r, path = calling_path(req.msg_id)
            if r == root and req.msg_id != caller.msg_id:
                held.append(path)
        held.extend(path for r, path in self.oneway_out.values() if r == root and path != own)
        return merge_holds(merge_holds(caller.holds, self._not_yet_run(caller)), hold_runs(held))

    def _not_yet_run(self, caller: Request) -> Holds:
        """The calling paths of ``caller``'s source's earlier messages that never ran here and may
        still come: its router relayed ``caller`` past a missing one (``sequence_gap_ticks``), or a
        scheduler runs it first. Named in ``holds`` like a queued message, so the callee's floor,
        raised when it forgets the nested sources of ``caller`` and later messages, never passes
        them (docs/faults.md row 48). From the exactly-once table, so every replica (and one restored
        from a checkpoint) names the same; none once the table dropped a root floor (it could name
        calls that ran, and a duplicate of their nested calls would run again).

        Args:
            caller: the message making a nested call.

        Returns:
            Their calling paths as runs, the lowest ``HOLD_RANGES_MAX``.
        """
        mid = caller.msg_id
        prefix = lineage(mid.source)[1]
        return tuple((prefix, lo, hi) for lo, hi in
                     self.dedup.unrun_below(mid.source, mid.seq, caller.ack_below, HOLD_RANGES_MAX))

    def nested_reply(self, reply: Reply) -> None:
        """The reply to a nested request arrived (at the primary, or as a copy at a backup).

        It is consumed at once (claim 48); the callee's announcements it carries
        are kept to be carried back on the next request to that group (claim 66).
        At the primary the reply also goes into the outbox for the backups: it rides
        on the next Delivered, no later than the calling message's announcement, and
        the router relays it on the Delivers that carry that announcement (a push that
        costs no message). At most ``reply_copies_max`` wait; the oldest drop first
        (the backups that needed them pull them).

        Args:
            reply: the reply, as the callee's router released it.
        """
        self.carry_back(reply.group, reply.announcements)
        if self.role == Role.PRIMARY:
            self._copies_out[reply.msg_id] = reply
            self.counts["reply_copies_out"] += 1
            while len(self._copies_out) > self.config.reply_copies_max:
                self._copies_out.popitem(last=False)

    def carry_back(self, group: str, announcements: Tuple[Announcement, ...]) -> None:
        """Keep announcements of ``group`` (from its reply to a nested request) to carry back
        on the next request to it (claim 66). Hosts that learn a reply's announcements apart
        from its value feed them here. At most ``carried_announcements_max`` are kept.

        Args:
            group: the callee group.
            announcements: its announcements carried by the reply.
        """
        if not announcements:
            return
        carry = self._carry.setdefault(group, OrderedDict())
        for ann in announcements:
            carry[ann.position] = ann
        while len(carry) > self.config.carried_announcements_max:
            carry.popitem(last=False)

    def reply_copy(self, msg_id: MsgId) -> Optional[Reply]:
        """A backup: take the pushed reply copy of a nested request, or None if not here yet.

        Args:
            msg_id: the nested request.

        Returns:
            The copy (consumed: its announcements are kept to carry back), or None. The
            copy travels no later than the announcement of the step that needs it, so a host
            missing it once that announcement is here pulls it from the callee's router.
        """
        rep = self._reply_copies.pop(msg_id, None)
        if rep is not None:
            self.counts["reply_copies_used"] += 1
            self.nested_reply(rep)
        return rep

    def copy_or_pull(self, msg_id: MsgId, consuming: bool) -> Tuple[Optional[Reply], bool]:
        """A backup needs the reply of its nested request ``msg_id``: take the pushed copy, wait for
        it, or pull it from the callee's router.

        The primary pushes the copy on the answer that carries an announcement of the calling
        message, no later than the announcement of the step that *consumes* the reply: a sync
        call's own step, or the resume step of an async call on that reply (the step that makes
        an async call only suspends on it). Waiting for a copy until then costs no message, and
        neither the caller nor the primary waits for it; a copy still missing when the consuming
        step runs was lost (with a router that restarted, a reloaded link, past
        ``reply_copies_max``) or is owed to a promoted replica, and is pulled (counted as
        ``reply_copies_pulled``).

        Args:
            msg_id: the nested request.
            consuming: the step running now consumes the reply (or this replica became primary
                and its suspended call needs the reply to be resumable); False: an async step
                that suspends on the call.

        Returns:
            ``(copy, pull)``: the copy (taken, see :meth:`reply_copy`) and False; or None and
            whether to pull the reply now (True only when ``consuming``; False: the copy rides
            with a later announcement, wait for it).
        """
        copy = self.reply_copy(msg_id)
        if copy is not None or not consuming:
            return copy, False
        self.counts["reply_copies_pulled"] += 1
        return None, True

    def pulled_reply_gone(self, msg_id: MsgId) -> bool:
        """The reply of nested request ``msg_id``, which the step executing now needs, came back from
        the callee as gone: its callee executed the call but forgot its reply or its whole source
        (``ReplyUnavailableError``, a message read "expired": ``reply_cache_max``, ``sources_max``).

        A replica *replaying* an announced step (a semi-active backup, or a promoted backup still
        replaying the order it took over) cannot run that step on: the primary's method got the
        value, and this one would get an error the primary never saw (its state would diverge).
        So it gives the step up (the step is not executed: the application state the method
        changed before its nested call is left behind, and the replica executes nothing more),
        and every Delivered carries ``lost_reply`` until a state transfer (a join) repairs it:
        the router repairs a backup in place and removes a primary (``RouterCore._resync_lost_reply``).
        A primary running a step of its own choice takes the error as the call's outcome (its
        backups replay that).

        Args:
            msg_id: the nested request whose reply is gone.

        Returns:
            True: the step is given up (the host drops the execution: no ``executed`` or
            ``suspend`` for it); False: the host hands the error to the method.

        Raises:
            LocalProtocolError: nothing executes, or ``msg_id`` is not a nested request of the
                message executing.
        """
        ex = self.executing
        if ex is None or caller_of(self.group, msg_id.source) != ex.request.msg_id:
            raise LocalProtocolError(f"pulled_reply_gone({msg_id}) but executing {ex and ex.request.msg_id}")
        if not ex.replay:
            return False
        self.executing = None
        # kept as held (a StateReport lists it), never executed here again: the join drops it
        if ex.resume:
            self.suspended[ex.request.msg_id] = _Held(ex.request, ex.resume - 1, self._nested_count, True)
        else:
            self.requests[ex.request.msg_id] = ex.request
        self.lost_reply = msg_id
        self.counts["replies_lost"] += 1
        return True

    def suspended_reply_gone(self, msg_id: MsgId) -> bool:
        """The reply of nested request ``msg_id``, which a message suspended here awaits, came back from
        the callee as gone (``ReplyUnavailableError``: the callee executed the call and forgot it,
        ``reply_cache_max``, ``sources_max``), outside any step, so no step can be given up now.

        Such a reply is legitimate at a backup (a pull ahead of the resume step) and at a replica
        whose suspending step replayed one an earlier primary announced (a backup promoted since:
        that primary sent the call, maybe long before this replica sent it again, and its reply or
        its copy was lost with it). The host then makes the call resumable with the error as its
        value and decides at the resume step with :meth:`pulled_reply_gone`: a replayed resume
        step (the order it took over, or follows, resumed the call on the real value) is given up
        and the replica resynced or removed; a resume of the primary's own choice raises the error
        into the method, and the primary pushes the error as the reply copy with that step's
        announcement, so every replica runs the same step and the caller gets a typed
        ``ReplyUnavailableError`` (docs/faults.md row 53). The reply of a call this primary made
        itself reads gone if an earlier primary made the same call in a step it never announced
        (this primary started the message afresh: docs/faults.md row 55), or if its callee forgot
        the call while the reply was on its way. The host then ends the call on the error as a step
        of its own choice (the error raised into the method, pushed as the reply copy with the
        step's announcement, as above); the simulator, which knows which replica sent the call
        first, reports only the second case as a failure (I6).

        Args:
            msg_id: the nested request whose reply is gone.

        Returns:
            True: the host resumes the call with the error, as above; False: the call is this
            primary's own (the host raises the error into the method at the resume step, as above).

        Raises:
            LocalProtocolError: no message suspended here awaits ``msg_id``.
        """
        caller = caller_of(self.group, msg_id.source)
        held = self.suspended.get(caller) if caller is not None else None
        if held is None:
            raise LocalProtocolError(f"suspended_reply_gone({msg_id}) but {caller} is not suspended here")
        return self.role == Role.BACKUP or held.replayed

    def has_reply_copy(self, msg_id: MsgId) -> bool:
        """Whether the pushed reply copy of nested request ``msg_id`` is here (not taken)."""
        return msg_id in self._reply_copies

    def carried_for(self, group: str) -> Tuple[Announcement, ...]:
        """Announcements of ``group`` this replica holds (for that group's recovery, claim 65)."""
        carry = self._carry.get(group)
        return tuple(carry.values()) if carry else ()

    # ----------------------------------------------------------------- outputs

    def next_effect(self) -> Optional[Effect]:
        """The next thing the host must do, or None when there is nothing to do now."""
        if self._effects:
            return self._effects.popleft()
        if self.executing is not None or self.role not in (Role.PRIMARY, Role.BACKUP) or self.lost_reply is not None:
            return None
        if self.role == Role.BACKUP and self.config.style == "passive":
            return None
        ex = self._next_announced()
        if ex is None and self.role == Role.PRIMARY and not self._waiting_for_order():
            ex = self._next_resumed() or self._next_scheduled()
        if ex is not None:
            self.executing = ex
            held = self.suspended.pop(ex.request.msg_id, None) if self.suspended else None
            # nested ids count per message: equal at every replica and re-execution
            self._nested_count = held.nested_count if held is not None else 0
            if ex.resume == 0:
                self.requests.pop(ex.request.msg_id, None)
                self._sched.remove(ex.request.msg_id)
            if ex.replay:
                self.counts["replayed"] += 1
        return ex

    def take_delivered(self) -> Delivered:
        """The answer to the router: replies, announcements, acknowledgement; clears the outbox.

        A nested reply's copy goes on the answer that carries an announcement of its calling
        message (the step that consumes it, or a later one), never on an earlier answer: answers
        to Delivers sent on different paths (a direct link, a Ray call) may reach the router out
        of order, and a copy must reach the backups no later than the step that needs it.
        """
        out = Delivered(
            replica=self.replica_id, view=self.view, replies=tuple(self._replies),
            announcements=tuple(self._announcements), acked_position=self.acked_position(),
            checkpoint=self._checkpoint_out, digests=tuple(self._digests), suspended=len(self.suspended),
            reply_copies=self._take_copies_out() if self._copies_out else (), lost_reply=self.lost_reply,
            oneway_taken=tuple(self._taken_out) if self._taken_out else (),
        )
        if self._taken_out:
            self._taken_out.clear()
        self._replies, self._announcements, self._digests = [], [], []
        self._checkpoint_out = None
        return out

    def _take_copies_out(self) -> Tuple[Reply, ...]:
        """The copies whose calling message has an announcement in the outbox; the rest wait."""
        if not self._copies_out:
            return ()
        announced = {ann.msg_id for ann in self._announcements}
        ready = [mid for mid in self._copies_out if caller_of(self.group, mid.source) in announced]
        return tuple(self._copies_out.pop(mid) for mid in ready)

    def replies_waiting(self) -> bool:
        """Whether the outbox holds replies (the host answers its Deliver at once then)."""
        return bool(self._replies)

    def acked_position(self) -> int:
        """Executed positions (semi-active, primary) or logged ones (passive backup)."""
        if self.role == Role.BACKUP and self.config.style == "passive":
            pos = self.executed_upto
            while (ann := self.order.get(pos + 1)) is not None and ann.msg_id in self.requests:
                pos += 1
            return pos
        return self.executed_upto

    def state_report(self) -> StateReport:
        """What this replica holds, for recovery (claim 65): the requests it holds, the one it
        executes now (a long call, or one waiting for a nested reply: the router may never
        have seen it, and the backups need it if this replica dies), and its recent history."""
        recent = list(self._recent.values())
        running = tuple(h.request for h in self.suspended.values())
        if self.executing is not None and self.executing.request.msg_id not in self.suspended:
            running += (self.executing.request,)
        return StateReport(
            replica=self.replica_id, view=self.view, executed_position=self.executed_upto,
            requests=tuple(self.requests.values()) + running + tuple(req for _, req in recent),
            announcements=tuple(ann for ann, _ in recent) + tuple(self.order[p] for p in sorted(self.order)),
            source_views=tuple(self.source_views.items()),
        )

    def waits_for(self) -> str:
        """What this replica needs to execute its next position, in words (for ``ftactors.describe``
        and a chaos run's convergence check): "" when nothing is missing.

        Returns:
            For instance ``"the announcement of position 1045 (12 later ones held)"`` or
            ``"the request c1#7 announced at position 1045"``.
        """
        nxt = self.executed_upto + 1
        if self.executing is not None:
            return f"the end of position {self.executing.position} ({self.executing.request.msg_id})"
        if self.role not in (Role.PRIMARY, Role.BACKUP):
            return f"a state transfer ({self.role.value})"
        if self.lost_reply is not None:
            return f"a state transfer (the reply of {self.lost_reply} is gone at its callee)"
        if self.role == Role.BACKUP and self.config.style == "passive":
            return ""
        ann = self.order.get(nxt)
        if ann is None:
            if self.role == Role.PRIMARY and not self.order:
                return ""
            return f"the announcement of position {nxt} ({len(self.order)} later ones held)"
        if ann.resume:
            return "" if ann.msg_id in self.suspended else f"the suspended call {ann.msg_id} resumed at {nxt}"
        return "" if ann.msg_id in self.requests else f"the request {ann.msg_id} announced at position {nxt}"

    def has_work(self) -> bool:
        """True if ``next_effect`` would return something now."""
        if self._effects:
            return True
        if self.executing is not None or self.role not in (Role.PRIMARY, Role.BACKUP) or self.lost_reply is not None:
            return False
        if self.role == Role.BACKUP and self.config.style == "passive":
            return False
        ann = self.order.get(self.executed_upto + 1)
        if ann is not None:
            return ann.msg_id in (self.suspended if ann.resume else self.requests)
        if self.role != Role.PRIMARY or self._waiting_for_order():
            return False
        if any(m in self.suspended for m in self._resumable):
            return True
        if len(self._sched) == 0 or len(self.suspended) >= self.config.suspended_max:
            return False
        return not (self._snapshot_pending and self.suspended) or self._next_nested() is not None

    # ------------------------------------------------------------- internals

    def _transition(self, event: str) -> None:
        new = TRANSITIONS.get((self.role, event))
        if new is None:
            raise RemoteProtocolError(f"{self.replica_id}: illegal {event} in role {self.role.value}")
        self.role = new

    def _install_view(self, nv: NewView) -> None:
        was = self.role
        if self.replica_id not in nv.members:
            self._transition("view_removed")
            self.view, self.members = nv.view, nv.members
            self._drop_all()
            return
        if self.role in (Role.JOINING, Role.FENCED):
            raise RemoteProtocolError(f"{self.replica_id}: NewView before join")
        self._transition("view_primary" if nv.primary == self.replica_id else "view_backup")
        self.view, self.members = nv.view, nv.members
        if was == Role.BACKUP and self.role == Role.PRIMARY:
            self._promote()

    def _promote(self) -> None:
        """A backup becomes primary: restore (passive), then replay the announced order."""
        cp = self.checkpoint
        if cp is not None and self.app_position < cp.position:
            self._effects.append(Restore(cp))
            self.app_position = self.executed_upto = cp.position
        self._sched = make_scheduler(self._scheduling, self.config.sources_max)
        for req in self.requests.values():
            if not self._is_announced(req.msg_id):
                self._push(req)
        for req in self.oneway_kept.values():  # the calls the dead primary may not have delivered
            self._resend.append(replace(req, source_view=self.view))
            self.oneway_sent(req.msg_id)
        self.counts["oneway_resent"] += len(self._resend)

    def _join(self, msg: Deliver) -> None:
        if msg.checkpoint is None or msg.new_view is None:
            raise RemoteProtocolError(f"{self.replica_id}: join without checkpoint or view")
        if self.replica_id not in msg.new_view.members or msg.new_view.primary == self.replica_id:
            raise RemoteProtocolError(f"{self.replica_id}: join into a view that does not hold it as backup")
        self._transition("join")
        self._drop_all()
        cp = msg.checkpoint
        self.checkpoint = cp
        self.dedup = DedupTable.restore(cp.dedup, self.config.reply_cache_max, self.config.sources_max)
        self.executed_upto = self.app_position = cp.position
        self._keep_oneway_of(cp)
        self._effects.append(Restore(cp))
        self.view, self.members = msg.new_view.view, msg.new_view.members

    def _keep_oneway_of(self, cp: Checkpoint) -> None:
        """Keep the one-way calls ``cp`` says were on their way (and only those: the checkpoint covers
        the messages that made the ones kept before)."""
        self.oneway_kept = OrderedDict((req.msg_id, req) for req in cp.oneway[-ONEWAY_OUT_MAX:]
                                       if req.msg_id not in self.oneway_known_taken)

    def _drop_all(self) -> None:
        self.lost_reply = None  # a join restores the state; a replica removed from the view executes nothing
        self._recent.clear()
        self.requests.clear()
        self.suspended.clear()  # the host drops its coroutines with them (Restore, or fenced)
        self.order.clear()
        self._sched = make_scheduler(self._scheduling, self.config.sources_max)
        self._effects.clear()
        self._replies, self._announcements, self._digests = [], [], []
        self._reply_copies.clear()
        self._copies_out.clear()
        self._checkpoint_out = None
        self._snapshot_pending = None
        self.oneway_kept.clear()
        self._taken_out.clear()
        self._resend = []

    def _accept_request(self, req: Request) -> None:
        if req.group != self.group:
            raise RemoteProtocolError(f"{self.replica_id}: request for group {req.group!r}")
        if req.source_view is not None:
            self._learn_source_view(req)
        status = self.dedup.status(req.msg_id)
        mid = req.msg_id
        if status != "new" or mid in self.requests or (self.suspended and mid in self.suspended) or \
                (self.executing and self.executing.request.msg_id == mid):
            self.counts["duplicates"] += 1
            if self.role == Role.PRIMARY and req.wants_reply:
                self._answer_duplicate(req, status)
            return
        if len(self.requests) >= self.requests_max():
            # dropping or refusing a copy the router relayed would lose it where the order needs it:
            # the router bounds what it relays (RouterCore.submit), so this is its fault
            raise RemoteProtocolError(f"{self.replica_id}: more than {self.requests_max()} requests relayed "
                                      f"(pending_max={self.config.pending_max})")
        self.requests[mid] = req
        if self.role == Role.PRIMARY and not self._is_announced(mid):
            self._push(req)

    def _learn_source_view(self, req: Request) -> None:
        """Remember the highest view of ``req``'s calling group relayed here (``StateReport.source_views``:
        a rebuilt router fences that group's deposed primaries with it); at most ``sources_max`` groups,
        the least recently raised forgotten first.

        Args:
            req: a nested request the router relayed (``source_view`` set).
        """
        view = req.source_view
        assert view is not None
        group = req.msg_id.source.split("|", 1)[0]
        if self.source_views.get(group, 0) >= view:
            return
        self.source_views.pop(group, None)
        self.source_views[group] = view
        while len(self.source_views) > self.config.sources_max:
            self.source_views.popitem(last=False)

    def requests_max(self) -> int:
        """The most requests this replica can be sent to hold: ``pending_max`` the router admitted
        (it refuses calls beyond), plus ``log_max`` the announced order may need from it: a passive
        backup keeps the requests of the positions it logged until a checkpoint covers them, after
        the router forgot them; a member that lags is sent, after a recovery or by a rebuilt
        router, every request of the order it lacks (the router replaces one lagging past
        ``log_max``); and ``inflight_max`` calls back into the group (rings), which the router
        admits past ``pending_max``."""
        return self.config.pending_max + self.config.inflight_max + self.config.log_max

    def _answer_duplicate(self, req: Request, status: str) -> None:
        if status == "done":
            rep = self.dedup.reply(req.msg_id)
            if rep is not None:
                self._replies.append(rep)
        elif status == "expired":
            err = ReplyUnavailableError(f"reply of {req.msg_id} was trimmed (reply_cache_max)")
            self._replies.append(Reply(req.msg_id, self.group, self.view, 0, Outcome(False, err)))
        elif status == "forgotten":
            # a router that never saw the source's ack_below (a rebuilt one) relayed a stale
            # duplicate and waits for it: answer, so that it stops waiting and retaining it
            ack = AcknowledgedDuplicateError(f"{req.msg_id}: its source acknowledged the reply")
            self._replies.append(Reply(req.msg_id, self.group, self.view, 0, Outcome(False, ack)))

    def _accept_announcement(self, ann: Announcement) -> None:
        if ann.group != self.group:
            raise RemoteProtocolError(f"{self.replica_id}: announcement of group {ann.group!r}")
        if ann.position <= self.executed_upto:
            return
        old = self.order.get(ann.position)
        if old is not None and ann.view <= old.view:
            return
        if old is None and len(self.order) >= self.config.log_max:
            raise RemoteProtocolError(f"{self.replica_id}: more than log_max={self.config.log_max} announcements")
        self.order[ann.position] = ann
        if self.role == Role.PRIMARY:
            self._sched.remove(ann.msg_id)

    def _accept_checkpoint(self, cp: Checkpoint) -> None:
        if self.role != Role.BACKUP or self.config.style != "passive":
            return
        if self.checkpoint is not None and cp.position <= self.checkpoint.position:
            return
        self.checkpoint = cp
        self.dedup = DedupTable.restore(cp.dedup, self.config.reply_cache_max, self.config.sources_max)
        self._keep_oneway_of(cp)
        for pos in [p for p in self.order if p <= cp.position]:
            self.requests.pop(self.order.pop(pos).msg_id, None)
        for mid in [m for m in self.requests if self.dedup.status(m) != "new"]:
            del self.requests[mid]
        for mid in [m for m in self._reply_copies if self._caller_done(m)]:
            del self._reply_copies[mid]  # the checkpoint holds their calling messages' effects
        self.executed_upto = max(self.executed_upto, cp.position)

    def _accept_reply_copy(self, rep: Reply) -> None:
        """A pushed copy of a nested reply: kept until the backup's call takes it, its calling
        message is executed here or a checkpoint covers it; at most ``reply_copies_max``."""
        if self._caller_done(rep.msg_id):
            return  # its calling message ran here already (it pulled the reply)
        self.counts["reply_copies_in"] += 1
        self._reply_copies[rep.msg_id] = rep
        while len(self._reply_copies) > self.config.reply_copies_max:
            self._reply_copies.popitem(last=False)

    def _caller_done(self, nested: MsgId) -> bool:
        """Whether the message whose execution made nested request ``nested`` is done here."""
        caller = caller_of(self.group, nested.source)
        return caller is not None and self.dedup.status(caller) != "new"

    def _drop_copies_of(self, caller: MsgId) -> None:
        """Forget the reply copies of ``caller``'s nested calls (it finished: none is needed)."""
        if not self._reply_copies:
            return
        source = nested_source(self.group, caller)
        for mid in [m for m in self._reply_copies if m.source == source]:
            del self._reply_copies[mid]

    def _advance_next_seq(self, msg_id: MsgId) -> None:
        """Remember the source's next sequence number (sequence scheduling); the least
        recently executed source is forgotten past ``sources_max`` (its next request then
        waits at most ``sequence_gap_ticks`` for an earlier one)."""
        nxt = max(self.next_seq.pop(msg_id.source, 1), msg_id.seq + 1)
        self.next_seq[msg_id.source] = nxt
        while len(self.next_seq) > self.config.sources_max:
            self.next_seq.popitem(last=False)

    def _push(self, req: Request) -> None:
        self._sched.push(Queued(req, self._arrivals, self.now))
        self._arrivals += 1

    def _is_announced(self, mid: MsgId) -> bool:
        return any(a.msg_id == mid for a in self.order.values()) if self.order else False

    def _announced_view(self, ex: Execute) -> int:
        ann = self.order.get(ex.position)
        return ann.view if (ex.replay and ann is not None) else self.view

    def _next_announced(self) -> Optional[Execute]:
        ann = self.order.get(self.executed_upto + 1)
        if ann is None:
            return None
        if ann.resume:
            held = self.suspended.get(ann.msg_id)
            if held is None:  # not started here: it cannot be (its start is an earlier position)
                raise RemoteProtocolError(f"{self.replica_id}: position {ann.position} resumes {ann.msg_id}, "
                                          f"which is not suspended here")
            return Execute(ann.position, held.request, replay=True, nondet=ann.nondet, resume=ann.resume,
                           wake=ann.wake)
        req = self.requests.get(ann.msg_id)
        if req is None:
            return None
        return Execute(ann.position, req, replay=True, nondet=ann.nondet)

    def _waiting_for_order(self) -> bool:
        """The primary still holds announced positions it has not executed (recovery)."""
        return bool(self.order)

    def _next_resumed(self) -> Optional[Execute]:
        """The primary resumes the first suspended message the host can resume."""
        for mid in self._resumable:
            held = self.suspended.get(mid)
            if held is not None:
                self._resumable = tuple(m for m in self._resumable if m != mid)
                return Execute(self.executed_upto + 1, held.request, replay=False, resume=held.resumes + 1)
        return None

    def _next_scheduled(self) -> Optional[Execute]:
        if len(self.suspended) >= self.config.suspended_max:
            return None  # resume before starting more
        if self._snapshot_pending and self.suspended:
            return self._next_nested()  # a snapshot is due: let the suspended calls drain first
        if not self._sched:  # nothing queued (the step after every execution): no context to build
            return None
        ctx = self._sched_ctx
        if ctx is None or ctx.now_tick != self.now or ctx.unavailable is not self.unavailable \
                or ctx.next_seq is not self.next_seq:  # built again only when what it reads changed
            ctx = self._sched_ctx = ScheduleContext(self.now, self.unavailable, self.next_seq,
                                                    self.config.sequence_gap_ticks)
        item = self._sched.pop(ctx)  # next_effect takes it (the Execute is always chosen)
        if item is None:
            return None
        return Execute(self.executed_upto + 1, item.request, replay=False)

    def _next_nested(self) -> Optional[Execute]:
        """While suspended calls drain for a due snapshot, start only nested calls (oldest first):
        a suspended call may wait on a ring back into this group, whose call must start for it to
        finish; client calls wait until the snapshot is taken (docs/faults.md row 14)."""
        for mid in self.requests:
            if NESTED_MARK in mid.source and mid in self._sched:
                return Execute(self.executed_upto + 1, self.requests[mid], replay=False)
        return None

    def _blocked_at(self, position: int) -> bool:
        """Whether this primary replays the order it took over and lacks the message of ``position``,
        the next one (its announcement, or for a message starting there, its request)."""
        if self.role != Role.PRIMARY or self.executing is not None or self.executed_upto + 1 != position:
            return False
        ann = self.order.get(position)
        if ann is None:
            return bool(self.order)
        return ann.resume == 0 and ann.msg_id not in self.requests

    def _give_up_order(self) -> None:
        """Nobody holds the message this new primary needs next (its router said so): drop the order
        beyond its position and schedule what it holds."""
        for pos in [p for p in self.order if p > self.executed_upto]:
            del self.order[pos]
        for req in self.requests.values():
            if req.msg_id not in self._sched:
                self._push(req)

    def _after_execution(self, position: int) -> None:
        cfg = self.config
        if self.role == Role.PRIMARY and cfg.style == "passive" and position % cfg.checkpoint_every_messages == 0:
            self._want_snapshot(for_checkpoint=True)
        elif cfg.digest_every_messages and position % cfg.digest_every_messages == 0:
            self._want_snapshot(for_checkpoint=False)

    def _want_snapshot(self, for_checkpoint: bool) -> None:
        # a checkpoint still pending (it waited for suspended calls) is kept when a digest falls
        # due: one snapshot with the state serves both
        for_checkpoint = for_checkpoint or bool(self._snapshot_pending)
        if self.executing is not None or self.suspended:  # a checkpoint never holds a half-run coroutine
            self._snapshot_pending = for_checkpoint  # after this execution
            return
        self._snapshot_pending = None
        if any(isinstance(e, Snapshot) and e.position == self.executed_upto for e in self._effects):
            return
        self._effects.append(Snapshot(self.executed_upto, for_checkpoint))

"""Settings of the protocol core, in ticks and counts (no wall-clock time here).

The runtime converts seconds into ticks (``tick_s``); the simulator uses ticks
directly. Every queue, log and cache in the core is bounded by a ``*_max``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftactors.core.errors import ConfigError

STYLES = ("semi-active", "passive")

#: ``busy_poll_ticks`` that never comes: busy polls off (the core's default; the runtime's ``busy_poll_s``,
#: 0.05 s by default, turns them on)
BUSY_POLL_OFF_TICKS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Protocol settings for one group.

    Args:
        style: "semi-active" (backups execute in the announced order) or
            "passive" (backups log; the primary sends checkpoints).
        checkpoint_every_messages: passive style: a checkpoint after this many
            executed messages.
        null_message_ticks: announcements wait at most this long for a message
            to ride on before a null message carries them (claim 46).
        heartbeat_ticks: the router pings a replica it has not heard from
            for this long.
        failure_timeout_ticks: a replica that has not answered for this long
            is suspected and removed from the view.
        recovery_timeout_ticks: a recovering router waits this long for state reports; and
            the router waits this long (its own running time) while a new primary lacks a
            message of the order it took over that nobody holds, before telling it to give
            that order up (``Deliver.give_up_from``).
        reply_cache_max: replies kept for duplicates, per group.
        sources_max: sources a replica tracks at most (in its exactly-once table, the
            sequence scheduler's next sequence numbers and the fair scheduler's turns).
            Nested calls mint a source per calling message; the least recently active
            are forgotten first, and a duplicate of a forgotten source's request is
            answered with ``ReplyUnavailableError``, never run again. It must exceed
            the sources active at once (one per call in flight that makes nested
            calls), or a call still running may find its own source forgotten. The
            exemptions kept for calls a caller still holds while a floor rises past them
            (a reordering scheduler) are bounded by it too, and so are the calling groups whose
            views a replica reports to a rebuilt router (``StateReport.source_views``). Held calls
            travel as runs (at most ``HOLD_RANGES_MAX`` per request), and a one-way nested call
            on its way keeps its calling message held (``ReplicaCore.oneway_out``), and so do the
            earlier calls of its source a caller never ran (its router relayed later ones past a
            missing one, ``sequence_gap_ticks``: ``DedupTable.unrun_below``). Not covered
            (docs/faults.md, Open): such a call at a caller whose table once dropped a root floor
            (more roots than ``sources_max``), which can no longer tell a call it never ran.
        log_max: messages a router keeps for backups that have not acknowledged
            them; a backup lagging further is removed and re-replicated.
        pending_max: requests a replica holds before executing them; the router retains no more
            (relayed, not yet executed by every member) and refuses new calls beyond
            (``GroupOverloadedError``), so no replica is sent more.
        refused_hold_ticks: a call refused at ``pending_max`` keeps its place this long: its
            retransmission is admitted before calls that arrived after it (at most
            ``inflight_max`` places are kept), so one caller's retries cannot be starved by
            others' new calls while the group stays full.
        inflight_max: client requests a router holds without a reply. A call back into the group
            from one of them (a ring A -> B -> A) is admitted past it (and past ``pending_max``),
            up to ``inflight_max`` more.
        batch_max: requests in one Deliver.
        primary_inflight_max: Delivers outstanding to the primary at once.
        backup_inflight_max: Delivers outstanding to each backup at once.
        relay_delay_ticks: request copies wait at most this long to be relayed
            to a backup in one batch (0: relay at once). Keeps backups off the
            caller's critical path.
        digest_every_messages: replicas report a state digest every this many
            positions (0: never).
        min_replicas: the router asks for new replicas below this.
        carried_announcements_max: announcements a client carries back.
        sequence_gap_ticks: how long a later message of a source waits for an
            earlier one (the router's per-source FIFO; sequence scheduling). At the router,
            ticks it did not run (a tick after a longer gap) do not count.
        retain_executed_max: executed messages (with their announcements) each
            replica keeps for recovery, so a restarted router can still bring a
            lagging backup up to date.
        suspended_max: messages a replica holds started but not finished (async methods
            suspended on a nested reply or a timer); the primary starts no new message
            while this many are suspended, and resumes them first.
        reply_copies_max: replies to nested calls a replica or a router link holds for the
            calling group's backups (pushed copies, claim 48); the oldest drop first (a backup
            that then misses one pulls it from the callee's router).
        query_on_failover: ask the survivors for their state (claim 65) after a
            primary failure even when the router holds every message they could
            (semi-active, a router that never restarted). False saves a round
            trip per failover; passive groups and restarted routers always ask.
        replies_wait_for_backup: release a reply only once a backup in the view acknowledged
            its position (executed it, semi-active; logged its request and announcement, passive),
            so an acknowledged call survives its primary's crash followed by the router's crash
            before the new primary replayed the order (docs/faults.md, row 65). Costs the caller
            the backup's round trip (and, semi-active, its execution) after the primary's answer;
            with no backup in the view (a group of one) a reply is released at once, as without it.
            False (the default): the caller waits for the primary only (claim 35).
        busy_poll_ticks: the primary has left a Deliver unanswered this long while callers wait (it
            runs a long call): the router sends it one empty Deliver, past ``primary_inflight_max``
            if need be, which the primary answers at once with the replies of the calls it finished
            meanwhile (a short call batched before a long one; docs/faults.md, row 76). At most one
            such poll is out: the next may go once the primary answered that one (its answer says so,
            ``Delivered.busy_poll``; row 81); a primary that answers within this many ticks is never
            polled so. Off here by default (``BUSY_POLL_OFF_TICKS``); the runtime's ``busy_poll_s``
            sets it (on by default there).
    """

    style: str = "semi-active"
    checkpoint_every_messages: int = 100
    null_message_ticks: int = 2
    heartbeat_ticks: int = 20
    failure_timeout_ticks: int = 100
    recovery_timeout_ticks: int = 50
    reply_cache_max: int = 100_000
    sources_max: int = 100_000
    log_max: int = 100_000
    pending_max: int = 100_000
    inflight_max: int = 100_000
    refused_hold_ticks: int = 100
    batch_max: int = 512
    primary_inflight_max: int = 4
    backup_inflight_max: int = 1
    relay_delay_ticks: int = 1
    digest_every_messages: int = 0
    min_replicas: int = 2
    carried_announcements_max: int = 64
    sequence_gap_ticks: int = 20
    retain_executed_max: int = 256
    suspended_max: int = 1024
    reply_copies_max: int = 4096
    query_on_failover: bool = False
    replies_wait_for_backup: bool = False
    busy_poll_ticks: int = BUSY_POLL_OFF_TICKS

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ConfigError(f"style must be one of {STYLES}, got {self.style!r}")
        for name in (
            "checkpoint_every_messages", "null_message_ticks", "heartbeat_ticks",
            "failure_timeout_ticks", "recovery_timeout_ticks", "reply_cache_max", "sources_max", "log_max",
            "pending_max", "inflight_max", "refused_hold_ticks", "batch_max", "primary_inflight_max",
            "backup_inflight_max", "carried_announcements_max", "sequence_gap_ticks", "retain_executed_max",
            "suspended_max", "reply_copies_max", "busy_poll_ticks",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.relay_delay_ticks, int) or self.relay_delay_ticks < 0:
            raise ConfigError(f"relay_delay_ticks must be an int >= 0, got {self.relay_delay_ticks!r}")
        if not isinstance(self.digest_every_messages, int) or self.digest_every_messages < 0:
            raise ConfigError(f"digest_every_messages must be an int >= 0, got {self.digest_every_messages!r}")
        if not isinstance(self.query_on_failover, bool):
            raise ConfigError(f"query_on_failover must be a bool, got {self.query_on_failover!r}")
        if not isinstance(self.replies_wait_for_backup, bool):
            raise ConfigError(f"replies_wait_for_backup must be a bool, got {self.replies_wait_for_backup!r}")
        if not isinstance(self.min_replicas, int) or self.min_replicas < 1:
            raise ConfigError(f"min_replicas must be an int >= 1, got {self.min_replicas!r}")
        if self.failure_timeout_ticks <= self.heartbeat_ticks:
            raise ConfigError("failure_timeout_ticks must be greater than heartbeat_ticks")

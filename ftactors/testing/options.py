"""Swarm options: everything a simulation run varies, drawn from its seed.

Swarm testing (Groce et al.; TigerBeetle's VOPR): instead of one fixed mix of
faults, each seed also decides *which* faults and features are on, so rare
combinations get runs where they are not drowned out by others.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ftactors.core import SCHEDULERS, CoreConfig

STYLES = ("semi-active", "passive")
#: the fraction of nested seeds whose methods run in async steps
P_ASYNC = 0.5
#: the fraction of seeds that run the direct data plane's link decisions
P_DIRECT = 0.5
#: the fraction of fault-free seeds that replace one backup of each group (``replace_backup``)
P_REPLACE_BACKUP = 0.5
#: the fraction of seeds whose routers keep warm spare replicas (``spares``)
P_SPARES = 0.3
#: the fraction of seeds with starved routers that starve them during a failover or a join too
P_STARVE_UNSTABLE = 0.5
#: routers starved of CPU (row 40) in seeds with the direct data plane too (on since the lagging backup
#: of seed 263 is resynced, docs/faults.md row 47); False leaves them out, to replay a seed as drawn before
STARVE_WITH_DIRECT = True
#: a router crash while one backup is paused (the double fault of docs/faults.md row 34), drawn in
#: ``P_ROUTER_CRASH_PAUSED`` of the seeds that pause replicas, from its own stream
#: (``paused-<seed>``); a switch, as ``STARVE_WITH_DIRECT``
ROUTER_CRASH_WHILE_PAUSED = True
#: one-way nested calls (docs/faults.md rows 51, 54): the fraction of nested seeds whose frontend calls
#: may make their nested call one-way, drawn on its own stream (``oneway-nested-<seed>``)
P_ONEWAY_NESTED = 0.5
#: crash the primary of a one-way nested call on its way with the direct data plane too: on since
#: docs/faults.md row 56 (swarm seed 104085 found it; a switch, as ``STARVE_WITH_DIRECT``)
ONEWAY_CRASH_WITH_DIRECT = True
#: ``replies_wait_for_backup`` (docs/faults.md row 65) in ``P_REPLIES_WAIT`` of the fault seeds with two
#: replicas or more, with a router crash drawn right after a primary crash, before the new primary replayed
#: the order it took over (``p_router_crash_failover``); both from their own stream (``dblfault-<seed>``),
#: so the other seeds keep every draw. A switch, as ``STARVE_WITH_DIRECT``
DBLFAULT_DRAW = True
P_REPLIES_WAIT = 0.3
#: ``ray.cancel`` of client calls (docs/faults.md rows 67, 72): in ``P_CANCEL`` of the seeds, drawn on its own
#: stream (``cancel-<seed>``), a client cancels some of its calls (``p_cancel``), before or after the router
#: took them; the simulator draws which and when on its own stream too (``cancel-run-<seed>``), so the other
#: seeds keep every draw. A switch, as ``STARVE_WITH_DIRECT``
CANCEL_DRAW = True
P_CANCEL = 0.3


#: A group's end (docs/faults.md rows 86 and 89): in ``P_GROUP_END`` of the seeds, drawn on its own stream
#: (``collect-<seed>``), the replicas run the orphan rule (``OrphanWatch``, ``orphan_timeout_ticks``) through
#: the run, and once every call is answered the groups end: collected with their routers (``RouterHost.end``,
#: "collect") or their routers gone for good, unannounced ("gone": only the orphan rule stops the replicas);
#: the simulator draws what happens at the end on ``collect-run-<seed>``, so the other seeds keep every draw.
#: A switch, as ``STARVE_WITH_DIRECT``
GROUP_END_DRAW = True
P_GROUP_END = 0.3
#: ``orphan_timeout_ticks`` a seed draws from: shorter than a router's restart (the sim's restarts take 1-8
#: ticks and a rebuild) and than an idle group's heartbeats, and longer
ORPHAN_TIMEOUT_TICKS = (2, 4, 8, 16, 40)

#: ``busy_poll_ticks`` a seed draws from (``busypoll-<seed>``): the long methods work 1 to
#: ``long_ticks_max`` ticks, so a poll finds the primary still in one or not (docs/faults.md, row 76)
BUSY_POLL_TICKS = (1, 2, 3, 5, 8)

#: Draw ``busy_poll_ticks`` (False: the router never polls a busy primary, ``BUSY_POLL_OFF``, as before
#: row 76). On since row 81 (swarm seeds 102102 and 107097 failed with it before: a busy poll was
#: taken for answered by the answer of a Deliver sent before it, and polls chained)
BUSY_POLL_DRAW = True
BUSY_POLL_OFF = 1_000_000
#: the fraction of seeds pausing replicas that crash a router while a backup is paused
P_ROUTER_CRASH_PAUSED = 0.5
#: the most positions one call of the workload takes with async steps (``fwd2``: start and two resumes)
STEPS_PER_CALL_MAX = 3
#: ... and with rings and timers (a napping ``fwd2`` takes one more; a ring's relay takes one too)
STEPS_PER_CALL_RINGS_MAX = 4


@dataclass(frozen=True, slots=True)
class SimOptions:
    """One simulation run's options (all drawn from ``seed`` by :func:`draw_options`).

    Args:
        seed: the seed that decides the run.
        style: replication style.
        scheduling: the primary's scheduler (a built-in name).
        replicas: replicas per group at start (2-5).
        model: the application model of the (backend) group.
        nested: a frontend group calls the backend group (A -> B).
        clients: client handles.
        ops_per_client: operations each client issues.
        window: operations a client keeps outstanding at once (pipelined).
        faults: False for a fault-free run (invariant I5 applies).
        replace_backup: in a fault-free run, one backup of each group is killed once, halfway
            through the safety phase, and replaced by state transfer; I5 still holds except for
            that view change and join (no failover, no pull of a reply copy).
        spares: warm spare replicas each router keeps (:mod:`ftactors.host.spares`): started, not
            members; a replacement takes one. Crashes may hit a spare too. Drawn from its own
            stream (``spares-<seed>``).
        spare_respawn_ticks: after a spare is taken or lost, the next starts this much later.
        p_crash: per tick and group, probability of crashing a replica.
        p_pause: per tick and group, probability of pausing a replica.
        p_router_crash: per tick and group, probability of crashing the router.
        p_router_crash_paused: per tick and group, probability of crashing the router while one backup
            is paused (and the group is otherwise stable: a second fault before the first is repaired,
            docs/faults.md row 34). Drawn from its own stream (``paused-<seed>``), and the simulator
            draws its occurrences from its own too (``paused-run-<seed>``), so other seeds are unchanged.
        replies_wait_for_backup: see CoreConfig (docs/faults.md row 65). Drawn from its own stream
            (``dblfault-<seed>``).
        p_router_crash_failover: per tick and group, probability of crashing the router after its primary
            crashed and before the new primary replayed the order it took over (a second fault before the
            first is repaired, ``Simulator.crash_router_after_failover``); only with
            ``replies_wait_for_backup``. The simulator draws its occurrences from its own stream
            (``dblfault-run-<seed>``).
        p_drop: client<->router and group<->group loss probability.
        p_dup: duplication probability on those links.
        p_resources: per tick, probability of toggling resource availability.
        delay_max: max delay (ticks) on client and group<->group links.
        link_delay_max: max delay on router<->replica links (FIFO).
        pause_max: longest pause (ticks); longer than the failure timeout it gets fenced.
        retry_ticks: client and nested retransmission timeout.
        safety_ticks: ticks with faults; afterwards only delays (liveness phase).
        null_message_ticks: see CoreConfig.
        heartbeat_ticks: see CoreConfig.
        failure_timeout_ticks: see CoreConfig.
        recovery_timeout_ticks: see CoreConfig.
        checkpoint_every_messages: see CoreConfig (passive).
        sequence_gap_ticks: see CoreConfig.
        query_on_failover: see CoreConfig.
        sources_max: see CoreConfig (small in some seeds, so runs pass the bound many times).
        p_long: probability that an operation is a long method (``slow``: it executes
            for several ticks, during which a router or replica can crash).
        long_ticks_max: the longest a long method works.
        busy_poll_ticks: see CoreConfig (drawn from ``BUSY_POLL_TICKS``).
        orphan_timeout_ticks: the replicas' orphan rule (``OrphanWatch``; 0: not run), drawn from
            ``ORPHAN_TIMEOUT_TICKS``.
        group_end: what ends the groups once every call is answered (``Simulator.end_groups``): "" nothing,
            "collect" they are collected with their routers (``RouterHost.end``), "gone" their routers
            vanish for good (the orphan rule alone stops the replicas).
        stale_lookup_ticks: a router gone for good still resolves by name this long (the control plane's
            lag).
        p_reorder: probability that a Deliver overtakes earlier ones on its router->replica link
            (Ray runs a threaded actor's calls concurrently; the replica's turns restore the order).
        output_to_deliverer: model the Ray replica host before issue 10's fix: an
            execution's output goes back to the router incarnation whose Deliver
            started it, and is lost if that incarnation died meanwhile. False: output
            produced after the router changed stays in the replica's core for the
            current incarnation (its next Deliver, or a push).
        p_oneway: probability that an operation is a one-way call (``.options(oneway=True)``).
        p_stamped: probability that an operation reads ``now()`` and ``random()`` (replayed at backups).
        p_raising: probability that an operation raises an application exception after running.
        p_poison: probability that an operation raises ``SystemExit`` / ``KeyboardInterrupt``.
        p_byref: probability that an operation's arguments go by reference (the object store).
        p_owner_exit: probability that a client whose script is done exits, losing its objects.
        p_oneway_nested: probability that a frontend ``fwd`` call makes its nested call one-way
            (``fwd1``), drawn per operation from the simulator's own stream (``oneway-ops-<seed>``).
        p_oneway_nested_crash: probability, per one-way nested call a primary sends, of crashing that
            primary a few ticks later if the call is still on its way and its group is stable
            (``Simulator.send_oneway``, its own stream ``oneway-run-<seed>``).
        fetch_ticks_max: the longest a router's fetch of an argument passed by reference takes (each
            is 1..this many ticks; 0: at once). Meanwhile the caller's later calls wait for it
            (``RouterHost.fetch_begins``). Drawn from its own stream (``fetch-<seed>``).
        client_fifo: clients call through Ray's caller link (FIFO per caller and router incarnation,
            lossless while the router lives, calls resubmitted in order to a restarted router)
            instead of the lossy, duplicating, reordering one; then one client's calls must run
            in its order under an order-keeping scheduler (I10).
        caller_overtake_ticks: on Ray's caller link, a call may reach the router up to this many
            ticks before an earlier one of its caller (Ray starts an async or threaded actor's tasks
            in no fixed order); less than ``sequence_gap_ticks``, so the router must restore it.
        p_router_starve: probability per tick that a router's process gets no CPU (its loop does
            not run; what reaches it waits unread, and on waking its timer runs before it reads).
        router_starve_max: the longest such a starvation (ticks).
        starve_unstable: starve a router during a failover or a join too (a second fault before the
            first is repaired; docs/faults.md, row 44); otherwise only a stable group's. Drawn on in
            ``P_STARVE_UNSTABLE`` of the seeds with starved routers, from its own stream
            (``unstable-<seed>``).
        async_steps: the model's methods run in async steps (issue 12): a nested call suspends
            the step instead of blocking the replica, other messages start meanwhile, and the
            primary chooses which suspended call resumes (announced ``resume``/``wake``).
            Drawn from its own stream (``async-<seed>``), so the other choices keep their values.
        p_ring: with async steps, probability that a frontend operation is a re-entrant ring
            (``Frontend.op_ring``: front -> store ``bounce`` -> front ``relay`` while the first call
            is suspended, then store runs a method of its own).
        p_timer: with async steps, probability that an operation sleeps on a timer first
            (``Model.op_nap``: ``await asyncio.sleep``; in a ring, the store's part sleeps); a timer's
            firing is an event the primary orders and announces like a nested reply.
        nap_ticks_max: the longest such a sleep lasts.
        p_gather: with async steps, probability that an operation first gathers sub-tasks that each read
            ``now()`` and ``random()`` (``Model.op_gathered``: values recorded and replayed per task).
            Drawn from its own stream (``gather-<seed>``); the operations it wraps are chosen from the
            simulator's own (``gather-ops-<seed>``), so the seeds drawn before keep every other choice.
        direct: the direct data plane (issue 11): the router's links to the replicas, run by the host's
            link decisions (:mod:`ftactors.host.links`). Drawn from its own stream (``direct-<seed>``).
        link_heartbeat_ticks: the links' heartbeat interval (``LinkSettings.heartbeat_interval_ticks``).
        heartbeat_misses_max: heartbeats missed in a row that make a replica suspected.
        p_unreachable: probability that a link cannot be opened (its Delivers fall back to Ray calls).
        p_parked: probability that an answer on a link is parked (fetched with a Ray call).
        p_partition: per tick and group, probability of cutting a replica off its router for a while.
        p_cancel: probability that a client cancels a call it sent (``ray.cancel``, not a one-way call),
            ``cancel_ticks_max`` ticks after sending it at most: it stops waiting for it and retrying it, its
            ``ack_below`` passes it, and the group's router gets the notice ``RouterHost.abandon`` a link
            delay later (as ``runtime/api.py:cancel`` sends ``_AsyncRouter.abandon``). Drawn from its own
            stream (``cancel-<seed>``); which calls and when from the simulator's (``cancel-run-<seed>``).
        cancel_ticks_max: the longest a client waits before cancelling a call it cancels.
        reply_cache_max, log_max, pending_max, inflight_max, batch_max, retain_executed_max,
            carried_announcements_max, primary_inflight_max, backup_inflight_max: see CoreConfig;
            small in some seeds, so that long runs pass each bound several times.
    """

    seed: int
    style: str = "semi-active"
    scheduling: str = "reception"
    replicas: int = 3
    model: str = "counter"
    nested: bool = False
    clients: int = 2
    ops_per_client: int = 5
    faults: bool = True
    p_crash: float = 0.01
    p_pause: float = 0.005
    p_router_crash: float = 0.003
    p_router_crash_paused: float = 0.0
    replies_wait_for_backup: bool = False
    p_router_crash_failover: float = 0.0
    p_drop: float = 0.05
    p_dup: float = 0.05
    p_resources: float = 0.02
    delay_max: int = 3
    link_delay_max: int = 2
    pause_max: int = 30
    retry_ticks: int = 20
    safety_ticks: int = 150
    null_message_ticks: int = 2
    heartbeat_ticks: int = 4
    failure_timeout_ticks: int = 12
    recovery_timeout_ticks: int = 10
    checkpoint_every_messages: int = 2
    sequence_gap_ticks: int = 6
    query_on_failover: bool = False
    sources_max: int = 100_000
    p_long: float = 0.0
    long_ticks_max: int = 10
    output_to_deliverer: bool = False
    p_reorder: float = 0.0
    window: int = 1
    p_oneway: float = 0.0
    p_stamped: float = 0.0
    p_raising: float = 0.0
    p_poison: float = 0.0
    p_byref: float = 0.0
    p_owner_exit: float = 0.0
    p_oneway_nested: float = 0.0
    p_oneway_nested_crash: float = 0.0
    fetch_ticks_max: int = 0
    client_fifo: bool = False
    caller_overtake_ticks: int = 0
    p_router_starve: float = 0.0
    router_starve_max: int = 0
    starve_unstable: bool = False
    async_steps: bool = False
    p_ring: float = 0.0
    p_timer: float = 0.0
    nap_ticks_max: int = 8
    p_gather: float = 0.0
    direct: bool = False
    link_heartbeat_ticks: int = 8
    heartbeat_misses_max: int = 2
    p_unreachable: float = 0.0
    p_parked: float = 0.0
    p_partition: float = 0.0
    replace_backup: bool = False
    p_cancel: float = 0.0
    cancel_ticks_max: int = 0
    spares: int = 0
    spare_respawn_ticks: int = 0
    reply_cache_max: int = 1000
    log_max: int = 1000
    pending_max: int = 1000
    inflight_max: int = 1000
    batch_max: int = 8
    retain_executed_max: int = 256
    carried_announcements_max: int = 64
    primary_inflight_max: int = 4
    backup_inflight_max: int = 1
    busy_poll_ticks: int = 5
    orphan_timeout_ticks: int = 0
    group_end: str = ""
    stale_lookup_ticks: int = 0

    def core_config(self) -> CoreConfig:
        """The CoreConfig of every group in the run."""
        wanted: Dict[str, Any] = dict(
            style=self.style, checkpoint_every_messages=self.checkpoint_every_messages,
            null_message_ticks=self.null_message_ticks, heartbeat_ticks=self.heartbeat_ticks,
            failure_timeout_ticks=self.failure_timeout_ticks, recovery_timeout_ticks=self.recovery_timeout_ticks,
            min_replicas=self.replicas, sequence_gap_ticks=self.sequence_gap_ticks,
            query_on_failover=self.query_on_failover, sources_max=self.sources_max,
            log_max=self.log_max, pending_max=self.pending_max, inflight_max=self.inflight_max,
            reply_cache_max=self.reply_cache_max, batch_max=self.batch_max,
            retain_executed_max=self.retain_executed_max, carried_announcements_max=self.carried_announcements_max,
            primary_inflight_max=self.primary_inflight_max, backup_inflight_max=self.backup_inflight_max,
            replies_wait_for_backup=self.replies_wait_for_backup, busy_poll_ticks=self.busy_poll_ticks,
        )
        known = {f.name for f in dataclasses.fields(CoreConfig)}
        return CoreConfig(**{k: v for k, v in wanted.items() if k in known})

    @property
    def liveness_bound_ticks(self) -> int:
        """I6: once faults stop, every pending request completes within this many ticks.

        Stated bound: detect a failure (failure timeout plus a heartbeat), run
        recovery (recovery timeout, twice: router and a blocked new primary),
        re-replicate, and let the client and nested retries (each up to
        ``retry_ticks`` plus a round trip) go through, for the frontend and the
        backend in turn, plus sequence-gap waits, plus the queue: every call outstanding
        (``clients * window``) may run before it, each a long method and a nested round trip.
        A scheduler that reorders (priority, deadline, ...) may make a call wait for every
        later one: the simulator counts its wait from the last call issued (``Simulator``).
        """
        detect = self.failure_timeout_ticks + self.heartbeat_ticks
        recover = 2 * self.recovery_timeout_ticks
        retry = self.retry_ticks + 2 * self.delay_max + 4 * self.link_delay_max
        hop = 2 * self.delay_max + 4 * self.link_delay_max
        per_call = (self.long_ticks_max if self.p_long else 1) + hop + self.fetch_ticks_max
        per_call += (self.nap_ticks_max if self.p_timer else 0) + (hop if self.p_ring else 0)
        queue = 2 * self.clients * self.window * per_call
        ring = 2 * (detect + recover + retry) if self.p_ring else 0  # a ring's third leg, back in the first group
        starved = 2 * self.router_starve_max if self.p_router_starve else 0  # a starvation as faults stop
        return 2 * (detect + recover + 2 * retry) + 2 * self.sequence_gap_ticks + 40 + queue + ring + starved

    def describe(self) -> str:
        """A one-line summary of the swarm choices."""
        faults = (f"crash={self.p_crash:.3f} pause={self.p_pause:.3f} router={self.p_router_crash:.3f} "
                  f"drop={self.p_drop:.2f} dup={self.p_dup:.2f}") if self.faults else "fault-free"
        return (f"seed={self.seed} style={self.style} sched={self.scheduling} replicas={self.replicas} "
                f"model={self.model} nested={self.nested} clients={self.clients}x{self.ops_per_client} {faults}"
                + (" query-on-failover" if self.query_on_failover else "")
                + (f" sources_max={self.sources_max}" if self.sources_max < 100_000 else "")
                + (f" long={self.p_long:.2f}x{self.long_ticks_max} busy-poll={self.busy_poll_ticks}" if self.p_long
                   else "")
                + (" output-to-deliverer" if self.output_to_deliverer else "")
                + (f" reorder={self.p_reorder:.1f}" if self.p_reorder else "")
                + (f" window={self.window}" if self.window > 1 else "")
                + (f" oneway={self.p_oneway:.2f}" if self.p_oneway else "")
                + (f" stamped={self.p_stamped:.2f}" if self.p_stamped else "")
                + (f" raising={self.p_raising:.2f} poison={self.p_poison:.2f}" if self.p_raising or self.p_poison
                   else "")
                + (f" byref={self.p_byref:.2f} owner-exit={self.p_owner_exit:.1f}" if self.p_byref else "")
                + (f" fetch<={self.fetch_ticks_max}" if self.fetch_ticks_max else "")
                + (f" oneway-nested={self.p_oneway_nested:.2f}" if self.p_oneway_nested else "")
                + (f" oneway-crash={self.p_oneway_nested_crash:.2f}" if self.p_oneway_nested_crash else "")
                + (" client-fifo" if self.client_fifo else "")
                + (f" overtake<={self.caller_overtake_ticks}" if self.caller_overtake_ticks else "")
                + (f" router-crash-paused={self.p_router_crash_paused:.3f}" if self.p_router_crash_paused else "")
                + (" replies-wait-for-backup" if self.replies_wait_for_backup else "")
                + (f" router-crash-failover={self.p_router_crash_failover:.2f}" if self.p_router_crash_failover
                   else "")
                + (f" router-starve={self.p_router_starve:.3f}x{self.router_starve_max}" if self.p_router_starve
                   else "")
                + (" replace-backup" if self.replace_backup else "")
                + (f" cancel={self.p_cancel:.2f}<={self.cancel_ticks_max}" if self.p_cancel else "")
                + (f" spares={self.spares}(respawn {self.spare_respawn_ticks})" if self.spares else "")
                + (f" end={self.group_end}(orphan {self.orphan_timeout_ticks}, stale {self.stale_lookup_ticks})"
                   if self.group_end else "")
                + (" async-steps" if self.async_steps else "")
                + (f" rings={self.p_ring:.2f}" if self.p_ring else "")
                + (f" timers={self.p_timer:.2f}x{self.nap_ticks_max}" if self.p_timer else "")
                + (f" gathers={self.p_gather:.2f}" if self.p_gather else "")
                + (f" direct(beat={self.link_heartbeat_ticks}x{self.heartbeat_misses_max} unreachable="
                   f"{self.p_unreachable:.1f} parked={self.p_parked:.1f} partition={self.p_partition:.3f})"
                   if self.direct else "")
                + (f" bounds=(reply_cache {self.reply_cache_max}, log {self.log_max}, retain "
                   f"{self.retain_executed_max}, carried {self.carried_announcements_max}, batch {self.batch_max}, "
                   f"inflight {self.inflight_max}/{self.primary_inflight_max}/{self.backup_inflight_max}, "
                   f"pending {self.pending_max})"
                   if self.reply_cache_max < 1000 else ""))


def draw_options(seed: int, style: Optional[str] = None, scheduling: Optional[str] = None) -> SimOptions:
    """Draw a run's options from its seed (swarm testing): see :func:`_draw_options`; half the
    fault-free seeds also replace one backup of each group (``replace_backup``, its own stream, so
    every other choice keeps its value).

    Args:
        seed: the run's seed.
        style: force a replication style (the CLI's ``--style``), else drawn.
        scheduling: force a scheduler, else drawn.

    Returns:
        The options; the same seed always gives the same options.
    """
    opts = _draw_spares(random.Random(f"spares-{seed}"), _draw_options(seed, style, scheduling))
    if opts.faults or random.Random(f"replace-{seed}").random() >= P_REPLACE_BACKUP:
        return opts
    return dataclasses.replace(opts, replace_backup=True)


def _draw_spares(rng: random.Random, opts: SimOptions) -> SimOptions:
    """Warm spares (``spares``) in ``P_SPARES`` of the seeds, from their own stream (``spares-<seed>``),
    so every other choice keeps its value.

    Args:
        rng: the seed's spares stream.
        opts: the options drawn so far.

    Returns:
        ``opts`` with ``spares`` 1 or 2 and a respawn delay of 0-40 ticks, or unchanged.
    """
    if rng.random() >= P_SPARES:
        return opts
    return dataclasses.replace(opts, spares=rng.choice((1, 1, 2)), spare_respawn_ticks=rng.randint(0, 40))


def _draw_options(seed: int, style: Optional[str] = None, scheduling: Optional[str] = None) -> SimOptions:
    """Draw a run's options from its seed (swarm testing), as :func:`draw_options` (same arguments
    and result) but without ``replace_backup``."""
    rng = random.Random(f"options-{seed}")
    # draw every choice even when forced, so forcing one does not shift the others
    drawn_style, drawn_scheduling = rng.choice(STYLES), rng.choice(sorted(SCHEDULERS))
    faults = rng.random() < 0.85

    def maybe(p_on: float, lo: float, hi: float) -> float:
        return rng.uniform(lo, hi) if faults and rng.random() < p_on else 0.0

    heartbeat = rng.randint(3, 5)
    link_delay_max = rng.randint(1, 3)
    # a healthy replica answers a ping within one round trip: the timeout must cover it
    failure_timeout = heartbeat + 2 * link_delay_max + rng.randint(3, 12)
    opts = SimOptions(
        seed=seed,
        style=style or drawn_style,
        scheduling=scheduling or drawn_scheduling,
        replicas=rng.randint(2, 5),
        model=rng.choice(("counter", "bank", "kv")),
        nested=rng.random() < 0.4,
        clients=rng.randint(1, 4),
        ops_per_client=rng.randint(3, 7),
        faults=faults,
        p_crash=maybe(0.6, 0.005, 0.03),
        p_pause=maybe(0.4, 0.003, 0.02),
        p_router_crash=maybe(0.35, 0.002, 0.015),
        p_drop=maybe(0.6, 0.02, 0.2),
        p_dup=maybe(0.5, 0.02, 0.2),
        p_resources=rng.choice((0.0, 0.03)),
        delay_max=rng.randint(1, 5),
        link_delay_max=link_delay_max,
        pause_max=rng.randint(5, 40),
        retry_ticks=rng.randint(12, 30),
        safety_ticks=rng.randint(60, 200),
        null_message_ticks=rng.randint(1, 3),
        heartbeat_ticks=heartbeat,
        failure_timeout_ticks=failure_timeout,
        recovery_timeout_ticks=rng.randint(6, 15),
        checkpoint_every_messages=rng.randint(1, 4),
        sequence_gap_ticks=rng.randint(3, 10),
        query_on_failover=rng.random() < 0.5,
        sources_max=rng.choice((8, 12, 100_000)),  # drawn last: earlier choices keep their values
        p_long=rng.choice((0.0, 0.0, 0.15, 0.3)),
        long_ticks_max=rng.randint(2, 12),
        p_reorder=rng.choice((0.0, 0.1, 0.3)),
        window=rng.choice((1, 1, 2, 4)),
    )
    # long runs, drawn last so that the choices above keep their values: about 100 client
    # operations per seed, faults over most of the run, every *_max bound passed several times
    scale = rng.choice((6, 8, 10, 12))
    # sources_max must exceed the sources active at once (each outstanding call's nested source):
    # the small bounds (12-76) are still passed many times in a run of this length, with every
    # scheduler: one that reorders keeps calls waiting while later calls of their client have their
    # nested sources forgotten (docs/faults.md: the floor must not pass a waiting call); twice the
    # active sources, as calls retried over a lossy link or replayed after a failover stay active
    # longer. In-order schedulers drew four times until a rebuilt router fenced a deposed caller's
    # retries again (seed 103108 at twice: docs/faults.md)
    active = 2 * opts.clients * opts.window
    sources_max = 2 * active + opts.sources_max if opts.sources_max < 100_000 else 100_000
    opts = dataclasses.replace(opts, ops_per_client=opts.ops_per_client * scale,
                               safety_ticks=opts.safety_ticks * scale // 2, sources_max=sources_max)
    opts = _draw_workload(rng, opts)
    opts = _draw_fetches(random.Random(f"fetch-{seed}"), opts)
    opts = _draw_direct(random.Random(f"direct-{seed}"), opts)
    opts = _draw_ray_caller(random.Random(f"caller-{seed}"), opts)
    opts = _draw_unstable_starve(random.Random(f"unstable-{seed}"), opts)
    opts = _draw_router_crash_paused(random.Random(f"paused-{seed}"), opts)
    opts = _draw_oneway_nested(random.Random(f"oneway-nested-{seed}"), opts)
    opts = _draw_dblfault(random.Random(f"dblfault-{seed}"), opts)
    opts = _draw_cancels(random.Random(f"cancel-{seed}"), opts)

    opts = _draw_busy_poll(random.Random(f"busypoll-{seed}"), opts)
    opts = _draw_group_end(random.Random(f"collect-{seed}"), opts)
    # its own stream: the seeds drawn before async steps existed keep every other choice
    if not (opts.nested and random.Random(f"async-{seed}").random() < P_ASYNC):
        return opts
    # a frontend call takes up to 3 positions (start, 2 resumes), and a checkpoint (for a joining or
    # passive backup) waits for the suspended calls to finish: the announcements a replica holds
    # meanwhile grow with the steps (seed 783: a joining replica past log_max=32)
    opts = dataclasses.replace(opts, async_steps=True, log_max=opts.log_max * STEPS_PER_CALL_MAX)
    opts = _draw_async_workload(random.Random(f"rings-{seed}"), opts)
    return _draw_gathers(random.Random(f"gather-{seed}"), opts)


def _draw_gathers(rng: random.Random, opts: SimOptions) -> SimOptions:
    """Gathered sub-tasks drawing ``now()``/``random()`` (values kept per task), in about half the async
    seeds, from its own stream (``gather-<seed>``) so the seeds drawn before keep every other choice."""
    return dataclasses.replace(opts, p_gather=rng.choice((0.15, 0.3)) if rng.random() < 0.6 else 0.0)


def _draw_async_workload(rng: random.Random, opts: SimOptions) -> SimOptions:
    """What only async methods can do, from its own stream (``rings-<seed>``, so the seeds drawn
    before keep every other choice): re-entrant rings (a sync method waiting on a call back into
    its own group would deadlock it) and timers (``asyncio.sleep``), each in about half the async
    seeds."""
    opts = dataclasses.replace(
        opts,
        p_ring=rng.choice((0.15, 0.3)) if rng.random() < 0.6 else 0.0,
        p_timer=rng.choice((0.1, 0.25)) if rng.random() < 0.6 else 0.0,
        nap_ticks_max=rng.randint(1, 12),
    )
    if not (opts.p_ring or opts.p_timer):
        return opts
    return dataclasses.replace(opts, log_max=opts.log_max // STEPS_PER_CALL_MAX * STEPS_PER_CALL_RINGS_MAX)


def _draw_fetches(rng: random.Random, opts: SimOptions) -> SimOptions:
    """How long a router's fetch of an argument passed by reference takes, in most seeds that pass
    some (often longer than ``sequence_gap_ticks``: the caller's later calls must wait for it), from
    its own stream (``fetch-<seed>``) so the seeds drawn before keep every other choice."""
    if not opts.p_byref or rng.random() >= 0.7:
        return opts
    return dataclasses.replace(opts, fetch_ticks_max=rng.randint(2, 3 * opts.sequence_gap_ticks))


def _draw_ray_caller(rng: random.Random, opts: SimOptions) -> SimOptions:
    """What Ray does to a router's callers, on its own stream (``caller-<seed>``: the seeds drawn
    before keep every other choice): with Ray's caller link, one caller's calls overtaking each other
    within the router's reordering window; in fault runs, routers starved of CPU for longer than
    that window (docs/faults.md, row 40)."""
    overtake = rng.randint(opts.sequence_gap_ticks // 2, opts.sequence_gap_ticks - 1) \
        if opts.client_fifo and rng.random() < 0.6 else 0
    # with the direct data plane too (STARVE_WITH_DIRECT, docs/faults.md rows 45, 47): the draw below is
    # this stream's last, and its first value is drawn for every seed, so the seeds without direct
    # links keep every choice; a seed with them starves at the same 0.4
    starve = opts.faults and rng.random() < 0.4 and (STARVE_WITH_DIRECT or not opts.direct)
    return dataclasses.replace(
        opts, caller_overtake_ticks=overtake,
        p_router_starve=rng.uniform(0.01, 0.03) if starve else 0.0,
        router_starve_max=rng.randint(2, 3 * opts.sequence_gap_ticks) if starve else 0,
    )


def _draw_unstable_starve(rng: random.Random, opts: SimOptions) -> SimOptions:
    """In half the seeds whose routers starve, starve them during a failover or a join too (a second
    fault before the first is repaired: docs/faults.md, row 44), on its own stream (``unstable-<seed>``)
    so the seeds drawn before keep every other choice."""
    if not opts.p_router_starve or rng.random() >= P_STARVE_UNSTABLE:
        return opts
    return dataclasses.replace(opts, starve_unstable=True)


def _draw_oneway_nested(rng: random.Random, opts: SimOptions) -> SimOptions:
    """One-way nested calls in ``P_ONEWAY_NESTED`` of the nested seeds (``p_oneway_nested``) and, with
    faults, crashes of their primary while one is on its way (``p_oneway_nested_crash``), on its own
    stream (``oneway-nested-<seed>``) so the seeds drawn before keep every other choice.

    Args:
        rng: the ``oneway-nested-<seed>`` stream.
        opts: the options drawn so far.

    Returns:
        ``opts`` with ``p_oneway_nested`` and ``p_oneway_nested_crash`` set, or as they were.
    """
    if not (opts.nested and rng.random() < P_ONEWAY_NESTED):
        return opts
    crash = rng.uniform(0.1, 0.4) if opts.faults else 0.0
    if opts.direct and not ONEWAY_CRASH_WITH_DIRECT:
        crash = 0.0
    return dataclasses.replace(opts, p_oneway_nested=rng.choice((0.2, 0.4)), p_oneway_nested_crash=crash)


def _draw_dblfault(rng: random.Random, opts: SimOptions) -> SimOptions:
    """``replies_wait_for_backup`` in ``P_REPLIES_WAIT`` of the fault seeds with at least two replicas, if
    ``DBLFAULT_DRAW``, with a router crash right after a primary crash (``p_router_crash_failover``), on
    its own stream (``dblfault-<seed>``) so the seeds drawn before keep every other choice.

    Args:
        rng: the ``dblfault-<seed>`` stream.
        opts: the options drawn so far.

    Returns:
        ``opts`` with the setting on and ``p_router_crash_failover`` set, or unchanged.
    """
    if not (DBLFAULT_DRAW and opts.faults and opts.replicas >= 2) or rng.random() >= P_REPLIES_WAIT:
        return opts
    return dataclasses.replace(opts, replies_wait_for_backup=True, p_router_crash_failover=rng.uniform(0.05, 0.5))


def _draw_cancels(rng: random.Random, opts: SimOptions) -> SimOptions:
    """Clients that cancel some of their calls (``ray.cancel``) in ``P_CANCEL`` of the seeds, if ``CANCEL_DRAW``,
    on its own stream (``cancel-<seed>``) so the seeds drawn before keep every other choice. A cancel comes
    from at once (before the call reaches the router) to a few link delays later (after the router took it).

    Args:
        rng: the ``cancel-<seed>`` stream.
        opts: the options drawn so far.

    Returns:
        ``opts`` with ``p_cancel`` and ``cancel_ticks_max`` set, or unchanged.
    """
    if not CANCEL_DRAW or rng.random() >= P_CANCEL:
        return opts
    return dataclasses.replace(opts, p_cancel=rng.choice((0.05, 0.1, 0.2)),
                               cancel_ticks_max=rng.randint(1, 2 * opts.delay_max + 2))


def _draw_busy_poll(rng: random.Random, opts: SimOptions) -> SimOptions:
    """``busy_poll_ticks`` (docs/faults.md, row 76: the router polls a primary sitting on a Deliver
    while a long method runs, and the primary answers with the replies it finished before), shorter
    and longer than the long methods, on its own stream (``busypoll-<seed>``) so the seeds drawn
    before keep every other choice.

    Args:
        rng: the ``busypoll-<seed>`` stream.
        opts: the options drawn so far.

    Returns:
        ``opts`` with ``busy_poll_ticks`` set (``BUSY_POLL_OFF`` unless ``BUSY_POLL_DRAW``).
    """
    return dataclasses.replace(opts, busy_poll_ticks=rng.choice(BUSY_POLL_TICKS) if BUSY_POLL_DRAW else BUSY_POLL_OFF)


def _draw_group_end(rng: random.Random, opts: SimOptions) -> SimOptions:
    """A group's end (docs/faults.md rows 86 and 89) in ``P_GROUP_END`` of the seeds if ``GROUP_END_DRAW``, on
    its own stream (``collect-<seed>``) so the seeds drawn before keep every other choice.

    Args:
        rng: the ``collect-<seed>`` stream.
        opts: the options drawn so far.

    Returns:
        ``opts`` with ``orphan_timeout_ticks`` (the replicas' orphan rule), ``group_end`` ("collect": the
        groups are collected with their routers once every call is answered; "gone": their routers are
        gone for good instead) and ``stale_lookup_ticks`` (a router gone still resolves by name this
        long) set, or unchanged.
    """
    if not GROUP_END_DRAW or rng.random() >= P_GROUP_END:
        return opts
    return dataclasses.replace(opts, orphan_timeout_ticks=rng.choice(ORPHAN_TIMEOUT_TICKS),
                               group_end=rng.choice(("collect", "gone")), stale_lookup_ticks=rng.randint(0, 20))


def force_replies_wait(opts: SimOptions) -> SimOptions:
    """``opts`` with ``replies_wait_for_backup`` on (the CLI's ``--replies-wait-for-backup``) and, in a fault
    seed, the router crash right after a primary crash: as drawn if the seed drew it, else with a
    probability from the ``dblfault-force-<seed>`` stream.

    Args:
        opts: a seed's options.

    Returns:
        The options with the setting forced on.
    """
    crash = opts.p_router_crash_failover
    if opts.faults and not crash:
        crash = random.Random(f"dblfault-force-{opts.seed}").uniform(0.05, 0.5)
    return dataclasses.replace(opts, replies_wait_for_backup=True, p_router_crash_failover=crash)


def _draw_router_crash_paused(rng: random.Random, opts: SimOptions) -> SimOptions:
    """A router crash while one backup is paused (``p_router_crash_paused``), if
    ``ROUTER_CRASH_WHILE_PAUSED``, in ``P_ROUTER_CRASH_PAUSED`` of the fault seeds that pause replicas
    and crash routers, on its own stream (``paused-<seed>``) so the seeds drawn before keep every other
    choice.

    Args:
        rng: the seed's stream for this draw.
        opts: the options drawn so far.

    Returns:
        ``opts`` with ``p_router_crash_paused`` set (per tick and group while a backup is paused), or
        unchanged.
    """
    if not (ROUTER_CRASH_WHILE_PAUSED and opts.faults and opts.p_pause):
        return opts
    if rng.random() >= P_ROUTER_CRASH_PAUSED:
        return opts
    return dataclasses.replace(opts, p_router_crash_paused=rng.uniform(0.02, 0.1))


def _draw_direct(rng: random.Random, opts: SimOptions) -> SimOptions:
    """The direct data plane, on its own stream (the seeds drawn before it existed keep every other
    choice): on in a share of the seeds, with a heartbeat interval that covers a healthy link's round
    trip, links that fall back to Ray calls, parked answers, and partitions in fault runs."""
    if rng.random() >= P_DIRECT:
        return opts
    # an interval over a healthy link's round trip; as many misses as keep the suspicion (a link delay,
    # then misses + 1 intervals) inside the core's failure timeout where they can, as in the runtime
    interval = 2 * opts.link_delay_max + rng.randint(1, 2)
    fitting = [m for m in (1, 2, 3) if opts.link_delay_max + (m + 1) * interval + 2 < opts.failure_timeout_ticks]
    return dataclasses.replace(
        opts, direct=True,
        link_heartbeat_ticks=interval,
        heartbeat_misses_max=rng.choice(fitting or [1]),
        p_unreachable=rng.choice((0.0, 0.0, 0.2)),
        p_parked=rng.choice((0.0, 0.1, 0.3)),
        p_partition=rng.uniform(0.003, 0.015) if opts.faults and rng.random() < 0.5 else 0.0,
    )


def _draw_workload(rng: random.Random, opts: SimOptions) -> SimOptions:
    """The workload's corners, drawn after everything else (earlier choices keep their values):
    one-way calls, methods that raise or abort, now()/random(), arguments by reference whose
    owner may exit, and small bounds that a long run passes several times."""
    wanted: Dict[str, Any] = dict(
        p_oneway=rng.choice((0.0, 0.1, 0.25)),
        p_stamped=rng.choice((0.0, 0.1, 0.3)),
        p_raising=rng.choice((0.0, 0.05, 0.1)),
        p_poison=rng.choice((0.0, 0.03)),
        p_byref=rng.choice((0.0, 0.1, 0.3)),
        p_owner_exit=0.0,  # drawn last (below), so that the draws after it keep their values
        client_fifo=rng.random() < 0.5,
    )
    if rng.random() < 0.3:
        # small bounds: the evicting ones (replies kept, recent executions, carried announcements)
        # must still cover what a retry or a lagging replica can ask for within a run's delays
        outstanding = opts.clients * (opts.window + 4) * (3 if opts.nested else 1)
        wanted.update(
            reply_cache_max=rng.choice((2, 4)) * outstanding,
            retain_executed_max=rng.choice((16, 32)),
            carried_announcements_max=rng.choice((2, 4, 8)),
            # a backup lagging past log_max is replaced: a view change, which a fault-free run (I5) must not have
            log_max=rng.choice((32, 64)) if opts.faults else opts.log_max,
            batch_max=rng.randint(1, 4),
            primary_inflight_max=rng.randint(1, 4),
            backup_inflight_max=rng.randint(1, 2),
            # a router refuses calls past inflight_max (GroupOverloadedError); a lossy client retransmits,
            # a Ray caller would get the error: small only on the lossy link, and not below the calls a
            # window keeps outstanding (far below, every call waits on retransmissions and I6's bound,
            # which does not count them, breaks: seed 164 with 4 for 16 pipelined calls)
            inflight_max=opts.inflight_max if wanted["client_fifo"] else
            opts.clients * opts.window + rng.randint(2, 6),
        )
    if wanted["p_byref"]:
        # the caller of a call by reference may exit once it has its replies: the router owns the
        # argument from then on, and every replica fetched it on arrival (docs/faults.md, fixed)
        wanted["p_owner_exit"] = rng.choice((0.0, 0.5, 1.0))
    if "inflight_max" in wanted and not wanted["client_fifo"]:
        # the router refuses calls once it retains pending_max requests not yet executed everywhere
        # (docs/faults.md, fixed): as small as half a window of every client, on the lossy link (a
        # Ray caller would get GroupOverloadedError), and above a passive group's checkpoint interval
        # (its backups hold the requests since the last checkpoint); with nested calls too: a call
        # refused there keeps its place for its retransmission (docs/faults.md, fixed: seed 103032)
        wanted["pending_max"] = max(opts.checkpoint_every_messages + 1,
                                    opts.clients * opts.window // 2 + rng.randint(0, 2))
    return dataclasses.replace(opts, **wanted)

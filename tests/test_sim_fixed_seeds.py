"""A fixed, fast seed set of the simulator: the mutation test command's simulator part.

96 seeds (2 styles x 6 schedulers x 8 seeds), always the same ones, so a
mutant of ``ftactors/core`` is judged against the same runs every time. Each
seed must finish every client operation with no invariant broken.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ftactors.core import SCHEDULERS
from ftactors.testing import SimOptions, draw_options, options, run_seed
from ftactors.testing.options import STYLES, force_replies_wait


@pytest.fixture(autouse=True)
def _seeds_as_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each seed here replays the run that found its hole, drawn before ``replies_wait_for_backup`` was
    (docs/faults.md row 65) and cancels were: those draws, off (they change the seeds they turn on)."""
    monkeypatch.setattr(options, "DBLFAULT_DRAW", False)
    monkeypatch.setattr(options, "CANCEL_DRAW", False)  # nor the cancels (row 72): tests/test_sim_cancel.py

SEEDS_PER_CELL = 8
CELLS = [(style, sched) for style in STYLES for sched in sorted(SCHEDULERS)]


@pytest.mark.parametrize("style,scheduling", CELLS)
def test_fixed_seeds_pass(style: str, scheduling: str) -> None:
    """Every fixed seed of the cell completes its operations without a violation."""
    start = 7_000 + 100 * CELLS.index((style, scheduling))
    for seed in range(start, start + SEEDS_PER_CELL):
        result = run_seed(seed, style, scheduling)  # raises on an invariant violation
        assert result.ops >= 3, f"seed {seed} ({style}, {scheduling}) completed only {result.ops} ops"


@pytest.mark.parametrize("seed", [394, 489])
def test_a_new_primary_is_sent_the_requests_of_the_order_it_replays_first(seed: int) -> None:
    """Found by the small bounds of the workload (``batch_max=1``): after a failover the new primary
    received the requests it lacked in the router's reception order, one per Deliver, gave the
    announced order up after ``recovery_timeout_ticks`` and put another call at an acknowledged
    position (``I4: store-r3 executes c1#5 at 12, where the acknowledged c3#4 is``)."""
    result = run_seed(seed)
    assert result.counts["crashes"] > 0 and result.ops >= 100


def test_a_replica_at_pending_max_keeps_what_the_order_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the bounds workload: with pending_max=2 (seed 133) a replica whose pending requests
    were full dropped the next copy silently (a backup) or refused it (the primary, after the
    router had relayed it to the backups); the announced order then lacked a request where it was
    needed and a later primary put another call at an acknowledged position
    (``I4: store-r5 executes c2#3 at 10, where the acknowledged c0#3 is``). Now the router refuses
    calls before relaying them once it retains pending_max requests (docs/faults.md)."""
    monkeypatch.setattr(options, "ROUTER_CRASH_WHILE_PAUSED", False)  # the draw that found it (before row 52)
    result = run_seed(133, options=replace(draw_options(133), pending_max=2))
    assert result.counts["full:pending_max"] > 0 and result.ops >= 100


def test_a_passive_primary_with_async_calls_suspended_still_checkpoints() -> None:
    """Found by the async-steps workload (seed 175: passive, log_max=32): a checkpoint waits for a
    position at which no call is suspended; a primary that kept starting new async calls while
    others were suspended never reached one, so its backups' logs grew past log_max and a member
    refused a Deliver. A primary with a checkpoint due now starts nothing new until its suspended
    calls finish."""
    opts = replace(draw_options(175), log_max=32)  # as drawn before log_max grew with the steps
    assert opts.async_steps and opts.style == "passive"
    result = run_seed(175, options=opts)  # raised "protocol: member ... more than log_max" before the fix
    assert result.ops >= 3


def test_a_backup_never_holds_more_than_log_max_announcements_with_async_steps() -> None:
    """Found by the async-steps workload (seed 102111, semi-active, priority, log_max=96): the router
    bounded what a lagging backup may miss by the requests it retains, but with async steps a call
    takes several positions, so a backup was sent more than log_max announcements and refused the
    Deliver ("more than log_max=96 announcements"). The router now also counts retained positions."""
    result = run_seed(102111, style="semi-active", scheduling="priority")  # raised before the fix
    assert result.ops >= 3


def test_a_call_back_into_a_group_is_admitted_past_inflight_max() -> None:
    """Found by the re-entrant rings of the workload (seed 441: passive, fair, inflight_max=7): seven
    client calls waited at the front's router, one of them a ring (front -> store -> front) whose
    store call waited for its call back into the front; the front's router refused that call
    (GroupOverloadedError: inflight_max requests waiting), the store retried it for ever, and no
    call completed (I6). A call that descends from a call waiting at this router is part of it."""
    opts = replace(draw_options(441), spares=0)  # as drawn before warm spares
    assert opts.async_steps and opts.p_ring and opts.inflight_max == 7
    result = run_seed(441, options=opts)  # raised "I6: c0#48 pending over 664 ticks after faults stopped" before the fix
    assert result.counts["reentrant_starts"] > 0 and result.ops >= 100


def test_a_new_primary_is_sent_the_starts_of_the_order_it_replays_not_its_resumes() -> None:
    """Found by the rings and timers of the workload (seed 100128: semi-active, deadline, batch_max=3,
    one Deliver in flight to the primary): after a failover the router sent the new primary the
    requests of the announced order past its position one per announced *step*: the resumes of calls
    it already held suspended first, a call with several steps as often as it has steps. The start
    it needed next came after ``recovery_timeout_ticks``, so it gave the announced order up and put
    another call at an acknowledged position (``I4: front-r2 executes c0#4 at 30, where the
    acknowledged c1#5 is``). Each message's request goes once, at its start's place."""
    opts = replace(draw_options(100128, "semi-active", "deadline"), spares=0)  # as drawn before warm spares
    result = run_seed(100128, options=opts)  # raised the I4 above before the fix
    assert result.counts["crashes"] > 0 and result.counts["timers"] > 0 and result.ops >= 70


@pytest.mark.parametrize("seed", [91, 247])
def test_a_replacement_backup_and_raising_nested_calls_pull_no_reply_copy(seed: int) -> None:
    """Issue 11 (claim 48): a fault-free run whose frontend and store each lose a backup halfway
    (``replace_backup``): the replacements replay the retained log after their checkpoint and take
    the reply copies sent with the state transfer; nested calls that raised are pushed like values.
    I5 allows the view changes and joins, and no pull (before the router kept the copies for a state
    transfer: ``I5: fault-free run, yet backups pulled 9 nested reply copies``, seed 91)."""
    opts = draw_options(seed)
    assert opts.replace_backup and not opts.faults and opts.nested and opts.style == "semi-active"
    result = run_seed(seed)
    assert result.counts["backups_replaced"] == 2 and result.counts.get("nested_pulls", 0) == 0
    assert result.counts["nested_raised_copies"] > 0 and result.ops >= 50


@pytest.mark.parametrize("seed,style,sources_max", [(100018, "semi-active", 44), (100043, "passive", 24),
                                                     (100056, "passive", 32)])
def test_a_call_that_waits_behind_later_calls_of_its_client_still_makes_its_nested_calls(
        seed: int, style: str, sources_max: int) -> None:
    """Found once the swarm drew small ``sources_max`` with reordering schedulers (as small as the
    active sources + 8 or 12; seed 100018: priority, ``sources_max=44``; 100043: passive, async steps,
    24; 100056 as drawn now, twice the active sources + 8): a front call waited in the priority scheduler while later calls of its client ran, and the
    store forgot their nested sources, which raised the client's floor past the waiting call; its
    nested call then read "expired" (``I6: nested call front|c3#2#1 failed: ReplyUnavailableError(
    'reply of front|c3#2#1 was trimmed (reply_cache_max)')``). A floor raised past a call its caller
    still holds now exempts that call's subtree."""
    opts = replace(draw_options(seed, style, "priority"), sources_max=sources_max, spares=0)  # no spares then
    assert opts.nested
    result = run_seed(seed, options=opts)  # raised the I6 above before the fix
    assert result.ops >= 100 and result.counts["nested_sends"] > 0


def test_an_in_order_scheduler_with_sources_max_at_twice_the_active_sources_keeps_every_nested_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 103108 (semi-active, reception, pauses and router crashes) with ``sources_max=16``, twice
    the active sources + 8: front's primary, paused, was deposed and woke; it retried a nested call to
    store for 250 ticks, fenced by store's router, until that router restarted: the rebuilt one knew no
    view of front and relayed the retry, whose source store had long forgotten (``I6: nested call
    front|c0#17#1 failed: ReplyUnavailableError('reply of front|c0#17#1 was trimmed
    (reply_cache_max)')``). A rebuilt router learns the calling groups' views from its members'
    StateReports and fences what it admitted meanwhile (docs/faults.md)."""
    monkeypatch.setattr(options, "ROUTER_CRASH_WHILE_PAUSED", False)  # the draw that found it (before row 52)
    monkeypatch.setattr(options, "P_ONEWAY_NESTED", 0.0)  # and before one-way nested calls
    monkeypatch.setattr(options, "BUSY_POLL_DRAW", False)  # and before busy polls (row 76)
    opts = replace(draw_options(103108, "semi-active", "reception"), sources_max=16, spares=0)  # no spares then
    result = run_seed(103108, options=opts)
    assert result.ops >= 100 and result.counts["fenced_after_rebuild"] >= 1


@pytest.mark.parametrize("seed,scheduling", [(974, "reception"), (318, "deadline")])
def test_a_spare_that_dies_while_it_joins_is_replaced(seed: int, scheduling: str) -> None:
    """docs/faults.md row 39: with a warm spare, the spare made a replacement died before its
    snapshot came; the router forgot it and asked for no other (``I6: no quiescence 400 ticks after
    the last reply: store: normal v6 ['store-r4'] ... 'store-r7': ('joining', 0, 0, ...)``)."""
    opts = replace(draw_options(seed, "semi-active", scheduling), spares=1)
    result = run_seed(seed, options=opts)
    assert result.ops >= 100 and result.counts["spare_promoted"] >= 1


def test_a_router_starved_of_cpu_still_runs_one_callers_calls_in_its_order() -> None:
    """Ray starts an async router's tasks in no fixed order: one caller's calls overtake
    each other (``caller_overtake_ticks``, within the router's reordering window), and the router's
    process gets no CPU for a while (``p_router_starve``). The CI run that found it (the threaded
    router since removed, load about 10) ran 300 pipelined calls as ``['15', '3', '5', ...]``. A call held for
    an earlier one was stamped with the tick before the starvation, and the router's first tick
    after it counted the whole starvation as waiting: it gave the earlier call up, unread in its
    inbox (``I10: store ran c2#11 at 46, after c2#15 at 45``). Now time the router did not run does
    not count (``RouterCore.tick``, ``Intake.excuse``; docs/faults.md, row 40)."""
    opts = draw_options(11, scheduling="reception")
    opts = replace(opts, client_fifo=True, caller_overtake_ticks=opts.sequence_gap_ticks - 1,
                   p_router_starve=0.03, router_starve_max=3 * opts.sequence_gap_ticks)
    assert opts.window == 4 and opts.faults
    result = run_seed(11, options=opts)
    assert result.counts["router_starvations"] > 0 and result.ops >= 100


def test_a_router_starved_of_cpu_with_direct_links_does_not_suspect_members_whose_heartbeats_it_had_not_read() -> None:
    """The direct data plane's heartbeats (``heartbeat_misses_max`` 1, every 8 ticks) with a starved
    router: a heartbeat went out on the router's last tick before it got no CPU for a heartbeat interval,
    the answer came meanwhile and waited unread, and the router's first tick on waking counted it as
    a miss: it suspected both members of the group at once (``I6: store failed front|c0#11#1: all
    replicas of the group failed``). A heartbeat that came due while the router did not run is now
    judged on its next tick, after it read what came (``Links.tick``; docs/faults.md)."""
    opts = draw_options(113)
    assert opts.direct and opts.heartbeat_misses_max == 1 and opts.link_heartbeat_ticks == 8
    opts = replace(opts, p_router_starve=0.029086066877408903, router_starve_max=15)  # as drawn with direct links
    result = run_seed(113, options=opts)
    assert result.counts["router_starvations"] > 0 and result.ops >= 30


def test_a_router_starved_while_the_new_primary_waits_for_what_it_lacks_keeps_acknowledged_positions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A second fault before the first is repaired: the primary crashed, and its router got no CPU
    while the new primary waited for the requests of the order it took over. The new primary gave
    that order up on its own clock after ``recovery_timeout_ticks`` and ran another call at an
    acknowledged position (``I4: store-r4 executes c2#23 at 53, where the acknowledged c0#17 is``).
    Now only the router, which knows whether anyone holds the request, gives the order up, counting
    its own running time (``RouterCore._watch_lost_order``, ``Deliver.give_up_from``; docs/faults.md,
    row 44)."""
    monkeypatch.setattr(options, "ROUTER_CRASH_WHILE_PAUSED", False)  # the draw that found it (before row 52)
    opts = replace(draw_options(103164, "semi-active", "reception"), starve_unstable=True)
    result = run_seed(103164, options=opts)
    assert result.counts["router_starvations"] > 0 and result.counts["crashes"] > 0 and result.ops >= 90


def test_a_call_a_priority_scheduler_passed_over_past_reply_cache_max_survives_a_passive_failover() -> None:
    """Passive, priority scheduler, ``reply_cache_max`` 64: the primary passed over the low-priority
    c2#18 while later calls of c2 ran and their replies left the table, whose per-source watermark
    (``evicted_upto``) passed 18. A checkpoint carried that table to the backups, which dropped the
    never-executed c2#18 as "expired" (``ReplicaCore._accept_checkpoint``); the backup made primary
    then answered the router's copy ``ReplyUnavailableError('reply of c2#18 was trimmed')`` (I6).
    Now the table keeps the calls its watermark passed before they ran as gaps, "new" until they
    run (``DedupTable._raise_watermark``; docs/faults.md, row 42)."""
    result = run_seed(108124, "passive", "priority")
    assert result.counts["crashes"] > 0 and result.ops >= 100


def test_a_backup_whose_pulled_nested_reply_is_gone_is_resynced_not_handed_the_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 263 (semi-active, fair, async steps, ``sources_max`` 72, direct links, starved routers):
    front's router restarted and lost the reply copies it held for the backup front-r1, which pulled
    them from store's router when its order reached their calls; store's router, often starved,
    answered late, front-r1 fell behind, and its pull of ``front|c3#1#1`` came after store forgot
    that source: it read "expired" and the backup's method got an error the primary never saw
    (``I6: nested call front|c3#1#1 failed: ReplyUnavailableError('reply of front|c3#1#1 was trimmed
    (reply_cache_max)')``). Now the backup gives that step up and its router repairs it by state
    transfer (``ReplicaCore.pulled_reply_gone``, ``RouterCore._resync_lost_reply``; docs/faults.md,
    row 47)."""
    monkeypatch.setattr(options, "BUSY_POLL_DRAW", False)  # the draws that found it (row 81 drew busy polls)
    opts = draw_options(263)
    assert opts.direct and opts.p_router_starve > 0 and opts.sources_max == 72  # starvation drawn with direct links
    result = run_seed(263, options=opts)
    assert result.counts["steps_given_up"] >= 1 and result.counts["router_starvations"] > 0 and result.ops >= 100


@pytest.mark.parametrize("seed,scheduling", [(521, None), (100001, "deadline")])
def test_seeds_found_once_routers_with_direct_links_starved_in_the_draw(seed: int, scheduling: str) -> None:
    """docs/faults.md, row 47: seed 521 (a joiner admitted with a checkpoint before a position whose
    request its restarted router lacked: ``I4: nested call front|c0#2#1 is not in the order of store``)
    and swarm seed 100001 (an answer on the Ray path released replies before a parked answer carrying
    earlier positions was fetched: ``I4: store-r10 executes c0#39 at 150, where the acknowledged c0#38
    is``), both semi-active."""
    opts = draw_options(seed, "semi-active", scheduling)
    assert opts.direct and opts.p_router_starve > 0
    result = run_seed(seed, options=opts)
    assert result.counts["router_starvations"] > 0 and result.ops >= 100


def test_a_primary_answer_by_ray_call_is_not_released_ahead_of_an_earlier_answer_parked_on_its_link(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The direct data plane, parked answers and arguments by reference (whose Delivers take Ray calls
    while the link is up): the primary's answer to a Ray-call Deliver (announcement 140, the reply of
    c1#32) reached the core while its earlier answer, parked on the link (announcement 139), was still
    being fetched; the router released c1#32, the primary crashed, the fetch was lost, and the next
    primary put c1#33 at 140 (``I4: store-r105 executes c1#33 at 140, where the acknowledged c1#32
    is``). A member's Ray-call answer now waits for its earlier parked answers (``Links.on_ray_answer``;
    docs/faults.md, row 46). Found by a hunt of the router crash while a backup is paused
    (``p_router_crash_paused``); the seed fails without that draw too."""
    monkeypatch.setattr(options, "STARVE_WITH_DIRECT", False)  # the draw that found it (before row 47)
    opts = draw_options(10435)
    assert opts.direct and opts.p_parked and opts.p_byref and not opts.p_router_crash_paused
    result = run_seed(10435, options=opts)
    assert result.counts["crashes"] > 0 and result.counts["link_ray_answers_held"] > 0 and result.ops >= 140


def _with_router_crash_while_paused(monkeypatch: pytest.MonkeyPatch, seed: int) -> SimOptions:
    """The seed's options with ``ROUTER_CRASH_WHILE_PAUSED`` on, as drawn when these seeds were found (with
    ``STARVE_WITH_DIRECT`` off)."""
    monkeypatch.setattr(options, "ROUTER_CRASH_WHILE_PAUSED", True)
    monkeypatch.setattr(options, "STARVE_WITH_DIRECT", False)  # the draw that found them (before row 47)
    opts = draw_options(seed)
    assert opts.p_router_crash_paused > 0
    return opts


def test_a_router_crash_while_a_backup_is_paused_with_a_ray_call_answer_behind_a_parked_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The draw of a router crash while one backup is paused (``p_router_crash_paused``) found the race of
    row 46 again: ``I4: store-r103 executes c1#23 at 38, where the acknowledged c1#21 is`` (the seed
    passes without that draw); a member's Ray-call answer now waits for its earlier parked answers."""
    opts = _with_router_crash_while_paused(monkeypatch, 20806)
    result = run_seed(20806, options=opts)
    assert result.counts["router_crashes_paused"] > 0 and result.counts["link_ray_answers_held"] > 0
    assert result.ops >= 60


def test_a_router_crash_while_a_backup_is_paused_with_rings_lets_both_groups_admit_their_joiners(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested groups with async rings (``inflight 7/1/1``, ``pending_max`` 2): after a router crash while a
    backup was paused, front and store each waited for a joiner (front-r106, store-r6), each primary held a
    suspended call (a checkpoint waits for them), and front's rebuilt router, which retained 11 requests
    every member had executed (trimming nothing while a replica joins), refused store's call back
    ``store|front|c0#4#1#1`` past ``pending_max`` plus as many calls back: nothing moved (``I6: c0#4
    pending over 832 ticks after faults stopped``). A call back now counts only the requests some member
    has not executed (``OrderLog.unexecuted``; docs/faults.md, row 52)."""
    monkeypatch.setattr(options, "BUSY_POLL_DRAW", False)  # the draws that found it (before row 76)
    opts = _with_router_crash_while_paused(monkeypatch, 19532)
    assert opts.async_steps and opts.p_ring and opts.pending_max == 2
    result = run_seed(19532, options=opts)
    assert result.counts["router_crashes_paused"] > 0 and result.counts["reentrant_starts"] > 0
    assert result.ops >= 100


def test_a_rebuilt_router_starved_while_it_recovers_keeps_the_primary_whose_report_waited() -> None:
    """Seed 3275 (semi-active, priority, two replicas, routers starved during a failover or a join too),
    found by a hunt of the router crash while a backup is paused (it fails without that draw too): the
    rebuilt store router, starved for 17 ticks while the primary's report waited unread, timed its
    recovery out on that time, removed the primary and made the backup primary, which ran another call
    at an acknowledged position (``I4: store-r1 executes c1#3 at 3, where the acknowledged c0#2 is``).
    The recovery's timeout now counts only the router's running time (``Recovery.excuse``;
    docs/faults.md, row 52)."""
    opts = draw_options(3275)
    assert opts.starve_unstable and opts.p_router_starve > 0
    result = run_seed(3275, options=opts)
    assert result.counts["router_starvations"] > 0 and result.counts["router_rebuilds"] > 0 and result.ops >= 150


def test_a_primary_crashed_with_a_one_way_nested_call_on_its_way_over_the_direct_data_plane(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Swarm seed 104085 (semi-active, resources, 2 replicas, the direct data plane, router crashes,
    partitions, starvations): the front's primary crashed while its one-way nested call was on its way
    (``p_oneway_nested_crash``), and later its new primary executed a call at a position whose
    acknowledged call it did not hold (``I4: front-r102 executes c0#26 at 76, where the acknowledged
    c0#25 is``). Cause (docs/faults.md, row 56): the primary answered a Deliver that came by Ray call with
    positions 72-75 and, in the same tick, the next one on its direct link with c0#25 at 76; the link's
    answer came first, the router released c0#25's reply without the order of 73-75, and the crash lost
    them. The router now holds such a reply until it holds the order up to its position."""
    monkeypatch.setattr(options, "ONEWAY_CRASH_WITH_DIRECT", True)
    run_seed(104085, options=draw_options(104085, "semi-active", "resources"))


def test_a_primary_never_reads_its_own_nested_call_trimmed_with_sources_max_and_starved_routers() -> None:
    """Seed 6423 (semi-active, reception, two replicas, nested kv with async steps and rings,
    ``sources_max`` 40, link drops, routers starved during failovers, rare crashes), found by a hunt
    of seeds 5000-7999 on f1daff3 (1 of 3,000 failed; it fails on 91adcaf too, before rows 48-59):
    ``I6: nested call front|c1#9#2 failed: ReplyUnavailableError('reply of front|c1#9#2 was trimmed
    (reply_cache_max)')`` at a suspended call resumed on the reply. Cause (docs/faults.md, row 60): front's
    c1#9 made its first nested call and waited; the store forgot front|c1#9 (its root's floor stopped at
    that call, (9, 1)), then the sources of later calls of c1, which named c1#9 held: the floor rose
    past c1#9's subtree, taken for one it had already passed, and c1#9's second call read "expired".
    The rest of that subtree now keeps the floor it had."""
    opts = draw_options(6423, "semi-active", "reception")
    assert opts.sources_max == 40 and opts.async_steps and opts.p_router_starve > 0
    result = run_seed(6423, options=opts)
    assert result.ops > 0


@pytest.mark.parametrize("seed,forced", [(9, False), (300, True)])
def test_seeds_found_with_replies_wait_for_backup(monkeypatch: pytest.MonkeyPatch, seed: int, forced: bool) -> None:
    """docs/faults.md row 65, while building the setting. Seed 9 (drawn; deadline, 2 replicas, async steps):
    a reply held for the backup was dropped when its primary died, though the promoted backup had executed
    the call and the router had trimmed its request (``I6: c1#8 pending over 648 ticks after faults
    stopped``). Seed 300 (forced, ``--replies-wait-for-backup``; fair, 2 replicas): a reply released while
    the group was down to one member, its primary crashed once a joiner was admitted but before it caught
    up, then its router (``I4: store-r311 executes c0#15 at 54, where the acknowledged c3#16 is``)."""
    monkeypatch.setattr(options, "DBLFAULT_DRAW", True)
    opts = draw_options(seed)
    opts = force_replies_wait(opts) if forced else opts
    assert opts.replies_wait_for_backup
    result = run_seed(seed, options=opts)
    assert result.ops >= 90  # every call of the run completed


@pytest.mark.parametrize("seed,style,scheduling,spares,replies_wait", [
    (102102, "semi-active", "priority", 1, False), (107097, "passive", "fair", 0, True)])
def test_swarm_seeds_with_busy_polls_drawn_pass(monkeypatch: pytest.MonkeyPatch, seed: int, style: str,
                                               scheduling: str, spares: int, replies_wait: bool) -> None:
    """docs/faults.md rows 76 and 81: with ``busy_poll_ticks`` drawn, 102102 (1 tick, lossy links) left
    calls pending for good (``I6: c0#18 pending over 906 ticks after faults stopped``: a busy poll every
    tick held the primary's link, each taken for answered by the answer of the Deliver before it) and
    107097 (2 ticks) did not quiesce (``I6: no quiescence 400 ticks after the last reply``)."""
    monkeypatch.setattr(options, "BUSY_POLL_DRAW", True)
    opts = replace(draw_options(seed, style, scheduling), spares=spares)
    result = run_seed(seed, options=force_replies_wait(opts) if replies_wait else opts)
    assert result.ops == 120 if seed == 102102 else result.ops == 210

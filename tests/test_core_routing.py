"""The router's parts, each on its own: intake, order log, links, recovery, outbox.

``RouterCore`` (tests/test_core_router.py) composes them; these transcripts pin what
each part promises the façade.
"""

from __future__ import annotations

from typing import Optional

import pytest

from ftactors.core import (
    Announcement,
    Checkpoint,
    CoreConfig,
    Kind,
    MsgId,
    NewView,
    Outcome,
    Reply,
    Request,
    StaleViewError,
    StateReport,
)
from ftactors.core.routing import Intake, LinkTracker, OrderLog, Outbox, Recovery
from ftactors.core.routing.links import DIVERGED_MAX
from ftactors.core.routing.log import DIGESTS_MIN
from ftactors.core.routing.recovery import RECOVERY_ROUNDS_MAX


def req(source: str, seq: int, *, ack_below: int = 0, kind: Kind = Kind.SYNC_REQUEST,
        source_view: Optional[int] = None) -> Request:
    return Request(kind, MsgId(source, seq), "g", "add", payload=seq, ack_below=ack_below, source_view=source_view)


def ann(position: int, source: str = "c", seq: Optional[int] = None, view: int = 1) -> Announcement:
    return Announcement("g", view, position, MsgId(source, position if seq is None else seq))


def reply(source: str, seq: int, position: int) -> Reply:
    return Reply(MsgId(source, seq), "g", 1, position, Outcome(True, seq))


def seqs(requests: list) -> list:
    return [r.msg_id.seq for r in requests]


# ------------------------------------------------------------------ OrderLog


def test_log_orders_each_position_once_and_a_newer_view_overrides() -> None:
    log = OrderLog(CoreConfig())
    assert log.merge(ann(1)) is True
    assert log.merge(ann(1)) is False  # a repeat
    assert log.merge(ann(1, seq=9, view=0)) is False  # an older view cannot move it
    assert log.order[1].msg_id == MsgId("c", 1)
    assert log.merge(ann(1, seq=9, view=2)) is True  # a new primary re-ordered it
    assert log.order[1].msg_id == MsgId("c", 9) and log.pos_of[MsgId("c", 9)] == 1
    assert [a.position for a in log.after(0)] == [1]
    assert log.after(1) == []


def test_a_message_whose_position_a_later_view_gave_another_no_longer_holds_it() -> None:
    """Swarm seed 102094 (docs/faults.md row 82): a rebuilt router learnt view 5's order (c0#32 at 63...),
    the new primary gave that order up and view 6 put other calls at those positions; ``pos_of`` still
    gave c0#32 position 63, so the intake took c0#32 for known (``_skip_known``) and held its caller's
    retry for good (``I6: c0#32 pending over 372 ticks after faults stopped``)."""
    log = OrderLog(CoreConfig())
    log.merge(ann(63, "c0", 32, view=5))
    log.merge(ann(63, "c1", 34, view=6))
    assert MsgId("c0", 32) not in log.pos_of and not log.knows(MsgId("c0", 32))
    assert log.pos_of[MsgId("c1", 34)] == 63


def test_log_trims_what_every_member_acknowledged_and_never_takes_it_back() -> None:
    log = OrderLog(CoreConfig())
    for seq in (1, 2, 3):
        log.retain(req("c", seq))
        log.merge(ann(seq))
    log.record_digests(((1, "d1"), (2, "d2"), (3, "d3")))
    log.trim(2)
    assert log.trimmed == 2
    assert list(log.requests) == [MsgId("c", 3)] and list(log.order) == [3]
    assert list(log.primary_digests) == [3]
    assert log.merge(ann(2, seq=7, view=5)) is False  # trimmed: settled for good
    assert not log.knows(MsgId("c", 1)) and log.knows(MsgId("c", 3))
    with pytest.raises(AssertionError):
        log.trim(2)  # the floor only rises


def test_log_settles_replies_by_position() -> None:
    log = OrderLog(CoreConfig())
    for seq in (1, 2, 3):
        log.retain(req("c", seq))
    log.settle(reply("c", 1, position=4))  # executed at 4: retained until trimmed
    assert log.pos_of[MsgId("c", 1)] == 4 and MsgId("c", 1) in log.requests
    log.settle(reply("c", 2, position=0))  # answered without executing (an error)
    assert MsgId("c", 2) not in log.requests
    log.trim(4)
    assert not log.knows(MsgId("c", 1))  # its position came from the reply alone: trimmed all the same
    log.retain(req("c", 3))
    log.settle(reply("c", 3, position=3))  # a late duplicate below the trimmed floor
    assert MsgId("c", 3) not in log.requests and MsgId("c", 3) not in log.pos_of


def test_log_knows_which_positions_it_can_replay() -> None:
    log = OrderLog(CoreConfig())
    log.retain(req("c", 1))
    log.merge(ann(1))
    log.merge(ann(2))  # its request is not here
    assert log.can_replay(0, 1, set())
    assert not log.can_replay(0, 2, set())
    assert log.can_replay(0, 2, {MsgId("c", 2)})  # the member holds it itself
    assert not log.can_replay(0, 3, {MsgId("c", 2)})  # position 3 was never announced here
    assert log.lost_request_at(2) and not log.lost_request_at(1) and not log.lost_request_at(3)
    assert log.announced() == {MsgId("c", 1), MsgId("c", 2)}
    assert not log.lacks_order_upto(2)
    assert log.lacks_order_upto(3)


def test_log_counts_the_order_it_lacks_from_the_trimmed_floor() -> None:
    log = OrderLog(CoreConfig())
    log.merge(ann(1))
    log.merge(ann(3))
    assert log.lacks_order_upto(3)  # position 2 is missing
    log.trim(1)
    assert log.lacks_order_upto(3)  # still missing 2
    log.merge(ann(2))
    assert not log.lacks_order_upto(3)


def test_log_keeps_the_primary_digests_within_its_cap_and_finds_a_divergence() -> None:
    cfg = CoreConfig(log_max=64, digest_every_messages=8)
    cap = DIGESTS_MIN + 64 // 8
    log = OrderLog(cfg)
    log.record_digests(tuple((p, f"d{p}") for p in range(1, cap + 3)))
    assert len(log.primary_digests) == cap and next(iter(log.primary_digests)) == 3  # oldest first out
    assert log.divergence(((5, "d5"), (6, "d6"))) is None
    assert log.divergence(((1, "zz"), (5, "d5"), (6, "xx"), (7, "yy"))) == 6  # 1 is not kept: nothing to compare
    assert log.overfull() is False


def test_log_adopts_reported_requests_it_lacks_except_those_done() -> None:
    log = OrderLog(CoreConfig())
    log.retain(req("c", 1))
    log.adopt_reported([req("c", 1), req("c", 2), req("c", 3)], done={MsgId("c", 3)})
    assert list(log.requests) == [MsgId("c", 1), MsgId("c", 2)]


def test_log_is_overfull_beyond_log_max() -> None:
    log = OrderLog(CoreConfig(log_max=2))
    log.retain(req("c", 1))
    log.retain(req("c", 2))
    assert not log.overfull()
    log.retain(req("c", 3))
    assert log.overfull()


# -------------------------------------------------------------------- Intake


def make_intake(**cfg: int) -> Intake:
    log = OrderLog(CoreConfig(**cfg))  # type: ignore[arg-type]
    return Intake(log.config, {"fenced": 0}, log)


def test_intake_releases_one_sources_calls_in_its_order() -> None:
    intake = make_intake()
    assert intake.admit(req("c", 2), now=0) == []  # c#1 is missing: c#2 waits
    assert intake.holds(MsgId("c", 2)) and MsgId("c", 2) in intake.pending
    assert intake.admit(req("c", 3), now=1) == []
    assert seqs(intake.admit(req("c", 1), now=2)) == [1, 2, 3]
    assert intake.held == {} and intake.expect["c"] == 4
    assert seqs(intake.admit(req("c", 4), now=3)) == [4]


def test_intake_gives_up_a_missing_call_after_the_gap() -> None:
    intake = make_intake()
    intake.admit(req("c", 1), now=0)
    intake.admit(req("c", 3), now=10)
    intake.admit(req("c", 4), now=11)
    assert intake.release_gaps(now=14, gap_ticks=lambda arrived: 5) == []
    assert seqs(intake.release_gaps(now=15, gap_ticks=lambda arrived: 5)) == [3, 4]  # c#2 never came
    assert intake.expect["c"] == 5


def test_a_call_whose_argument_the_router_still_fetches_holds_its_sources_later_calls_past_the_gap() -> None:
    """A call by reference reaches the router first and is submitted after its argument is fetched
    (longer than the gap on a loaded node): the caller's later calls wait for it, in its order."""
    intake = make_intake()
    intake.admit(req("c", 1), now=0)
    intake.expect_soon(MsgId("c", 2))  # c#2 came; its argument is being fetched
    intake.admit(req("c", 3), now=1)
    intake.admit(req("c", 4), now=2)
    assert intake.release_gaps(now=100, gap_ticks=lambda arrived: 5) == []  # not [3, 4]: c#2 is coming
    assert seqs(intake.admit(req("c", 2), now=101)) == [2, 3, 4]
    assert intake.coming == set() and intake.expect["c"] == 5


def test_a_call_whose_argument_could_not_be_fetched_no_longer_holds_the_later_ones() -> None:
    intake = make_intake()
    intake.admit(req("c", 1), now=0)
    intake.expect_soon(MsgId("c", 2))
    intake.admit(req("c", 3), now=1)
    intake.forget_coming(MsgId("c", 2))  # its owner died: it is never submitted
    assert seqs(intake.release_gaps(now=6, gap_ticks=lambda arrived: 5)) == [3]


def test_a_held_call_goes_on_once_the_router_learns_its_predecessor_settled_not_after_the_gap() -> None:
    """A rebuilt router takes a caller's call #2 (``ack_below`` 1: the caller acknowledges in sweeps)
    before it learns that #1 was executed and its reply released; once it knows, #2 waits no more.
    Before, it waited the restarted router's gap (``failure_timeout_ticks``: 120 s in
    ``tests/test_ray_bounds.py::test_an_argument_lost_with_its_router_and_its_caller_still_reaches_the_stopped_backup``)."""
    intake = make_intake()
    assert intake.admit(req("c", 2, ack_below=1), now=0) == []  # c#1 unknown yet: c#2 waits
    assert intake.release_gaps(now=1, gap_ticks=lambda arrived: 10_000) == []
    intake.replies[MsgId("c", 1)] = Reply(MsgId("c", 1), "g", 1, 1, Outcome(True, 1))  # learnt: released
    assert seqs(intake.release_gaps(now=2, gap_ticks=lambda arrived: 10_000)) == [2]
    assert intake.held == {} and intake.expect["c"] == 3


def test_a_held_call_still_waits_for_a_predecessor_the_router_does_not_know() -> None:
    intake = make_intake()
    intake.admit(req("c", 3, ack_below=1), now=0)
    intake.replies[MsgId("c", 1)] = Reply(MsgId("c", 1), "g", 1, 1, Outcome(True, 1))
    assert intake.release_gaps(now=5, gap_ticks=lambda arrived: 10) == []  # c#2 is still missing
    assert seqs(intake.release_gaps(now=10, gap_ticks=lambda arrived: 10)) == [3]


def test_held_calls_of_several_sources_all_go_on_in_one_round() -> None:
    """One ``release_gaps`` round releases every source whose wait is over: those whose missing
    call the router learnt, and those past the gap, even when a source before them in the round
    still waits for a call whose argument is being fetched."""
    intake = make_intake()
    intake.admit(req("a", 1), now=0)
    intake.expect_soon(MsgId("a", 2))  # a#2 reached the router; its argument is being fetched
    intake.admit(req("a", 3), now=0)
    for src in ("b", "c", "d", "e"):
        intake.admit(req(src, 1), now=0)
        assert intake.admit(req(src, 3), now=0) == []  # src#2 is missing
    for src in ("b", "c"):  # the router learns b#2 and c#2 (a rebuilt router, from the replicas' reports)
        intake.log.retain(req(src, 2))
    released = intake.release_gaps(now=1, gap_ticks=lambda arrived: 5)
    assert [(r.msg_id.source, r.msg_id.seq) for r in released] == [("b", 3), ("c", 3)]
    released = intake.release_gaps(now=5, gap_ticks=lambda arrived: 5)  # d#2 and e#2 never came
    assert [(r.msg_id.source, r.msg_id.seq) for r in released] == [("d", 3), ("e", 3)]
    assert set(intake.held) == {"a"}


def test_a_held_call_whose_own_retransmission_is_being_fetched_does_not_wait_for_itself() -> None:
    """A call held for a missing predecessor is retransmitted by its caller with its argument by
    reference: while the router fetches that copy, the held call still goes on after the gap."""
    intake = make_intake()
    intake.admit(req("c", 1), now=0)
    intake.admit(req("c", 3), now=0)
    intake.expect_soon(MsgId("c", 3))  # c#3 again (a retry), its argument being fetched
    assert seqs(intake.release_gaps(now=5, gap_ticks=lambda arrived: 5)) == [3]


def test_a_held_call_of_a_known_source_goes_on_when_the_router_learns_what_it_missed() -> None:
    """The router takes c#1, misses c#2 and holds c#3 (its ``ack_below`` 1: the caller acknowledges in
    sweeps, and c#1's reply is long forgotten); once it learns c#2, c#3 waits no more: the calls
    before c#2 were settled when this router took them, whatever c#3's ``ack_below`` says."""
    intake = make_intake()
    assert seqs(intake.admit(req("c", 1), now=0)) == [1]  # relayed, its reply released and forgotten since
    assert intake.admit(req("c", 3, ack_below=1), now=1) == []
    intake.log.retain(req("c", 2))  # learnt from a replica's report
    assert seqs(intake.release_gaps(now=2, gap_ticks=lambda arrived: 10_000)) == [3]


def test_a_source_new_to_the_intake_starts_at_its_ack_below_past_what_the_log_holds() -> None:
    intake = make_intake()
    intake.log.retain(req("c", 5))  # from a replica's report: the restarted router holds it
    assert seqs(intake.admit(req("c", 6, ack_below=5), now=0)) == [6]  # 5 is held already, 1-4 settled


def accept(intake: Intake, requests: list) -> list:
    """What the façade does with admitted requests (besides multicasting them)."""
    for r in requests:
        intake.wait_for(r)
    return requests


def test_intake_caches_each_reply_once_and_forgets_what_the_source_acknowledged() -> None:
    intake = make_intake()
    accept(intake, intake.admit(req("c", 1), now=0))
    assert intake.lookup(MsgId("c", 1)) == ("pending", None)
    assert intake.settle(reply("c", 1, position=1)) is True  # the caller waits: release it
    assert intake.settle(reply("c", 1, position=1)) is False  # again: nobody waits any more
    assert intake.lookup(MsgId("c", 1)) == ("released", reply("c", 1, position=1))
    assert intake.acknowledged(MsgId("c", 1)) is None
    intake.forget_replies("c", 2)  # the source holds reply 1
    assert intake.lookup(MsgId("c", 1)) == ("unknown", None)
    assert intake.acknowledged(MsgId("c", 1)) == 2
    intake.forget_replies("c", 1)  # an older ack_below changes nothing
    assert intake.acknowledged(MsgId("c", 1)) == 2


def test_intake_keeps_a_reply_nobody_waits_for_only_if_it_has_a_position() -> None:
    intake = make_intake()
    assert intake.settle(reply("c", 1, position=3)) is False  # a restarted router: a retry finds it
    assert intake.lookup(MsgId("c", 1))[0] == "released"
    assert intake.settle(reply("c", 2, position=0)) is False
    assert intake.lookup(MsgId("c", 2)) == ("unknown", None)


def test_an_answered_held_call_is_no_longer_held() -> None:
    intake = make_intake()
    intake.admit(req("c", 2), now=0)
    assert intake.settle(reply("c", 2, position=1)) is True
    assert intake.held == {} and seqs(intake.admit(req("c", 1), now=1)) == [1]


def test_intake_bounds_its_per_source_maps_by_inflight_max() -> None:
    intake = make_intake(inflight_max=2, reply_cache_max=2)
    for i, src in enumerate(("a", "b", "c")):
        intake.admit(req(src, 1), now=i)
        intake.forget_replies(src, 2)
        intake.settle(reply(src, 1, position=i + 1))
    assert list(intake.expect) == ["b", "c"] and list(intake.reply_floor) == ["b", "c"]
    assert len(intake.replies) == 2


def test_intake_fences_a_deposed_calling_primary() -> None:
    intake = make_intake()
    intake.check_source_view(req("front|7", 1, source_view=3))
    with pytest.raises(StaleViewError, match="view 2 of front, which is at 3"):
        intake.check_source_view(req("front|8", 1, source_view=2))
    assert intake.counts["fenced"] == 1 and intake.peer_groups == {"front"}
    intake.check_source_view(req("c", 1))  # a client: nothing to fence


def test_intake_fails_every_waiting_call_once() -> None:
    intake = make_intake()
    accept(intake, intake.admit(req("c", 2), now=0))  # held: its caller waits already
    accept(intake, intake.admit(req("c", 1), now=0))
    accept(intake, intake.admit(req("c", 3, kind=Kind.ONEWAY), now=0))  # nobody waits for a one-way call
    assert intake.fail_all() == [MsgId("c", 1), MsgId("c", 2)]
    assert intake.fail_all() == []


# --------------------------------------------------------------- LinkTracker


def test_links_queue_requests_and_announcements_for_the_right_members() -> None:
    tracker = LinkTracker(("g-r0", "g-r1", "g-r2"))
    tracker.queue_request(req("c", 1), now=3)
    tracker.queue_request(req("c", 2), now=4, skip="g-r2")
    tracker.queue_announcement(ann(1), now=5, skip="g-r0")
    r0, r1, r2 = (tracker.links[m] for m in ("g-r0", "g-r1", "g-r2"))
    assert seqs(r0.requests) == [1, 2] and seqs(r2.requests) == [1]
    assert r0.reqs_since == 3  # batching counts from the first waiting request
    assert r0.announcements == [] and r1.announcements == [ann(1)] and r1.anns_since == 5
    tracker.queue_announcement(ann(2), now=8, skip="g-r0")
    assert r1.anns_since == 5


def test_links_track_acknowledgements_and_progress() -> None:
    tracker = LinkTracker(("g-r0", "g-r1"))
    r1 = tracker.links["g-r1"]
    r1.inflight = 1
    assert tracker.acknowledge("g-r1", 3, now=7) is r1
    assert (r1.inflight, r1.acked, r1.last_heard, r1.progress_tick) == (0, 3, 7, 7)
    tracker.acknowledge("g-r1", 2, now=9)  # an old acknowledgement: no progress, still heard
    assert (r1.inflight, r1.acked, r1.last_heard, r1.progress_tick) == (0, 3, 9, 7)
    assert tracker.acknowledge("g-r9", 1, now=9) is None  # not a member
    assert tracker.floor() == 0 and tracker.slowest(["g-r1"]) == "g-r1"
    assert tracker.idle_since("g-r1") == 7
    r1.requests.append(req("c", 1))
    assert tracker.idle_since("g-r1") is None


def test_links_suspect_the_silent_but_never_all_members_at_once() -> None:
    tracker = LinkTracker(("g-r0", "g-r1", "g-r2"))
    tracker.heard("g-r1", now=5)
    tracker.heard("g-r2", now=20)
    assert tracker.silent(now=30, failure_timeout_ticks=10, primary="g-r0") == {"g-r0", "g-r1"}
    assert tracker.silent(now=40, failure_timeout_ticks=10, primary="g-r0") == {"g-r0", "g-r1"}  # r2 freshest
    tracker.excuse(30)  # the router itself did not run for 30 ticks
    assert tracker.silent(now=40, failure_timeout_ticks=10, primary="g-r0") == set()
    assert tracker.silent(now=41, failure_timeout_ticks=10, primary="g-r0") == {"g-r0"}


def test_links_ping_each_quiet_member_once_per_heartbeat() -> None:
    tracker = LinkTracker(("g-r0", "g-r1"))
    tracker.heard("g-r1", now=4)
    assert tracker.pings(now=5, heartbeat_ticks=5) == ["g-r0"]
    assert tracker.pings(now=6, heartbeat_ticks=5) == []
    assert tracker.pings(now=9, heartbeat_ticks=5) == ["g-r1"]
    assert tracker.pings(now=10, heartbeat_ticks=5) == ["g-r0"]


def test_links_remember_recent_divergences_and_whom_to_repair() -> None:
    tracker = LinkTracker(("g-r0", "g-r1"))
    for pos in range(DIVERGED_MAX + 2):
        tracker.flag_divergence("g-r1", pos)
    assert len(tracker.diverged) == DIVERGED_MAX and tracker.diverged[-1] == ("g-r1", DIVERGED_MAX + 1)
    assert tracker.resync == {"g-r1"}
    tracker.want_snapshot("g-r0")
    assert tracker.links["g-r0"].snapshot_wanted


def test_a_state_transfer_replaces_what_waits_on_the_link() -> None:
    tracker = LinkTracker(("g-r0", "g-r1"))
    link = tracker.links["g-r1"]
    link.queue_request(req("c", 9), now=1)
    nv, cp = NewView(2, ("g-r0", "g-r1")), Checkpoint("g", 1, 4, "state", None)
    link.transfer(nv, cp, [req("c", 5)], [ann(5)], now=6)
    assert (link.new_view, link.checkpoint, link.join) == (nv, cp, True)
    assert seqs(link.requests) == [5] and link.announcements == [ann(5)] and link.anns_since == 6
    link.reload([], [], now=7)
    assert link.anns_since is None
    tracker.install_view(NewView(3, ("g-r1", "g-r5")))  # only members with a link get it
    assert tracker.links["g-r1"].new_view == NewView(3, ("g-r1", "g-r5")) and tracker.links["g-r0"].new_view is None
    tracker.drop("g-r1")
    assert list(tracker.links) == ["g-r0"]


# ------------------------------------------------------------------ Recovery


def report(replica: str, executed: int, requests: tuple = ()) -> StateReport:
    return StateReport(replica, 1, executed, requests=requests)


def test_recovery_waits_for_every_member_and_asks_again_while_nobody_answers() -> None:
    rec = Recovery()
    rec.start(now=10)
    members = ["g-r1", "g-r2"]
    for round_ in range(1, RECOVERY_ROUNDS_MAX + 1):
        assert rec.ask_again(10 + round_, rec.missing(members), members)
        assert rec.started == 10 + round_
    assert not rec.ask_again(99, rec.missing(members), members)  # the rounds are used up
    rec.start(now=100)
    rec.report(report("g-r1", 4))
    assert not rec.complete(members) and rec.missing(members) == {"g-r2"}
    assert not rec.ask_again(101, rec.missing(members), members)  # someone answered: drop the silent
    rec.report(report("g-r2", 3))
    assert rec.complete(members)
    assert rec.executed(members, {"g-r1": 5, "g-r2": 0}) == {"g-r1": 5, "g-r2": 3}


def test_recovery_ranks_the_most_advanced_first_and_drops_who_cannot_catch_up() -> None:
    log = OrderLog(CoreConfig())
    for pos in (1, 2, 3):
        log.merge(ann(pos))
    log.retain(req("c", 3))
    rec = Recovery()
    rec.start(now=0)
    rec.report(report("g-r2", 1, requests=(req("c", 2),)))  # it holds c#2 itself
    members = ["g-r0", "g-r1", "g-r2"]
    ranked, dropped = rec.rank(members, {"g-r0": 2, "g-r1": 3, "g-r2": 1}, log)
    assert ranked == ["g-r1", "g-r0", "g-r2"] and dropped == []
    ranked, dropped = rec.rank(members, {"g-r0": 0, "g-r1": 3, "g-r2": 3}, log)
    assert ranked == ["g-r1", "g-r2"] and dropped == ["g-r0"]  # c#1 is gone: state transfer


def test_recovery_keeps_a_rebuilt_routers_undeposed_primary_in_the_lead_when_it_can_catch_up() -> None:
    log = OrderLog(CoreConfig())
    log.merge(ann(1))
    log.retain(req("c", 1))
    rec = Recovery()
    rec.rebuilt_primary = ("g-r0", 4)
    ranked, dropped = rec.rank(["g-r0", "g-r1"], {"g-r0": 0, "g-r1": 1}, log)
    assert ranked == ["g-r0", "g-r1"] and dropped == []
    assert rec.primary_since("g-r0", 6) == 4 and rec.primary_since("g-r1", 6) == 6
    ranked, dropped = rec.rank(["g-r0", "g-r1"], {"g-r0": 0, "g-r1": 2}, log)  # position 2 unknown
    assert ranked == ["g-r1"] and dropped == ["g-r0"]


# -------------------------------------------------------------------- Outbox


def test_outbox_piggybacks_order_and_batches_copies_to_backups() -> None:
    cfg = CoreConfig(relay_delay_ticks=2, null_message_ticks=5, batch_max=8)
    counts = {k: 0 for k in ("delivers", "copies", "polls", "null_messages", "announcements_in_null",
                             "announcements_piggybacked")}
    outbox, tracker = Outbox(cfg, counts), LinkTracker(("g-r0", "g-r1"))
    for link in tracker.links.values():
        link.new_view = None
    members = ["g-r0", "g-r1"]
    tracker.queue_request(req("c", 1), now=0)
    sends = outbox.sends(tracker, members, view=1, now=0, callers_wait=True)
    assert [(m, seqs(d.requests)) for m, d in sends] == [("g-r0", [1])]  # the backup's copy waits
    tracker.queue_announcement(ann(1), now=1, skip="g-r0")
    sends = outbox.sends(tracker, members, view=1, now=2, callers_wait=True)
    assert [(m, seqs(d.requests), len(d.announcements)) for m, d in sends] == [("g-r1", [1], 1)]
    assert counts["copies"] == 1 and counts["announcements_piggybacked"] == 1 and counts["delivers"] == 2


def test_outbox_sends_a_null_message_only_after_null_message_ticks() -> None:
    cfg = CoreConfig(null_message_ticks=5)
    counts = {k: 0 for k in ("delivers", "copies", "polls", "null_messages", "announcements_in_null",
                             "announcements_piggybacked")}
    outbox, tracker = Outbox(cfg, counts), LinkTracker(("g-r0", "g-r1"))
    for link in tracker.links.values():
        link.new_view = None
    tracker.queue_announcement(ann(1), now=0, skip="g-r0")
    assert outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=4, callers_wait=False) == []
    (name, msg), = outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=5, callers_wait=False)
    assert name == "g-r1" and msg.is_null and msg.announcements == (ann(1),)
    assert counts["null_messages"] == 1 and counts["announcements_in_null"] == 1


def test_outbox_respects_inflight_bounds_and_polls_an_idle_primary_while_callers_wait() -> None:
    cfg = CoreConfig(primary_inflight_max=1, heartbeat_ticks=3)
    counts = {k: 0 for k in ("delivers", "copies", "polls", "null_messages", "announcements_in_null",
                             "announcements_piggybacked")}
    outbox, tracker = Outbox(cfg, counts), LinkTracker(("g-r0",))
    tracker.links["g-r0"].new_view = None
    tracker.queue_request(req("c", 1), now=0)
    assert len(outbox.sends(tracker, ["g-r0"], view=1, now=0, callers_wait=True)) == 1
    tracker.queue_request(req("c", 2), now=0)
    assert outbox.sends(tracker, ["g-r0"], view=1, now=1, callers_wait=True) == []  # one in flight already
    tracker.acknowledge("g-r0", 1, now=2)
    assert seqs(outbox.sends(tracker, ["g-r0"], view=1, now=2, callers_wait=True)[0][1].requests) == [2]
    tracker.acknowledge("g-r0", 2, now=3)
    assert outbox.sends(tracker, ["g-r0"], view=1, now=4, callers_wait=True) == []  # sent 2 ticks ago
    assert outbox.sends(tracker, ["g-r0"], view=1, now=5, callers_wait=False) == []  # nobody waits
    (_, poll), = outbox.sends(tracker, ["g-r0"], view=1, now=5, callers_wait=True)
    assert poll.requests == () and counts["polls"] == 1


def test_log_keeps_a_digest_for_every_position_of_log_max_when_digests_are_taken_every_message() -> None:
    log = OrderLog(CoreConfig(log_max=100, digest_every_messages=1))
    log.record_digests(tuple((p, f"d{p}") for p in range(1, DIGESTS_MIN + 101)))
    assert len(log.primary_digests) == DIGESTS_MIN + 100


def test_a_retry_of_the_call_at_ack_below_still_finds_its_reply() -> None:
    """``ack_below`` 3: the source holds replies 1 and 2, not 3; a retry of 3 must find it."""
    intake = make_intake()
    intake.cache(reply("c", 3, position=3))
    intake.forget_replies("c", 3)
    assert intake.lookup(MsgId("c", 3))[0] == "released"


def test_outbox_counts_polls_only_for_empty_deliveries_to_the_primary() -> None:
    cfg = CoreConfig(heartbeat_ticks=3, null_message_ticks=2)
    counts = {k: 0 for k in ("delivers", "copies", "polls", "null_messages", "announcements_in_null",
                             "announcements_piggybacked")}
    outbox, tracker = Outbox(cfg, counts), LinkTracker(("g-r0", "g-r1"))
    for link in tracker.links.values():
        link.new_view = None
    members = ["g-r0", "g-r1"]
    tracker.queue_announcement(ann(1), now=0, skip="g-r0")
    tracker.links["g-r0"].queue_request(req("c", 1), now=0)
    sends = dict(outbox.sends(tracker, members, view=1, now=3, callers_wait=True))
    assert sends["g-r0"].requests and sends["g-r1"].is_null  # a request and a null message: no poll
    assert counts["polls"] == 0
    for now in (6, 9):
        tracker.acknowledge("g-r0", 1, now=now)
        (_, poll), = outbox.sends(tracker, members, view=1, now=now, callers_wait=True)
        assert poll.requests == ()
    assert counts["polls"] == 2


def test_outbox_batches_what_is_left_after_a_full_batch() -> None:
    """A backup's copies beyond ``batch_max`` wait ``relay_delay_ticks`` again, like any batch."""
    cfg = CoreConfig(batch_max=2, relay_delay_ticks=2)
    counts = {k: 0 for k in ("delivers", "copies", "polls", "null_messages", "announcements_in_null",
                             "announcements_piggybacked")}
    outbox, tracker = Outbox(cfg, counts), LinkTracker(("g-r0", "g-r1"))
    for link in tracker.links.values():
        link.new_view = None
    for seq in (1, 2, 3):
        tracker.links["g-r1"].queue_request(req("c", seq), now=0)
    (_, first), = outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=0, callers_wait=False)
    assert seqs(first.requests) == [1, 2]  # a full batch goes at once
    tracker.acknowledge("g-r1", 0, now=1)
    assert outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=1, callers_wait=False) == []
    (_, rest), = outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=2, callers_wait=False)
    assert seqs(rest.requests) == [3]


def test_outbox_does_not_count_a_deliver_to_a_suspended_primary_that_goes_anyway_as_a_poll() -> None:
    """``polls`` counts only Delivers sent to collect the primary's work; one that carries a new
    view or asks for a snapshot goes anyway, even while the primary holds suspended calls."""
    counts = {k: 0 for k in ("delivers", "copies", "polls", "null_messages", "announcements_in_null",
                             "announcements_piggybacked")}
    outbox, tracker = Outbox(CoreConfig(), counts), LinkTracker(("g-r0", "g-r1"))
    tracker.links["g-r0"].new_view = NewView(2, ("g-r0", "g-r1"))
    tracker.links["g-r0"].suspended = 1
    (name, sent), = outbox.sends(tracker, ["g-r0"], view=2, now=0, callers_wait=False)
    assert name == "g-r0" and sent.new_view is not None and counts["polls"] == 0
    tracker.acknowledge("g-r0", 0, now=1)  # the primary answered, its calls still suspended
    (_, poll), = outbox.sends(tracker, ["g-r0"], view=2, now=1, callers_wait=False)
    assert poll.new_view is None and counts["polls"] == 1
    tracker.acknowledge("g-r0", 0, now=2)
    tracker.links["g-r0"].snapshot_wanted = True  # a digest check asks the primary for a snapshot
    (_, asks), = outbox.sends(tracker, ["g-r0"], view=2, now=2, callers_wait=False)
    assert asks.snapshot_wanted and counts["polls"] == 1


def test_log_keeps_the_position_of_an_async_call_until_its_last_step_is_trimmed() -> None:
    """An async call holds one position per step. Trimming its first step must not forget the
    call while a later step is still retained: the router looks calls up by position
    (``pos_of``: a rebuilt router asks the primary again for a waiting call it knows a position
    of; its intake skips the sequence numbers it already knows)."""
    log = OrderLog(CoreConfig())
    log.retain(req("c", 1))
    log.merge(ann(1, seq=1))  # c#1 starts at 1 and suspends
    log.merge(Announcement("g", 1, 2, MsgId("c", 1), (), 1))  # it resumes and finishes at 2
    log.settle(reply("c", 1, position=2))
    log.trim(1)  # every member executed position 1 only
    assert log.pos_of == {MsgId("c", 1): 2} and log.knows(MsgId("c", 1))
    log.trim(2)
    assert log.pos_of == {} and not log.knows(MsgId("c", 1))


def outbox_and_links(cfg: CoreConfig) -> tuple:
    """An outbox and the links of ``g-r0`` (primary) and ``g-r1``, their first NewView already sent."""
    counts = {k: 0 for k in ("delivers", "copies", "polls", "null_messages", "announcements_in_null",
                             "announcements_piggybacked")}
    outbox, tracker = Outbox(cfg, counts), LinkTracker(("g-r0", "g-r1"))
    for link in tracker.links.values():
        link.new_view = None
    return outbox, tracker


def test_outbox_sends_a_backup_a_full_batch_of_requests_at_once() -> None:
    """Requests wait ``relay_delay_ticks`` for a backup's batch to fill: ``batch_max`` of them go at once."""
    outbox, tracker = outbox_and_links(CoreConfig(relay_delay_ticks=5, batch_max=2))
    tracker.queue_request(req("c", 1), now=0, skip="g-r0")
    assert outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=0, callers_wait=False) == []
    tracker.queue_request(req("c", 2), now=0, skip="g-r0")
    (name, msg), = outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=0, callers_wait=False)
    assert name == "g-r1" and seqs(msg.requests) == [1, 2]


def test_outbox_sends_a_backup_a_reply_copy_alone_after_null_message_ticks() -> None:
    """A nested reply copy queued for a backup without an announcement (its calling message's went
    out before) goes in a null message ``null_message_ticks`` later, as an announcement would; a
    copy left on the primary's link (a promoted backup's) does not make a Deliver go."""
    outbox, tracker = outbox_and_links(CoreConfig(null_message_ticks=5))
    copy = reply("g|c#1", 1, 3)
    tracker.queue_reply_copy(copy, now=0, skip=None, copies_max=8)
    assert outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=4, callers_wait=False) == []
    (name, msg), = outbox.sends(tracker, ["g-r0", "g-r1"], view=1, now=5, callers_wait=False)
    assert name == "g-r1" and msg.is_null and msg.reply_copies == (copy,)

"""A replica replaying a step whose nested reply is gone at the callee (docs/faults.md, row 47).

A semi-active backup replaying a nested call takes the reply copy its primary pushed, or pulls it
from the callee's router when the copy was lost (a router restart, a reloaded link). If the callee
forgot the call's source meanwhile (``sources_max``, ``reply_cache_max``) the pull reads "expired"
(``ReplyUnavailableError``): the backup's method would get an error the primary never saw. Instead
the step is given up (``ReplicaCore.pulled_reply_gone``), the backup executes nothing more and
reports it (``Delivered.lost_reply``), and the router repairs it by state transfer
(``RouterCore._resync_lost_reply``), or removes it if it was made primary meanwhile.
"""

from __future__ import annotations

from typing import Dict, Optional, Set, Tuple

import pytest

from ftactors.core import (
    Announcement,
    ClientCore,
    CoreConfig,
    Deliver,
    Delivered,
    Execute,
    LocalProtocolError,
    MsgId,
    NewView,
    Outcome,
    ReplicaCore,
    Reply,
    ReplyUnavailableError,
    Request,
)
from ftactors.core.replica import Restore, Snapshot
from tests.test_core_router import MEMBERS, Group

NESTED_VALUE = 10


class NestedGroup(Group):
    """A :class:`Group` whose method ``fwd`` adds its payload, makes one nested call to ``store``
    and adds the reply (10); replicas apply Restore. The pulls of the replicas in ``gone`` read
    "expired" (their pushed copy was lost and the callee forgot the call)."""

    def __init__(self, cfg: CoreConfig) -> None:
        super().__init__(cfg)
        self.gone: Set[str] = set()
        self.lost: Dict[str, MsgId] = {}  # replica -> the nested request its step gave up on

    def answer(self, m: str, d) -> Delivered:
        core = self.reps[m]
        core.deliver(d)
        while (e := core.next_effect()) is not None:
            if isinstance(e, Restore):
                self.state[m] = e.checkpoint.state
            elif isinstance(e, Snapshot):
                core.snapshot_taken(e.position, self.state[m], str(self.state[m]))
            elif isinstance(e, Execute):
                self.state[m] += e.request.payload  # the method changes the state before its nested call
                value = self._nested(m, core)
                if value is None:
                    continue  # the step was given up
                self.state[m] += value
                core.executed(e.request.msg_id, Outcome(True, self.state[m]))
        return core.take_delivered()

    def pump_until_lost(self, ticks_max: int = 20) -> None:
        """Pump until a replica gave its step up (at most ``ticks_max`` ticks)."""
        for _ in range(ticks_max):
            self.pump(1)
            if self.lost:
                return
        raise AssertionError(f"no step given up within {ticks_max} ticks")

    def _nested(self, m: str, core: ReplicaCore) -> Optional[int]:
        nreq, send = core.nested_request("store", "get")
        if send:
            core.nested_reply(Reply(nreq.msg_id, "store", 1, 1, Outcome(True, NESTED_VALUE)))
            return NESTED_VALUE
        if m in self.gone:
            assert core.pulled_reply_gone(nreq.msg_id)
            self.lost[m] = nreq.msg_id
            return None
        copy, _ = core.copy_or_pull(nreq.msg_id, consuming=True)
        return copy.outcome.value if copy is not None else NESTED_VALUE  # else: pulled, as the primary got


def test_a_backup_whose_pulled_nested_reply_is_gone_gives_the_step_up_and_is_resynced_in_place() -> None:
    g = NestedGroup(CoreConfig())
    g.gone = {"g-r1"}
    client = ClientCore("c")
    g.router.submit(client.request("g", "fwd", payload=1))
    g.pump_until_lost()
    r1 = g.reps["g-r1"]
    assert g.lost == {"g-r1": MsgId("g|c#1", 1)}
    assert g.state["g-r1"] == 1 and g.state["g-r0"] == 11  # half through the step: never replied on
    assert r1.lost_reply == MsgId("g|c#1", 1) and not r1.has_work() and r1.executed_upto == 0
    assert "state transfer" in r1.waits_for()
    assert g.router.counts["lost_replies"] == 1
    g.gone = set()
    g.pump(10)
    # repaired in place by state transfer: same members, same view, the primary's state
    assert g.router.counts["resyncs"] == 1 and g.router.counts["lost_replies"] == 1
    assert g.router.members == list(MEMBERS) and g.router.view == 1
    assert r1.lost_reply is None and r1.executed_upto >= 1
    assert g.state == {"g-r0": 11, "g-r1": 11, "g-r2": 11}
    g.router.submit(client.request("g", "fwd", payload=2))
    g.pump(6)
    assert g.state == {"g-r0": 23, "g-r1": 23, "g-r2": 23}
    assert [r.outcome.value for r in g.released] == [11, 23]


def test_a_backup_awaiting_its_resync_leaves_with_a_failed_primary_instead_of_taking_over() -> None:
    """The race with a promotion: the primary fails before the lost backup's state transfer; it
    cannot serve (its state is a step half run), so it leaves the view with the primary."""
    g = NestedGroup(CoreConfig())
    g.gone = {"g-r1"}
    client = ClientCore("c")
    g.router.submit(client.request("g", "fwd", payload=1))
    g.pump_until_lost()
    assert g.router.lost_replies == {"g-r1": MsgId("g|c#1", 1)} and g.router.counts["resyncs"] == 0
    g.router.on_failure("g-r0")
    assert g.router.members == ["g-r2"]
    g.pump(6, alive={"g-r2"})
    assert g.router.primary == "g-r2" and g.router.lost_replies == {}


def test_a_promoted_replica_that_reports_a_lost_reply_is_removed() -> None:
    """The other order: the router made the backup primary before its report came; the report
    from the primary removes it (a failover to a member that can serve)."""
    g = NestedGroup(CoreConfig())
    g.router.submit(ClientCore("c").request("g", "fwd", payload=1))
    g.pump(3)
    g.router.on_failure("g-r0")
    g.pump(3, alive={"g-r1", "g-r2"})
    assert g.router.primary == "g-r1"
    g.router.on_delivered(Delivered("g-r1", g.router.view, acked_position=1, lost_reply=MsgId("g|c#1", 1)))
    assert "g-r1" not in g.router.members and g.router.counts["lost_replies"] == 1
    g.pump(6, alive={"g-r2"})
    assert g.router.primary == "g-r2"


def test_a_primary_running_its_own_step_takes_the_error_and_a_report_of_another_call_is_refused() -> None:
    core = NestedGroup(CoreConfig()).reps["g-r0"]
    with pytest.raises(LocalProtocolError, match="but executing None"):
        core.pulled_reply_gone(MsgId("g|c#1", 1))
    core.deliver(Deliver(view=1, requests=(ClientCore("c").request("g", "fwd", payload=1),)))
    ex = core.next_effect()
    assert isinstance(ex, Execute) and not ex.replay
    nreq, send = core.nested_request("store", "get")
    assert send and core.pulled_reply_gone(nreq.msg_id) is False  # its own choice: the method gets the error
    assert core.lost_reply is None and core.executing is ex
    with pytest.raises(LocalProtocolError):
        core.pulled_reply_gone(MsgId("g|other#1", 1))


GONE = Outcome(False, ReplyUnavailableError("reply of g|c#1#1 was trimmed (reply_cache_max)"))


def suspended_pair() -> Tuple[ReplicaCore, ReplicaCore, Request, Tuple[Announcement, ...]]:
    """g-r0 (primary) starts c#1, an async method that suspends on its nested call g|c#1#1; g-r1
    (backup) replays that step from the announcement and suspends on the same call (it waits for
    the copy). Returns both cores, the request and the start step's announcements."""
    view = NewView(1, MEMBERS)
    primary, backup = (ReplicaCore("g", m, CoreConfig(), "reception", view) for m in MEMBERS[:2])
    req = ClientCore("c").request("g", "fwd", payload=1)
    anns: Tuple[Announcement, ...] = ()
    for core in (primary, backup):
        core.deliver(Deliver(view=1, requests=(req,), announcements=anns))
        ex = core.next_effect()
        assert isinstance(ex, Execute) and ex.replay == (core is backup)
        nreq, send = core.nested_request("store", "get")
        assert nreq.msg_id == MsgId("g|c#1", 1) and send == (core is primary)
        core.suspend(req.msg_id)
        anns = core.take_delivered().announcements or anns
    return primary, backup, req, anns


def test_a_reply_gone_outside_a_step_is_resumed_on_at_a_backup_or_for_a_call_an_earlier_primary_made() -> None:
    """Row 53: a suspended call's nested reply reads gone outside any step. At a backup, and at a
    backup promoted since (its suspending step replayed the old primary's: that primary sent the
    call), the host resumes the call on the error; the primary's own call is a failure."""
    primary, backup, req, _ = suspended_pair()
    nested = MsgId("g|c#1", 1)
    assert primary.suspended_reply_gone(nested) is False  # its own call
    assert backup.suspended_reply_gone(nested) is True
    with pytest.raises(LocalProtocolError, match="is not suspended here"):
        backup.suspended_reply_gone(MsgId("g|c#2", 1))
    backup.deliver(Deliver(view=2, new_view=NewView(2, ("g-r1", "g-r2"))))  # g-r0 failed
    assert backup.role.value == "primary" and backup.suspended_reply_gone(nested) is True
    # no order to replay: it resumes the call as a step of its own choice, with the error
    backup.set_resumable((req.msg_id,))
    ex = backup.next_effect()
    assert isinstance(ex, Execute) and ex.resume == 1 and not ex.replay
    assert backup.pulled_reply_gone(nested) is False  # the method gets the error
    backup.nested_reply(Reply(nested, "store", 1, 0, GONE))  # pushed as the copy, with the step
    backup.executed(req.msg_id, Outcome(False, "raised"), wake=nested)
    out = backup.take_delivered()
    assert [(a.position, a.resume, a.wake) for a in out.announcements] == [(2, 1, nested)]
    assert [(r.msg_id, r.outcome) for r in out.reply_copies] == [(nested, GONE)]
    assert out.lost_reply is None


def test_a_promoted_backup_whose_order_resumes_the_call_gives_that_step_up_on_a_reply_gone() -> None:
    """The order it took over resumed the call on the real value (the old primary's resume step was
    announced): the replayed resume step is given up (``pulled_reply_gone``) and the new primary
    reports it, so its router removes it (``RouterCore._resync_lost_reply``)."""
    primary, backup, req, _ = suspended_pair()
    nested = MsgId("g|c#1", 1)
    primary.nested_reply(Reply(nested, "store", 1, 3, Outcome(True, NESTED_VALUE)))
    primary.set_resumable((req.msg_id,))
    ex = primary.next_effect()
    assert isinstance(ex, Execute) and ex.resume == 1
    primary.executed(req.msg_id, Outcome(True, 11), wake=nested)
    resume = primary.take_delivered().announcements
    backup.deliver(Deliver(view=1, announcements=resume))  # the announcement came, its copy did not
    assert backup.suspended_reply_gone(nested) is True
    backup.deliver(Deliver(view=2, new_view=NewView(2, ("g-r1", "g-r2"))))
    ex = backup.next_effect()
    assert isinstance(ex, Execute) and ex.resume == 1 and ex.replay
    assert backup.pulled_reply_gone(nested) is True
    assert backup.lost_reply == nested and backup.take_delivered().lost_reply == nested

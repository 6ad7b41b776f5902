"""``replies_wait_for_backup`` (docs/faults.md, row 65): a reply is released only once a backup of the view
acknowledged its position, so an acknowledged call survives its primary's crash followed by the router's."""

from __future__ import annotations

from typing import List, Tuple

import pytest

from ftactors.core import ClientCore, ConfigError, CoreConfig, Delivered, Outcome, Phase, Reply, RouterCore
from ftactors.core.messages import MsgId
from tests.test_core_router import Group

PAIR = ("g-r0", "g-r1")


def _group(cfg: CoreConfig, members: Tuple[str, ...] = PAIR) -> Group:
    """A group whose members installed the first view (their links idle)."""
    g = Group(cfg, members=members)
    g.pump(2)
    return g


def _primary_answers(g: Group, client: ClientCore, payload: int = 1) -> Tuple[List[Reply], MsgId]:
    """Submit one call and hand the router the primary's answer only: the replies released then (the
    Delivers sent then are in ``g.last_sends``, not answered)."""
    req = client.request("g", "add", payload=payload)
    assert g.router.submit(req) is None
    g.now += 1
    g.router.tick(g.now)
    sends = dict(g.router.ready().sends)
    g.router.on_delivered(g.answer("g-r0", sends["g-r0"]))
    ready = g.router.ready()
    g.last_sends = dict(ready.sends)  # type: ignore[attr-defined]
    return list(ready.released), req.msg_id


def test_without_the_setting_a_reply_is_released_before_any_backup_holds_its_call() -> None:
    """The default (claim 35): the caller waits for the primary only; the backup's copy waits for its batch."""
    g = _group(CoreConfig(relay_delay_ticks=5))
    released, mid = _primary_answers(g, ClientCore("c"))
    assert [r.msg_id for r in released] == [mid]
    assert not g.reps["g-r1"].requests and g.reps["g-r1"].executed_upto == 0


def test_a_reply_waits_until_a_backup_executed_its_call_and_the_backup_is_sent_it_at_once() -> None:
    cfg = CoreConfig(relay_delay_ticks=5, null_message_ticks=5, replies_wait_for_backup=True)
    g = _group(cfg)
    released, mid = _primary_answers(g, ClientCore("c"))
    assert released == []
    assert g.router.counts["replies_held_for_backup"] == 1
    # the backup's copy and the announcement go now, not after relay_delay_ticks / null_message_ticks
    sends = g.last_sends  # type: ignore[attr-defined]
    assert [r.msg_id for r in sends["g-r1"].requests] == [mid] and len(sends["g-r1"].announcements) == 1
    g.router.on_delivered(g.answer("g-r1", sends["g-r1"]))
    assert [(r.msg_id, r.position) for r in g.router.ready().released] == [(mid, 1)]


def test_an_acknowledged_call_survives_the_primary_crash_then_the_router_crash() -> None:
    """The double fault of the Open item: the primary dies, then the router, before the new primary replayed.
    With the setting the backup executed each acknowledged call: the rebuilt router keeps them at their
    positions (without it the backup held neither: see the first test)."""
    cfg = CoreConfig(relay_delay_ticks=5, null_message_ticks=5, replies_wait_for_backup=True)
    g = _group(cfg)
    client = ClientCore("c")
    acked = {}
    for payload in (1, 2):
        released, _ = _primary_answers(g, client, payload)
        assert released == []
        g.router.on_delivered(g.answer("g-r1", g.last_sends["g-r1"]))  # type: ignore[attr-defined]
        acked.update({r.msg_id: r.position for r in g.router.ready().released})
    assert sorted(acked.values()) == [1, 2]
    # the primary and the router die; the rebuilt router has the backup alone
    router = RouterCore.rebuilt("g", cfg, ("g-r1",), view=1, next_replica_index=2, now=g.now)
    router.tick(g.now + 1)
    router.ready()
    router.on_state_report(g.reps["g-r1"].state_report())
    assert router.phase == Phase.NORMAL and router.primary == "g-r1"
    assert g.reps["g-r1"].executed_upto == 2 and g.state["g-r1"] == 3


def test_a_group_of_one_releases_at_once() -> None:
    """No backup in the view: nothing could hold a copy, the reply is not held (it would wait forever)."""
    g = _group(CoreConfig(replies_wait_for_backup=True), ("g-r0",))
    released, mid = _primary_answers(g, ClientCore("c"))
    assert [r.msg_id for r in released] == [mid]


def test_held_replies_are_released_when_the_last_backup_leaves_the_view() -> None:
    cfg = CoreConfig(relay_delay_ticks=5, null_message_ticks=5, replies_wait_for_backup=True)
    g = _group(cfg)
    released, mid = _primary_answers(g, ClientCore("c"))
    assert released == []
    g.router.on_failure("g-r1")
    g.pump(3, alive={"g-r0"})
    assert [r.msg_id for r in g.released] == [mid]


def test_a_retry_answered_expired_does_not_replace_a_held_reply() -> None:
    """A held call's retry reached the primary after its reply left the cache (``reply_cache_max``): the
    "expired" answer (position 0) is not the call's outcome; the held reply is released once a backup has it."""
    cfg = CoreConfig(relay_delay_ticks=5, null_message_ticks=5, replies_wait_for_backup=True)
    g = _group(cfg)
    released, mid = _primary_answers(g, ClientCore("c"))
    assert released == []
    expired = Reply(mid, "g", 1, 0, Outcome(False, RuntimeError("expired")))
    g.router.on_delivered(Delivered("g-r0", 1, replies=(expired,), acked_position=1))
    assert g.router.ready().released == ()
    g.router.on_delivered(g.answer("g-r1", g.last_sends["g-r1"]))  # type: ignore[attr-defined]
    assert [(r.msg_id, r.position, r.outcome.ok) for r in g.router.ready().released] == [(mid, 1, True)]


def test_the_setting_is_validated() -> None:
    with pytest.raises(ConfigError, match="replies_wait_for_backup"):
        CoreConfig(replies_wait_for_backup="yes")  # type: ignore[arg-type]


def test_the_replicated_setting_reaches_the_core_and_is_off_by_default() -> None:
    from ftactors.runtime.settings import ReplicationSettings

    assert ReplicationSettings(replies_wait_for_backup=True).core_config().replies_wait_for_backup is True
    assert ReplicationSettings().core_config().replies_wait_for_backup is False

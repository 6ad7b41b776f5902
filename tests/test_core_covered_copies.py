"""docs/faults.md, row 81: request copies queued for a replica that has acknowledged their positions
(a passive backup kept up by the primary's checkpoints) are dropped, not relayed one by one."""

from __future__ import annotations

from ftactors.core import ClientCore, CoreConfig, Delivered

from tests.test_core_router import Group

MEMBERS = ("g-r0", "g-r1")


def test_copies_a_backup_acknowledged_by_a_checkpoint_are_not_relayed_to_it() -> None:
    """Swarm seed 107097 (passive, ``batch_max`` 1, ``backup_inflight_max`` 1, ``replies_wait_for_backup``):
    the backup acknowledged position 210 by the checkpoints it stored while 110 copies were still queued
    for it; the router relayed them one per Deliver, a round trip each, and the run did not quiesce
    within 400 ticks of the last reply (``I6: no quiescence 400 ticks after the last reply``)."""
    g = Group(CoreConfig(batch_max=1, backup_inflight_max=1, relay_delay_ticks=0), members=MEMBERS)
    client = ClientCore("c")
    for n in range(5):
        g.router.submit(client.request("g", "add", payload=n))
    g.pump(6, alive={"g-r0"})  # the primary executes and announces 1-5; the backup's first copy is out
    assert g.router.log.pos_of and max(g.router.log.pos_of.values()) == 5
    link = g.router.links["g-r1"]
    assert link.inflight == 1 and len(link.requests) == 4
    # the backup answers as a passive backup does once a checkpoint at 5 reached it
    g.router.on_delivered(Delivered("g-r1", 1, acked_position=5))
    assert link.requests == []
    assert g.router.counts["copies_covered"] == 4
    copies = g.router.counts["copies"]
    g.pump(10)
    assert g.router.counts["copies"] == copies  # none relayed since


def test_copies_above_what_a_replica_acknowledged_still_go() -> None:
    g = Group(CoreConfig(batch_max=1, backup_inflight_max=1, relay_delay_ticks=0), members=MEMBERS)
    client = ClientCore("c")
    for n in range(5):
        g.router.submit(client.request("g", "add", payload=n))
    g.pump(6, alive={"g-r0"})
    link = g.router.links["g-r1"]
    g.router.on_delivered(Delivered("g-r1", 1, acked_position=2))  # covers the copies of 1 and 2
    assert [g.router.log.pos_of[r.msg_id] for r in link.requests] == [3, 4, 5]
    copies = g.router.counts["copies"]
    g.pump(3, alive={"g-r0"})  # one copy per Deliver (batch_max 1), the backup answering none
    assert g.router.counts["copies"] == copies + 1 and len(link.requests) == 2

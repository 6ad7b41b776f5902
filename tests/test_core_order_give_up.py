"""Who gives up an announced order a new primary cannot replay (docs/faults.md, row 44).

A new primary replays the order it took over as the requests of its positions reach it. Only the
router knows whether anyone still holds a request it lacks: the router retains every request and
announcement until all members acknowledge them and merges the survivors' reports into a recovery.
So the router, counting its own running time, tells the primary to give the order up
(``Deliver.give_up_from``); a primary never gives it up on its own clock, which kept running while
its router got no CPU.
"""

from __future__ import annotations

from typing import List

from ftactors.core import (
    Announcement,
    ClientCore,
    CoreConfig,
    Deliver,
    Delivered,
    MsgId,
    NewView,
    Phase,
    ReplicaCore,
    RouterCore,
    StateReport,
)

from tests.test_core_mutants import execute_all

MEMBERS = ("g-r0", "g-r1", "g-r2")


def test_a_new_primary_whose_router_is_starved_waits_for_the_request_it_lacks() -> None:
    """g-r0 ran a at 1 and b at 2 (both acknowledged) and crashed; g-r1, which held only c, is
    made primary. Its router sends the order's requests one per Deliver (``batch_max=1``): a
    first. Then the router gets no CPU for three times ``recovery_timeout_ticks``. The new primary
    must not give the order up meanwhile (it did: c ran at 2, where the acknowledged b is,
    simulator seed 103164); once the router runs it sends b, and the order holds."""
    cfg = CoreConfig(batch_max=1, recovery_timeout_ticks=10, query_on_failover=True)
    router = RouterCore("g", cfg, MEMBERS)
    a, b, c = (ClientCore(f"c{i}").request("g", "add", i) for i in range(3))
    for req in (a, b, c):
        router.submit(req)
    router.ready()
    router.on_delivered(Delivered("g-r0", 1, announcements=(Announcement("g", 1, 1, a.msg_id),
                                                            Announcement("g", 1, 2, b.msg_id)), acked_position=2))
    new = ReplicaCore("g", "g-r1", cfg, "reception", NewView(1, MEMBERS))
    new.deliver(Deliver(view=1, requests=(c,)))  # relayed before the crash
    router.on_failure("g-r0")
    router.on_state_report(StateReport("g-r1", 1, 0, requests=(c,)))
    router.on_state_report(StateReport("g-r2", 1, 0))
    assert router.phase == Phase.NORMAL and router.primary == "g-r1"
    new.deliver(dict(router.ready().sends)["g-r1"])
    assert execute_all(new) == [a.msg_id]

    for now in range(1, 3 * cfg.recovery_timeout_ticks + 1):  # the router is starved: nothing comes
        new.tick(now)
        assert execute_all(new) == [], f"tick {now}"

    router.tick(3 * cfg.recovery_timeout_ticks + 1)  # it runs again: reads the answer, sends b
    router.on_delivered(new.take_delivered())
    new.deliver(dict(router.ready().sends)["g-r1"])
    assert execute_all(new) == [b.msg_id, c.msg_id]
    assert new.executed_upto == 3


def _pump(router: RouterCore, new: ReplicaCore, now: int) -> List[MsgId]:
    """One tick of the router with the new primary g-r1 answering at once (the backups answer
    without executing); returns what g-r1 executed."""
    router.tick(now)
    new.tick(now)
    ready = router.ready()
    for m in ready.pings:
        router.on_pong(m)
    done = []
    for m, d in ready.sends:
        if m == "g-r1":
            new.deliver(d)
            done += execute_all(new)
            router.on_delivered(new.take_delivered())
        else:
            router.on_delivered(Delivered(m, router.view))
    return done


def test_the_router_tells_a_new_primary_to_give_up_an_order_nobody_holds_counting_only_its_running_time() -> None:
    """g-r0 announced ``lost`` at 1, a request no survivor and not the router holds (lost with a
    crashed router). The new primary g-r1 holds ``x``. The router gives the order up for it after
    ``recovery_timeout_ticks`` of its own running time: 40 ticks it was starved do not count. Then
    g-r1 runs what it holds at 1."""
    cfg = CoreConfig(recovery_timeout_ticks=10, query_on_failover=True, failure_timeout_ticks=1000)
    router = RouterCore("g", cfg, MEMBERS)
    lost, x = ClientCore("c0").request("g", "add", 0), ClientCore("c1").request("g", "add", 1)
    router.on_delivered(Delivered("g-r0", 1, announcements=(Announcement("g", 1, 1, lost.msg_id),),
                                  acked_position=1))
    new = ReplicaCore("g", "g-r1", cfg, "reception", NewView(1, MEMBERS))
    new.deliver(Deliver(view=1, requests=(x,)))
    router.on_failure("g-r0")
    router.on_state_report(StateReport("g-r1", 1, 0, requests=(x,)))
    router.on_state_report(StateReport("g-r2", 1, 0))
    assert router.primary == "g-r1"
    ran_at = None
    for now in range(1, 60):
        if 5 <= now < 45:
            new.tick(now)  # the router is starved
            assert execute_all(new) == []
            continue
        if _pump(router, new, now):
            ran_at = now
            break
    # detected at its first tick after the new view (tick 1), given up 10 running ticks later:
    # ticks 1-4, then 45-50
    assert ran_at == 51 and new.executed_upto == 1
    assert router.counts["orders_given_up"] == 1
    for now in range(52, 52 + 3 * cfg.recovery_timeout_ticks):  # told once per view and position
        _pump(router, new, now)
    assert router.counts["orders_given_up"] == 1


def test_a_primary_not_blocked_where_its_router_gives_up_keeps_its_order() -> None:
    """``give_up_from`` acts only on a primary blocked at that very position: one that got the
    request meanwhile (the router's acknowledgement was late), or that is blocked elsewhere,
    keeps the order it took over."""
    cfg = CoreConfig()
    a, b, c = (ClientCore(f"c{i}").request("g", "add", i) for i in range(3))
    anns = (Announcement("g", 1, 1, a.msg_id), Announcement("g", 1, 2, b.msg_id))
    new = ReplicaCore("g", "g-r1", cfg, "reception", NewView(1, MEMBERS))
    new.deliver(Deliver(view=2, requests=(c,), announcements=anns, new_view=NewView(2, ("g-r1", "g-r2"))))
    new.deliver(Deliver(view=2, give_up_from=2))  # blocked at 1, not 2
    assert execute_all(new) == []
    new.deliver(Deliver(view=2, requests=(a,), give_up_from=1))  # a came with it: not blocked at 1
    assert execute_all(new) == [a.msg_id]
    new.deliver(Deliver(view=2, give_up_from=2))  # blocked at 2 now: nobody holds b
    assert execute_all(new) == [c.msg_id] and new.executed_upto == 2

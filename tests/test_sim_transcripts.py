"""Scenarios that read like transcripts (etcd raft's ``testdata/*.txt``): each line of the story is
one call, one fault or one ``run_until`` (a condition reached, never a tick count), then what every
replica and the caller must see. The workload's corners: one-way calls, methods that raise or
abort, ``now()`` / ``random()`` replayed at the backups, arguments passed by reference."""

from __future__ import annotations

from dataclasses import replace
from typing import List


from ftactors.core import Phase, Request
from ftactors.testing import SimOptions, Simulator
from ftactors.testing.events import Endpoint, RequestArrives
from ftactors.testing.models import Raised


def quiet(**kw: object) -> SimOptions:
    """No random faults and no scripted calls: the transcript makes both."""
    base = SimOptions(seed=1, replicas=3, clients=2, ops_per_client=0, p_crash=0, p_pause=0, p_router_crash=0,
                      p_drop=0, p_dup=0, p_resources=0, safety_ticks=0)
    return replace(base, **kw)  # type: ignore[arg-type]


def log_of(sim: Simulator, rid: str) -> List[str]:
    return [str(e.msg_id) for e in sim.replicas["store"][rid].log]


def answer(sim: Simulator, msg: str) -> object:
    (op,) = [op for op in sim.history if str(op.msg_id) == msg]
    return op.value


def test_primary_crashes_after_executing_and_c0_sees_its_increment_once() -> None:
    sim = Simulator(quiet())
    r0 = sim.replicas["store"]["store-r0"]
    sim.add_operation("c0", "store", "add", (1,))                   # c0 calls add(1)
    sim.run_until(lambda: r0.core.executed_upto == 1)                # store-r0 (primary) executes it...
    assert sim.crash_replica("store", "store-r0")                    # ...and crashes
    router = sim.routers["store"]
    sim.run_until(lambda: router.core is not None and router.core.primary == "store-r1"
                  and router.core.phase == Phase.NORMAL)             # store-r1 takes over
    sim.run_until(lambda: sim.clients_done())                        # c0 has its answer
    sim.finish()
    assert [str(op.msg_id) for op in sim.history] == ["c0#1"]        # once
    assert answer(sim, "c0#1") == 1
    for rid in ("store-r1", "store-r2"):
        assert log_of(sim, rid)[:1] == ["c0#1"] and log_of(sim, rid).count("c0#1") == 1


def test_one_way_calls_survive_a_router_crash_once_each_and_in_the_callers_order() -> None:
    sim = Simulator(quiet(clients=1, client_fifo=True))
    r0 = sim.replicas["store"]["store-r0"]
    for k in (1, 2, 3):
        sim.add_operation("c0", "store", "add", (k,), oneway=True)  # c0 sends add(1), add(2), add(3) one-way
    sim.add_operation("c0", "store", "get", ())                      # ...then calls get() without waiting
    sim.run_until(lambda: r0.core.executed_upto >= 1)                # the primary executed the first
    assert sim.crash_router("store")                                 # the router dies
    sim.run_until(lambda: sim.clients_done(), max_steps=400)         # c0's calls are resubmitted and answered
    sim.finish()
    for rid in ("store-r0", "store-r1", "store-r2"):
        assert log_of(sim, rid) == ["c0#1", "c0#2", "c0#3", "c0#4"]  # each once, in c0's order
    assert answer(sim, "c0#4") == 6
    assert [answer(sim, f"c0#{i}") for i in (1, 2, 3)] == [None, None, None]  # one-way: no value back
    assert sim.counts["router_rebuilds"] == 1 and sim.counts["oneway_acks"] == 3


def test_a_method_that_raises_keeps_its_changes_and_one_that_exits_leaves_the_group_up() -> None:
    sim = Simulator(quiet(clients=1))
    sim.add_operation("c0", "store", "raising", ("add", (5,)))       # c0: add(5), then raise ValueError
    sim.add_operation("c0", "store", "poison", ("exit", "add", (2,)))  # c0: add(2), then SystemExit(3)
    sim.add_operation("c0", "store", "add", (5,))                    # c0: add(5)
    sim.run_until(lambda: sim.clients_done())
    sim.finish()
    first, second = answer(sim, "c0#1"), answer(sim, "c0#2")
    assert isinstance(first, Raised) and first.kind == "ValueError"
    assert isinstance(second, Raised) and second.kind == "MethodAbortedError" and "SystemExit" in second.text
    assert answer(sim, "c0#3") == 12                                 # nothing was rolled back: 5 + 2 + 5
    core = sim.routers["store"].core
    assert core is not None and core.view == 1 and core.counts["failovers"] == 0  # the group kept its view
    outcomes = {rid: [(e.raised.kind if e.raised else "ok") for e in h.log] for rid, h in sim.replicas["store"].items()}
    assert set(map(tuple, outcomes.values())) == {("ValueError", "MethodAbortedError", "ok")}  # every replica alike


def test_backups_replay_the_primarys_now_and_random_and_a_new_primary_keeps_them() -> None:
    sim = Simulator(quiet())
    r0 = sim.replicas["store"]["store-r0"]
    sim.add_operation("c0", "store", "stamped", ("add", (1,)))      # c0 calls add(1), reading now() and random()
    sim.run_until(lambda: sim.clients_done() and all(h.core.executed_upto == 1 for h in sim.replicas["store"].values()))
    value, at, luck = answer(sim, "c0#1")  # type: ignore[misc]
    assert value == 1 and 0 <= luck < 1 and at == r0.log[0].nondet[0][1]
    stamps = {rid: h.state["stamp"] for rid, h in sim.replicas["store"].items()}
    assert set(stamps.values()) == {(at, luck)}                      # every replica: the primary's values
    assert sim.crash_replica("store", "store-r0")                    # the primary dies
    sim.add_operation("c1", "store", "get", ())
    sim.run_until(lambda: sim.clients_done())
    sim.finish()
    assert sim.routers["store"].core.primary != "store-r0"           # type: ignore[union-attr]
    for rid in ("store-r1", "store-r2"):
        assert sim.replicas["store"][rid].state["stamp"] == (at, luck)
    assert not r0.alive and sim.counts["nondet_draws"] == 2 and sim.counts["nondet_replays"] >= 4


def test_a_lagging_backup_fetches_an_argument_by_reference_while_its_owner_lives() -> None:
    sim = Simulator(quiet(clients=1, failure_timeout_ticks=60))
    r2 = sim.replicas["store"]["store-r2"]
    assert sim.pause_replica("store", "store-r2", ticks=30)          # store-r2 lags
    sim.add_operation("c0", "store", "add", (7,), byref=True)        # c0 passes add's argument by reference
    sim.run_until(lambda: sim.clients_done())                        # c0 has 7 back; it stays up
    assert r2.core.executed_upto == 0
    sim.finish()                                                     # store-r2 wakes and fetches it
    assert r2.state == {"n": 7} and sim.counts["byref_fetches"] == 3


def test_an_argument_owner_that_exits_no_longer_leaves_a_lagging_backup_unable_to_execute() -> None:
    """Fixed (docs/faults.md): the router puts the caller's argument again and owns it, so a backup
    that lags until the caller exited still fetches it. Before the fix: ``I9: store: ... different
    outcomes of c0#1 ... OwnerDiedError`` (store-r2 could not fetch the argument)."""
    sim = Simulator(quiet(clients=1, failure_timeout_ticks=60, p_owner_exit=1.0))
    c0, r2 = sim.clients["c0"], sim.replicas["store"]["store-r2"]
    assert sim.pause_replica("store", "store-r2", ticks=30)          # store-r2 lags
    sim.add_operation("c0", "store", "add", (7,), byref=True)        # c0 passes add's argument by reference
    sim.run_until(lambda: c0.exited)                                 # c0 has its reply and exits: its object is lost
    assert sim.counts["objects_lost"] == 1 and r2.core.executed_upto == 0
    sim.finish()                                                     # store-r2 wakes: the router's copy is there
    assert r2.state == {"n": 7} and sim.counts["byref_owned_by_router"] == 1


def test_a_passive_backup_replays_an_argument_by_reference_after_the_router_that_owned_it_restarted() -> None:
    """The router's objects die with it; every replica fetched the argument when the Deliver arrived
    (as checkpoints are fetched), so a passive backup that takes over after the router restarted
    and the caller exited still replays the call. Without the fetch on arrival the new primary's
    replay gets ``OwnerDiedError`` (I9: a different outcome of c0#1)."""
    sim = Simulator(quiet(clients=1, style="passive", checkpoint_every_messages=100, p_owner_exit=1.0))
    c0, r0 = sim.clients["c0"], sim.replicas["store"]["store-r0"]
    backups = [sim.replicas["store"][r] for r in ("store-r1", "store-r2")]
    sim.add_operation("c0", "store", "add", (7,), byref=True)        # c0 passes add's argument by reference
    sim.run_until(lambda: c0.exited and all(b.core.requests for b in backups))  # c0 exits; the backups log it
    assert all(b.core.executed_upto == 0 for b in backups)          # passive: not executed, no checkpoint yet
    assert sim.crash_router("store")                                 # the router's objects are lost
    sim.run_until(lambda: sim.stable("store"))                       # it restarts and rebuilds the view
    assert sim.counts["objects_lost"] == 2                           # c0's and the dead router's
    assert sim.crash_replica("store", "store-r0")                    # a backup takes over: restore, replay
    sim.finish()
    core = sim.routers["store"].core
    assert core is not None and core.primary != "store-r0"
    assert sim.replicas["store"][core.primary].state == {"n": 7} and r0.state == {"n": 7}


def test_a_stale_duplicate_reaching_a_rebuilt_router_after_its_client_acknowledged_it_stays_nowhere() -> None:
    """Suspected once (seed 104153, when counter saves were messages): a duplicate of c0#1, delayed
    on the lossy link until after c0 acknowledged its reply (``ack_below`` of c0#2) and the router
    restarted, reaches the rebuilt router, which has never seen c0. The replicas' exactly-once
    tables read it "forgotten" and drop it without a reply; the router must not keep it pending or
    retained (nobody would ever answer it, and it would count against ``inflight_max`` /
    ``pending_max`` for good)."""
    sim = Simulator(quiet(clients=1))
    sent: List[Request] = []
    send = sim._send_request
    sim._send_request = lambda client, req: (sent.append(req), send(client, req))[1]  # type: ignore[method-assign]
    sim.add_operation("c0", "store", "add", (1,))                   # c0#1
    sim.add_operation("c0", "store", "add", (2,))                   # c0#2 carries ack_below=2: c0 holds #1's reply
    sim.run_until(lambda: sim.clients_done())
    stale = sent[0]
    assert str(stale.msg_id) == "c0#1" and stale.ack_below == 1 and sent[-1].ack_below == 2
    assert sim.crash_router("store")                                 # the router restarts and rebuilds
    sim.run_until(lambda: sim.stable("store"))
    core = sim.routers["store"].core
    assert core is not None and stale.msg_id not in core.pending
    sim.schedule(1, RequestArrives("store", stale, Endpoint("", "c0")))  # the stale duplicate arrives
    arrived = sim.now
    sim.run_until(lambda: sim.now >= arrived + 60)                   # long past any answer's way back
    assert stale.msg_id not in core.pending and stale.msg_id not in core.log.requests
    sim.finish()
    assert {rid: r.state for rid, r in sim.replicas["store"].items()} == \
        {rid: {"n": 3} for rid in sim.replicas["store"]}             # c0#1 took effect once

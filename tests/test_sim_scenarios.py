"""Scripted scenarios: drive the simulator step by step, inject one fault, check the outcome."""

from __future__ import annotations

from dataclasses import replace
import pytest

from ftactors.core import MsgId, Phase, Request
from ftactors.testing import InvariantViolation, SimOptions, Simulator
from ftactors.testing.events import FailureNotice
from ftactors.testing.hosts import ClientHost, ReplicaHost
from ftactors.testing.models import (
    Frontend,
    KeyValue,
    LogEntry,
    NestedCall,
    Raised,
    replay,
    run_method,
)


def quiet_options(**kw: object) -> SimOptions:
    """No random faults: the test injects them."""
    base = SimOptions(seed=1, replicas=3, clients=2, ops_per_client=6, p_crash=0, p_pause=0, p_router_crash=0,
                      p_drop=0, p_dup=0, p_resources=0, safety_ticks=300)
    return replace(base, **kw)  # type: ignore[arg-type]


def advance(sim: Simulator, ticks: int) -> None:
    for _ in range(ticks):
        sim.step()


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_primary_crash_fails_over_without_losing_replies(style: str) -> None:
    sim = Simulator(quiet_options(style=style))
    advance(sim, 25)
    assert sim.crash_replica("store", "store-r0")
    result = sim.finish()
    core = sim.routers["store"].core
    assert core is not None and core.primary != "store-r0"
    assert core.counts["failovers"] == 1
    assert result.ops == 12


def test_paused_primary_is_fenced_when_it_wakes() -> None:
    """A primary paused past the failure timeout is deposed; when it wakes it executes what
    queued up for it in its old view, and that output must be dropped (fenced): no client gets
    a reply from it, no call takes effect twice."""
    sim = Simulator(quiet_options(clients=3))
    sim._retire = lambda group, rid: None  # type: ignore[method-assign]  # Ray never stops it: a zombie
    advance(sim, 20)
    old = sim.replicas["store"]["store-r0"]
    assert sim.pause_replica("store", "store-r0", ticks=80)
    core = sim.routers["store"].core
    assert core is not None
    for _ in range(100):  # removed by missing pongs, then wakes with stale output
        sim.step()
        if "store-r0" not in core.members:
            deposed_at = old.core.executed_upto
            break
    else:
        raise AssertionError("the paused primary was never removed from the view")
    assert core.counts["fenced"] == 0
    advance(sim, 100)
    assert not old.paused and old.core.executed_upto > deposed_at  # it woke and produced output
    assert core.counts["fenced"] >= 1  # ...which the router dropped
    sim.finish()
    ops = 3 * 6
    assert len(sim.history) == ops and len({op.msg_id for op in sim.history}) == ops  # one reply each
    assert core.counts["replies"] == ops  # the router released no reply of the deposed primary
    for rid in core.members:  # no call applied twice
        log = [e.msg_id for e in sim.replicas["store"][rid].log]
        assert len(log) == len(set(log)) == ops
    assert core.counts["failovers"] >= 1


def test_router_crash_rebuilds_from_replicas() -> None:
    sim = Simulator(quiet_options())
    advance(sim, 30)
    assert sim.crash_router("store")
    assert sim.routers["store"].core is None
    sim.finish()
    core = sim.routers["store"].core
    assert core is not None and core.phase == Phase.NORMAL
    assert sim.counts["router_rebuilds"] == 1


def test_re_replication_restores_the_replica_count() -> None:
    sim = Simulator(quiet_options(replicas=3))
    advance(sim, 20)
    assert sim.crash_replica("store", "store-r1")
    sim.finish()
    core = sim.routers["store"].core
    assert core is not None and len(core.members) == 3 and "store-r3" in core.members


def test_faults_wait_until_the_group_is_stable() -> None:
    sim = Simulator(quiet_options())
    advance(sim, 10)
    assert sim.crash_replica("store", "store-r0")
    assert not sim.crash_replica("store", "store-r1")  # recovery in progress: one fault at a time
    assert not sim.crash_router("store")


def test_nested_frontend_survives_backend_primary_crash() -> None:
    sim = Simulator(quiet_options(nested=True, model="kv", clients=3))
    advance(sim, 30)
    assert sim.crash_replica("store", "store-r0")
    result = sim.finish()
    assert result.ops == 18
    # the frontend's backups get their reply copies from their own primary (claim 48): the
    # store's failover does not make them pull
    assert sim.counts["nested_sends"] > 0 and sim.counts["nested_copies"] > 0


def test_nested_frontend_survives_its_own_primary_crash() -> None:
    sim = Simulator(quiet_options(nested=True, model="bank", clients=3))
    advance(sim, 30)
    assert sim.crash_replica("front", "front-r0")
    sim.finish()


def test_liveness_bound_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group that never wakes up cannot complete: I6 must fire, not hang."""
    monkeypatch.setattr(ReplicaHost, "wake", lambda self: None)
    sim = Simulator(quiet_options(replicas=2))
    advance(sim, 10)
    for host in sim.replicas["store"].values():
        host.paused = True
    with pytest.raises(InvariantViolation, match="I6"):
        sim.finish()


def test_replay_answers_nested_calls_from_the_backend() -> None:
    front = Frontend("store", KeyValue())
    entry = LogEntry(1, MsgId("c0", 1), "fwd2", ("put", ("x", 1), "get", ("x",)))
    asked = []

    def nested(mid: MsgId, call: NestedCall) -> object:
        asked.append((str(mid), call.method))
        return {"put": None, "get": 1}[call.method]

    state, answers = replay(front, "front", [entry], nested)
    assert answers[MsgId("c0", 1)] == (1, (1, None, 1))
    assert asked == [("front|c0#1#1", "put"), ("front|c0#1#2", "get")]
    assert state["calls"] == 1
    with pytest.raises(AssertionError):
        replay(front, "front", [LogEntry(2, MsgId("c0", 1), "fwd", ("get", ("x",)))], nested)
    assert run_method(KeyValue(), {"kv": {}}, "store", LogEntry(1, MsgId("c", 1), "put", ("x", 2)), nested) is None


def test_a_lagging_backup_fetches_nested_replies_after_its_group_changed_view() -> None:
    """front-r2 stalls in view 1 while front loses front-r1 and moves on to views 2 and 3; its
    primary's calls to store carry the new views. When front-r2 wakes it replays view 1's
    announced order and fetches the reply copies of those nested calls with view 1."""
    sim = Simulator(quiet_options(nested=True, model="kv", clients=3, ops_per_client=10,
                                  failure_timeout_ticks=80, heartbeat_ticks=4))
    advance(sim, 15)
    assert sim.crash_replica("front", "front-r1")
    lagging = sim.replicas["front"]["front-r2"]
    lagging.paused = True  # a long pause, shorter than the failure timeout: it stays a member
    advance(sim, 50)
    store = sim.routers["store"].core
    assert store is not None and store.source_views["front"] >= 2  # store saw front's new view
    assert lagging.core.view == 1
    # its pushed copies lost (as with a router that restarted): it must pull them from store
    lagging.core._reply_copies.clear()
    sim.routers["front"].core.links["front-r2"].reply_copies.clear()
    lagging.wake()
    result = sim.finish()  # before the fix: I6, the fetch was refused with StaleViewError
    assert result.ops == 30
    assert sim.counts["refused_pulls"] == 0 and store.counts["reply_copies"] > 0
    front = sim.routers["front"].core
    assert front is not None and "front-r2" in front.members


def long_call_across_a_router_restart(output_to_deliverer: bool) -> Simulator:
    """c0's long call runs at store-r0 when the router dies; the rebuilt router queries the
    replicas while it still runs. Once it ended, c1's three calls are acknowledged; then
    store-r0 dies just after the router took c2's call."""
    sim = Simulator(quiet_options(clients=3, ops_per_client=0, output_to_deliverer=output_to_deliverer))
    primary = sim.replicas["store"]["store-r0"]
    sim.add_operation("c0", "store", "add", (1,))
    sim.run_until(lambda: len(sim.history) == 1)
    sim.add_operation("c0", "store", "slow", (30, "add", (10,)))
    sim.run_until(lambda: primary.working_until is not None)  # store-r0 executes the long call
    assert sim.crash_router("store")
    router = sim.routers["store"]
    sim.run_until(lambda: router.core is not None and router.core.phase == Phase.NORMAL)
    assert primary.working_until is not None  # recovered while the long call still runs
    sim.run_until(lambda: primary.core.executed_upto == 2)  # the long call ends at position 2
    for k in (100, 1000, 10000):
        sim.add_operation("c1", "store", "add", (k,))
    sim.run_until(lambda: sum(op.client == "c1" for op in sim.history) == 3)  # c1's three are acknowledged
    sim.run_until(lambda: sim.stable("store"))
    sim.add_operation("c2", "store", "add", (7,))
    sim.run_until(lambda: MsgId("c2", 1) in (router.core.pending if router.core else ()))
    assert sim.crash_replica("store", "store-r0")  # before c2's call reaches it
    sim.finish()
    return sim


def test_a_long_call_survives_a_router_restart_and_a_later_primary_crash() -> None:
    sim = long_call_across_a_router_restart(output_to_deliverer=False)
    positions = {str(op.msg_id): op.position for op in sim.history}
    assert positions == {"c0#1": 1, "c0#2": 2, "c1#1": 3, "c1#2": 4, "c1#3": 5, "c2#1": 6}
    assert sim.counts["outputs_lost_to_dead_router"] == 0 and sim.counts["router_rebuilds"] == 1


def test_a_rebuilt_router_repairs_the_output_a_ray_host_lost() -> None:
    """The Ray replica of the time sent the long call's output to the dead router incarnation.
    Before the core fix the backups never learnt position 2 and stalled; the new primary gave
    that order up and put c2's call where c1's acknowledged one was ("I4: store-r1 executes c2#1
    at 3, where the acknowledged c1#1 is", the repro router_restart_reorder.py). Now the rebuilt
    router sees the primary ack a position it holds no announcement for and asks it again."""
    sim = long_call_across_a_router_restart(output_to_deliverer=True)
    positions = {str(op.msg_id): op.position for op in sim.history}
    assert positions == {"c0#1": 1, "c0#2": 2, "c1#1": 3, "c1#2": 4, "c1#3": 5, "c2#1": 6}
    assert sim.counts["outputs_lost_to_dead_router"] >= 1
    core = sim.routers["store"].core
    assert core is not None and core.counts["order_gap_queries"] >= 1


@pytest.mark.parametrize("async_steps", [False, True])
@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_fault_free_nested_calls_reach_the_backups_by_push_without_a_pull(style: str, async_steps: bool) -> None:
    """Claim 48, issue 11: fault-free, every reply copy a calling group's backup needs was pushed
    to it on a Deliver its router sent anyway; no backup pulls one from the callee's router
    (``Invariants._check_fault_free`` enforces it on every fault-free run)."""
    sim = Simulator(quiet_options(nested=True, model="kv", clients=3, ops_per_client=10, style=style,
                                  async_steps=async_steps, faults=False))
    result = sim.finish()
    assert result.ops == 30
    store = sim.routers["store"].core
    front = sim.routers["front"].core
    assert store is not None and front is not None
    assert sim.counts["nested_pulls"] == 0 and store.counts["reply_copies"] == 0
    assert front.counts["reply_copies_pushed"] > 0
    if style == "semi-active":  # passive backups never execute: they keep copies for a takeover
        assert sim.counts["nested_copies"] > 0


def test_a_backup_whose_pushed_copy_was_lost_pulls_it_after_the_wait() -> None:
    """Claim 48, fallback: front's router restarts with copies queued for the backups; they were
    lost with it, so a backup that reaches the nested call pulls the copy, and every call still
    takes effect once."""
    sim = Simulator(quiet_options(nested=True, model="kv", clients=3, ops_per_client=10))
    for _ in range(300):
        sim.step()
        core = sim.routers["front"].core
        if core is not None and any(link.reply_copies for link in core.links.values()):
            break
    assert sim.crash_router("front")
    result = sim.finish()
    assert result.ops == 30
    assert sim.counts["nested_pulls"] > 0


def test_a_backup_stopped_while_its_router_restarts_is_retired_and_replaced() -> None:
    """docs/faults.md row 34 (the replacement path of "An argument lost with its router and its
    caller"): a backup stops (SIGSTOP) just as the router dies; it does not answer the rebuild,
    which leaves it out of the view. Before the fix the rebuilt router never asked for a
    replacement (the group stayed at two replicas: ``I6: no quiescence``) and never told the
    stopped backup, which lingered once continued. The one-fault-at-a-time rule (``stable``)
    never injects this double fault, so the test does."""
    sim = Simulator(quiet_options(ops_per_client=8))
    retired = []
    sim._retire = lambda group, rid: retired.append((group, rid))  # type: ignore[method-assign]  # a zombie
    advance(sim, 20)
    assert sim.crash_router("store")
    stopped = sim.replicas["store"]["store-r2"]
    stopped.paused = True  # before the restart: it cannot answer the rebuild
    sim._go_silent(stopped)
    router = sim.routers["store"]
    sim.run_until(lambda: router.core is not None and router.core.phase == Phase.NORMAL)
    assert router.core is not None and "store-r2" not in router.core.members
    assert ("store", "store-r2") in retired  # told to leave, though it cannot hear it yet
    advance(sim, 60)
    stopped.wake()  # continued: it is in no view, its late output is fenced
    result = sim.finish()
    core = router.core
    assert core is not None and len(core.members) == 3 and "store-r2" not in core.members
    assert result.ops == 16


def test_a_call_its_callers_router_relayed_late_still_makes_its_nested_call() -> None:
    """docs/faults.md row 48 with every host of the simulator: the link loses c0's first call to the
    front until tick 120 (the client retries it); the front's router gives up waiting for it after
    ``sequence_gap_ticks`` and relays c0#2..c0#8, which run and make their nested calls; the store
    (``sources_max=2``) forgets their sources, and its floor of the root ``front|c0`` passes c0#1.
    c0#1's nested call must still run (before the fix: ``I6: nested call front|c0#1#1 failed:
    ReplyUnavailableError('reply of front|c0#1#1 was trimmed (reply_cache_max)')``)."""
    sim = Simulator(quiet_options(nested=True, model="kv", clients=1, ops_per_client=0, window=8, sources_max=2,
                                  scheduling="reception", sequence_gap_ticks=3))
    send = sim._send_request

    def lose_the_first_call(client: ClientHost, req: Request) -> None:
        if req.msg_id == MsgId("c0", 1) and sim.now < 120:
            sim.count("dropped")
            return
        send(client, req)

    sim._send_request = lose_the_first_call  # type: ignore[method-assign]
    for i in range(8):
        sim.add_operation("c0", "front", "fwd", ("put", (f"k{i}", i)))
    sim.run_until(lambda: sim.now >= 120, max_steps=200)
    front = sim.replicas["front"]["front-r0"].core
    assert front.dedup.status(MsgId("c0", 8)) == "done" and front.dedup.status(MsgId("c0", 1)) == "new"
    store = sim.replicas["store"]["store-r0"].core
    assert store.dedup.sources() == 2 and store.dedup.exemptions() == 1  # front|c0#1's subtree kept apart
    result = sim.finish()
    assert result.ops == 8



def assert_front_failed_c0_alike(sim: Simulator, before: list) -> None:
    """c0 got a typed ``ReplyUnavailableError`` from front-r1, promoted; every front replica logged
    ``before`` then c0#1's step that raised; the store ran its call once (rows 53, 55)."""
    [op] = [op for op in sim.history if op.client == "c0"]
    assert isinstance(op.value, Raised) and op.value.kind == "ReplyUnavailableError", op.value
    front = sim.routers["front"].core
    assert front is not None and front.members[0] == "front-r1"
    assert sim.counts["nested_replies_gone"] == 1
    for rid in front.members:
        host = sim.replicas["front"][rid]
        if host.core.role.value in ("primary", "backup"):
            assert [(e.msg_id, e.raised is not None) for e in host.log] == before + [(MsgId("c0", 1), True)]
    assert all(h.state["kv"].get("x") == 5 for h in sim.replicas["store"].values() if h.alive)

def promoted_while_its_suspended_call_waits_for_a_forgotten_reply() -> Simulator:
    """docs/faults.md row 53: front-r1, a backup, runs c0#1's first step (``fwd`` of a 40-tick store
    call, async steps) and suspends on its nested call ``front|c0#1#1``, waiting for the copy the
    primary pushes with the resume step. front-r0 is stopped before the store's reply reaches it;
    the store executes the call, forgets it (``reply_cache_max`` 1, a later call) and its router
    restarts (its cache goes with it). front-r0 dies; front-r1, promoted, sends the call as primary
    and the store answers "expired", outside any step."""
    sim = Simulator(quiet_options(nested=True, model="kv", clients=2, ops_per_client=0, async_steps=True,
                                  failure_timeout_ticks=200, reply_cache_max=1))
    sim.add_operation("c0", "front", "fwd", ("slow", (40, "put", ("x", 5))))
    nested, call = MsgId("front|c0#1", 1), MsgId("c0", 1)
    stores, fronts = sim.replicas["store"], sim.replicas["front"]
    old = fronts["front-r0"]
    sim.run_until(lambda: all(call in h.coros for h in fronts.values()))  # every front replica suspended
    store_router = sim.routers["store"]
    old.paused = True  # stopped: the store's reply waits unread
    sim._go_silent(old)
    sim.run_until(lambda: nested not in store_router.core.requests and sim.stable("store"))
    sim.add_operation("c1", "store", "put", ("y", 1))
    sim.run_until(lambda: all(h.core.dedup.status(nested) == "expired" for h in stores.values()) and
                  sim.stable("store"))
    assert sim.crash_router("store")
    sim.run_until(lambda: store_router.core is not None and store_router.core.phase == Phase.NORMAL)
    assert all(h.core.role.value == "backup" for rid, h in fronts.items() if rid != "front-r0")
    old.alive = False
    sim.schedule(1, FailureNotice("front", sim.routers["front"].incarnation, old.rid))
    sim.finish()
    return sim


def test_a_backup_promoted_while_its_suspended_call_waits_for_a_forgotten_reply_fails_the_call_alike() -> None:
    """Before the fix: ``I6: nested call front|c0#1#1 failed: ReplyUnavailableError('reply of
    front|c0#1#1 was trimmed (reply_cache_max)')`` (the promoted front-r1's ``_arrive_suspended``).
    Now the new primary resumes the call as a step of its own choice with the error raised into the
    method, announces it and pushes the error as the reply copy: every front replica ran the same
    step, and c0 gets a typed ``ReplyUnavailableError`` (the store's effect stays: it ran once)."""
    sim = promoted_while_its_suspended_call_waits_for_a_forgotten_reply()
    assert_front_failed_c0_alike(sim, [(MsgId("c0", 1), False)])


def primary_starts_afresh_a_call_whose_nested_reply_its_callee_forgot(async_steps: bool) -> Simulator:
    """docs/faults.md row 55: front-r0, the primary, runs c0#1 (``fwd`` of a 40-tick store call, one
    sync step) and sends its nested call ``front|c0#1#1``; it is stopped before the store's reply
    reaches it, so its step never ends and is never announced (its backups never start c0#1). The
    store executes the call, forgets it (``reply_cache_max`` 1, a later call) and its router restarts
    (its cache goes with it). front-r0 dies; front-r1, promoted, starts c0#1 afresh as a step of its
    own choice, sends the call again, and the store answers "expired": inside that step (sync), or
    outside any step while the method is suspended on it (``async_steps``)."""
    sim = Simulator(quiet_options(nested=True, model="kv", clients=2, ops_per_client=0, async_steps=async_steps,
                                  failure_timeout_ticks=200, reply_cache_max=1))
    sim.add_operation("c0", "front", "fwd", ("slow", (40, "put", ("x", 5))))
    nested = MsgId("front|c0#1", 1)
    stores, fronts = sim.replicas["store"], sim.replicas["front"]
    old = fronts["front-r0"]
    store_router = sim.routers["store"]
    sim.run_until(lambda: store_router.core is not None and nested in store_router.core.requests)
    old.paused = True  # stopped: its step never ends, the store's reply waits unread
    sim._go_silent(old)
    sim.run_until(lambda: all(h.core.dedup.status(nested) == "done" for h in stores.values()) and
                  sim.stable("store"))
    sim.add_operation("c1", "store", "put", ("y", 1))
    sim.run_until(lambda: all(h.core.dedup.status(nested) == "expired" for h in stores.values()) and
                  sim.stable("store"))
    assert sim.crash_router("store")
    sim.run_until(lambda: store_router.core is not None and store_router.core.phase == Phase.NORMAL)
    assert all(not h.log for rid, h in fronts.items() if rid != "front-r0")  # c0#1 never announced
    old.alive = False
    sim.schedule(1, FailureNotice("front", sim.routers["front"].incarnation, old.rid))
    sim.finish()
    return sim


@pytest.mark.parametrize("async_steps", [False, True], ids=["sync", "async"])
def test_a_call_a_promoted_primary_starts_afresh_whose_nested_reply_was_forgotten_fails_alike(async_steps: bool) -> None:
    """Before the fix: ``I6: nested call front|c0#1#1 failed: ReplyUnavailableError('reply of
    front|c0#1#1 was trimmed (reply_cache_max)')`` (the promoted front-r1's ``on_nested_reply``, sync,
    or ``_arrive_suspended``, async: a primary's own call whose reply reads gone). Now the new primary raises the error into the method,
    announces the step and pushes the error as the reply copy: every front replica ran the same
    step, and c0 gets a typed ``ReplyUnavailableError`` (the store's effect stays: it ran once)."""
    sim = primary_starts_afresh_a_call_whose_nested_reply_its_callee_forgot(async_steps)
    assert_front_failed_c0_alike(sim, [(MsgId("c0", 1), False)] if async_steps else [])  # the step that suspends


@pytest.mark.parametrize("wait", [False, True], ids=["default", "replies_wait_for_backup"])
def test_an_acknowledged_call_survives_a_primary_crash_then_a_router_crash_with_replies_wait_for_backup(
        wait: bool) -> None:
    """docs/faults.md row 65: the store's backup gets its copies late (cut off for a while, shorter than
    the failure timeout) while the primary answers calls; the primary crashes, then the router, before the
    new primary replayed anything. By default the router released replies of calls only the dead primary
    and the dead router held: acknowledged calls are lost (I4). With ``replies_wait_for_backup`` no reply
    was released before the backup executed its call, and nothing acknowledged is lost."""
    sim = Simulator(quiet_options(replicas=2, clients=2, ops_per_client=10, failure_timeout_ticks=60,
                                  replies_wait_for_backup=wait))
    advance(sim, 20)
    assert sim.partition_replica("store", "store-r1", ticks=25)
    advance(sim, 15)  # the primary answers calls meanwhile; the backup's copies wait on the cut
    backup = sim.replicas["store"]["store-r1"]
    acked = sim.checker.acked["store"]
    ahead = [p for p in acked if p > backup.core.executed_upto]
    assert bool(ahead) is not wait  # by default, the clients hold replies the backup knows nothing of
    sim.stable = lambda group, paused_backup=False: True  # type: ignore[method-assign]  # the double fault
    assert sim.crash_replica("store", "store-r0")
    assert sim.crash_router("store")
    if wait:
        result = sim.finish()
        assert result.ops == 20
    else:
        with pytest.raises(InvariantViolation, match="I4"):
            sim.finish()

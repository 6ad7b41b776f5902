"""The patent's claims, shown on the pure protocol core (no Ray, no simulator).

Each test drives ``RouterCore``, ``ReplicaCore`` and ``ClientCore`` directly
with a small synchronous harness and asserts the behaviour a claim describes.
``docs/claims.md`` maps every claim to the code and to the test that shows it.

Harness: a :class:`Group` is one router and its replicas wired synchronously,
as in the core's driving example. The application is a counter:

* ``add(n)``: ``state += n``; returns the new state.
* ``fwd(group, n[, method])``: a nested call ``add(n)`` (or ``method``) on
  another group; ``state +=`` its answer. The primary sends the nested request to the callee's router;
  a backup does not send it: it takes the reply copy its primary pushed (``Deliver.reply_copies``)
  or, when that copy is missing, pulls it from the callee's router by the same MsgId.
* ``stamp()``: a nondeterministic value chosen by the primary
  (like ``ftactors.now()``), replayed by the backups from the announcement.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Set, Tuple

import pytest

from ftactors.core import (
    Announcement,
    ClientCore,
    CoreConfig,
    Deliver,
    Delivered,
    Execute,
    Kind,
    MsgId,
    NewView,
    Outcome,
    Phase,
    Reply,
    ReplicaCore,
    Restore,
    Role,
    RouterCore,
    Snapshot,
)
from ftactors.core.replica import TRANSITIONS as REPLICA_TRANSITIONS
from ftactors.core.router import TRANSITIONS as ROUTER_TRANSITIONS

#: the primary's "clock" for ``stamp()``: different at every call, so replay is observable
_CLOCK = itertools.count(1000)


class Group:
    """One replicated group: a RouterCore and its ReplicaCores, driven synchronously."""

    def __init__(self, name: str, cfg: CoreConfig, n: int = 3, scheduling: str = "reception",
                 peers: Optional[Dict[str, "Group"]] = None) -> None:
        self.name, self.cfg = name, cfg
        self.members = tuple(f"{name}-r{i}" for i in range(n))
        self.router = RouterCore(name, cfg, self.members)
        self.reps: Dict[str, ReplicaCore] = {
            m: ReplicaCore(name, m, cfg, scheduling, NewView(1, self.members)) for m in self.members}
        self.state: Dict[str, int] = {m: 0 for m in self.members}
        self.order: Dict[str, List[MsgId]] = {m: [] for m in self.members}  # execution order per replica
        self.nondet: Dict[str, List[Tuple[int, ...]]] = {m: [] for m in self.members}
        self.sent: List[Tuple[int, str, Deliver]] = []  # (tick, replica, Deliver) in send order
        self.answered: List[Tuple[int, Delivered]] = []  # the Delivered each replica returned
        self.released: List[Tuple[int, Reply]] = []  # (tick, reply) released by the router
        self.events: List[Tuple[str, str, str]] = []  # ("execute"|"nested_send"|..., replica, msg)
        self.peers: Dict[str, "Group"] = peers if peers is not None else {}
        self.deaf: Set[str] = set()  # replicas whose Delivers are lost (they never answer)
        self.now = 0

    # ------------------------------------------------------------ a replica

    def run_replica(self, m: str, d: Deliver) -> Delivered:
        core = self.reps[m]
        core.tick(self.now)
        core.deliver(d)
        while (e := core.next_effect()) is not None:
            if isinstance(e, Execute):
                self._execute(m, core, e)
            elif isinstance(e, Snapshot):
                core.snapshot_taken(e.position, self.state[m] if e.for_checkpoint else None, str(self.state[m]))
            elif isinstance(e, Restore):
                self.state[m] = e.checkpoint.state
                self.events.append(("restore", m, str(e.checkpoint.position)))
        out = core.take_delivered()
        self.answered.append((self.now, out))
        return out

    def _execute(self, m: str, core: ReplicaCore, e: Execute) -> None:
        req = e.request
        self.events.append(("execute", m, str(req.msg_id)))
        nondet: Tuple[int, ...] = ()
        if req.method == "add":
            self.state[m] += req.payload
        elif req.method == "fwd":
            target, amount, *method = req.payload
            callee = self.peers[target]
            nreq, send = core.nested_request(target, method[0] if method else "add", amount)
            if send:
                self.events.append(("nested_send", m, str(nreq.msg_id)))
                callee.router.submit(nreq)
                rep = callee.wait(nreq.msg_id)
            else:  # a backup: the reply copy, by the same deterministic MsgId (claim 48)
                pushed = core.reply_copy(nreq.msg_id)
                if pushed is not None:
                    self.events.append(("nested_copy", m, str(nreq.msg_id)))
                    rep = pushed
                else:
                    self.events.append(("nested_pull", m, str(nreq.msg_id)))
                    status, pulled = callee.router.lookup(nreq.msg_id)
                    assert status == "released" and pulled is not None
                    rep = pulled
            if send or pushed is None:
                core.nested_reply(rep)
            self.state[m] += rep.outcome.value
        elif req.method == "stamp":
            nondet = e.nondet if e.replay else (next(_CLOCK),)
            self.state[m] += nondet[0]
            self.nondet[m].append(nondet)
        else:  # pragma: no cover - the tests use only these methods
            raise AssertionError(req.method)
        self.order[m].append(req.msg_id)
        core.executed(req.msg_id, Outcome(True, self.state[m]), nondet)

    # ------------------------------------------------------------ the router

    def pump(self, ticks: int = 1) -> None:
        """Advance ``ticks`` ticks. Within a tick, like the Ray router's ``_kick``, the router's
        ``ready()`` is processed again after every answer until it has nothing more to do."""
        for _ in range(ticks):
            self.now += 1
            self.router.tick(self.now)
            for _ in range(10):
                if not self.flush():
                    break

    def flush(self) -> bool:
        """Carry out one ``ready()``; True if it asked for anything."""
        r = self.router.ready()
        self.released.extend((self.now, rep) for rep in r.released)
        for rid in r.pings:
            self.router.on_pong(rid)
        for rid in r.queries:
            self.router.on_state_report(self.reps[rid].state_report())
        for m, d in r.sends:
            self.sent.append((self.now, m, d))
            if m in self.deaf:
                continue
            self.router.on_delivered(self.run_replica(m, d))
        return bool(r.sends or r.released or r.queries)

    def wait(self, msg_id: MsgId, ticks_max: int = 20) -> Reply:
        """Pump until the router releases the reply of ``msg_id``."""
        for _ in range(ticks_max):
            for _, rep in self.released:
                if rep.msg_id == msg_id:
                    return rep
            self.pump()
        raise AssertionError(f"{self.name}: no reply to {msg_id} within {ticks_max} ticks")

    def settle(self, ticks: int = 10) -> None:
        self.pump(ticks)

    # ------------------------------------------------------------ observations

    def to_backups(self, since: int = 0) -> List[Tuple[int, str, Deliver]]:
        primary = self.router.primary
        return [(t, m, d) for t, m, d in self.sent if m != primary and t >= since]

    @property
    def primary(self) -> str:
        p = self.router.primary
        assert p is not None
        return p


def cfg(**kw) -> CoreConfig:
    return CoreConfig(**kw)


def mids(reqs) -> List[MsgId]:
    return [r.msg_id for r in reqs]


# =====================================================================================
# Claims 1, 8, 14, 21, 27, 40, 64: ordering information from primary to backups gives
# one order at every replica.
# =====================================================================================


def test_primary_announces_its_order_and_every_replica_executes_it() -> None:
    """Claims 1, 40, 64: the primary's announcements report the order it executed, and the
    backups execute exactly that order."""
    g = Group("g", cfg(), n=3, scheduling="priority")
    clients = [ClientCore(f"c{i}") for i in range(3)]
    for i in range(12):
        g.router.submit(clients[i % 3].request("g", "add", payload=i + 1, priority=i % 4))
        if i % 4 == 3:
            g.pump()
    g.settle()
    primary_order = g.order["g-r0"]
    assert len(primary_order) == 12
    announced = sorted((a for _, d in g.answered for a in d.announcements), key=lambda a: a.position)
    assert [a.msg_id for a in announced] == primary_order  # claim 40: announcements = primary's order
    assert [a.position for a in announced] == list(range(1, 13))
    for m in ("g-r1", "g-r2"):
        assert g.order[m] == primary_order  # claim 64: same messages, same order
    assert len(set(g.state.values())) == 1


# =====================================================================================
# Claims 41, 63: backups follow announcements, not their own reception order.
# =====================================================================================


def test_backup_executes_in_announced_order_not_reception_order() -> None:
    """Claims 41, 63: a backup that received b before a executes a before b when so announced,
    and executes nothing that is not yet announced."""
    c = ClientCore("c")
    a, b = c.request("g", "add", payload=1), c.request("g", "add", payload=2)
    g = Group("g", cfg(), n=2)
    backup = g.reps["g-r1"]
    backup.deliver(Deliver(view=1, new_view=NewView(1, g.members), requests=(b, a)))
    assert backup.next_effect() is None  # received, not announced: not executed
    backup.deliver(Deliver(view=1, announcements=(Announcement("g", 1, 1, a.msg_id),)))
    e = backup.next_effect()
    assert isinstance(e, Execute) and e.request.msg_id == a.msg_id and e.replay
    backup.executed(a.msg_id, Outcome(True, 1))
    assert backup.next_effect() is None  # b is held but not announced yet
    backup.deliver(Deliver(view=1, announcements=(Announcement("g", 1, 2, b.msg_id),)))
    e = backup.next_effect()
    assert isinstance(e, Execute) and e.request.msg_id == b.msg_id and e.position == 2


def test_backup_waits_for_a_message_announced_before_it_arrives() -> None:
    """Claim 63: an announcement can overtake its message; the backup waits for the message and
    does not run later messages out of order meanwhile."""
    c = ClientCore("c")
    a, b = c.request("g", "add", payload=1), c.request("g", "add", payload=2)
    backup = ReplicaCore("g", "g-r1", cfg(), "reception", NewView(1, ("g-r0", "g-r1")))
    backup.deliver(Deliver(view=1, requests=(b,), announcements=(
        Announcement("g", 1, 1, a.msg_id), Announcement("g", 1, 2, b.msg_id))))
    assert backup.next_effect() is None  # b is here but position 1 (a) is not
    backup.deliver(Deliver(view=1, requests=(a,)))
    first = backup.next_effect()
    assert isinstance(first, Execute) and first.request.msg_id == a.msg_id


# =====================================================================================
# Claims 5, 11, 18, 24, 30, 39, 55: the primary's scheduling criterion decides the order.
# =====================================================================================


@pytest.mark.parametrize("scheduling,hints,expected", [
    ("reception", [{}, {}, {}], [0, 1, 2]),
    ("priority", [{"priority": 0}, {"priority": 5}, {"priority": 1}], [1, 2, 0]),
    ("deadline", [{"deadline_tick": 90}, {"deadline_tick": None}, {"deadline_tick": 10}], [2, 0, 1]),
    ("fair", [{"src": "a"}, {"src": "a"}, {"src": "b"}], [0, 2, 1]),
])
def test_scheduling_criterion_decides_order_and_backups_follow(scheduling, hints, expected) -> None:
    """Claims 5, 39: the primary picks by reception order, priority, deadline or fairness
    (not only by arrival); its announcements carry that order to the backups."""
    g = Group("g", cfg(relay_delay_ticks=0), n=3, scheduling=scheduling)
    clients = {s: ClientCore(s) for s in ("a", "b", "c")}
    reqs = []
    for h in hints:
        h = dict(h)
        src = h.pop("src", "c")
        reqs.append(clients[src].request("g", "add", payload=len(reqs) + 1, **h))
    for r in reqs:  # all arrive before the primary runs: one batch, reception order 0, 1, 2
        g.router.submit(r)
    g.settle()
    want = [reqs[i].msg_id for i in expected]
    for m in g.members:
        assert g.order[m] == want
    # the backups received the copies in reception order, yet executed the primary's order
    copies = [r.msg_id for _, _, d in g.to_backups() for r in d.requests]
    assert copies[:3] == mids(reqs)


def test_resource_scheduling_skips_calls_whose_resource_is_unavailable() -> None:
    """Claims 5, 39: availability of resources decides the order at the primary."""
    g = Group("g", cfg(relay_delay_ticks=0), n=2, scheduling="resources")
    c = ClientCore("c")
    disk = c.request("g", "add", payload=1, resources=("disk",))
    plain = c.request("g", "add", payload=2)
    g.reps["g-r0"].set_unavailable(frozenset({"disk"}))
    g.router.submit(disk)
    g.router.submit(plain)
    g.settle(3)
    assert g.order["g-r0"] == [plain.msg_id]
    g.reps["g-r0"].set_unavailable(frozenset())
    g.router.submit(c.request("g", "add", payload=4))  # any later Deliver lets the primary run it
    g.settle(5)
    assert g.order["g-r0"][:2] == [plain.msg_id, disk.msg_id]
    assert g.order["g-r1"] == g.order["g-r0"]


# =====================================================================================
# Claims 35, 55: the primary executes (and sends nested calls) before it announces.
# =====================================================================================


def test_primary_executes_and_sends_before_announcing() -> None:
    """Claims 35, 55: the primary starts the message, may send further messages while executing
    it, and only afterwards produces the announcement of its order."""
    a = Group("a", cfg(), n=3)
    b = Group("b", cfg(), n=2)
    a.peers["b"] = b
    primary = a.reps["a-r0"]
    req = ClientCore("c").request("a", "fwd", payload=("b", 5))
    primary.deliver(Deliver(view=1, new_view=NewView(1, a.members), requests=(req,)))
    ex = primary.next_effect()
    assert isinstance(ex, Execute) and not ex.replay and ex.position == 1
    assert primary.take_delivered().announcements == ()  # executing, not announced
    nreq, send = primary.nested_request("b", "add", 5)  # a further message, sent before announcing
    assert send
    assert primary.take_delivered().announcements == ()
    b.router.submit(nreq)
    rep = b.wait(nreq.msg_id)
    primary.nested_reply(rep)
    primary.executed(req.msg_id, Outcome(True, 5))
    out = primary.take_delivered()
    assert [x.msg_id for x in out.announcements] == [req.msg_id]
    assert [x.msg_id for x in out.replies] == [req.msg_id]
    assert out.replies[0].announcements == out.announcements  # the order rides on the reply


def test_reply_is_released_without_waiting_for_any_backup() -> None:
    """Claims 2, 35: the response time is that of an unreplicated call: the reply is released
    in the tick the primary answers, before any backup has received anything."""
    g = Group("g", cfg(relay_delay_ticks=3), n=3)
    g.pump()  # installs view 1 everywhere
    g.deaf = {"g-r1", "g-r2"}  # from now on the backups never answer
    req = ClientCore("c").request("g", "add", payload=3)
    g.router.submit(req)
    g.pump()
    assert [(t, r.msg_id) for t, r in g.released] == [(2, req.msg_id)]
    assert all(not d.requests for _, _, d in g.to_backups())  # copies not even relayed yet


# =====================================================================================
# Claims 42-47 (and 49-54, 56-61): piggybacking, batching, null messages.
# =====================================================================================


def test_announcement_rides_on_the_reply_and_on_the_next_request_copy() -> None:
    """Claims 6, 42, 44, 62: the announcement is piggybacked on the primary's reply (to the
    source) and on the first Deliver the router sends each backup afterwards, which carries the
    next request copies; no message is sent only for it."""
    g = Group("g", cfg(relay_delay_ticks=1, null_message_ticks=5), n=3)
    c = ClientCore("c")
    first = c.request("g", "add", payload=1)
    g.router.submit(first)
    g.pump()  # tick 1: primary executes and replies; the copies wait one tick for a batch
    (_, reply), = g.released
    assert [a.msg_id for a in reply.announcements] == [first.msg_id]  # to the source
    second = c.request("g", "add", payload=2)
    g.router.submit(second)
    g.pump()  # tick 2: the backups' Deliver carries both copies and the announcement
    for m in ("g-r1", "g-r2"):
        after = [d for t, r, d in g.sent if r == m and t >= 2]
        assert after, m
        d = after[0]
        assert not d.is_null
        assert mids(d.requests)[-1] == second.msg_id
        assert [a.msg_id for a in d.announcements] == [first.msg_id]  # first message after it
    assert g.router.counts["null_messages"] == 0


def test_several_announcements_in_one_message() -> None:
    """Claims 43, 45, 47: the announcements of several messages travel in one Deliver."""
    g = Group("g", cfg(relay_delay_ticks=1), n=3)
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=i) for i in range(1, 6)]
    for r in reqs:
        g.router.submit(r)
    g.pump()  # the primary executes all five in one Deliver
    g.router.submit(c.request("g", "add", payload=9))
    g.pump()
    for m in ("g-r1", "g-r2"):
        carrying = [d for _, r, d in g.sent if r == m and d.announcements]
        assert len(carrying) == 1
        assert [a.position for a in carrying[0].announcements] == [1, 2, 3, 4, 5]
        assert not carrying[0].is_null


def test_null_message_only_after_null_message_ticks_without_traffic() -> None:
    """Claims 46, 53, 60: when no application message goes to a backup for
    ``null_message_ticks``, the announcements travel in a null message, and only then."""
    g = Group("g", cfg(relay_delay_ticks=0, null_message_ticks=3), n=3)
    c = ClientCore("c")
    req = c.request("g", "add", payload=1)
    g.router.submit(req)
    g.pump()  # tick 1: copies go to all at once; the announcement comes back after
    assert all(not d.announcements for _, _, d in g.to_backups())
    g.pump(2)  # ticks 2-3: nothing to ride on, but not due yet
    assert [t for t, _, _ in g.to_backups()] == [1, 1]
    g.pump()  # tick 4: due: one null message per backup
    nulls = [(t, m, d) for t, m, d in g.to_backups() if t == 4]
    assert len(nulls) == 2
    for _, _, d in nulls:
        assert d.is_null and [a.msg_id for a in d.announcements] == [req.msg_id]
    assert g.router.counts["null_messages"] == 2
    assert g.order["g-r1"] == g.order["g-r2"] == [req.msg_id]


def test_no_null_message_when_a_request_copy_goes_out_in_time() -> None:
    """Claims 42, 46: a request arriving before the null message is due carries the
    announcement instead; the null message is never sent."""
    g = Group("g", cfg(relay_delay_ticks=0, null_message_ticks=3), n=3)
    c = ClientCore("c")
    first = c.request("g", "add", payload=1)
    g.router.submit(first)
    g.pump(2)
    g.router.submit(c.request("g", "add", payload=2))
    g.pump(10)
    assert g.router.counts["null_messages"] == 2  # only for the *second* announcement, at the end
    carried = [d for _, _, d in g.to_backups() if any(a.msg_id == first.msg_id for a in d.announcements)]
    assert len(carried) == 2 and all(not d.is_null for d in carried)


def test_several_announcements_in_one_null_message() -> None:
    """Claims 47, 54, 61: a null message carries every announcement waiting for it."""
    g = Group("g", cfg(relay_delay_ticks=0, null_message_ticks=2), n=2)
    c = ClientCore("c")
    for i in range(4):
        g.router.submit(c.request("g", "add", payload=i))
    g.pump(5)
    nulls = [d for _, _, d in g.to_backups() if d.is_null]
    assert len(nulls) == 1 and [a.position for a in nulls[0].announcements] == [1, 2, 3, 4]


# =====================================================================================
# Claims 2, 8, 15, 21, 27, 33: no extra messages in fault-free operation.
# =====================================================================================


def test_fault_free_steady_load_sends_no_message_beyond_the_unreplicated_ones() -> None:
    """Claims 2, 8, 33: under steady load, every message to a backup is a batch of request
    copies (what multicasting the requests needs anyway); ordering information never costs a
    message of its own; no ping, query or view change happens; one reply per request."""
    g = Group("g", cfg(relay_delay_ticks=1, null_message_ticks=3, heartbeat_ticks=20,
                       failure_timeout_ticks=40), n=3)
    clients = [ClientCore(f"c{i}") for i in range(3)]
    submitted = []
    for _ in range(30):
        for c in clients:
            r = c.request("g", "add", payload=1)
            submitted.append(r.msg_id)
            g.router.submit(r)
        g.pump()
    backup_msgs = g.to_backups()
    assert backup_msgs and all(d.requests for _, _, d in backup_msgs)  # never a message only for order
    assert sum(len(d.announcements) for _, _, d in backup_msgs) > 0
    counts = g.router.counts
    for k in ("null_messages", "heartbeats", "recovery_messages", "view_changes", "failovers", "fenced"):
        assert counts[k] == 0, k
    assert sorted(r.msg_id for _, r in g.released) == sorted(submitted[:len(g.released)])
    assert len({r.msg_id for _, r in g.released}) == len(g.released) == counts["replies"]


def test_fault_free_steady_load_with_nested_calls_sends_no_extra_message() -> None:
    """Claims 2, 36, 48: the same with every call making a nested call: the reply copies reach
    the caller's backups on the batches of request copies that go anyway; no backup pulls a
    copy from the callee's router, and no null message carries one."""
    kw = dict(relay_delay_ticks=1, null_message_ticks=3, heartbeat_ticks=20, failure_timeout_ticks=40)
    b = Group("b", cfg(**kw), n=3)
    a = Group("a", cfg(**kw), n=3, peers={"b": b})
    clients = [ClientCore(f"c{i}") for i in range(3)]
    for _ in range(20):
        for c in clients:
            a.router.submit(c.request("a", "fwd", payload=("b", 1)))
        a.pump()
    backup_msgs = a.to_backups()
    assert backup_msgs and all(d.requests for _, _, d in backup_msgs)
    assert sum(len(d.reply_copies) for _, _, d in backup_msgs) > 0
    assert not [e for e in a.events if e[0] == "nested_pull"] and b.router.counts["reply_copies"] == 0
    for k in ("null_messages", "heartbeats", "recovery_messages", "view_changes", "failovers", "fenced"):
        assert a.router.counts[k] == 0, k
    a.settle()  # the idle tail: the last announcements (and copies) go in a null message
    assert len(set(a.state.values())) == 1 and b.router.counts["reply_copies"] == 0


def test_every_announcement_reaches_each_backup_once() -> None:
    """Claims 2, 64: in a fault-free run each announcement goes to each backup exactly once,
    and never to the primary."""
    g = Group("g", cfg(relay_delay_ticks=1, null_message_ticks=2), n=4)
    c = ClientCore("c")
    for i in range(20):
        g.router.submit(c.request("g", "add", payload=i))
        if i % 3 == 0:
            g.pump()
    g.settle()
    for m in g.members:
        got = [a.position for t, r, d in g.sent if r == m for a in d.announcements]
        assert got == ([] if m == g.primary else list(range(1, 21))), m


# =====================================================================================
# Claims 3, 9, 16, 22, 28, 38: message kinds.
# =====================================================================================


def test_sync_async_and_oneway_requests_are_ordered_alike() -> None:
    """Claims 3, 38: synchronous, asynchronous and one-way requests get a position and are
    announced; a one-way message gets no reply; the replies answer the requests."""
    g = Group("g", cfg(), n=3)
    c = ClientCore("c")
    sync = c.request("g", "add", payload=1, kind=Kind.SYNC_REQUEST)
    asyn = c.request("g", "add", payload=10, kind=Kind.ASYNC_REQUEST)
    one = c.request("g", "add", payload=100, kind=Kind.ONEWAY)
    for r in (sync, asyn, one):
        g.router.submit(r)
    g.settle()
    assert {r.msg_id for _, r in g.released} == {sync.msg_id, asyn.msg_id}
    assert all(r.kind == Kind.REPLY for _, r in g.released)
    for m in g.members:
        assert g.order[m] == [sync.msg_id, asyn.msg_id, one.msg_id] and g.state[m] == 111
    assert g.router.lookup(one.msg_id)[0] == "unknown"  # nobody waits for a one-way message


# =====================================================================================
# Claims 36, 37: the connection multicasts to every replica; the peer needs no replica count.
# =====================================================================================


@pytest.mark.parametrize("n", [2, 5])
def test_every_request_reaches_every_replica_of_the_destination(n: int) -> None:
    """Claim 36: a message sent on the connection to a group is delivered to each replica."""
    g = Group("g", cfg(), n=n)
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=i) for i in range(7)]
    for r in reqs:
        g.router.submit(r)
        g.pump()
    g.settle()
    for m in g.members:
        got = [mid for t, r, d in g.sent if r == m for mid in mids(d.requests)]
        assert got == mids(reqs), m


def test_a_caller_needs_no_knowledge_of_the_callee_replicas() -> None:
    """Claim 37: the same client and the same calling group work unchanged against groups of
    2 or 5 replicas: identical requests, exactly one reply each."""
    seen = []
    for n in (2, 5):
        callee = Group("b", cfg(), n=n)
        caller = Group("a", cfg(), n=3, peers={"b": callee})
        client = ClientCore("c")
        reqs = [client.request("a", "fwd", payload=("b", i)) for i in range(1, 4)]
        for r in reqs:
            caller.router.submit(r)
        caller.settle()
        nested = [r for _, _, d in callee.sent for r in d.requests]
        seen.append(([(r.msg_id, r.method, r.payload) for r in reqs],
                     sorted({(r.msg_id, r.payload) for r in nested})))
        assert [r.msg_id for _, r in caller.released] == mids(reqs)
        assert len(callee.released) == 3  # one reply per nested request, whatever n
        assert callee.router.counts["duplicates"] == 0  # backups of a pulled, they did not resend
    assert seen[0] == seen[1]


# =====================================================================================
# Claims 6, 7, 48, 66, 67, 68: nested calls between two groups.
# =====================================================================================


def test_nested_reply_is_consumed_without_an_announcement() -> None:
    """Claim 48: the reply to a nested request is consumed at once by the caller's primary and,
    as a copy by the same MsgId, by its backups; it takes no position in the caller's
    order and needs no announcement. The callee executes the nested call once. The copies are
    pushed: each rides to a backup on the Deliver that carries the calling message's
    announcement, so no backup sends a message of its own for it (claims 36, 37)."""
    b = Group("b", cfg(), n=3)
    a = Group("a", cfg(), n=3, peers={"b": b})
    c = ClientCore("c")
    reqs = [c.request("a", "fwd", payload=("b", i)) for i in (1, 2, 3)]
    for r in reqs:
        a.router.submit(r)
        a.pump()
    a.settle()
    b.settle()
    announced = {ann.msg_id for _, d in a.answered for ann in d.announcements}
    assert announced == set(mids(reqs))  # only the client's messages are ordered in a
    sends = [e for e in a.events if e[0] == "nested_send"]
    copies = [e for e in a.events if e[0] == "nested_copy"]
    assert {m for _, m, _ in sends} == {"a-r0"} and len(sends) == 3
    assert {m for _, m, _ in copies} == {"a-r1", "a-r2"} and len(copies) == 6
    assert {x for _, _, x in copies} == {x for _, _, x in sends}  # same deterministic ids
    assert not [e for e in a.events if e[0] == "nested_pull"] and b.router.counts["reply_copies"] == 0
    for _, _, d in a.to_backups():  # each copy rides with its calling message's announcement
        callers = {f"a|{ann.msg_id}" for ann in d.announcements}
        assert {rep.msg_id.source for rep in d.reply_copies} <= callers
    assert b.router.counts["requests"] == 3 and b.order["b-r0"] == b.order["b-r1"]
    assert len(set(a.state.values())) == 1 and a.state["a-r0"] == 1 + 3 + 6
    assert all(not r._reply_copies for r in a.reps.values())  # each copy dropped once used


def test_a_backup_without_its_pushed_copy_pulls_it_by_the_same_id() -> None:
    """Claim 48, fallback: a copy that never reached a backup (here the primary's Delivered that
    carried it was lost with a router that restarted) is pulled from the callee's router by the
    same MsgId; the callee still executes the nested call once."""
    b = Group("b", cfg(), n=2)
    a = Group("a", cfg(), n=2, peers={"b": b})
    c = ClientCore("c")
    a.router.submit(c.request("a", "fwd", payload=("b", 5)))
    a.pump()
    for link in a.router.links.values():  # lost on the way: the backup has announcement only
        link.reply_copies.clear()
    a.settle()
    b.settle()
    assert [e[1] for e in a.events if e[0] == "nested_pull"] == ["a-r1"]
    assert b.router.counts["requests"] == 1 and b.order["b-r0"] == b.order["b-r1"]
    assert a.state == {"a-r0": 5, "a-r1": 5}


def test_callee_announcements_ride_on_its_reply_and_are_carried_back() -> None:
    """Claims 7, 66: b's primary piggybacks the order of a's call on its reply to a; a's primary
    includes those announcements on its next request to b."""
    b = Group("b", cfg(), n=3)
    a = Group("a", cfg(), n=3, peers={"b": b})
    c = ClientCore("c")
    first, second = c.request("a", "fwd", payload=("b", 1)), c.request("a", "fwd", payload=("b", 2))
    a.router.submit(first)
    a.settle(3)
    (_, rep1), = b.released
    assert [(x.group, x.position) for x in rep1.announcements] == [("b", 1)]
    a.router.submit(second)
    a.settle(3)
    nested = [r for _, m, d in b.sent if m == "b-r0" for r in d.requests]
    assert len(nested) == 2
    assert nested[0].peer_announcements == ()
    assert nested[1].peer_announcements == rep1.announcements  # carried back to b


def test_carried_back_announcements_reach_the_callee_backups_after_its_router_restarts() -> None:
    """Claims 66, 67, 68: b's router crashes after answering a's call and before relaying its
    announcement; the rebuilt router learns the order from a's next request (carried back) and
    b's backups execute b's messages in b's primary's order, without a state transfer."""
    def scenario(carry: bool) -> Tuple[Group, Group]:
        b = Group("b", cfg(relay_delay_ticks=0, null_message_ticks=5), n=3)
        a = Group("a", cfg(), n=2, peers={"b": b})
        c = ClientCore("c")
        a.router.submit(c.request("a", "fwd", payload=("b", 7)))
        a.pump()  # a's primary calls b; b's primary executes and replies; copies reached b's backups
        assert b.order["b-r0"] and not b.order["b-r1"]
        b.router = RouterCore.rebuilt("b", b.cfg, b.members, view=1, next_replica_index=3, now=b.now)
        if carry:  # a's next call to b carries b's announcement back
            nreq = next(r for _, _, d in b.sent for r in d.requests)
            a_primary = a.reps["a-r0"]
            a_primary.deliver(Deliver(view=1, requests=(c.request("a", "fwd", payload=("b", 1)),)))
            ex = a_primary.next_effect()
            assert isinstance(ex, Execute)
            again, send = a_primary.nested_request("b", "add", 1)
            assert send and [x.msg_id for x in again.peer_announcements] == [nreq.msg_id]
            b.router.submit(again)
        b.settle(5)
        return a, b

    _, b = scenario(carry=True)
    assert b.router.phase == Phase.NORMAL and b.router.counts["resyncs"] == 0
    assert b.order["b-r1"][:1] == b.order["b-r2"][:1] == b.order["b-r0"][:1]
    # without it, the order still comes back from the surviving primary's retained executed log
    # (claim 65): the backups catch up without a state transfer either
    _, b = scenario(carry=False)
    assert b.router.phase == Phase.NORMAL and b.router.counts["resyncs"] == 0
    assert b.order["b-r1"][:1] == b.order["b-r2"][:1] == b.order["b-r0"][:1]


# =====================================================================================
# Claims 65, 69: recovery from the surviving replicas (and from the peer group).
# =====================================================================================


def test_new_primary_gets_messages_and_order_from_surviving_replicas() -> None:
    """Claim 65: the primary dies; the router queries the survivors, merges the requests and
    announcements they hold, installs a view led by the most up-to-date one, which replays the
    announced order and then schedules the rest."""
    g = Group("g", cfg(relay_delay_ticks=0, null_message_ticks=1, query_on_failover=True), n=3)
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=10 ** i) for i in range(4)]
    g.router.submit(reqs[0])
    g.router.submit(reqs[1])
    g.pump(3)  # positions 1, 2 reach everyone
    g.deaf = {"g-r1"}  # g-r1 (next in rank) stops hearing: it lags behind
    g.router.submit(reqs[2])
    g.pump(3)  # position 3: executed by r0 and r2 only
    g.deaf = {"g-r0"}
    g.router.submit(reqs[3])  # held by the survivors, never executed by the old primary
    g.router.on_failure("g-r0")
    assert g.router.phase == Phase.RECOVERING
    r = g.router.ready()
    assert sorted(r.queries) == ["g-r1", "g-r2"] and not r.sends  # nothing is sent while recovering
    reports = {m: g.reps[m].state_report() for m in r.queries}
    assert reports["g-r1"].executed_position == 2 and reports["g-r2"].executed_position == 3
    for rep in reports.values():
        g.router.on_state_report(rep)
    assert g.router.phase == Phase.NORMAL
    assert g.router.members == ["g-r2", "g-r1"]  # the most advanced survivor leads, not the next in rank
    g.deaf = set()
    g.settle(6)
    assert g.order["g-r1"] == g.order["g-r2"] == mids(reqs)
    assert g.order["g-r0"] == mids(reqs[:3])  # the new order extends the old primary's
    assert g.state["g-r1"] == g.state["g-r2"] == 1111
    assert [r.msg_id for _, r in g.released] == mids(reqs)  # every reply once


def test_semi_active_router_that_holds_the_log_fails_over_without_asking() -> None:
    """The same failure without ``query_on_failover``: every request and announcement a
    survivor could hold passed through this router, so it installs the new view at once
    (no state queries, no round trip), led by the survivor that acknowledged the most."""
    g = Group("g", cfg(relay_delay_ticks=0, null_message_ticks=1), n=3)
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=10 ** i) for i in range(4)]
    g.router.submit(reqs[0])
    g.router.submit(reqs[1])
    g.pump(3)
    g.deaf = {"g-r1"}
    g.router.submit(reqs[2])
    g.pump(3)
    g.deaf = {"g-r0"}
    g.router.submit(reqs[3])
    g.router.on_failure("g-r0")
    assert g.router.phase == Phase.NORMAL
    assert g.router.members == ["g-r2", "g-r1"]
    assert g.router.counts["recovery_messages"] == 0 and g.router.counts["failovers"] == 1
    g.deaf = set()
    g.settle(6)
    assert g.router.counts["recovery_messages"] == 0  # no state query was ever sent
    assert g.order["g-r1"] == g.order["g-r2"] == mids(reqs)
    assert g.state["g-r1"] == g.state["g-r2"] == 1111
    assert [r.msg_id for _, r in g.released] == mids(reqs)


def test_new_primary_replays_announced_order_and_nondeterministic_values() -> None:
    """Claim 65 plus determinism: a backup promoted while it holds announced but unexecuted
    messages replays them in the announced order with the values the old primary chose."""
    g = Group("g", cfg(relay_delay_ticks=0, null_message_ticks=1), n=2)
    c = ClientCore("c")
    stamps = [c.request("g", "stamp") for _ in range(3)]
    for r in stamps:
        g.router.submit(r)
    g.pump()  # the primary executes all three; the backup has the copies, not the order
    backup = g.reps["g-r1"]
    backup.deliver(Deliver(view=1, announcements=tuple(
        Announcement("g", 1, i + 1, stamps[i].msg_id, g.nondet["g-r0"][i]) for i in range(3))))
    backup.deliver(Deliver(view=2, new_view=NewView(2, ("g-r1",))))  # promoted before executing
    assert backup.role == Role.PRIMARY
    replays = []
    while (e := backup.next_effect()) is not None:
        assert isinstance(e, Execute)
        replays.append((e.request.msg_id, e.replay, e.nondet))
        backup.executed(e.request.msg_id, Outcome(True, None))
    assert replays == [(stamps[i].msg_id, True, g.nondet["g-r0"][i]) for i in range(3)]


def test_rebuilt_callee_router_recovers_order_from_the_caller_replicas() -> None:
    """Claims 65, 69: b's primary and b's router are both gone. The rebuilt router queries the
    surviving replicas (they hold the request, not its order) and obtains the order, with the
    value the dead primary chose, from a replica of the calling group a
    (``ReplicaCore.carried_for`` -> ``RouterCore.on_peer_announcements``)."""
    def scenario(from_peers: bool) -> Tuple[Group, Group]:
        b = Group("b", cfg(relay_delay_ticks=0, null_message_ticks=5), n=3)
        a = Group("a", cfg(), n=2, peers={"b": b})
        a.router.submit(ClientCore("c").request("a", "fwd", payload=("b", 0, "stamp")))
        a.pump()  # b-r0 executes stamp() at position 1; b's backups hold the copy, not the order
        assert len(b.order["b-r0"]) == 1 and not b.order["b-r1"] and not b.order["b-r2"]
        held = a.reps["a-r0"].carried_for("b")
        assert [(x.position, x.nondet) for x in held] == [(1, tuple(b.nondet["b-r0"][0]))]
        b.deaf = {"b-r0"}  # the old primary is gone: only the survivors are in the rebuilt view
        b.router = RouterCore.rebuilt("b", b.cfg, ("b-r1", "b-r2"), view=1, next_replica_index=3, now=b.now)
        if from_peers:
            b.router.on_peer_announcements(held)
        b.settle(5)
        assert b.router.phase == Phase.NORMAL and b.router.counts["recovery_messages"] == 2  # survivors asked
        return a, b

    a, b = scenario(from_peers=True)
    assert b.order["b-r1"] == b.order["b-r2"] == b.order["b-r0"]
    assert b.nondet["b-r1"] == b.nondet["b-r2"] == b.nondet["b-r0"]  # replayed, not chosen again
    assert b.state["b-r1"] == b.state["b-r2"] == b.state["b-r0"] == a.state["a-r0"]  # what a was told
    assert b.router.counts["resyncs"] == 0
    # the control: without the peer group's announcements the new primary chooses its own value,
    # and b's state no longer matches the answer a's replicas acted on
    a, b = scenario(from_peers=False)
    assert b.nondet["b-r1"] != b.nondet["b-r0"] and b.state["b-r1"] != a.state["a-r0"]


# =====================================================================================
# Fencing, transitions, passive style.
# =====================================================================================


def test_deposed_primary_is_fenced_by_view_number() -> None:
    """A primary removed from the view (e.g. it was only slow) cannot release replies or
    announce an order any more; its late Delivers are dropped by the view check."""
    g = Group("g", cfg(), n=3)
    c = ClientCore("c")
    g.router.submit(c.request("g", "add", payload=1))
    g.settle(3)
    g.router.on_failure("g-r0")
    g.settle(3)
    late = c.request("g", "add", payload=2)
    stale = Delivered("g-r0", 1, replies=(Reply(late.msg_id, "g", 1, 2, Outcome(True, 3)),),
                      announcements=(Announcement("g", 1, 2, late.msg_id),))
    before = g.router.counts["fenced"]
    g.router.on_delivered(stale)
    assert g.router.counts["fenced"] == before + 1
    assert g.router.lookup(late.msg_id)[0] == "unknown"
    assert 2 not in g.router.order


def test_transition_tables_are_the_only_legal_moves() -> None:
    """docs/protocol.md reproduces these tables; this pins them."""
    assert {(r.value, e): n.value for (r, e), n in REPLICA_TRANSITIONS.items()} == {
        ("primary", "view_primary"): "primary", ("primary", "view_removed"): "fenced",
        ("backup", "view_primary"): "primary", ("backup", "view_backup"): "backup",
        ("backup", "view_removed"): "fenced", ("backup", "join"): "backup", ("joining", "join"): "backup",
        ("joining", "view_removed"): "fenced", ("fenced", "join"): "backup",
        ("fenced", "view_removed"): "fenced",
    }
    assert {(p.value, e): n.value for (p, e), n in ROUTER_TRANSITIONS.items()} == {
        ("normal", "primary_failed"): "recovering", ("normal", "backup_failed"): "normal",
        ("recovering", "primary_failed"): "recovering", ("recovering", "backup_failed"): "recovering",
        ("recovering", "recovered"): "normal", ("normal", "all_failed"): "lost",
        ("recovering", "all_failed"): "lost",
    }


def test_passive_backups_log_and_take_over_from_checkpoint_plus_log() -> None:
    """Claim 1 (passive style): backups do not execute; they keep the primary's checkpoint
    (every N messages) and the announced log; on takeover the new primary restores the
    checkpoint and replays the log in the announced order."""
    g = Group("g", cfg(style="passive", checkpoint_every_messages=3, relay_delay_ticks=0,
                       null_message_ticks=1), n=3)
    c = ClientCore("c")
    reqs = [c.request("g", "add", payload=10 ** i) for i in range(5)]
    for r in reqs:
        g.router.submit(r)
        g.pump()
    g.settle(4)
    for m in ("g-r1", "g-r2"):
        assert g.order[m] == [] and g.state[m] == 0  # logged, not executed
        assert g.reps[m].checkpoint is not None and g.reps[m].checkpoint.position == 3
        assert g.reps[m].acked_position() == 5  # the log covers positions 4, 5
    g.router.on_failure("g-r0")
    g.deaf = {"g-r0"}
    g.settle(4)
    new = g.router.primary
    assert new in ("g-r1", "g-r2")
    assert ("restore", new, "3") in g.events
    assert g.order[new] == mids(reqs[3:])  # replayed the log after the checkpoint
    assert g.state[new] == g.state["g-r0"] == 11111
    more = c.request("g", "add", payload=100000)
    g.router.submit(more)
    assert g.wait(more.msg_id).outcome.value == 111111

"""A seeded simulator of interleaved coroutines in one group: the resume order under test.

The fault simulator (:mod:`ftactors.testing.cluster`) runs one step per message. This one runs
the real :class:`~ftactors.core.ReplicaCore` of a primary and its backups with *async* methods:
generators that suspend on outside events (a nested reply, a timer) and resume when the event
arrives. What a seed decides:

* the workload: each message waits on 1-3 events; an event is a timer, a nested reply, or a
  *re-entrant* reply that exists only once a later message of the same group has finished
  (A -> B -> A: the group must start that message while the first one is suspended);
* when each event arrives at each replica: at the primary first, at each backup later and in
  its own order (replies copies and timers reach replicas at different times);
* when the announcements reach each backup (batched, delayed), and whether and when the primary
  crashes (the first backup then takes over with every announcement the router holds).

Every method folds the values it receives into the state in an order-sensitive way, so a replica
that resumes coroutines in another order than the primary's computes another state. Invariants:

* ``divergence``: a replica's state digest at each position equals the digest of the replica
  that chose that position (I2 of the fault simulator, per step);
* ``I3``: a message finishes once per replica, and a released reply never changes;
* ``I5``: every message finishes on every live replica within ``ticks_max``.

``resume_in_arrival_order=True`` plants the bug the issue names: backups resume whichever
suspended coroutine's event arrived first there, not the one the primary announced.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Dict, Generator, List, Optional, Tuple

from ftactors.core import (
    CoreConfig,
    Deliver,
    Execute,
    Kind,
    MsgId,
    NewView,
    Outcome,
    ReplicaCore,
    Request,
    Role,
)
from ftactors.core.messages import Announcement
from ftactors.testing.hosts import InvariantViolation

GROUP = "G"


@dataclass(frozen=True, slots=True)
class Await:
    """What a simulated async method waits for: an event, named the same on every replica."""

    event: str


@dataclass(slots=True)
class _Job:
    """One message of the workload: the events it waits for, in order."""

    msg_id: MsgId
    events: Tuple[str, ...]


def _method(job: _Job, state: Dict[str, int]) -> Generator[Await, int, int]:
    """The async method: fold each awaited value into the state, order-sensitively."""
    acc = len(job.events)
    for event in job.events:
        value = yield Await(event)
        state["h"] = (state["h"] * 1_000_003 + value + job.msg_id.seq) % 2_147_483_647
        acc = acc * 31 + value
    state["done"] += 1
    return acc


def _value(event: str) -> int:
    return int(hashlib.sha256(event.encode()).hexdigest()[:6], 16)


@dataclass
class _Replica:
    rid: str
    core: ReplicaCore
    state: Dict[str, int] = field(default_factory=lambda: {"h": 1, "done": 0})
    gens: Dict[MsgId, Generator[Await, int, int]] = field(default_factory=dict)
    waits: Dict[MsgId, str] = field(default_factory=dict)  # the event each suspended message awaits
    arrived: Dict[str, int] = field(default_factory=dict)  # event -> arrival number here
    blocked: Optional[Execute] = None  # a resume whose event has not arrived here yet
    finished: Dict[MsgId, int] = field(default_factory=dict)
    alive: bool = True


@dataclass(frozen=True)
class InterleaveResult:
    """What one seed did."""

    seed: int
    messages: int
    positions: int
    resumes: int
    crashed: bool
    overlaps: int  # messages the primary started while others were suspended (re-entrance)


class InterleaveSim:
    """One seeded run. See the module docstring.

    Args:
        seed: decides everything.
        messages: messages in the workload.
        replicas: primary plus backups.
        crash: let the seed crash the primary once.
        resume_in_arrival_order: the planted bug (backups ignore the announced resume order).
        ticks_max: liveness bound.
    """

    def __init__(self, seed: int, messages: int = 12, replicas: int = 3, crash: bool = True,
                 resume_in_arrival_order: bool = False, ticks_max: int = 5_000) -> None:
        self.rng = random.Random(seed)
        self.seed, self.ticks_max, self.bug = seed, ticks_max, resume_in_arrival_order
        self.now = 0
        self._arrivals = 0
        rids = tuple(f"r{i}" for i in range(replicas))
        view = NewView(1, rids)
        config = CoreConfig(style="semi-active", suspended_max=messages + 1)
        self.replicas = [_Replica(r, ReplicaCore(GROUP, r, config, initial_view=view)) for r in rids]
        self.jobs = self._workload(messages)
        self.due: Dict[str, int] = {}  # timers: event -> tick it fires at the primary
        self.after: Dict[str, MsgId] = {}  # re-entrant replies: event -> the message that must finish first
        self.arrive_at: List[Tuple[int, str, str]] = []  # (tick, replica, event)
        self.router_log: Dict[int, Announcement] = {}  # announcements the router holds
        self.in_flight: List[Tuple[int, str, Announcement]] = []  # (tick, backup, announcement)
        self.released: Dict[MsgId, Any] = {}
        self.digests: Dict[int, str] = {}  # position -> digest of the replica that chose it
        self.crash_at = self.rng.randrange(5, 60) if crash and self.rng.random() < 0.7 else None
        self.crashed = False
        self.resumes = 0
        self.overlaps = 0
        self._plan_events()

    # ------------------------------------------------------------ workload

    def _workload(self, n: int) -> List[_Job]:
        jobs = []
        for seq in range(1, n + 1):
            k = self.rng.randint(1, 3)
            jobs.append(_Job(MsgId("client", seq), tuple(f"m{seq}.e{i}" for i in range(k))))
        return jobs

    def _plan_events(self) -> None:
        for idx, job in enumerate(self.jobs):
            for event in job.events:
                kind = self.rng.random()
                later = self.jobs[idx + 1:]
                if kind < 0.35 and later:  # re-entrant: a later message of this group must finish first
                    self.after[event] = self.rng.choice(later).msg_id
                elif kind < 0.65:  # a timer
                    self.due[event] = self.rng.randint(1, 25)
                else:  # a nested reply: arrives some ticks after it was asked for
                    self.due[event] = -self.rng.randint(1, 12)

    def _requests(self) -> Tuple[Request, ...]:
        return tuple(Request(kind=Kind.SYNC_REQUEST, msg_id=j.msg_id, group=GROUP, method="run", payload=j)
                     for j in self.jobs)

    # --------------------------------------------------------------- run

    def run(self) -> InterleaveResult:
        """Run to completion.

        Returns:
            A summary.

        Raises:
            InvariantViolation: an invariant broke (the message names it).
        """
        reqs = self._requests()
        for rep in self.replicas:
            rep.core.deliver(Deliver(view=1, requests=reqs))
        while self.now < self.ticks_max:
            self.now += 1
            self._tick()
            live = [r for r in self.replicas if r.alive]
            if all(len(r.finished) == len(self.jobs) for r in live) and not self.in_flight:
                self._check_end(live)
                return InterleaveResult(self.seed, len(self.jobs), max(self.digests), self.resumes, self.crashed,
                                         self.overlaps)
        raise InvariantViolation(f"I5: seed {self.seed}: not every message finished within {self.ticks_max} ticks "
                                 f"({[len(r.finished) for r in self.replicas if r.alive]} of {len(self.jobs)})")

    def _tick(self) -> None:
        if self.crash_at is not None and self.now == self.crash_at and not self.crashed:
            self._crash_primary()
        for when, rid, event in [a for a in self.arrive_at if a[0] <= self.now]:
            self.arrive_at.remove((when, rid, event))
            rep = self._replica(rid)
            self._arrivals += 1
            rep.arrived.setdefault(event, self._arrivals)
        for when, rid, ann in [a for a in self.in_flight if a[0] <= self.now]:
            self.in_flight.remove((when, rid, ann))
            rep = self._replica(rid)
            if rep.alive:
                rep.core.deliver(Deliver(view=rep.core.view, announcements=(ann,)))
        order = [r for r in self.replicas if r.alive]
        self.rng.shuffle(order)
        for rep in order:
            self._drive(rep)

    def _replica(self, rid: str) -> _Replica:
        return next(r for r in self.replicas if r.rid == rid)

    # ------------------------------------------------------------- a host

    def _drive(self, rep: _Replica) -> None:
        for _ in range(4 * len(self.jobs) + 8):  # bounded: a few steps per tick
            if rep.blocked is not None:
                if not self._try_resume(rep, rep.blocked):
                    return
                continue
            if rep.core.role == Role.PRIMARY:
                ready = sorted((m for m, e in rep.waits.items() if e in rep.arrived),
                               key=lambda m: rep.arrived[rep.waits[m]])
                rep.core.set_resumable(tuple(ready))
            ex = rep.core.next_effect()
            if ex is None:
                break
            assert isinstance(ex, Execute), f"unexpected effect {ex!r}"
            if ex.resume:
                if not self._try_resume(rep, ex):
                    rep.blocked = ex
                    return
            else:
                if rep.core.role == Role.PRIMARY and rep.core.suspended:
                    self.overlaps += 1
                job = ex.request.payload
                gen = _method(job, rep.state)
                rep.gens[job.msg_id] = gen
                self._step(rep, ex, gen, None, None)
        self._collect(rep)

    def _try_resume(self, rep: _Replica, ex: Execute) -> bool:
        mid = ex.request.msg_id
        if rep.core.role == Role.PRIMARY and not ex.replay:
            wake = rep.waits[mid]
        else:
            wake = ex.wake
            if wake not in rep.arrived:
                return False  # the reply is still on its way here: wait for it
            if self.bug:  # planted: resume whichever coroutine's event arrived first here
                first = min((m for m, e in rep.waits.items() if e in rep.arrived),
                            key=lambda m: rep.arrived[rep.waits[m]])
                mid, wake = first, rep.waits[first]
        rep.blocked = None
        gen = rep.gens[mid]
        del rep.waits[mid]
        self.resumes += 1
        self._step(rep, ex, gen, _value(wake), wake)
        return True

    def _step(self, rep: _Replica, ex: Execute, gen: Generator[Await, int, int], value: Optional[int],
              wake: Optional[str]) -> None:
        owner = next(m for m, g in rep.gens.items() if g is gen)  # ex's message, unless the planted bug
        try:
            awaited = gen.send(value)  # type: ignore[arg-type]
        except StopIteration as stop:
            if owner in rep.finished:
                raise InvariantViolation(f"I3: {rep.rid} finished {owner} twice")
            rep.finished[owner] = stop.value
            self._check_digest(rep, ex.position)
            rep.core.executed(ex.request.msg_id, Outcome(True, stop.value), (), wake)
            return
        rep.waits[owner] = awaited.event
        self._plan_arrival(rep, awaited.event)
        self._check_digest(rep, ex.position)
        rep.core.suspend(ex.request.msg_id, (), wake)

    def _plan_arrival(self, rep: _Replica, event: str) -> None:
        """The primary asked for ``event``: schedule when it arrives at each replica."""
        if rep.core.role != Role.PRIMARY or any(a[2] == event for a in self.arrive_at):
            return
        if event in self.after:
            return  # arrives once the message it depends on finishes (see _collect)
        delay = abs(self.due[event])
        for r in self.replicas:
            if event not in r.arrived:
                lag = 0 if r is rep else self.rng.randint(0, 30)
                self.arrive_at.append((self.now + delay + lag, r.rid, event))

    def _check_digest(self, rep: _Replica, position: int) -> None:
        digest = f"{rep.state['h']}:{rep.state['done']}"
        ref = self.digests.setdefault(position, digest)
        if ref != digest:
            raise InvariantViolation(f"divergence: seed {self.seed}: {rep.rid} ({rep.core.role.value}) has state "
                                     f"{digest} at position {position}, the primary that chose it had {ref}")

    def _collect(self, rep: _Replica) -> None:
        """The primary's output goes to the router, which relays announcements to the backups."""
        if rep.core.role != Role.PRIMARY:
            rep.core.take_delivered()
            return
        out = rep.core.take_delivered()
        for ann in out.announcements:
            self.router_log[ann.position] = ann
            for r in self.replicas:
                if r is not rep and r.alive:
                    self.in_flight.append((self.now + self.rng.randint(0, 8), r.rid, ann))
        for reply in out.replies:
            old = self.released.setdefault(reply.msg_id, reply.outcome.value)
            if old != reply.outcome.value:
                raise InvariantViolation(f"I3: reply of {reply.msg_id} released as {old}, then {reply.outcome.value}")
            for event, dep in self.after.items():  # re-entrant replies exist once their callee finished
                if dep == reply.msg_id and not any(a[2] == event for a in self.arrive_at):
                    for r in self.replicas:
                        if event not in r.arrived:
                            lag = 0 if r is rep else self.rng.randint(0, 30)
                            self.arrive_at.append((self.now + 1 + lag, r.rid, event))

    def _crash_primary(self) -> None:
        old = next(r for r in self.replicas if r.alive and r.core.role == Role.PRIMARY)
        old.alive = False
        self.crashed = True
        self.in_flight = [a for a in self.in_flight if a[1] != old.rid]
        members = tuple(r.rid for r in self.replicas if r.alive)
        view = NewView(old.core.view + 1, members)
        anns = tuple(self.router_log[p] for p in sorted(self.router_log))
        for r in self.replicas:
            if r.alive:  # every announcement the router holds, with the new view (its recovery)
                self.in_flight = [a for a in self.in_flight if a[1] != r.rid]
                r.core.deliver(Deliver(view=view.view, announcements=anns, new_view=view))
        # positions the dead primary chose but never announced are chosen again by the new one
        for pos in [p for p in self.digests if p not in self.router_log]:
            del self.digests[pos]

    def _check_end(self, live: List[_Replica]) -> None:
        states = {r.rid: dict(r.state) for r in live}
        if len({(s["h"], s["done"]) for s in states.values()}) != 1:
            raise InvariantViolation(f"divergence: seed {self.seed}: final states differ: {states}")
        for r in live:
            for mid, value in r.finished.items():
                if mid in self.released and self.released[mid] != value:
                    raise InvariantViolation(f"I3: {r.rid} computed {value} for {mid}, released {self.released[mid]}")


def run_seeds(seeds: int, start: int = 0, **kw: Any) -> List[InterleaveResult]:
    """Run ``seeds`` seeds from ``start``; the first violation propagates, naming its seed.

    Args:
        seeds: how many.
        start: the first seed.
        **kw: :class:`InterleaveSim` options.

    Returns:
        One summary per seed.
    """
    return [InterleaveSim(s, **kw).run() for s in range(start, start + seeds)]


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m ftactors.testing.interleave [--seeds N] [--start S] [--messages M] [--planted-bug]``.

    Returns:
        0 if every seed held its invariants; 1 after printing the first violation and the
        command that replays it.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ftactors.testing.interleave", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--messages", type=int, default=12)
    parser.add_argument("--planted-bug", action="store_true", help="backups resume in arrival order")
    args = parser.parse_args(argv)
    results = []
    for seed in range(args.start, args.start + args.seeds):
        try:
            results.append(InterleaveSim(seed, messages=args.messages, resume_in_arrival_order=args.planted_bug).run())
        except InvariantViolation as exc:
            print(f"seed {seed}: {exc}")
            bug = " --planted-bug" if args.planted_bug else ""
            print(f"replay: python -m ftactors.testing.interleave --seeds 1 --start {seed} "
                  f"--messages {args.messages}{bug}")
            return 1
    print(f"{len(results)} seeds, {sum(r.positions for r in results)} positions, "
          f"{sum(r.resumes for r in results)} resumes, {sum(r.overlaps for r in results)} re-entrant starts, "
          f"{sum(r.crashed for r in results)} primary crashes: every invariant held")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

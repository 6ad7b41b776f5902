"""Invariants I1-I8, checked after every step and at the end of a run.

* I1 agreement: the lineage logs (position, msg_id) of a group's members are
  prefixes of one another; at quiescence the members' states are equal.
* I2 linearizability: replaying a group's final order through a fresh model
  (nested calls answered by the backend's replay) gives exactly the values
  clients received, and that order respects real time. Small histories are
  also checked by the Wing-Gong search (:mod:`ftactors.testing.linearizability`).
* I3 exactly once: no message executes twice in a lineage; a router releases
  a reply once per incarnation; all copies of a reply agree.
* I4 durability: an operation whose reply a client received is in the group's
  order at that position, for good.
* I5 no extra messages when fault-free: no failover machinery runs, every
  announcement reaches each backup exactly once, no backup pulls a nested reply
  copy (nested calls that raised included), and a null message is never sent
  while request copies wait for that backup. With ``replace_backup`` one backup
  of each group is killed and replaced by state transfer: the view change and
  the join are allowed, a pull still is not.
* I6 liveness: checked by :meth:`Simulator.run` (bounded completion after faults stop).
* I7 bounded retention: at quiescence a router retains no request that every
  member has executed (its log is trimmed; recoveries do not re-grow it).
* I8 bounded structures: after every step, no queue, map or batch of a replica or router
  core is past its ``*_max`` (``CoreConfig``): sources (the exactly-once table, sequence and
  fair scheduling), replies kept, pending requests, announcements held, recent executions,
  carried announcements, reply copies, in-flight Delivers, batch sizes. Evictions of a full
  structure are counted (``bound_wraps``, per bound ``wraps:<name>``).
* I9 same outcome: every execution of a message in a group's lineage has the same outcome
  (value or exception: an application exception, or ``MethodAbortedError`` for ``SystemExit``
  and ``KeyboardInterrupt``) and draws the same ``now()`` / ``random()`` values, those the
  primary announced (``Execute.nondet``), each drawing task (stream) the same ones in the same order.
* I10 one client's order, one-way calls once: each one-way call takes effect exactly once (it
  is in its group's order once, where its acknowledgement said); with a scheduler that keeps
  arrival order, one client's calls (one-way or not) run in the order the client issued them.
* I12 cancelled calls (``ray.cancel``, ``SimOptions.p_cancel``): a call its router reported given up
  (``RouterHost.abandon`` returned True) never executes afterwards, whatever copy of it comes later (a
  rebuilt router may give up a call that ran before, executed by every member and trimmed, which it
  never heard of: harmless, the caller cancelled it and settles it; a replica may replay it later); a
  cancelled call executes at most once (I3); a caller settles a cancelled call its router had taken only
  once told it ran (row 82), and some replica executed it by then; and the caller's later calls, held at that router
  incarnation only for calls it gave up, go on within ``CANCEL_RELEASE_TICKS_MAX`` ticks of the
  notice and of their arrival (they do not wait ``sequence_gap_ticks``); at quiescence every cancelled
  call of a live client whose group lives is settled (row 88: a notice with no settling answer is sent again).
* I13 a group's end (``SimOptions.group_end``, docs/faults.md rows 86 and 89): once the groups end (collected
  with their routers, ``RouterHost.end``, or their routers gone for good), every replica of them stops
  within ``Simulator.end_ticks_max`` ticks: members, joiners, replacements being spawned, warm spares,
  retired replicas Ray had not stopped yet; none is leaked. A collected group's router host names every
  replica that runs (the control plane lists a replica's name only ``stale_lookup_ticks`` after its start):
  only one still being created is left to its orphan watch.
* I14 the orphan rule (``OrphanWatch``): a replica exits by it only once its router is gone for good, never
  while the router exists (a router being restarted, or one that did not call it for a while).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from ftactors.core import Deliver, MsgId, Phase, Role
from ftactors.testing.events import HistoryOp
from ftactors.testing.hosts import InvariantViolation, ReplicaHost
from ftactors.testing.linearizability import check_history
from ftactors.testing.models import LogEntry, NestedCall, replay_groups

if TYPE_CHECKING:  # pragma: no cover
    from ftactors.testing.cluster import Simulator

#: I12: ticks within which a call held only for calls its caller gave up goes on (the router's next tick)
CANCEL_RELEASE_TICKS_MAX = 2
#: histories up to this many operations per group also get the Wing-Gong search
WING_GONG_OPS_MAX = 12


def _outcome(entry: LogEntry) -> str:
    return "returned" if entry.raised is None else f"raised {entry.raised.kind}"


class Checker:
    """Incremental and final invariant checks of one simulation.

    Args:
        sim: the simulator it watches.
    """

    def __init__(self, sim: "Simulator") -> None:
        self.sim = sim
        self.acked: Dict[str, Dict[int, MsgId]] = {g: {} for g in ("store", "front")}
        self.dirty: set = set()
        self.oldest: Dict[Tuple[str, str], Any] = {}  # (owner, structure) -> its oldest key when last full
        self.first_run: Dict[MsgId, int] = {}  # message -> the tick some replica first executed it (I12)

    # ------------------------------------------------------------ per step

    def _members(self, group: str) -> List[ReplicaHost]:
        core = self.sim.routers[group].core
        if core is None:
            return []
        hosts = self.sim.replicas[group]
        return [hosts[m] for m in core.members if hosts[m].alive and hosts[m].core.role in (Role.PRIMARY, Role.BACKUP)]

    def on_executed(self, host: ReplicaHost, entry: LogEntry) -> None:
        """I4 at once: a member must not execute another message at an acknowledged position."""
        self.dirty.add(host.group)
        first = self.first_run.setdefault(entry.msg_id, self.sim.now)
        gave_up = self.sim.abandoned.get(entry.msg_id)
        if gave_up is not None and first >= gave_up[2]:
            raise InvariantViolation(f"I12: {host.rid} executes {entry.msg_id} at {entry.position}, first run at tick "
                                     f"{first}, after router incarnation {gave_up[1]} reported it given up at tick "
                                     f"{gave_up[2]} (ray.cancel)")
        want = self.acked[host.group].get(entry.position)
        if want is not None and want != entry.msg_id and host in self._members(host.group):
            raise InvariantViolation(f"I4: {host.rid} executes {entry.msg_id} at {entry.position}, "
                                     f"where the acknowledged {want} is")

    def on_cancel_settled(self, msg_id: MsgId) -> None:
        """I12: a caller settles a cancelled call its router had taken (its ``ack_below`` may pass it) only
        once the router told it the call ran (docs/faults.md row 82): some replica executed it by then.

        Raises:
            InvariantViolation: no replica has executed it.
        """
        if msg_id not in self.first_run:
            raise InvariantViolation(f"I12: {msg_id.source} settles its cancelled {msg_id} at tick {self.sim.now}, "
                                     f"told it ran, but no replica executed it")

    def on_group_collected(self, group: str, stop: List[str]) -> None:
        """I13: a collected group's router host names every replica of the group that runs (``RouterHost.end``):
        none is left to its orphan watch (a replica still being created is, as it has no name yet).

        Raises:
            InvariantViolation: a running replica is not named.
        """
        left = sorted(rid for rid, h in self.sim.replicas[group].items() if h.alive and rid not in stop)
        if left:
            raise InvariantViolation(f"I13: {group}'s end at tick {self.sim.now} leaves {left} running "
                                     f"(it stops {stop})")

    def on_orphan_exit(self, host: ReplicaHost) -> None:
        """I14: ``host`` exits by the orphan rule: its router must be gone for good.

        Raises:
            InvariantViolation: the router exists (running, or being restarted).
        """
        if host.group not in self.sim.gone:
            router = self.sim.routers[host.group]
            state = "restarting" if router.host is None else "running"
            raise InvariantViolation(f"I14: {host.rid} exited by the orphan rule at tick {self.sim.now} while its "
                                     f"router exists ({state}, incarnation {router.incarnation})")

    def on_client_reply(self, op: HistoryOp) -> None:
        """I4: remember where an acknowledged operation was executed; it must stay there."""
        if op.position <= 0:
            return
        acked = self.acked[op.group]
        prev = acked.setdefault(op.position, op.msg_id)
        if prev != op.msg_id:
            raise InvariantViolation(f"I4: position {op.position} of {op.group} acknowledged for {prev} and {op.msg_id}")
        self._check_acknowledged(op.group, {op.position: op.msg_id})

    def on_send(self, group: str, rid: str, deliver: Deliver) -> None:
        """I5: a null message must not be sent while request copies wait for that replica; I8: batch size."""
        self.on_send_batch(group, rid, deliver)
        if not deliver.is_null or not deliver.announcements:
            return
        core = self.sim.routers[group].core
        link = core.links.get(rid) if core is not None else None
        if link is not None and link.requests:
            raise InvariantViolation(f"I5: null message to {rid} while {len(link.requests)} request copies wait "
                                     f"for it (announcements could ride on them)")

    def on_send_batch(self, group: str, rid: str, deliver: Deliver) -> None:
        """I8: a Deliver carries at most ``batch_max`` requests."""
        cap = self.sim.groups[group].config.batch_max
        if len(deliver.requests) > cap:
            raise InvariantViolation(f"I8: router of {group} sent {len(deliver.requests)} requests to {rid} "
                                     f"in one Deliver, past batch_max={cap}")
        if len(deliver.requests) == cap:
            self.sim.count("full:batch_max")

    def after_step(self) -> None:
        """I1 after every step in which something executed: members' logs are prefix-compatible;
        I8 after every step: no structure past its bound."""
        for group in self.dirty:
            self._check_prefixes(group)
        self.dirty.clear()
        self.check_bounds()
        if self.sim.abandoned:
            self.check_cancel_stalls()

    def check_cancel_stalls(self) -> None:
        """I12: a caller's later calls held at its router only for calls it gave up (``RouterHost.abandon``
        reported them given up at this incarnation), or calls the router knows, go on within
        ``CANCEL_RELEASE_TICKS_MAX`` ticks of the last notice and of their arrival. A router starved of
        CPU is judged from its waking.

        Raises:
            InvariantViolation: a held call waits longer (for ``sequence_gap_ticks``).
        """
        sim = self.sim
        for group, router in sim.routers.items():
            core = router.core
            if core is None or router.starved_until >= sim.now:
                continue
            intake = core.intake
            for src, held in intake.held.items():
                expect = intake.expect.get(src)
                if not held or expect is None or expect >= min(held):
                    continue
                notices = []
                for seq in range(expect, min(held)):
                    mid = MsgId(src, seq)
                    gave_up = sim.abandoned.get(mid)
                    if gave_up is not None and gave_up[:2] == (group, router.incarnation):
                        notices.append(gave_up[2])
                    elif not (mid in intake.log.requests or mid in intake.replies or mid in intake.log.pos_of):
                        notices = []
                        break  # a call it does not know: the gap wait is the right one
                if not notices:
                    continue
                since = max(max(notices), min(t for _, t in held.values()), router.woke_at)
                if sim.now - since > CANCEL_RELEASE_TICKS_MAX:
                    raise InvariantViolation(f"I12: {group} holds {src}#{min(held)} for {sim.now - since} ticks, "
                                             f"waiting only for calls its caller gave up (from {src}#{expect})")

    def check_bounds(self) -> None:
        """I8: every bounded structure of every live core within its ``*_max``; count evictions.

        Raises:
            InvariantViolation: a structure past its bound.
        """
        count = self.sim.count
        for router in self.sim.routers.values():
            # not a hard cap: past log_max the router replaces its slowest backup (``_check_lag``)
            if router.core is not None and len(router.core.requests) >= router.core.config.log_max:
                count("full:log_max")
        for owner, name, size, cap, oldest in self._bounded():
            if size > cap:
                raise InvariantViolation(f"I8: {owner}: {name} holds {size}, past {cap}")
            if size == cap:
                count(f"full:{name.split(' ')[0]}")
                if oldest is not None:
                    key = (owner, name)
                    before = self.oldest.get(key)
                    if before is not None and before != oldest:  # the oldest entry was evicted
                        count("bound_wraps")
                        count(f"wraps:{name.split(' ')[0]}")
                    self.oldest[key] = oldest

    def _bounded(self) -> Iterator[Tuple[str, str, int, int, Optional[Any]]]:
        """(owner, structure named after its bound, size, bound, oldest key or None) of every live core."""
        def first(d: Any) -> Any:
            return next(iter(d)) if d else None

        for group, hosts in self.sim.replicas.items():
            cfg = self.sim.groups[group].config
            for h in hosts.values():
                if not h.alive:
                    continue
                c = h.core
                dedup = c.dedup
                yield h.rid, "reply_cache_max (exactly-once table)", len(dedup), cfg.reply_cache_max, first(dedup._done)
                yield h.rid, "sources_max (exactly-once sources)", dedup.sources(), cfg.sources_max, \
                    first(dedup._sources)
                yield h.rid, "sources_max (next_seq)", len(c.next_seq), cfg.sources_max, first(c.next_seq)
                yield h.rid, "pending_max (requests held)", len(c.requests), c.requests_max(), None
                yield h.rid, "log_max (announcements held)", len(c.order), cfg.log_max, None
                yield h.rid, "retain_executed_max (recent executions)", len(c._recent), cfg.retain_executed_max, \
                    first(c._recent)
                yield h.rid, "reply_cache_max (reply copies)", len(c._reply_copies), cfg.reply_cache_max, \
                    first(c._reply_copies)
                for target, carry in c._carry.items():
                    yield h.rid, f"carried_announcements_max (for {target})", len(carry), \
                        cfg.carried_announcements_max, first(carry)
        for group, router in self.sim.routers.items():
            core = router.core
            if core is None:
                continue
            cfg = core.config
            owner = f"router {group}"
            yield owner, "reply_cache_max (replies)", len(core.replies), cfg.reply_cache_max, first(core.replies)
            yield owner, "inflight_max (reply floors)", len(core.intake.reply_floor), cfg.inflight_max, first(core.intake.reply_floor)
            yield owner, "inflight_max (per-source order)", len(core.intake.expect), cfg.inflight_max, first(core.intake.expect)
            for m, link in core.links.items():
                # a link's Delivers were sent under the bound of its replica's role then (a backup promoted
                # keeps its backup's in flight): the larger bound holds at any time
                cap = max(cfg.primary_inflight_max, cfg.backup_inflight_max)
                # the poll kept for a resume, or a busy poll of a primary sitting on a Deliver (outbox)
                cap += 1 if m == core.primary and (link.suspended or link.busy_poll_out) else 0
                name = "primary_inflight_max" if m == core.primary else "backup_inflight_max"
                yield owner, f"{name} (to {m})", link.inflight, cap, None
        for client in self.sim.clients.values():
            for target, carry in client.core._carry.items():
                yield client.name, f"carried_announcements_max (client, for {target})", len(carry), \
                    client.core._carry_max, first(carry)

    def check_all(self) -> None:
        """I1 and I4 on every group, whether or not anything executed since the last check.

        ``after_step`` checks only the groups in which something executed during the
        step; this one is for checks between steps (a crash, a pause or a router
        restart changes the members without executing anything).

        Raises:
            InvariantViolation: two members' logs are not prefixes of one another, or a
                member holds another message at an acknowledged position.
        """
        for group in self.sim.groups:
            self._check_prefixes(group)
            self._check_acknowledged(group, self.acked[group])

    def _check_acknowledged(self, group: str, acked: Dict[int, MsgId]) -> None:
        for host in self._members(group):
            for position, msg_id in acked.items():
                if len(host.log) >= position and host.log[position - 1].msg_id != msg_id:
                    raise InvariantViolation(f"I4: {host.rid} has {host.log[position - 1].msg_id} at "
                                             f"{position}, acknowledged for {msg_id}")

    def _check_prefixes(self, group: str) -> None:
        logs = [(h.rid, h.log) for h in self._members(group) if h.log]
        if len(logs) < 2:
            return
        rid, longest = max(logs, key=lambda x: len(x[1]))
        for other, log in logs:
            if longest[: len(log)] != log:
                at = next(i for i, (a, b) in enumerate(zip(longest, log)) if a != b)
                mine, theirs = log[at], longest[at]
                if mine.msg_id == theirs.msg_id and mine.raised != theirs.raised:
                    raise InvariantViolation(f"I9: {group}: {other} and {rid} recorded different outcomes of "
                                             f"{mine.msg_id} at {at + 1}: {_outcome(mine)} vs {_outcome(theirs)}")
                if mine.msg_id == theirs.msg_id and mine.nondet != theirs.nondet:
                    raise InvariantViolation(f"I9: {group}: {other} and {rid} drew different now()/random() for "
                                             f"{mine.msg_id} at {at + 1}: {mine.nondet} vs {theirs.nondet} "
                                             f"(the primary's values were not replayed)")
                raise InvariantViolation(f"I1: {group}: {other} and {rid} disagree at position {at + 1}: "
                                         f"{log[at].msg_id} vs {longest[at].msg_id}")

    # ------------------------------------------------------------ final

    def final(self) -> None:
        """All invariants on the quiescent system."""
        # the callee first: a sync step answers its nested calls in place (replay_groups)
        logs: Dict[str, List[LogEntry]] = {g: self._final_log(g) for g in ("store", "front") if g in self.sim.groups}
        answers = self._check_groups(logs)
        self._check_history(answers)
        self._check_client_order(logs)
        self._check_nested(logs, answers)
        self._count_cancels(logs)
        self._check_cancels_settled()
        if not self.sim.options.faults:
            for g in self.sim.groups:
                self._check_fault_free(g)
        for g in self.sim.groups:
            self._check_retention(g)
            self._check_bounds(g)

    def _count_cancels(self, logs: Dict[str, List[LogEntry]]) -> None:
        """Count the cancelled calls that ran all the same (``cancels_ran``: the router had taken them); I12:
        those reported given up are not in their group's order (checked as they execute too)."""
        if not self.sim.cancelled:
            return
        ran = {e.msg_id for log in logs.values() for e in log if e.msg_id in self.sim.cancelled}
        for mid in ran:
            gave_up = self.sim.abandoned.get(mid)
            if gave_up is not None and self.first_run.get(mid, gave_up[2]) >= gave_up[2]:
                raise InvariantViolation(f"I12: {mid} is in the order though its router reported it given up before "
                                         f"it ran")
            if gave_up is not None:
                self.sim.count("cancels_given_up_after_run")  # a rebuilt router that had not heard of it
        self.sim.count("cancels_ran", len(ran))

    def _check_cancels_settled(self) -> None:
        """I12: at quiescence every cancelled call of a live client (its process not gone) whose group lives
        is settled: its client's ``ack_below`` passes it (the router answered a notice "given up" or "ran";
        docs/faults.md row 88). Unsettled, every replica keeps that client's later replies.

        Raises:
            InvariantViolation: a cancelled call is still unsettled.
        """
        sim = self.sim
        for mid in sorted(sim.cancelled, key=lambda m: (m.source, m.seq)):
            client = sim.clients[mid.source]
            router = sim.routers[sim.cancel_group[mid]]
            if client.exited or router.core is None or router.core.phase == Phase.LOST:
                continue
            if not client.core.settled(mid.seq):
                renotices = sim.renotices.get(mid.source)
                again = 0 if renotices is None else renotices.sent_again
                raise InvariantViolation(f"I12: {mid.source} never settles its cancelled {mid} (its ack_below stays "
                                         f"at {client.core.ack_below()}; {again} notices of its sent again)")

    def _check_bounds(self, group: str) -> None:
        """I8: no per-source structure of a replica is past its ``sources_max``."""
        bound = self.sim.groups[group].config.sources_max
        for h in self.sim.replicas[group].values():
            sources, floors, _, exempt, holds = h.core.dedup.export()[:5]
            sizes = {"dedup sources": len(sources), "dedup floors": len(floors), "dedup exemptions": len(exempt),
                     "dedup holds": len(holds), "next_seq": len(h.core.next_seq),
                     "source views": len(h.core.source_views),
                     "fair turns": len(getattr(h.core._sched, "_served", ()))}
            over = {k: v for k, v in sizes.items() if v > bound}
            if over:
                raise InvariantViolation(f"I8: {h.rid}: {over} past sources_max={bound}")

    def _check_retention(self, group: str) -> None:
        core = self.sim.routers[group].core
        if core is None:
            return
        hosts = [self.sim.replicas[group][m] for m in core.members]
        for mid in core.requests:
            position = core.pos_of.get(mid)
            if position is not None and position > core.trimmed:
                continue
            if all(h.core.dedup.status(mid) != "new" for h in hosts):
                raise InvariantViolation(f"I7: router of {group} retains {mid} (position {position}, trimmed "
                                         f"{core.trimmed}) though every member executed it")

    def _final_log(self, group: str) -> List[LogEntry]:
        members = self._members(group)
        if not members:
            raise InvariantViolation(f"I4: {group} has no live member at the end")
        self._check_prefixes(group)
        log = members[0].log
        seen = set()
        for e in log:
            if e.resume:
                continue  # a resume step of a message started earlier
            if e.msg_id in seen:
                raise InvariantViolation(f"I3: {e.msg_id} twice in the order of {group}")
            seen.add(e.msg_id)
        return log

    def _check_groups(self, logs: Dict[str, List[LogEntry]]) -> Dict[str, Dict[MsgId, Tuple[int, Any]]]:
        """I2 and I1: replay every group's order through a fresh model, nested calls answered by
        their callee's replay (in a re-entrant ring each group's replay waits on the other's), and
        compare each member's state with it.

        Returns:
            Each group's replayed answers: {msg_id: (position, value)}.

        Raises:
            InvariantViolation: a nested call missing from its callee's order (I4) or executed as
                another call (I2), orders that cannot be replayed (I2), or a member's state unlike
                the replay's (I1).
        """
        def check(callee: str, mid: MsgId, call: NestedCall, entry: LogEntry) -> None:
            if (entry.method, entry.args) != (call.method, call.args):
                raise InvariantViolation(f"I2: nested {mid} executed in {callee} as {entry.method}{entry.args}, "
                                         f"replay asks {call.method}{call.args}")

        try:
            runs = replay_groups(self.sim.models, logs, check, self.sim.nested_gone)
        except LookupError as exc:
            raise InvariantViolation(f"I4: {exc}") from exc
        except RuntimeError as exc:
            raise InvariantViolation(f"I2: {exc}") from exc
        for group, run in runs.items():
            want = self.sim.models[group].digest(run.state)
            for host in self._members(group):
                if self.sim.options.style == "semi-active" or host.core.role == Role.PRIMARY:
                    if self.sim.models[group].digest(host.state) != want:
                        raise InvariantViolation(f"I1: {host.rid} state {host.state} differs from the replay "
                                                 f"{run.state}")
        return {group: run.answers for group, run in runs.items()}

    def _check_history(self, answers: Dict[str, Dict[MsgId, Tuple[int, Any]]]) -> None:
        by_group: Dict[str, List[HistoryOp]] = {}
        for op in self.sim.history:
            got = answers[op.group].get(op.msg_id)
            if got is None:
                what = "one-way call" if op.oneway else "acknowledged"
                raise InvariantViolation(f"{'I10' if op.oneway else 'I4'}: {what} {op.msg_id} ({op.method}{op.args}) "
                                         f"lost from {op.group}")
            if op.oneway:
                if got[0] != op.position:
                    raise InvariantViolation(f"I10: one-way {op.msg_id} acknowledged at {op.position}, in the order "
                                             f"at {got[0]}")
            elif got != (op.position, op.value):
                raise InvariantViolation(f"I2: {op.msg_id} {op.method}{op.args} got {op.value!r} at "
                                         f"{op.position}; the order gives {got[1]!r} at {got[0]}")
            by_group.setdefault(op.group, []).append(op)
        for group, ops in by_group.items():
            self._check_real_time(group, ops)
            plain = not any(op.oneway or "stamped" in repr((op.method, op.args)) for op in ops)
            if group == "store" and len(ops) <= WING_GONG_OPS_MAX and not self.sim.options.nested and plain:
                if not check_history(self.sim.models[group], ops):
                    raise InvariantViolation(f"I2: the history of {group} is not linearizable (Wing-Gong)")

    @staticmethod
    def _check_real_time(group: str, ops: List[HistoryOp]) -> None:
        for a in ops:
            for b in ops:
                if a.completed is not None and a.completed < b.invoked and a.position >= b.position:
                    raise InvariantViolation(f"I2: {group}: {a.msg_id} finished before {b.msg_id} began, "
                                             f"yet is ordered after it ({a.position} >= {b.position})")

    def _check_client_order(self, logs: Dict[str, List[LogEntry]]) -> None:
        """I10: with a scheduler that keeps arrival order, each client's calls to a group (one-way
        or not) run in the order it issued them (the router's per-source FIFO; Ray's per-caller order).
        Every scheduler passes over a call whose resources are down (such calls are left out when
        resources come and go), and on the lossy link a call may arrive after its source's gap wait:
        there a break of order is only counted."""
        opts = self.sim.options
        if opts.scheduling not in ("reception", "sequence"):
            return
        strict = opts.client_fifo
        passed_over = self.sim.needs_resources if opts.p_resources else set()
        for group, log in logs.items():
            last: Dict[str, Tuple[int, int]] = {}
            for e in log:
                src = e.msg_id.source
                if "|" in src or e.msg_id in passed_over or e.resume:  # a resume: its start was in order
                    continue  # nested sources number calls per execution
                prev = last.get(src)
                if prev is not None and prev[0] > e.msg_id.seq:
                    self.sim.count("client_order_broken")
                    if strict:
                        raise InvariantViolation(f"I10: {group} ran {e.msg_id} at {e.position}, after "
                                                 f"{src}#{prev[0]} at {prev[1]}: not in the client's order")
                last[src] = (e.msg_id.seq, e.position)

    def _check_nested(self, logs: Dict[str, List[LogEntry]], answers: Dict[str, Dict[MsgId, Tuple[int, Any]]]) -> None:
        for (group, mid), answer in self.sim.nested_seen.items():
            if answers[group].get(mid) != answer:
                raise InvariantViolation(f"I2: nested reply {mid}={answer} from {group} disagrees with the order "
                                         f"{answers[group].get(mid)}")
        callers = {f"{g}|{e.msg_id.source}#{e.msg_id.seq}" for g, log in logs.items() for e in log}
        for g, log in logs.items():
            for e in log:
                if "|" in e.msg_id.source and e.msg_id.source not in callers:
                    raise InvariantViolation(f"I3: {e.msg_id} took effect in {g} but its caller never executed")

    def _check_fault_free(self, group: str) -> None:
        core = self.sim.routers[group].core
        assert core is not None
        c = core.counts
        replaced = group in self.sim.replaced  # a backup killed and replaced (replace_backup): a view change, a join
        allowed = ("view_changes", "recovery_messages", "fenced", "joins") if replaced else ()
        for name in ("view_changes", "failovers", "recovery_messages", "fenced", "joins", "divergences"):
            if c.get(name, 0) and name not in allowed:
                raise InvariantViolation(f"I5: fault-free run, yet {group} router counts {name}={c[name]}")
        backups = len(core.members) - 1
        primary = self.sim.replicas[group][core.members[0]]
        sent = c["announcements_piggybacked"] + c["announcements_in_null"]
        if sent != primary.core.executed_upto * backups and not replaced:
            raise InvariantViolation(f"I5: {group} sent {sent} announcements to {backups} backups for "
                                     f"{primary.core.executed_upto} messages (each exactly once expected)")
        if self.sim.counts["nested_pulls"]:
            # the replacement replays the retained log after its checkpoint: the copies its calls need
            # come with the state transfer, and nested calls that raised are pushed like values
            raise InvariantViolation(f"I5: fault-free run, yet backups pulled {self.sim.counts['nested_pulls']} "
                                     f"nested reply copies (the primary pushes them, claim 48)")
        retries = self.sim.counts["client_retries"] + self.sim.counts["nested_pulls"] + \
            self.sim.counts["nested_sends"] + self.sim.counts["duplicated"]
        if c["duplicates"] > retries:
            raise InvariantViolation(f"I5: {group} saw {c['duplicates']} duplicates without retransmissions")


"""The router's recovery: the survivors' state reports and the view built from them (claim 65).

When the primary fails (or a router restarts knowing nothing), the router
asks the members for a StateReport, waits for them at most
``recovery_timeout_ticks`` (asking again, up to ``RECOVERY_ROUNDS_MAX`` rounds,
while nobody answered), and then ranks the survivors: the most advanced leads
(it holds the longest prefix of the order), a member that cannot catch up from
what the router holds leaves the view (it is repaired by state transfer), and
the undeposed primary of a restarted router is never made a backup.

A transcript::

    recovery.start(now=10)
    recovery.report(report_of_r1)             # r1 executed up to 4
    recovery.complete(["g-r1", "g-r2"])      # False: g-r2 has not reported
    recovery.rank(["g-r1", "g-r2"], {"g-r1": 4, "g-r2": 3}, log)
    # (["g-r1", "g-r2"], []): g-r1 leads, g-r2 catches up from the log
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

from ftactors.core.messages import MsgId, StateReport
from ftactors.core.routing.log import OrderLog

#: Rounds of state queries a recovery makes while no member has reported, before giving up.
RECOVERY_ROUNDS_MAX = 10


class Recovery:
    """The reports of one recovery and the ranking of the new view.

    ``rebuilt_primary`` is set by a restarted router: the primary of the view it was
    rebuilt in, (replica, view), which nothing deposed.
    """

    def __init__(self) -> None:
        self.reports: Dict[str, StateReport] = {}
        self.started = 0
        self.rounds = 0
        self.rebuilt_primary: Optional[Tuple[str, int]] = None

    def start(self, now: int) -> None:
        """A recovery starts at tick ``now``: no reports yet."""
        self.started = now
        self.rounds = 0
        self.reports = {}

    def excuse(self, idle_ticks: int) -> None:
        """The router did not run for ``idle_ticks`` (starved, paused): that time does not count toward
        the reports' timeout; a report may wait, unread, behind the tick that ends the starvation."""
        self.started += idle_ticks

    def report(self, rep: StateReport) -> None:
        """A member's StateReport (the latest one counts)."""
        self.reports[rep.replica] = rep

    def complete(self, members: List[str]) -> bool:
        """Whether every one of ``members`` reported."""
        return all(m in self.reports for m in members)

    def missing(self, members: List[str]) -> Set[str]:
        """The ``members`` that did not report."""
        return {r for r in members if r not in self.reports}

    def ask_again(self, now: int, missing: Set[str], members: List[str]) -> bool:
        """Whether to query again: nobody reported, and fewer than ``RECOVERY_ROUNDS_MAX`` rounds
        were made (a CPU storm makes survivors slow more often than it kills them all).

        Returns:
            True (a new round starts at ``now``) or False (give up on the silent ones).
        """
        if missing and len(missing) == len(members) and self.rounds < RECOVERY_ROUNDS_MAX:
            self.rounds += 1
            self.started = now
            return True
        return False

    def executed(self, members: List[str], acked: Dict[str, int]) -> Dict[str, int]:
        """How far each member executed: what it reported, or acknowledged if more."""
        return {m: max(acked[m], self.reports[m].executed_position if m in self.reports else 0) for m in members}

    def can_catch_up(self, member: str, executed: int, upto: int, log: OrderLog) -> bool:
        """Whether the log holds, for every position ``member`` lacks up to ``upto``, the
        announcement and the request (or the member holds the request itself)."""
        held = self.reports.get(member)
        own: Set[MsgId] = {r.msg_id for r in held.requests} if held is not None else set()
        return log.can_replay(executed, upto, own)

    def rank(self, members: List[str], executed: Dict[str, int], log: OrderLog) -> Tuple[List[str], List[str]]:
        """The new view's members in rank order.

        Args:
            members: the survivors in their old rank order.
            executed: how far each executed (see ``executed``).
            log: the router's order log.

        Returns:
            (ranked, dropped): the new view; the members that leave it to be repaired by
            state transfer (the order they lack is gone), in retirement order. The router asks
            for replacements after every recovery that leaves fewer than ``min_replicas``.
        """
        # the most advanced survivor leads (it holds the longest prefix); ties by rank
        ranked = sorted(members, key=lambda m: (-executed[m], members.index(m)))
        dropped: List[str] = []
        undeposed = self.rebuilt_primary[0] if self.rebuilt_primary is not None else None
        if undeposed in ranked and ranked[0] != undeposed:
            # a primary is never made a backup (no replica accepts that view). Behind its backups
            # it is replaying an earlier primary's order (a long call): it keeps the lead if the
            # order it lacks is here; else it leaves the view and the most advanced backup leads
            assert undeposed is not None
            ranked.remove(undeposed)
            if self.can_catch_up(undeposed, executed[undeposed], executed[ranked[0]], log):
                ranked.insert(0, undeposed)
            else:
                dropped.append(undeposed)
        stuck = {m for m in ranked[1:] if not self.can_catch_up(m, executed[m], executed[ranked[0]], log)}
        if stuck:
            ranked = [m for m in ranked if m not in stuck]
            dropped += sorted(stuck)
        return ranked, dropped

    def primary_since(self, leader: str, view: int) -> int:
        """The lowest view whose output of ``leader`` the router accepts once it installs ``view``:
        a restarted router keeps the undeposed primary, whose output of the old view is its own."""
        if self.rebuilt_primary is not None and self.rebuilt_primary[0] == leader:
            return self.rebuilt_primary[1]
        return view

"""When a caller sends again the notice of a call it cancelled (``ray.cancel``), as a pure state machine.

A cancelled call stays unsettled (its caller's ``ack_below`` does not pass it) until the group's router
answers its notice "given up" or "ran" (docs/faults.md rows 72, 82). An answer that does not settle it
("unknown": a recovering router, or a call that did not run in time) or none at all (the router died, or
the notice was lost) left it unsettled for good, and every replica kept the caller's replies in its
exactly-once table until ``reply_cache_max`` evicted them (row 88). :class:`CancelRenotices` says when
to send the notice again: ``renotice_ticks`` after an answer that did not settle it, or
``answer_wait_ticks`` after a notice that got no answer; at most ``renotices_max`` times per call and
for at most ``tracked_max`` calls at once. Past a bound the call stays unsettled, as before, and the
host logs it once (the first :class:`Renotices` with a ``note``).

Ticks are the host's: the simulator's, or the runtime's clock in milliseconds.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

from ftactors.core.errors import LocalProtocolError


class Renotices(NamedTuple):
    """What the host does now (:meth:`CancelRenotices.due`).

    Attributes:
        send: the calls whose notice to send again now, by sequence number.
        dropped: calls no longer tracked (``renotices_max`` notices got no settling answer): unsettled.
        note: a line for the log, the first time a call is left unsettled (then None).
    """

    send: Tuple[int, ...]
    dropped: Tuple[int, ...]
    note: Optional[str]


class _Tracked:
    __slots__ = ("due", "renotices", "out")

    def __init__(self, due: int) -> None:
        self.due = due
        self.renotices = 0
        self.out = True  # a notice is out, its answer not arrived


class CancelRenotices:
    """The cancelled calls of one caller whose notice got no settling answer yet.

    Args:
        renotice_ticks: after an answer that did not settle a call, the ticks before its next notice.
        answer_wait_ticks: after a notice, the ticks its answer may take; then it is sent again.
        renotices_max: notices sent again per call at most (then it is dropped, unsettled).
        tracked_max: cancelled calls tracked at once at most (a call past it is not tracked).

    Raises:
        LocalProtocolError: a bound below 1 (0 for ``renotices_max``).
    """

    def __init__(self, renotice_ticks: int, answer_wait_ticks: int, renotices_max: int = 8,
                 tracked_max: int = 1_024) -> None:
        if renotice_ticks < 1 or answer_wait_ticks < 1 or renotices_max < 0 or tracked_max < 1:
            raise LocalProtocolError("renotice_ticks, answer_wait_ticks and tracked_max must be >= 1, "
                                     "renotices_max >= 0")
        self.renotice_ticks, self.answer_wait_ticks = renotice_ticks, answer_wait_ticks
        self.renotices_max, self.tracked_max = renotices_max, tracked_max
        self._tracked: Dict[int, _Tracked] = {}
        self._noted = False
        #: calls left unsettled: not tracked (``tracked_max``) or dropped (``renotices_max``)
        self.left_unsettled = 0
        #: notices sent again
        self.sent_again = 0

    def __len__(self) -> int:
        return len(self._tracked)

    def __contains__(self, seq: object) -> bool:
        return seq in self._tracked

    def cancelled(self, seq: int, now: int) -> Optional[str]:
        """The caller cancelled call ``seq`` and sent its first notice at tick ``now``.

        Args:
            seq: the call's sequence number.
            now: the host's tick.

        Returns:
            A line for the log the first time a call is left unsettled (``tracked_max`` calls tracked
            already), else None.
        """
        if seq in self._tracked:
            return None
        if len(self._tracked) >= self.tracked_max:
            return self._leave(f"{self.tracked_max} cancelled calls (tracked_max) wait for a settling answer "
                               f"already: call {seq} is not noticed again")
        self._tracked[seq] = _Tracked(now + self.answer_wait_ticks)
        return None

    def answered(self, seq: int, settled: bool, now: int) -> None:
        """The router answered a notice of call ``seq`` (or the notice failed: ``settled`` False).

        Args:
            seq: the call's sequence number.
            settled: the answer settles it ("given up" or "ran"): it is no longer tracked.
            now: the host's tick.
        """
        tracked = self._tracked.get(seq)
        if tracked is None:
            return
        if settled:
            del self._tracked[seq]
            return
        tracked.out = False
        tracked.due = now + self.renotice_ticks

    def forget(self, seq: int) -> None:
        """Call ``seq`` is settled by another way: it is no longer tracked.

        Args:
            seq: the call's sequence number.
        """
        self._tracked.pop(seq, None)

    def next_due(self) -> Optional[int]:
        """The tick of the next notice to send (None: none tracked)."""
        return min((t.due for t in self._tracked.values()), default=None)

    def due(self, now: int) -> Renotices:
        """The notices to send again at tick ``now``: for each call whose answer did not settle it
        ``renotice_ticks`` ago, or whose notice got no answer in ``answer_wait_ticks``.

        Args:
            now: the host's tick.

        Returns:
            What to send, and the calls dropped (``renotices_max`` reached), with a note the first time.
        """
        send: List[int] = []
        dropped: List[int] = []
        for seq, t in self._tracked.items():
            if t.due > now:
                continue
            if t.renotices >= self.renotices_max:
                dropped.append(seq)
                continue
            t.renotices += 1
            t.out = True
            t.due = now + self.answer_wait_ticks
            send.append(seq)
        note = None
        for seq in dropped:
            del self._tracked[seq]
            note = self._leave(f"cancelled call {seq} got no settling answer to {self.renotices_max + 1} notices "
                               f"(renotices_max): it stays unsettled") or note
        self.sent_again += len(send)
        return Renotices(tuple(send), tuple(dropped), note)

    def _leave(self, line: str) -> Optional[str]:
        self.left_unsettled += 1
        if self._noted:
            return None
        self._noted = True
        return line + " (said once)"

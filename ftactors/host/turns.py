"""Turn-taking of a replica host: which Deliver applies when, who drives the core, who gets output.

A router sends each replica numbered Delivers: ``(epoch, seq)``, where ``epoch`` names the router
incarnation (it sorts later for a later incarnation) and ``seq`` counts from 1 on that link. Ray
runs the calls of a threaded actor concurrently, so they can reach the replica in any order, and
a dead incarnation's Delivers may still arrive after its successor's. :class:`ReplicaTurns`
restores the order, drops what a dead incarnation sent, and hands the core's output to the
incarnation that is current when it is taken.

One Deliver at a time *drives* the core (carries out its effects, such as executing a call).
A Deliver that arrives meanwhile is applied to the core at once (so the primary's scheduler sees
its calls) and then either waits as the *standby*, which takes over driving after the current
effect and returns the output so far, or, when a standby already waits, is answered at once with
nothing. The host answers a Deliver with the core's output only if its epoch is still current:
an execution started under a router that died answers the new router.

Host loop (the Ray replica actor holds a lock around every call; the simulator is one thread)::

    verdict = turns.arrive(epoch, seq)          # STALE: answer nothing; LATER: wait for its turn
    core.deliver(msg); turns.applied()          # NOW: apply it, then
    claim = turns.claim()                       # DRIVE, STANDBY (wait for take_over) or ANSWER
    while turns.keep_driving() and (effect := core.next_effect()): carry it out
    turns.stop(); answer(core.take_delivered() if turns.owns_output(epoch) else nothing)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    """What to do with an arriving Deliver."""

    NOW = "now"  # its turn: apply it
    LATER = "later"  # an earlier Deliver of its epoch is missing: wait for it
    STALE = "stale"  # from a dead router incarnation, or a repeat: drop it, answer nothing


class Claim(enum.Enum):
    """What a Deliver does once applied."""

    DRIVE = "drive"  # nobody drives: this one does
    STANDBY = "standby"  # wait, then take over driving after the current effect
    ANSWER = "answer"  # a standby waits already: answer at once, with nothing


@dataclass(slots=True)
class ReplicaTurns:
    """Turn-taking state of one replica host.

    Args:
        epoch: the router incarnation whose Delivers apply ("" before the first).
        next_seq: the number of the next Deliver of ``epoch`` to apply.
        driving: a Deliver drives the core.
        standby: a Deliver waits to take over driving.
    """

    epoch: str = ""
    next_seq: int = 1
    driving: bool = False
    standby: bool = False

    def arrive(self, epoch: str, seq: int) -> Verdict:
        """A Deliver ``(epoch, seq)`` arrived (or is looked at again after another applied).

        A later epoch is a newer router incarnation: from now on only its Delivers apply.

        Args:
            epoch: its router incarnation.
            seq: its number on the link (from 1).

        Returns:
            Whether to apply it now, keep it for later, or drop it.

        Raises:
            ValueError: ``seq`` is not a positive number.
        """
        if seq < 1:
            raise ValueError(f"Deliver number must be >= 1, got {seq!r}")
        if epoch < self.epoch:
            return Verdict.STALE
        if epoch > self.epoch:
            self.epoch, self.next_seq = epoch, 1
        if seq < self.next_seq:
            return Verdict.STALE
        return Verdict.NOW if seq == self.next_seq else Verdict.LATER

    def adopt(self, epoch: str) -> None:
        """A newer router incarnation asked for this replica's state (a restarted router's view
        query or state query): from now on a dead incarnation's Delivers are dropped, so the
        state reported is all this replica will hold of what the dead one sent.

        Args:
            epoch: the asking router incarnation.
        """
        if epoch > self.epoch:
            self.epoch, self.next_seq = epoch, 1

    def applied(self) -> None:
        """The Deliver whose turn it was entered the core (or was refused by it)."""
        self.next_seq += 1

    def claim(self) -> Claim:
        """An applied Deliver asks to drive the core."""
        if not self.driving:
            self.driving = True
            return Claim.DRIVE
        if self.standby:
            return Claim.ANSWER
        self.standby = True
        return Claim.STANDBY

    def take_over(self) -> bool:
        """The standby asks whether it drives now (True once the driver stopped)."""
        assert self.standby, "take_over without a standby"
        if self.driving:
            return False
        self.standby, self.driving = False, True
        return True

    def keep_driving(self) -> bool:
        """The driver asks, before each effect, whether to go on (no standby waits)."""
        assert self.driving, "keep_driving while nobody drives"
        return not self.standby

    def stop(self) -> None:
        """The driver stops: the core is idle, a standby takes over, or an effect failed."""
        self.driving = False

    def owns_output(self, epoch: str) -> bool:
        """Whether a Deliver of ``epoch`` may take the core's output (its router is current)."""
        return epoch == self.epoch

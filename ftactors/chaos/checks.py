"""The checks of a chaos run: calls that failed, operations lost or applied twice, money conserved,
replicas in agreement, and the group back to full size.

The verdicts are pure functions of what was recorded (the history, the application's own log,
``ftactors.describe``'s report), so they are tested without Ray (``tests/test_chaos_units.py``):
an unreachable or busy replica never counts as agreeing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Sequence, Tuple

from ftactors.chaos.clients import Op, brief
from ftactors.chaos.errors import CampaignError
from ftactors.runtime.api import GroupInfo

#: at most this many examples of lost or mismatched operations in a violation's text
EXAMPLES_MAX = 5

# ------------------------------------------------------------------ verdicts


def failed_calls(history: Sequence[Op]) -> List[str]:
    """One violation when calls failed with an error the campaign does not allow."""
    errors = [op for op in history if op.error and not op.allowed]
    if not errors:
        return []
    first = min(errors, key=lambda op: op.index)
    return [f"{len(errors)} calls failed; first: op {first.index}: {first.error}"]


@dataclass(frozen=True)
class TokenAudit:
    """What became of the acknowledged operations, each known by a unique token.

    Args:
        acknowledged: operations whose caller got a reply.
        applied: entries in the application's log.
        lost: acknowledged tokens missing from the log (sorted).
        applied_twice: log entries beyond the first of their token.
        mismatched: acknowledged tokens whose reply named a position that does not hold them.
    """

    acknowledged: int
    applied: int
    lost: Tuple[str, ...]
    applied_twice: int
    mismatched: Tuple[str, ...] = ()

    def violations(self, what: str = "operations") -> List[str]:
        """One sentence per broken promise ([] when every acknowledged operation is there once)."""
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged {what} are not in the log, e.g. {list(self.lost[:EXAMPLES_MAX])}")
        if self.applied_twice:
            out.append(f"{self.applied_twice} {what} were applied twice")
        if self.mismatched:
            out.append(f"{len(self.mismatched)} replies do not match the position their operation took, "
                       f"e.g. {list(self.mismatched[:EXAMPLES_MAX])}")
        return out


def audit_tokens(acked: Mapping[str, Any], applied: Sequence[str], positions: bool = False) -> TokenAudit:
    """Compare the acknowledged operations with the application's log.

    Args:
        acked: token -> the reply its caller got, for every acknowledged operation.
        applied: the tokens in the order the application applied them.
        positions: the replies are 1-based positions in ``applied``; check that each holds its token.

    Returns:
        The audit.
    """
    present = set(applied)
    lost = tuple(sorted(t for t in acked if t not in present))
    mismatched: Tuple[str, ...] = ()
    if positions:
        mismatched = tuple(sorted(t for t, pos in acked.items() if t in present and not (
            isinstance(pos, int) and 0 < pos <= len(applied) and applied[pos - 1] == t)))
    return TokenAudit(len(acked), len(applied), lost, len(applied) - len(present), mismatched)


def money_violations(total: int, expected: int) -> List[str]:
    """One violation when the money in the accounts is not what it started as."""
    return [] if total == expected else [f"money not conserved: {total} != {expected}"]


def agreement(info: GroupInfo, replicas: int) -> Tuple[bool, str]:
    """Whether the described group is whole, caught up and in agreement.

    Args:
        info: ``ftactors.describe``'s report.
        replicas: how many members the group must have (at least).

    Returns:
        (agree, detail): an unreachable or busy replica means not (yet) agreeing (see
        :meth:`ftactors.GroupInfo.disagreement`).
    """
    why = info.disagreement(replicas)
    if why is not None:
        return False, why
    return True, f"{len(info.replicas)} replicas at position {info.replicas[0].executed}"


def is_ready(info: GroupInfo, replicas: int) -> bool:
    """The group has all its replicas, none joining, in normal operation, every pid known."""
    return (info.phase == "normal" and len(info.replicas) >= replicas and not info.joining
            and all(r.pid > 0 for r in info.replicas))


# ---------------------------------------------------------- against a group


def replicas_agree(handle: Any, replicas: int) -> Tuple[bool, str]:
    """:func:`agreement` of the group as it is now."""
    import ftactors

    return agreement(ftactors.describe(handle, timeout_s=15), replicas)


def group_ready(handle: Any, replicas: int) -> bool:
    """:func:`is_ready` of the group as it is now."""
    import ftactors

    return is_ready(ftactors.describe(handle, timeout_s=15), replicas)


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate`` (an exception counts as false) until it holds or ``timeout_s`` passed.

    Returns:
        Whether it held.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return True
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def await_agreement(handle: Any, replicas: int, timeout_s: float) -> Tuple[bool, str]:
    """Wait until the replicas agree; (agreed, the last detail)."""
    last: List[Any] = [False, "not described yet"]

    def settled() -> bool:
        last[:] = replicas_agree(handle, replicas)
        return bool(last[0])

    agreed = wait_until(settled, timeout_s, 0.2)
    return agreed, str(last[1])


def user_check(check: Callable[..., Any], handle: Any, history: Sequence[Op]) -> List[str]:
    """Run a campaign's own ``check(handle, history)``; a check that raises is a finding, not a crash.

    Raises:
        CampaignError: it returned something other than a list of violations.
    """
    try:
        found = check(handle, list(history))
    except Exception as exc:  # e.g. the group is lost
        return [f"check() raised {brief(exc)}"]
    if not isinstance(found, (list, tuple)):
        raise CampaignError(f"check() must return a list of violations, got {type(found).__name__}")
    return [str(v) for v in found]

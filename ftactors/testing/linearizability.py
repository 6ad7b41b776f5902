"""A Wing-Gong linearizability checker for small histories (with Lowe's memoisation).

A history is linearizable if its operations can be put in one sequential order
that (a) respects real time: an operation that completed before another began
comes first, and (b) gives every operation the value it actually returned when
run on the sequential model. The search tries, at each step, every operation
that may go next, and memoises (remaining operations, model state) pairs it
has already refuted. Exponential in the worst case: use it for small histories.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Sequence, Set, Tuple

from ftactors.testing.events import HistoryOp
from ftactors.testing.models import Model, run_local

#: histories longer than this are refused (the search is exponential)
HISTORY_OPS_MAX = 24


def check_history(model: Model, ops: Sequence[HistoryOp]) -> bool:
    """Decide whether ``ops`` is a linearizable history of ``model``.

    Operations that never completed (``completed is None``) may take effect or
    not, at any point after their invocation.

    Args:
        model: the sequential specification (methods must not make nested calls).
        ops: the operations, as clients saw them.

    Returns:
        True if some valid linearization exists.

    Raises:
        ValueError: more than ``HISTORY_OPS_MAX`` operations.

    Example:
        >>> from ftactors.testing.models import Counter
        >>> from ftactors.core import MsgId
        >>> a = HistoryOp("c", "g", MsgId("c", 1), "add", (1,), invoked=0, completed=5, value=1)
        >>> check_history(Counter(), [a])
        True
    """
    if len(ops) > HISTORY_OPS_MAX:
        raise ValueError(f"history of {len(ops)} operations is too long (max {HISTORY_OPS_MAX})")
    items = list(ops)
    refuted: Set[Tuple[FrozenSet[int], str]] = set()
    return _search(model, items, frozenset(range(len(items))), model.initial(), refuted)


def _candidates(items: List[HistoryOp], remaining: FrozenSet[int]) -> List[int]:
    """Operations that may be linearized next: none of the others completed before they began."""
    ends = [end for i in remaining if (end := items[i].completed) is not None]
    first_end = min(ends) if ends else None
    return [i for i in sorted(remaining) if first_end is None or items[i].invoked <= first_end]


def _search(model: Model, items: List[HistoryOp], remaining: FrozenSet[int], state: Dict[str, Any],
            refuted: Set[Tuple[FrozenSet[int], str]]) -> bool:
    if all(items[i].completed is None for i in remaining):
        return True
    key = (remaining, model.digest(state))
    if key in refuted:
        return False
    for i in _candidates(items, remaining):
        op = items[i]
        trial = model.copy(state)
        value = run_local(model, trial, op.method, tuple(op.args))
        if op.completed is not None and value != op.value:
            continue
        if _search(model, items, remaining - {i}, trial, refuted):
            return True
    if any(items[i].completed is None for i in remaining):
        # an incomplete operation may also never take effect
        for i in remaining:
            if items[i].completed is None and _search(model, items, remaining - {i}, state, refuted):
                return True
    refuted.add(key)
    return False

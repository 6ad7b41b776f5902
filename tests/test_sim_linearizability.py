"""The Wing-Gong checker, on hand-made histories."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from ftactors.core import MsgId
from ftactors.testing import Bank, Counter, KeyValue, check_history
from ftactors.testing.events import HistoryOp


def op(n: int, method: str, args: tuple, start: int, end: Optional[int], value: Any = None) -> HistoryOp:
    return HistoryOp(f"c{n}", "g", MsgId(f"c{n}", 1 + start), method, args, invoked=start, completed=end,
                     value=value)


def test_sequential_counter_history_is_linearizable() -> None:
    h = [op(0, "add", (2,), 0, 1, 2), op(0, "add", (3,), 2, 3, 5), op(1, "get", (), 4, 5, 5)]
    assert check_history(Counter(), h)


def test_overlapping_operations_may_be_reordered() -> None:
    # both overlap: add(3) may take effect first
    h = [op(0, "add", (2,), 0, 10, 5), op(1, "add", (3,), 1, 9, 3)]
    assert check_history(Counter(), h)


def test_real_time_order_is_enforced() -> None:
    # add(3) completed before add(2) began, yet add(2) claims to have gone first
    h = [op(1, "add", (3,), 0, 1, 5), op(0, "add", (2,), 2, 3, 2)]
    assert not check_history(Counter(), h)


def test_stale_read_is_not_linearizable() -> None:
    h = [op(0, "put", ("x", 1), 0, 1, None), op(1, "get", ("x",), 2, 3, None)]
    assert not check_history(KeyValue(), h)


def test_incomplete_operation_may_or_may_not_take_effect() -> None:
    took = [op(0, "put", ("x", 1), 0, None), op(1, "get", ("x",), 2, 3, 1)]
    skipped = [op(0, "put", ("x", 1), 0, None), op(1, "get", ("x",), 2, 3, None)]
    assert check_history(KeyValue(), took) and check_history(KeyValue(), skipped)


def test_bank_double_spend_is_not_linearizable() -> None:
    h = [op(0, "transfer", ("a", "b", 80), 0, 5, True), op(1, "transfer", ("a", "c", 80), 1, 6, True)]
    assert not check_history(Bank(), h)


def test_long_histories_are_refused() -> None:
    with pytest.raises(ValueError):
        check_history(Counter(), [op(i, "get", (), i, i + 1, 0) for i in range(30)])

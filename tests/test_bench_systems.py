"""``ftactors bench`` without its optional packages: a system that cannot run is skipped with
one line, not a traceback; and its failover clock does not stop on unknown figures. No Ray."""

from __future__ import annotations

import sys
from typing import List

import pytest

from ftactors.bench import SYSTEM_NAMES, select_systems


def test_pysyncobj_missing_is_skipped_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pysyncobj", None)  # ``import pysyncobj`` raises ImportError
    lines: List[str] = []
    assert select_systems(None, lines.append) == [n for n in SYSTEM_NAMES if n != "pysyncobj"]
    assert len(lines) == 1 and "pysyncobj" in lines[0] and "not installed" in lines[0], lines
    lines.clear()
    assert select_systems("pysyncobj,ftactors-passive", lines.append) == ["ray-plain", "ftactors-passive"]
    assert len(lines) == 1


def test_pysyncobj_installed_is_measured() -> None:
    pytest.importorskip("pysyncobj")
    lines: List[str] = []
    assert select_systems(None, lines.append) == SYSTEM_NAMES and not lines


def test_unknown_system_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown systems"):
        select_systems("ray-plain,etcd", lambda line: None)


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_failover_is_not_over_while_replicas_do_not_answer(monkeypatch: pytest.MonkeyPatch, style: str) -> None:
    """The failover pause ends when the group is whole again: replicas that did not answer
    describe (executed -1 each) do not make it whole."""
    import ftactors
    from ftactors.bench.systems import FtActors
    from tests.test_agreement_checks import group, replica, unreachable

    system = FtActors(style)
    info = group([unreachable("r0", "primary"), unreachable("r1"), unreachable("r2")], style)
    monkeypatch.setattr(ftactors, "describe", lambda handle, timeout_s=30.0: info)
    assert not system.recovered()
    info = group([replica("r0", "primary"), replica("r1"), replica("r2")], style)
    assert system.recovered()

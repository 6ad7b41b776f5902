"""The replicas-agree checks (tests' ``converged``, the chaos campaign's ``replicas_agree``) must
fail when replicas are unreachable or busy: unknown figures never count as agreement. No Ray."""

from __future__ import annotations

from typing import List

import pytest

from ftactors import GroupInfo, ReplicaInfo
from ftactors.chaos import checks


def replica(rid: str, role: str = "backup", executed: int = 7, digest: str = "d7", pid: int = 100) -> ReplicaInfo:
    return ReplicaInfo(replica_id=rid, actor=None, node_id="n", pid=pid, role=role, executed=executed,
                       state_digest=digest)


def group(reps: List[ReplicaInfo], style: str = "semi-active") -> GroupInfo:
    return GroupInfo(group="g", view=1, style=style, phase="normal", primary=reps[0], backups=reps[1:],
                     joining=[], counts={})


def unreachable(rid: str, role: str = "backup") -> ReplicaInfo:
    """What describe reports for a replica that did not answer its info call."""
    return replica(rid, role, executed=-1, digest="", pid=-1)


def test_equal_known_figures_agree() -> None:
    assert group([replica("r0", "primary"), replica("r1"), replica("r2")]).disagreement(3) is None


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_every_replica_unreachable_is_not_agreement(style: str) -> None:
    info = group([unreachable("r0", "primary"), unreachable("r1"), unreachable("r2")], style)
    assert "unreachable" in (info.disagreement(3) or "")


def test_one_unreachable_backup_is_not_agreement() -> None:
    info = group([replica("r0", "primary"), replica("r1"), unreachable("r2")])
    assert "r2" in (info.disagreement(3) or "")


def test_busy_replicas_without_digests_do_not_agree_in_semi_active() -> None:
    info = group([replica("r0", "primary", digest=""), replica("r1", digest=""), replica("r2", digest="")])
    assert "digests" in (info.disagreement(3) or "")


def test_passive_backups_compare_positions_not_digests() -> None:
    """A passive backup reports its checkpoint's digest (none before the first checkpoint)."""
    reps = [replica("r0", "primary", digest="now"), replica("r1", digest=""), replica("r2", digest="cp")]
    assert group(reps, "passive").disagreement(3) is None
    reps[2] = replica("r2", executed=6)
    assert "positions differ" in (group(reps, "passive").disagreement(3) or "")


def test_missing_members_lagging_or_different_state_do_not_agree() -> None:
    assert group([replica("r0", "primary"), replica("r1")]).disagreement(3) is not None
    assert group([replica("r0", "primary"), replica("r1", executed=6)]).disagreement(2) is not None
    assert group([replica("r0", "primary"), replica("r1", digest="other")]).disagreement(2) is not None


def test_campaign_check_fails_when_every_replica_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    import ftactors

    info = group([unreachable("r0", "primary"), unreachable("r1"), unreachable("r2")])
    monkeypatch.setattr(ftactors, "describe", lambda handle, timeout_s=30.0: info)
    agree, detail = checks.replicas_agree(object(), 3)
    assert not agree and "unreachable" in detail
    info = group([replica("r0", "primary"), replica("r1"), replica("r2")])
    assert checks.replicas_agree(object(), 3) == (True, "3 replicas at position 7")

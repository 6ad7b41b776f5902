"""rebuilt_view: the view a restarted router takes over, as transcripts."""

from __future__ import annotations

import pytest

from ftactors.host.rebuild import SPAWN_INDEX_GAP, rebuilt_view


def test_the_highest_view_wins_over_a_deposed_replica_still_running() -> None:
    """Regression (chaos seed 11): a deposed initial replica led the rebuild back to view 1."""
    got = rebuilt_view({
        "g-r0": (1, ("g-r0", "g-r1", "g-r2"), "primary"),  # deposed while paused, never told
        "g-r5": (7, ("g-r5", "g-r6", "g-r7"), "primary"),
        "g-r6": (7, ("g-r5", "g-r6", "g-r7"), "backup"),
        "g-r7": (7, ("g-r5", "g-r6", "g-r7"), "backup"),
    })
    assert (got.view, got.members) == (7, ("g-r5", "g-r6", "g-r7"))


def test_members_that_did_not_answer_are_left_out_in_rank_order() -> None:
    got = rebuilt_view({"g-r2": (3, ("g-r1", "g-r2", "g-r3"), "backup"),
                        "g-r3": (3, ("g-r1", "g-r2", "g-r3"), "backup")}, known=("g-r1",))
    assert got.members == ("g-r2", "g-r3")


def test_joining_and_fenced_replicas_do_not_lead() -> None:
    got = rebuilt_view({"g-r4": (0, (), "joining"), "g-r9": (5, ("g-r9",), "fenced"),
                        "g-r1": (2, ("g-r1", "g-r2"), "primary")})
    assert (got.view, got.members) == (2, ("g-r1",))
    assert got.next_replica_index == 10 + SPAWN_INDEX_GAP  # past every name heard of


def test_no_live_replica_means_the_group_is_lost() -> None:
    with pytest.raises(LookupError):
        rebuilt_view({"g-r0": (0, (), "joining")})


def test_every_replica_heard_of_outside_the_view_is_an_orphan() -> None:
    """A member that did not answer (stopped), a deposed one and a joiner are not members of the
    rebuilt view: the rebuilt router retires them (docs/faults.md, the replacement path)."""
    got = rebuilt_view({"g-r0": (1, ("g-r0", "g-r1", "g-r2"), "backup"),
                        "g-r1": (2, ("g-r1", "g-r2", "g-r3"), "primary"),
                        "g-r4": (0, (), "joining")}, known=("g-r2", "g-r3"))
    assert got.members == ("g-r1",)
    assert got.orphans == ("g-r0", "g-r2", "g-r3", "g-r4")

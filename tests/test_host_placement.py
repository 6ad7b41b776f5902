"""The one placement policy (``ftactors.host.placement``), used by group creation and by the
router's replacements: spread, strict-spread, pack, a single node, every node taken."""

from __future__ import annotations

import pytest

from ftactors import ConfigError
from ftactors.host.placement import PlacementError, choose_node, misplaced, plan_nodes

NODES = ["w1", "w2", "head"]  # the host's order: worker nodes first, the head last


def test_spread_puts_each_replica_on_its_own_node_workers_first() -> None:
    assert plan_nodes(NODES, 3, "spread") == ["w1", "w2", "head"]
    assert plan_nodes(NODES, 2, "spread") == ["w1", "w2"]


def test_spread_evens_the_load_when_replicas_outnumber_nodes() -> None:
    assert plan_nodes(["w1", "head"], 3, "spread") == ["w1", "head", "w1"]
    assert plan_nodes(["w1", "head"], 4, "spread") == ["w1", "head", "w1", "head"]


def test_a_replacement_goes_to_the_node_without_a_replica() -> None:
    assert choose_node(NODES, ["w2", "head"], "spread") == "w1"
    assert choose_node(NODES, ["w1", "head"], "strict-spread") == "w2"
    # a member whose node is not known yet counts nowhere
    assert choose_node(NODES, ["w1", None], "spread") == "w2"


def test_spread_with_every_node_taken_takes_the_least_loaded() -> None:
    assert choose_node(NODES, ["w1", "w2", "head", "w1"], "spread") == "w2"
    # nodes that left the cluster (a member still on a removed node) do not count
    assert choose_node(["w3", "head"], ["w1", "head"], "spread") == "w3"


def test_strict_spread_refuses_when_every_node_is_taken() -> None:
    with pytest.raises(PlacementError, match="strict-spread"):
        choose_node(NODES, ["w1", "w2", "head"], "strict-spread")
    with pytest.raises(ConfigError, match="needs 3 Ray nodes; the cluster has 2"):
        plan_nodes(["w1", "head"], 3, "strict-spread")


def test_a_single_node_leaves_the_choice_to_ray_unless_strict() -> None:
    assert plan_nodes(["head"], 3, "spread") == [None, None, None]
    assert choose_node(["head"], ["head"], "spread") is None
    with pytest.raises(PlacementError):
        plan_nodes(["head"], 2, "strict-spread")


def test_pack_leaves_every_choice_to_ray() -> None:
    assert plan_nodes(NODES, 3, "pack") == [None, None, None]
    assert choose_node(NODES, [], "pack") is None


def test_no_alive_node_known_leaves_the_choice_to_ray() -> None:
    assert choose_node([], ["w1"], "spread") is None


def test_an_unknown_placement_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="placement must be one of"):
        choose_node(NODES, [], "scatter")


def test_a_replacement_prefers_a_fresh_node_to_one_whose_member_was_lost() -> None:
    """A removed node stays alive in Ray's list until its heartbeats time out: the replacement must
    go to the fresh node that joined, not back to the removed one (soft affinity would then let Ray
    put it beside another member; tests/test_ray_cluster.py saw two members on one node)."""
    nodes = ["w-removed", "w-fresh", "w-member", "head"]
    members = ["w-member", "head"]
    assert choose_node(nodes, members, "spread") == "w-removed"  # without the history: the first free
    assert choose_node(nodes, members, "spread", lost=["w-removed"]) == "w-fresh"
    assert choose_node(nodes, members, "strict-spread", lost=["w-removed"]) == "w-fresh"


def test_a_node_that_lost_a_member_is_still_better_than_one_holding_a_member() -> None:
    """A member's process killed on a healthy node: with no fresh node, the replacement goes back there."""
    nodes = ["w1", "w2", "head"]
    assert choose_node(nodes, ["w2", "head"], "spread", lost=["w1"]) == "w1"
    assert choose_node(nodes, ["w2", "head"], "strict-spread", lost=["w1"]) == "w1"


# docs/faults.md row 80: Ray's soft affinity may put a replacement elsewhere than chosen; the
# router checks where it runs (``misplaced``) and starts it again while a node holds no member.

def test_a_replacement_ray_put_beside_a_member_while_a_fresh_node_is_free_is_misplaced() -> None:
    # w1 removed (still listed, lost), the fresh w3 chosen; the node deciding did not know w3 yet
    nodes = ["w2", "w3", "w1", "head"]
    assert misplaced(nodes, ["w2", "head"], "spread", asked="w3", landed="w2", lost=["w1"])
    assert misplaced(nodes, ["w2", "head"], "strict-spread", asked="w3", landed="head", lost=["w1"])
    # once w1 left Ray's list too
    assert misplaced(["w2", "w3", "head"], ["w2", "head"], "spread", asked="w3", landed="w2", lost=["w1"])


def test_a_replacement_on_a_node_without_a_member_is_where_it_belongs() -> None:
    nodes = ["w2", "w3", "w1", "head"]
    assert not misplaced(nodes, ["w2", "head"], "spread", asked="w3", landed="w3", lost=["w1"])
    # elsewhere than asked, but on a free node all the same
    assert not misplaced(nodes, ["w2", "head"], "spread", asked="w3", landed="w1")
    # members of unknown nodes count nowhere
    assert not misplaced(nodes, [None, "head"], "spread", asked="w3", landed="w3")


def test_a_replacement_asked_for_the_node_of_a_member_it_shares_is_misplaced_while_one_is_free() -> None:
    # the member on w1 died (its process, not its node): w1 is free and alive
    assert misplaced(["w1", "w2", "head"], ["w2", "head"], "spread", asked="w2", landed="w2", lost=["w1"])


def test_a_removed_node_ray_would_not_take_is_no_better_place() -> None:
    # no fresh node: the choice was the removed w1 (it lost a member), Ray put the replica on w2;
    # starting it again would end beside a member again
    nodes = ["w2", "w1", "head"]
    assert choose_node(nodes, ["w2", "head"], "spread", lost=["w1"]) == "w1"
    assert not misplaced(nodes, ["w2", "head"], "spread", asked="w1", landed="w2", lost=["w1"])
    # a fresh node that Ray did not take (not known yet) stays a better place
    assert misplaced(nodes + ["w3"], ["w2", "head"], "spread", asked="w3", landed="w2", lost=["w1"])


def test_spread_with_every_node_taken_is_misplaced_only_above_the_least_loaded() -> None:
    nodes = ["w1", "head"]
    assert not misplaced(nodes, ["w1", "head"], "spread", asked="w1", landed="head")
    assert misplaced(nodes, ["w1", "head", "head"], "spread", asked="w1", landed="head")


def test_pack_a_single_node_and_ray_s_own_choice_are_never_misplaced() -> None:
    assert not misplaced(["w1", "head"], ["w1", "head"], "pack", asked=None, landed="w1")
    assert not misplaced(["head"], ["head", "head"], "spread", asked="head", landed="head")
    assert not misplaced(["w1", "w2", "head"], ["w1"], "spread", asked=None, landed="w1")
    with pytest.raises(ConfigError):
        misplaced(NODES, [], "everywhere", asked="w1", landed="w1")

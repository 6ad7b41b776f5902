"""The chaos package without Ray: the fault primitives' choices, the signals they send to a real
process, and the checks' verdicts (lost, applied twice, money, agreement, failed calls)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any, List

import psutil
import pytest

import ftactors
from ftactors import GroupInfo, ReplicaInfo
from ftactors.chaos import (
    CampaignError,
    Fault,
    FaultError,
    FaultRecord,
    Injector,
    Op,
    agreement,
    audit_tokens,
    backup_index,
    caller_pauses,
    check_pid,
    choose_replica,
    failed_calls,
    is_ready,
    kill,
    money_violations,
    removal_order,
    remove_node,
    resume,
)
from ftactors.chaos import faults
from ftactors.chaos.faults import signal_process


def replica(rid: str, role: str = "backup", node: str = "n1", pid: int = 100, executed: int = 7,
            digest: str = "d7") -> ReplicaInfo:
    return ReplicaInfo(replica_id=rid, actor=None, node_id=node, pid=pid, role=role, executed=executed,
                       state_digest=digest)


def group(reps: List[ReplicaInfo], style: str = "semi-active", phase: str = "normal",
          joining: Any = ()) -> GroupInfo:
    return GroupInfo(group="g", view=1, style=style, phase=phase, primary=reps[0] if reps else None,
                     backups=reps[1:], joining=list(joining), counts={})


# ------------------------------------------------------------------ choices


@pytest.mark.parametrize("pid", [-1, 0, 1, None, "123", True, 2.5])
def test_check_pid_refuses_what_would_signal_many_processes_or_none(pid: Any) -> None:
    with pytest.raises(FaultError):
        check_pid(pid, "r0")


def test_check_pid_refuses_this_process_and_accepts_another() -> None:
    with pytest.raises(FaultError):
        check_pid(os.getpid(), "me")
    assert check_pid(4242, "r0", own_pid=1000) == 4242


def test_choose_replica_by_role_and_index() -> None:
    info = group([replica("r0", "primary"), replica("r1"), replica("r2")])
    assert choose_replica(info).replica_id == "r0"
    assert choose_replica(info, "backup", 1).replica_id == "r2"
    with pytest.raises(FaultError, match="2 backups"):
        choose_replica(info, "backup", 2)
    with pytest.raises(ValueError, match="role"):
        choose_replica(info, "router")


def test_choose_replica_without_a_primary_is_a_fault_error() -> None:
    with pytest.raises(FaultError, match="no primary"):
        choose_replica(group([]))


def test_backup_index_is_a_function_of_its_key_and_reaches_every_backup() -> None:
    assert all(backup_index(3, k) == backup_index(3, k) for k in range(20))
    assert {backup_index(3, k / 7) for k in range(200)} == {0, 1, 2}
    with pytest.raises(FaultError):
        backup_index(0, 1.5)


def test_removal_order_never_takes_the_head_nor_the_primary_with_the_router() -> None:
    # router on the head: the primary's worker node first, then the backups' worker nodes
    info = group([replica("p", "primary", "w1"), replica("b1", node="w2"), replica("b2", node="head")])
    assert [r.replica_id for r in removal_order(info, "head", "head")] == ["p", "b1"]
    # router on w1 with the primary: neither w1 (primary + router together) nor the head
    assert [r.replica_id for r in removal_order(info, "head", "w1")] == ["b1"]
    # router on w2 with a backup: the primary first, the router's node last
    assert [r.replica_id for r in removal_order(info, "head", "w2")] == ["p", "b1"]


def test_removal_order_never_takes_a_node_holding_two_members() -> None:
    # docs/faults.md row 49: a replacement placed beside the new primary (no node was free yet);
    # removing that node would take two members at once, a double fault
    info = group([replica("p", "primary", "w1"), replica("b1", node="w1"), replica("b2", node="head")])
    assert removal_order(info, "head", "head") == []
    info = group([replica("p", "primary", "w1"), replica("b1", node="w1"), replica("b2", node="w2")])
    assert [r.replica_id for r in removal_order(info, "head", "head")] == ["b2"]


def test_removal_order_is_empty_when_every_replica_is_on_the_head() -> None:
    info = group([replica("p", "primary", "head"), replica("b1", node="head")])
    assert removal_order(info, "head", "head") == []


def test_remove_node_refuses_a_node_that_is_not_a_worker() -> None:
    removed: List[Any] = []
    cluster = SimpleNamespace(worker_nodes=[SimpleNamespace(node_id="w1")],
                              remove_node=lambda node, allow_graceful: removed.append(node.node_id))
    with pytest.raises(FaultError, match="not a worker node"):
        remove_node(cluster, "head")
    remove_node(cluster, "w1")
    assert removed == ["w1"]


# ------------------------------------------------------- signals, for real


@pytest.fixture
def child() -> Any:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_pause_resume_and_kill_a_real_process(child: Any) -> None:
    victim = replica("r0", "primary", pid=child.pid)
    signal_process(child.pid, faults.signal.SIGSTOP, "r0")
    assert wait_status(child.pid, psutil.STATUS_STOPPED)
    resume(child.pid)
    assert wait_status(child.pid, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    assert kill(victim) is victim
    assert child.wait(timeout=10) == -faults.signal.SIGKILL


def test_kill_refuses_an_unknown_pid_and_an_unknown_way() -> None:
    with pytest.raises(FaultError):
        kill(replica("r0", pid=-1))
    with pytest.raises(ValueError, match="how"):
        kill(replica("r0", pid=4242), how="gently")


def test_resume_of_a_process_that_is_gone_is_no_error(child: Any) -> None:
    child.kill()
    child.wait()
    resume(child.pid)
    with pytest.raises(FaultError):
        resume(-1)


def wait_status(pid: int, *statuses: str) -> bool:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if psutil.Process(pid).status() in statuses:
            return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------- injector


def test_injector_refuses_an_unknown_fault_and_skips_a_backup_kill_without_backups(
        monkeypatch: pytest.MonkeyPatch) -> None:
    injector = Injector(handle=object())
    with pytest.raises(CampaignError, match="unknown fault"):
        injector.inject(Fault(1.0, "kill-everything"), FaultRecord("kill-everything", 1.0))
    monkeypatch.setattr(ftactors, "describe", lambda h, timeout_s=30.0: group([replica("p", "primary")]))
    record = FaultRecord("kill-backup", 1.0)
    injector.inject(Fault(1.0, "kill-backup"), record)
    assert record.skipped == "no backup" and record.pid == -1


def test_injector_skips_remove_node_without_a_cluster() -> None:
    record = FaultRecord("remove-node", 1.0)
    Injector(handle=object()).inject(Fault(1.0, "remove-node"), record)
    assert "needs --nodes" in record.skipped


class FakeCluster:
    """A ``ray.cluster_utils.Cluster`` that records node additions and removals in order."""

    def __init__(self, workers: List[str]) -> None:
        self.head_node = SimpleNamespace(node_id="head")
        self.worker_nodes = [SimpleNamespace(node_id=w) for w in workers]
        self.events: List[Any] = []

    def add_node(self, num_cpus: int, wait: bool) -> Any:
        node = SimpleNamespace(node_id=f"fresh{len(self.events)}")
        self.events.append(("add", num_cpus, wait))
        self.worker_nodes.append(node)
        return node

    def remove_node(self, node: Any, allow_graceful: bool) -> None:
        self.events.append(("remove", node.node_id))
        self.worker_nodes.remove(node)


def remove_node_with(monkeypatch: pytest.MonkeyPatch, cluster: FakeCluster, info: GroupInfo) -> FaultRecord:
    from ftactors.runtime import api

    monkeypatch.setattr(api, "describe", lambda h, timeout_s=30.0: info)
    monkeypatch.setattr(faults, "router_node", lambda h, timeout_s=15.0: "head")
    record = FaultRecord("remove-node", 1.0)
    Injector(handle=object(), cluster=cluster).inject(Fault(1.0, "remove-node"), record)
    return record


def test_remove_node_adds_the_fresh_node_and_waits_for_it_before_removing_the_victims(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/faults.md row 49: with the fresh node started only after the removal, the replacement
    # found no free node and went beside a member; the next removal took two members
    cluster = FakeCluster(["w1", "w2"])
    info = group([replica("p", "primary", "w1"), replica("b1", node="w2"), replica("b2", node="head")])
    record = remove_node_with(monkeypatch, cluster, info)
    assert cluster.events == [("add", 1, True), ("remove", "w1")]
    assert (record.victim, record.node, record.members_taken, record.skipped) == ("p", "w1", 1, "")


def test_remove_node_is_skipped_without_adding_a_node_when_every_removable_node_holds_two_members(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = FakeCluster(["w1"])
    info = group([replica("p", "primary", "w1"), replica("b1", node="w1"), replica("b2", node="head")])
    record = remove_node_with(monkeypatch, cluster, info)
    assert cluster.events == []
    assert "no replica alone on a removable worker node" in record.skipped and record.members_taken == 0


# ------------------------------------------------------------------ checks


def op(index: int, value: Any = None, error: Any = None, etype: Any = None) -> Op:
    return Op(index, 0, float(index), float(index) + 0.1, value, error, etype)


def test_audit_finds_lost_twice_and_mismatched_operations() -> None:
    audit = audit_tokens({"a": 1, "b": 2, "c": 9, "d": 3}, ["a", "b", "b", "x"], positions=True)
    assert audit.lost == ("c", "d")
    assert audit.applied_twice == 1
    assert audit.mismatched == ()  # "a" at 1, "b" at 2; the lost ones are reported as lost
    text = audit.violations("transfers")
    assert any("2 acknowledged transfers are not in the log" in v for v in text)
    assert any("1 transfers were applied twice" in v for v in text)


def test_audit_finds_a_reply_naming_the_wrong_position() -> None:
    audit = audit_tokens({"a": 2, "b": 1}, ["a", "b"], positions=True)
    assert audit.mismatched == ("a", "b") and audit.violations()
    assert audit_tokens({"a": 1, "b": 2}, ["a", "b"], positions=True).violations() == []


def test_money_must_be_conserved() -> None:
    assert money_violations(1000, 1000) == []
    assert money_violations(999, 1000) == ["money not conserved: 999 != 1000"]


def test_failed_calls_are_violations_unless_allowed() -> None:
    history = [op(0, 1), op(1, error="KeyError: x", etype="allowed:KeyError"), op(2, error="GroupLostError: y",
                                                                                   etype="GroupLostError")]
    assert failed_calls(history) == ["1 calls failed; first: op 2: GroupLostError: y"]
    assert failed_calls(history[:2]) == []


@pytest.mark.parametrize("style", ["semi-active", "passive"])
def test_agreement_fails_when_every_replica_is_unreachable(style: str) -> None:
    unreachable = [replica(r, "backup", pid=-1, executed=-1, digest="") for r in ("r0", "r1", "r2")]
    agree, detail = agreement(group(unreachable, style), 3)
    assert not agree and "unreachable" in detail
    assert agreement(group([replica("r0", "primary"), replica("r1"), replica("r2")], style), 3) == (
        True, "3 replicas at position 7")


def test_ready_needs_every_replica_with_a_pid_and_no_join() -> None:
    whole = [replica("r0", "primary"), replica("r1"), replica("r2")]
    assert is_ready(group(whole), 3)
    assert not is_ready(group(whole[:2]), 3)
    assert not is_ready(group(whole, joining=["r3"]), 3)
    assert not is_ready(group(whole, phase="recovering"), 3)
    assert not is_ready(group([whole[0], whole[1], replica("r2", pid=-1)]), 3)


def test_the_report_says_how_many_members_each_fault_took(monkeypatch: pytest.MonkeyPatch) -> None:
    from ftactors.chaos import Result, faults_table
    from rich.console import Console

    monkeypatch.setattr(faults, "kill", lambda victim, how="sigkill": victim)
    info = group([replica("p", "primary"), replica("b1")])
    monkeypatch.setattr(ftactors, "describe", lambda h, timeout_s=30.0: info)
    kill_backup = FaultRecord("kill-backup", 1.0, at_s=1.0)
    Injector(handle=object()).inject(Fault(1.0, "kill-backup"), kill_backup)
    assert kill_backup.members_taken == 1
    records = [kill_backup, FaultRecord("kill-router", 2.0, at_s=2.0),
               FaultRecord("remove-node", 3.0, skipped="no replica alone on a removable worker node")]
    result = Result("g", 1, "semi-active", 3, 5.0, [], records, [], 0, True)
    assert result.summary()["members_taken_max"] == 1
    records.append(FaultRecord("remove-node", 4.0, at_s=4.0, victim="b1", members_taken=2))
    assert result.summary()["members_taken_max"] == 2
    console = Console(record=True, width=120)
    faults_table(result, console)
    cells = [[c.strip() for c in ln.split("│")[1:-1]] for ln in console.export_text().splitlines() if "│" in ln]
    # fault, victim, members: the skipped removal took none and says so in no column
    assert [(c[1], c[2], c[4]) for c in cells] == [("kill-backup", "b1", "1"), ("kill-router", "", "0"),
                                                   ("remove-node", "", ""), ("remove-node", "b1", "2")]


def test_caller_pause_is_the_longest_gap_in_completions_after_a_fault() -> None:
    history = [op(i) for i in (0, 1, 2)] + [Op(3, 0, 2.2, 5.0, 1), Op(4, 0, 5.0, 5.2, 1)]
    f = FaultRecord("kill-primary", 2.0, at_s=2.5)
    skipped = FaultRecord("kill-backup", 3.0)
    caller_pauses(history, [f, skipped], end_s=6.0)
    assert f.pause_s == pytest.approx(5.0 - 2.1)  # from the last completion before the fault
    assert skipped.pause_s is None


def test_modules_written_against_ftactors_campaign_get_the_same_names() -> None:
    import ftactors.campaign as old
    import ftactors.chaos as chaos

    assert set(chaos.__all__) <= set(dir(old))
    assert old.Campaign is chaos.Campaign and old.kill_replica is chaos.kill_replica


def test_a_lagging_replica_is_described_with_what_it_waits_for_and_what_the_router_holds_for_it() -> None:
    lagging = dataclasses.replace(replica("r1", executed=1044), waits_for="the announcement of position 1045 "
                                  "(0 later ones held)", next_deliver=812, delivers_waiting=2)
    info = dataclasses.replace(group([replica("r0", "primary", executed=1269), lagging, replica("r2", executed=1269)]),
                               links={"r1": {"acked": 1044, "inflight": 1, "queued_requests": 0,
                                             "queued_announcements": 225, "sent_ago_s": 61.0, "heard_ago_s": 0.1,
                                             "progress_ago_s": 61.0, "wire": "up", "delivers_sent": 812}})
    agree, detail = agreement(info, 3)
    assert not agree
    assert detail.startswith("executed positions differ: [1269, 1044, 1269]; r1 (backup) at 1044")
    assert "waits for the announcement of position 1045" in detail
    assert "applies Deliver 812 next (2 later ones wait for it)" in detail
    assert "1 Deliver(s) in flight of 812 sent" in detail and "225 announcements queued" in detail
    assert "r0" not in detail.split(";", 1)[1] and "r2" not in detail.split(";", 1)[1]  # only the laggard


def test_the_routers_link_ticks_are_reported_in_seconds() -> None:
    from ftactors.runtime.api import group_info

    d = {"group": "g", "view": 3, "phase": "normal", "members": ["r0"], "joining": [], "counts": {},
         "diverged": [], "last_failover_s": None, "retained_requests": 0, "retained_order": 0,
         "retained_replies": 0, "settings": {"style": "semi-active", "tick_s": 0.01},
         "replicas": {"r0": {"executed": 5, "waits_for": "", "next_deliver": 4}},
         "links": {"r0": {"acked": 5, "inflight": 0, "sent_ago_ticks": 250, "wire": "up"}}}
    info = group_info(d)
    assert info.links == {"r0": {"acked": 5, "inflight": 0, "sent_ago_s": 2.5, "wire": "up"}}
    assert info.primary is not None and info.primary.next_deliver == 4

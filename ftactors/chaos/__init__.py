"""Chaos: faults injected into replicated groups on a real Ray cluster, and campaigns built on them.

One package, one set of fault primitives:

* :mod:`~ftactors.chaos.faults`: kill a replica (SIGKILL or ``ray.kill``), kill the router, pause
  and resume a replica (SIGSTOP / SIGCONT), remove and add a node of a local ``Cluster`` (the
  fresh node first, so that one removal takes one member); the choices (which replica, backup,
  node) as pure functions;
* :mod:`~ftactors.chaos.plan`: the fault kinds and the seeded plan;
* :mod:`~ftactors.chaos.clients`: client threads and the history (:class:`Op`);
* :mod:`~ftactors.chaos.campaign`: the :class:`Campaign` contract of ``ftactors chaos``, its
  :class:`Injector` and the run loop (:func:`run`);
* :mod:`~ftactors.chaos.checks`: lost, applied twice, money, agreement, calls failed;
* :mod:`~ftactors.chaos.report`: :class:`Result`, the table, ``result.json``, ``latency.png``;
* :mod:`~ftactors.chaos.session` and :mod:`~ftactors.chaos.config`: Ray for the commands, and
  ``configs/chaos.yaml``.

The campaign, ``ftactors demo``, the examples and the tests all inject faults with these.
"""

from ftactors.chaos.campaign import Campaign, Injector, load_campaign, run
from ftactors.chaos.checks import (
    TokenAudit,
    agreement,
    audit_tokens,
    failed_calls,
    group_ready,
    is_ready,
    money_violations,
    replicas_agree,
    wait_until,
)
from ftactors.chaos.clients import Clients, Op
from ftactors.chaos.config import ChaosConfig
from ftactors.chaos.errors import CampaignError, FaultError
from ftactors.chaos.faults import (
    add_node,
    backup_index,
    check_pid,
    choose_replica,
    kill,
    kill_replica,
    kill_router,
    pause_replica,
    pick,
    primary_node,
    remove_node,
    remove_replica_node,
    removal_order,
    replace_replica_node,
    resume,
    router_node,
    router_pid,
)
from ftactors.chaos.plan import FAULTS, Fault, FaultRecord, parse_faults, plan_faults
from ftactors.chaos.report import (
    Result,
    caller_pauses,
    faults_table,
    group_memory_mib,
    render_report,
    write_outputs,
)
from ftactors.chaos.session import HEALTH_CHECK_ENV, check_address, start_ray, stop_ray

__all__ = [
    "FAULTS", "HEALTH_CHECK_ENV", "Campaign", "CampaignError", "ChaosConfig", "Clients", "Fault", "FaultError",
    "FaultRecord", "Injector", "Op", "Result", "TokenAudit", "add_node", "agreement", "audit_tokens",
    "backup_index", "caller_pauses", "check_address", "check_pid", "choose_replica", "failed_calls",
    "faults_table", "group_memory_mib", "group_ready", "is_ready", "kill", "kill_replica", "kill_router",
    "load_campaign", "money_violations", "parse_faults", "pause_replica", "pick", "plan_faults", "primary_node",
    "removal_order", "remove_node", "remove_replica_node", "render_report", "replace_replica_node",
    "replicas_agree", "resume", "router_node", "router_pid", "run", "start_ray", "stop_ray", "wait_until",
    "write_outputs",
]

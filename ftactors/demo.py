"""``ftactors demo``: a replicated bank whose primary is killed every few seconds.

Clients (threads) transfer money between accounts; every transfer carries a
unique id and the bank records the ids it applied. At the end the demo checks
that no acknowledged transfer was lost, none was applied twice, the money is
conserved, every reply matches the position its transfer took, and the
replicas agree.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import ray

from ftactors.chaos import (Campaign, Op, Result, audit_tokens, money_violations, plan_faults, render_report, run,
                            write_outputs)


class Bank:
    """Accounts and the ordered list of transfer ids applied (to see losses and duplicates)."""

    def __init__(self, accounts: int = 10, initial: int = 1000) -> None:
        self.balances = [initial] * accounts
        self.applied: List[str] = []
        self.rejected = 0

    def transfer(self, txid: str, src: int, dst: int, amount: int) -> int:
        """Move ``amount`` from ``src`` to ``dst`` (rejected if ``src`` lacks funds). Returns the position."""
        self.applied.append(txid)
        if self.balances[src] >= amount:
            self.balances[src] -= amount
            self.balances[dst] += amount
        else:
            self.rejected += 1
        return len(self.applied)

    def total(self) -> int:
        return sum(self.balances)

    def audit(self) -> Dict[str, Any]:
        return {"total": sum(self.balances), "applied": list(self.applied), "rejected": self.rejected,
                "balances": list(self.balances)}


class BankChecks:
    """Workload, figures and check of the demo; one audit shared by figures and check."""

    def __init__(self, accounts: int, initial: int) -> None:
        self.accounts, self.expected = accounts, accounts * initial
        self.violations: List[str] = []

    def workload(self, handle: Any, rng: Any, op_index: int) -> Any:
        src, dst = rng.sample(range(self.accounts), 2)
        return handle.transfer.remote(f"tx{op_index}", src, dst, rng.randint(1, 50))

    def figures(self, handle: Any, history: Sequence[Op]) -> Dict[str, Any]:
        """Audit the bank once: transfers acknowledged, applied, lost, applied twice; the money."""
        audit = ray.get(handle.audit.remote(), timeout=60)
        tokens = audit_tokens({f"tx{op.index}": op.value for op in history if op.ok}, audit["applied"],
                              positions=True)
        self.violations = tokens.violations("transfers") + money_violations(audit["total"], self.expected)
        return {
            "operations_acknowledged": tokens.acknowledged,
            "operations_applied": tokens.applied,
            "operations_lost": len(tokens.lost),
            "operations_applied_twice": tokens.applied_twice,
            "replies_mismatched": len(tokens.mismatched),
            "money_expected": self.expected,
            "money_final": audit["total"],
            "money_conserved": audit["total"] == self.expected,
            "transfers_rejected_for_funds": audit["rejected"],
        }

    def check(self, handle: Any, history: Sequence[Op]) -> List[str]:
        """The violations :meth:`figures` found (the campaign calls figures first)."""
        return list(self.violations)


def make_campaign(style: str = "semi-active", replicas: int = 3, clients: int = 4, accounts: int = 10,
                  initial: int = 1000) -> Campaign:
    import ftactors

    checks = BankChecks(accounts, initial)
    target = ftactors.replicated(replicas=replicas, style=style, checkpoint_every=50)(Bank)
    return Campaign(target=target, workload=checks.workload, check=checks.check, figures=checks.figures,
                    args=(accounts, initial), clients=clients, name="bank")


def extra_rows(result: Result) -> List[Tuple[str, str, Optional[bool]]]:
    f, injected = result.figures, result.injected
    return [
        ("primary kills", str(injected), None),
        ("failovers == kills", f"{result.failovers} / {injected}", result.failovers == injected),
        ("operations lost", str(f.get("operations_lost")), f.get("operations_lost") == 0),
        ("operations applied twice", str(f.get("operations_applied_twice")), f.get("operations_applied_twice") == 0),
        ("replies matching their position", f"{f.get('operations_acknowledged', 0) - f.get('replies_mismatched', 0)}"
         f" / {f.get('operations_acknowledged')}", f.get("replies_mismatched") == 0),
        ("money conserved", f"{f.get('money_final')} / {f.get('money_expected')}", f.get("money_conserved")),
    ]


def run_demo(*, style: str = "semi-active", replicas: int = 3, clients: int = 4, duration_s: float = 20.0,
             kill_every_s: float = 4.0, seed: int = 0, cluster: Any = None, out: str = "out/demo",
             progress: bool = True, console: Any = None) -> Tuple[Result, Dict[str, Any]]:
    """Run the demo on an initialised Ray; print the report; return the result and output paths."""
    from rich.console import Console

    console = console or Console()
    campaign = make_campaign(style, replicas, clients)
    plan = plan_faults(seed, ["kill-primary"], kill_every_s, duration_s, tail_s=min(2.0, kill_every_s / 2))
    console.print(f"[bold]ftactors demo[/]: a {style} bank with {replicas} replicas, {clients} clients, "
                  f"{len(plan)} primary kills over {duration_s:g}s (seed {seed})")
    result = run(campaign, seed=seed, plan=plan, duration_s=duration_s, cluster=cluster, progress=progress,
                 label="demo")
    if result.failovers != result.injected:
        result.violations.append(f"{result.failovers} failovers for {result.injected} primary kills")
    render_report(result, console, extra_rows(result))
    paths = write_outputs(result, out, f"ftactors demo: bank call latency, primary killed at the dashed lines "
                                       f"({style})")
    return result, paths

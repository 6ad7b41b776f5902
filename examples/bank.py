"""A replicated bank: concurrent transfers while the primary is killed; money is conserved.

    python examples/bank.py            # about 20 s
    python examples/bank.py --quick    # a few seconds of load (also: FTACTORS_EXAMPLE_QUICK=1)

Uses a private local Ray (or the cluster in RAY_ADDRESS).
"""

import os
import random
import sys
import threading
import time

import ray

import ftactors
from ftactors.chaos import Campaign, audit_tokens, kill_replica, money_violations

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


@ftactors.replicated(replicas=3, style="semi-active")
class Bank:
    def __init__(self, accounts: int, initial: int) -> None:
        self.balances = {f"acct{i}": initial for i in range(accounts)}
        self.done = set()          # transfer ids applied: a retried transfer is not applied twice

    def transfer(self, txid: str, src: str, dst: str, amount: int) -> bool:
        if txid in self.done:
            raise RuntimeError(f"{txid} applied twice")   # never happens: ftactors delivers once
        self.done.add(txid)
        if self.balances[src] < amount:
            return False
        self.balances[src] -= amount
        self.balances[dst] += amount
        return True

    def total(self) -> int:
        return sum(self.balances.values())

    def applied(self) -> int:
        return len(self.done)

    def audit(self) -> dict:
        return {"total": self.total(), "done": sorted(self.done)}


# ``ftactors chaos examples/bank.py`` (and configs/soak-bank.yaml): the same bank under every kind of fault
ACCOUNTS, INITIAL = 8, 1_000


def workload(handle, rng, op_index):
    """One transfer between two random accounts; its id is derived from op_index."""
    src, dst = rng.sample(range(ACCOUNTS), 2)
    return handle.transfer.remote(f"t{op_index}", f"acct{src}", f"acct{dst}", rng.randint(1, 100))


def check(handle, history):
    """Money is conserved and every acknowledged transfer was applied exactly once."""
    state = ray.get(handle.audit.remote(), timeout=60)
    acked = {f"t{op.index}": op.value for op in history if op.ok}
    return (money_violations(state["total"], ACCOUNTS * INITIAL)
            + audit_tokens(acked, state["done"]).violations("transfers"))


CHAOS = Campaign(target=Bank, workload=workload, check=check, args=(ACCOUNTS, INITIAL), clients=3)


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    accounts, initial = ACCOUNTS, INITIAL
    bank = Bank.remote(accounts, initial)
    acked, errors = [], []
    stop = threading.Event()

    def client(worker: int) -> None:
        rng, i = random.Random(worker), 0
        while not stop.is_set():
            src, dst = rng.sample(range(accounts), 2)
            txid = f"w{worker}-{i}"
            try:
                ray.get(bank.transfer.remote(txid, f"acct{src}", f"acct{dst}", rng.randint(1, 100)), timeout=60)
                acked.append(txid)
            except Exception as exc:
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    rounds = 1 if QUICK else 3
    for _ in range(rounds):
        time.sleep(2 if QUICK else 5)
        victim = kill_replica(bank, "primary")
        print(f"killed the primary {victim.replica_id} (pid {victim.pid}) after {len(acked)} transfers")
    time.sleep(2 if QUICK else 5)
    stop.set()
    for t in threads:
        t.join()
    total, applied = ray.get(bank.total.remote()), ray.get(bank.applied.remote())
    info = ftactors.describe(bank)
    print(f"transfers acknowledged: {len(acked)}, applied: {applied}, failed calls: {len(errors)}")
    print(f"money: {total} (expected {accounts * initial}); view {info.view}, failovers {info.counts['failovers']}")
    ok = total == accounts * initial and applied == len(acked) and not errors
    print("OK: money conserved, every transfer applied once" if ok else "FAILED")
    ftactors.shutdown(bank)
    ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

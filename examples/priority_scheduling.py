"""Priority and deadline scheduling, made visible.

A slow call holds the primary; meanwhile low- and high-priority calls queue up.
With ``scheduling="priority"`` the primary runs the high ones first when the slow call
ends; with ``scheduling="deadline"`` the earliest deadline runs first. The backups
execute the same order: the primary announces it.

    python examples/priority_scheduling.py [--quick]
"""

import os
import sys
import time

import ray

import ftactors

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


class Worker:
    def __init__(self) -> None:
        self.order = []

    def slow(self, seconds: float) -> str:
        time.sleep(seconds)        # blocks the primary; the calls below queue meanwhile
        self.order.append("slow")
        return "slow"

    def job(self, name: str) -> str:
        self.order.append(name)
        return name

    def executed(self) -> list:
        return list(self.order)


def wait_queued(handle, n: int, timeout_s: float = 30.0) -> None:
    """Poll the router until ``n`` requests have been received."""
    deadline = time.monotonic() + timeout_s
    while ftactors.stats(handle)["requests"] < n and time.monotonic() < deadline:
        time.sleep(0.05)


def run(scheduling: str) -> list:
    group = ftactors.replicated(replicas=2, scheduling=scheduling)(Worker).remote()
    ray.get(group.executed.remote())  # the group is up (.remote() returns before it is)
    slow = group.slow.remote(1.0 if QUICK else 2.0)
    time.sleep(0.3)                # let the slow call start
    refs = []
    for i in range(3):
        if scheduling == "priority":
            refs.append(group.job.options(priority=0).remote(f"low{i}"))
            refs.append(group.job.options(priority=9).remote(f"high{i}"))
        else:
            refs.append(group.job.options(deadline_s=60 + i).remote(f"late{i}"))
            refs.append(group.job.options(deadline_s=5 + i).remote(f"urgent{i}"))
    wait_queued(group, 7)
    ray.get([slow] + refs)
    order = ray.get(group.executed.remote())
    ftactors.shutdown(group)
    return order


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    by_priority = run("priority")
    print(f"priority order executed: {by_priority}")
    by_deadline = run("deadline")
    print(f"deadline order executed: {by_deadline}")
    ray.shutdown()
    first_high = [x for x in by_priority[1:4]]
    first_urgent = [x for x in by_deadline[1:4]]
    ok = (all(x.startswith("high") for x in first_high) and all(x.startswith("urgent") for x in first_urgent)
          and by_priority[0] == "slow" and by_deadline[0] == "slow")
    print("OK: high priority and earliest deadlines ran first" if ok else "FAILED: queued calls ran in another order")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

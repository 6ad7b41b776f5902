"""Ray Serve in front of a replicated actor: HTTP clients keep posting while the primary is killed.

    python examples/serve_gateway.py            # about 20 s of load, 2 primary kills
    python examples/serve_gateway.py --quick    # a few seconds, 1 kill (also: FTACTORS_EXAMPLE_QUICK=1)

A Serve deployment takes ``POST /append {"token": ...}`` and appends the token to a replicated
ledger (3 replicas). Every HTTP request must succeed, and every token must be in the ledger
exactly once, although the ledger's primary process is SIGKILLed under load. Needs
``pip install 'ftactors[serve]'`` (``ray[serve]``). Uses a private local Ray (or RAY_ADDRESS).
"""

import json
import os
import socket
import sys
import threading
import time
import urllib.request
from typing import Dict, List

import ray
from ray import serve
from starlette.requests import Request

import ftactors
from ftactors.chaos import kill_replica

QUICK = "--quick" in sys.argv or os.environ.get("FTACTORS_EXAMPLE_QUICK") == "1"


@ftactors.replicated(replicas=3)
class Ledger:
    def __init__(self) -> None:
        self.entries: List[str] = []

    def append(self, token: str) -> int:
        self.entries.append(token)
        return len(self.entries)

    def read(self) -> List[str]:
        return list(self.entries)


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Gateway:
    """The HTTP front end: one replicated-actor call per request."""

    def __init__(self, ledger) -> None:  # a ftactors.ReplicatedHandle, passed like any handle
        self.ledger = ledger

    async def __call__(self, request: Request) -> Dict[str, object]:
        token = (await request.json())["token"]
        position = await self.ledger.append.remote(token)
        return {"token": token, "position": position}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, token: str) -> Dict[str, object]:
    req = urllib.request.Request(url, data=json.dumps({"token": token}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        return json.loads(resp.read())


def main() -> int:
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False, logging_level="error",
             log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    ledger = Ledger.remote()
    serve.run(Gateway.bind(ledger), name="ledger-gateway", route_prefix="/append")
    url = f"http://127.0.0.1:{port}/append"
    answers: List[Dict[str, object]] = []
    errors: List[str] = []
    stop = threading.Event()

    def client(worker: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                answers.append(post(url, f"w{worker}-{i}"))
            except Exception as exc:  # counted: the check requires none
                errors.append(f"w{worker}-{i}: {exc!r}")
            i += 1

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    kills = 1 if QUICK else 2
    for _ in range(kills):
        start = len(answers)
        while len(answers) < start + (30 if QUICK else 200):
            time.sleep(0.05)
        victim = kill_replica(ledger, "primary")
        print(f"killed the ledger's primary {victim.replica_id} (pid {victim.pid}) after {len(answers)} requests")
    start = len(answers)
    while len(answers) < start + (30 if QUICK else 200):
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    entries = ray.get(ledger.read.remote(), timeout=60)
    acked = [str(a["token"]) for a in answers]
    twice = len(entries) - len(set(entries))
    lost = sorted(set(acked) - set(entries))
    wrong = [a for a in answers if entries[int(a["position"]) - 1] != a["token"]]  # type: ignore[call-overload]
    failovers = ftactors.describe(ledger).counts.get("failovers", 0)
    print(f"HTTP requests answered: {len(answers)}, HTTP errors: {len(errors)}, primary kills: {kills}, "
          f"failovers: {failovers}, applied twice: {twice}, lost: {len(lost)}, wrong position: {len(wrong)}")
    serve.delete("ledger-gateway")
    serve.shutdown()
    ftactors.shutdown(ledger)
    ok = not errors and not twice and not lost and not wrong and failovers >= kills
    print("OK" if ok else f"FAILED: {errors[:3]} {lost[:3]} {wrong[:3]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

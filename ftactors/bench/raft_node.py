"""One PySyncObj (Raft) node for the benchmark's non-Ray reference, run as a subprocess.

    python -m ftactors.bench.raft_node --self 127.0.0.1:P --partners 127.0.0.1:Q,127.0.0.1:R --rpc PORT

It hosts the same small deterministic state machine as the Ray systems (``inc``,
``add(token)``) and serves a tiny RPC on ``127.0.0.1:PORT``
(``multiprocessing.connection``): a request ``(id, op, args)`` is answered with
``(id, value, error)`` from PySyncObj's completion callback, so a client may pipeline.
Commands sent to a follower are forwarded to the leader by PySyncObj itself.
The node exits when its parent process dies.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from multiprocessing.connection import Listener
from typing import Any, List

from pysyncobj import SyncObj, SyncObjConf, replicated

AUTHKEY = b"ftactors-bench"

#: Fast failover (election timeout 0.1-0.3 s), batching off: see docs/benchmarks.md.
TUNED = dict(appendEntriesUseBatch=False, raftMinTimeout=0.1, raftMaxTimeout=0.3, appendEntriesPeriod=0.02,
             autoTickPeriod=0.01, connectionTimeout=0.35, connectionRetryTime=0.1, leaderFallbackTimeout=1.0,
             dynamicMembershipChange=False)


class BenchObj(SyncObj):
    """The replicated state machine: a counter and the list of applied tokens."""

    def __init__(self, self_addr: str, partners: List[str]) -> None:
        super().__init__(self_addr, partners, SyncObjConf(**TUNED))
        self.n = 0
        self.tokens: List[str] = []

    @replicated
    def inc(self, x: int = 1) -> int:
        self.n += x
        return self.n

    @replicated
    def add(self, token: str) -> int:
        self.n += 1
        self.tokens.append(token)
        return self.n


def _serve(conn: Any, obj: BenchObj) -> None:
    lock = threading.Lock()

    def reply(rid: int, value: Any, err: Any) -> None:
        with lock:
            try:
                conn.send((rid, value, err))
            except Exception:
                pass

    while True:
        try:
            rid, op, args = conn.recv()
        except Exception:
            return
        if op in ("inc", "add"):
            def cb(res: Any, err: Any, rid: int = rid) -> None:
                reply(rid, res, None if err == 0 else int(err))
            try:
                getattr(obj, op)(*args, callback=cb)
            except Exception as exc:
                reply(rid, None, repr(exc))
        elif op == "status":
            st = obj.getStatus()
            leader = st.get("leader")
            reply(rid, {"self": str(st["self"]), "leader": None if leader is None else str(leader),
                        "state": st["state"], "commit_idx": st["commit_idx"],
                        "last_applied": st["last_applied"], "pid": os.getpid()}, None)
        elif op == "read":
            reply(rid, {"n": obj.n, "tokens": list(obj.tokens)}, None)
        else:
            reply(rid, None, f"unknown op {op!r}")


def _orphan_watch() -> None:
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--self", dest="self_addr", required=True)
    ap.add_argument("--partners", required=True)
    ap.add_argument("--rpc", type=int, required=True)
    a = ap.parse_args(argv)
    threading.Thread(target=_orphan_watch, daemon=True).start()
    obj = BenchObj(a.self_addr, [p for p in a.partners.split(",") if p])
    listener = Listener(("127.0.0.1", a.rpc), authkey=AUTHKEY)
    print("ready", flush=True)
    while True:
        conn = listener.accept()
        threading.Thread(target=_serve, args=(conn, obj), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())

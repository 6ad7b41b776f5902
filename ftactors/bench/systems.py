"""The systems under test, behind one small interface.

Every system runs the same deterministic application (:class:`Bench`): ``inc`` for
latency and throughput, ``add(token)`` (records a unique token) for failover,
``echo_len(data)`` for argument sizes. Replicated systems have 3 replicas unless told.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter as _Counter
from multiprocessing.connection import Client
from typing import Any, Dict, List, Optional, Tuple

import ray

import ftactors
from ftactors import chaos


class Bench:
    """The application: small and deterministic.

    Args:
        state_bytes: size of an opaque blob kept in the state (passive checkpoint size).
        witness: a file where ``add`` appends each token it runs (ray-restart only: the
            actor's state is lost on restart, so runs are counted outside it).
    """

    def __init__(self, state_bytes: int = 0, witness: Optional[str] = None) -> None:
        self.n = 0
        self.tokens: List[str] = []
        self.blob = b"x" * state_bytes
        self.witness = witness

    def inc(self, x: int = 1) -> int:
        self.n += x
        return self.n

    def echo_len(self, data: bytes) -> int:
        self.n += 1
        return len(data)

    def add(self, token: str) -> int:
        self.n += 1
        self.tokens.append(token)
        if self.witness:
            fd = os.open(self.witness, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (token + "\n").encode())
            finally:
                os.close(fd)
        return self.n

    def read(self) -> Dict[str, Any]:
        return {"n": self.n, "tokens": list(self.tokens)}

    def pid(self) -> int:
        return os.getpid()


class BigBench(Bench):
    """Bench with a large blob. It supplies its own cheap state digest, as a user with a
    large state should, so the checkpoint figure measures the checkpoint, not the digest."""

    def __ftactors_digest__(self) -> Any:
        return (self.n, len(self.blob), len(self.tokens))


class PBPrimary(Bench):
    """Classic primary-backup: execute, forward to every backup, wait for their acks, reply."""

    def __init__(self, backups: List[Any]) -> None:
        super().__init__()
        self.backups = backups

    def inc(self, x: int = 1) -> int:
        n = super().inc(x)
        ray.get([b.inc.remote(x) for b in self.backups])
        return n

    def echo_len(self, data: bytes) -> int:
        r = super().echo_len(data)
        ray.get([b.echo_len.remote(data) for b in self.backups])
        return r

    def add(self, token: str) -> int:
        n = super().add(token)
        ray.get([b.add.remote(token) for b in self.backups])
        return n


class System:
    """A system under test."""

    name = "?"
    has_failover = False
    ray_based = True
    #: how many processes hold the state (1 for an unreplicated actor)
    replicas: int = 1

    def start(self) -> None: ...

    def call(self, method: str, *args: Any) -> Any:
        """One synchronous call."""
        raise NotImplementedError

    def pipelined(self, method: str, args_list: List[tuple]) -> List[Any]:
        """Submit every call, then wait for all of them."""
        raise NotImplementedError

    def client(self) -> "System":
        """An object whose ``call`` may be used from another thread."""
        return self

    def kill_primary(self) -> None:
        raise NotImplementedError

    def recovered(self) -> bool:
        return True

    def read(self) -> Dict[str, Any]:
        return self.call("read")

    def run_counts(self, tokens: List[str]) -> Dict[str, int]:
        """How many times each token ran (from the final state, or a witness)."""
        return dict(_Counter(tokens))

    def pids(self) -> List[int]:
        return []

    def stop(self) -> None: ...


class _RaySingle(System):
    def __init__(self, actor_cls: Any) -> None:
        self._cls = actor_cls
        self.a: Any = None

    def start(self) -> None:
        self.a = self._cls.remote()
        ray.get(self.a.pid.remote())

    def call(self, method: str, *args: Any) -> Any:
        return ray.get(getattr(self.a, method).remote(*args), timeout=120)

    def pipelined(self, method: str, args_list: List[tuple]) -> List[Any]:
        m = getattr(self.a, method)
        return ray.get([m.remote(*a) for a in args_list], timeout=600)

    def pids(self) -> List[int]:
        return [ray.get(self.a.pid.remote(), timeout=60)]

    def stop(self) -> None:
        if self.a is not None:
            ray.kill(self.a, no_restart=True)


class RayPlain(_RaySingle):
    name = "ray-plain"

    def __init__(self) -> None:
        super().__init__(ray.remote(Bench))


class RayRestart(_RaySingle):
    """A plain actor that Ray restarts (state lost; pending calls retried: at-least-once)."""

    name = "ray-restart"
    has_failover = True

    def __init__(self) -> None:
        fd, self.witness = tempfile.mkstemp(prefix="ftactors-bench-witness-")
        os.close(fd)
        super().__init__(ray.remote(Bench).options(max_restarts=-1, max_task_retries=-1))
        self._pid = -1

    def start(self) -> None:
        self.a = self._cls.remote(0, self.witness)
        self._pid = ray.get(self.a.pid.remote())

    def kill_primary(self) -> None:
        os.kill(self._pid, signal.SIGKILL)
        self._killed = self._pid

    def recovered(self) -> bool:
        try:
            pid = ray.get(self.a.pid.remote(), timeout=10)
        except Exception:
            return False
        self._pid = pid
        return pid != getattr(self, "_killed", None)

    def run_counts(self, tokens: List[str]) -> Dict[str, int]:
        with open(self.witness) as f:
            return dict(_Counter(line.strip() for line in f if line.strip()))

    def stop(self) -> None:
        super().stop()
        try:
            os.unlink(self.witness)
        except OSError:
            pass


class NaiveActive(System):
    """The caller sends every call to all replicas and waits for all replies."""

    name = "naive-active"

    def __init__(self, replicas: int = 3) -> None:
        self.replicas = replicas
        self.actors: List[Any] = []

    def start(self) -> None:
        self.actors = [ray.remote(Bench).remote() for _ in range(self.replicas)]
        ray.get([a.pid.remote() for a in self.actors])

    def call(self, method: str, *args: Any) -> Any:
        return ray.get([getattr(a, method).remote(*args) for a in self.actors], timeout=120)[0]

    def pipelined(self, method: str, args_list: List[tuple]) -> List[Any]:
        refs = [[getattr(a, method).remote(*x) for a in self.actors] for x in args_list]
        out = ray.get([r for rs in refs for r in rs], timeout=600)
        return out[:: self.replicas]

    def pids(self) -> List[int]:
        return ray.get([a.pid.remote() for a in self.actors])

    def stop(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)


class PrimaryBackupAck(_RaySingle):
    """Classic primary-backup: the primary forwards each call and waits for the backups' acks."""

    name = "primary-backup-ack"

    def __init__(self, replicas: int = 3) -> None:
        self.replicas = replicas
        super().__init__(ray.remote(PBPrimary))
        self.backups: List[Any] = []

    def start(self) -> None:
        self.backups = [ray.remote(Bench).remote() for _ in range(self.replicas - 1)]
        self.a = self._cls.remote(self.backups)
        ray.get([x.pid.remote() for x in [self.a, *self.backups]])

    def pids(self) -> List[int]:
        return ray.get([x.pid.remote() for x in [self.a, *self.backups]])

    def stop(self) -> None:
        super().stop()
        for b in self.backups:
            ray.kill(b, no_restart=True)


class FtActors(System):
    """An ftactors group (semi-active or passive)."""

    has_failover = True

    def __init__(self, style: str, replicas: int = 3, cls: type = Bench, init_args: tuple = (),
                 **settings: Any) -> None:
        self.style, self.replicas = style, replicas
        self.name = f"ftactors-{style}" + ("-ray" if settings.get("data_plane") == "ray" else "")
        self._cls, self._init_args, self._settings = cls, init_args, settings
        self.h: Any = None
        self.failover_done_ms: List[float] = []
        self.spares = int(settings.get("spares") or 0)
        #: time.monotonic() when the members were whole again after each kill (before the spare pool)
        self.members_back: List[float] = []
        self._members_noted = True

    def start(self) -> None:
        self.h = ftactors.replicated(replicas=self.replicas, style=self.style, **self._settings)(self._cls) \
            .remote(*self._init_args)
        ray.get(self.h.inc.remote(0), timeout=120)
        deadline = time.monotonic() + 120
        while self.spares and len(ftactors.describe(self.h).spares) < self.spares:  # the first kill takes one
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {self.spares} warm spares not ready within 120 s")
            time.sleep(0.1)

    def call(self, method: str, *args: Any) -> Any:
        return ray.get(getattr(self.h, method).remote(*args), timeout=120)

    def pipelined(self, method: str, args_list: List[tuple]) -> List[Any]:
        m = getattr(self.h, method)
        return ray.get([m.remote(*a) for a in args_list], timeout=600)

    def kill_primary(self) -> None:
        victim = chaos.pick(self.h, "primary")
        self._killed_wall: Optional[float] = time.time()
        self._members_noted = False
        chaos.kill(victim)

    def recovered(self) -> bool:
        info = ftactors.describe(self.h)
        killed = getattr(self, "_killed_wall", None)
        if killed is not None and info.last_failover_s is not None and info.last_failover_s >= killed:
            # when the router counted the failover (it saw the death), after the kill (same machine clock)
            self.failover_done_ms.append((info.last_failover_s - killed) * 1000)
            self._killed_wall = killed = None
        if killed is not None:
            return False  # the router has not seen the kill yet: the old view still looks whole
        if len(info.replicas) != self.replicas or info.joining or info.phase != "normal":
            return False
        if any(r.executed < 0 for r in info.replicas):
            return False  # a replica that did not answer describe: not recovered (-1 == -1 is no agreement)
        if not (len({r.executed for r in info.replicas}) == 1 or self.style == "passive"):
            return False
        if not self._members_noted:
            self.members_back.append(time.monotonic())
            self._members_noted = True
        # with warm spares, the next kill waits for the pool to be full again: each kill takes a spare
        return len(info.spares) >= self.spares

    def stats(self) -> Dict[str, int]:
        return ftactors.stats(self.h)

    def pids(self) -> List[int]:
        info = ftactors.describe(self.h)
        return [r.pid for r in info.replicas if r.pid > 0] + [chaos.router_pid(self.h)]

    def stop(self) -> None:
        if self.h is not None:
            try:
                ftactors.shutdown(self.h)
            except Exception:
                pass


class NestedBench:
    """A frontend whose every ``inc`` makes one nested call to a backend group (``Bench``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.n = 0

    def inc(self, x: int = 1) -> int:
        self.n = ray.get(self.backend.inc.remote(x))
        return self.n


class FtActorsNested(FtActors):
    """Two ftactors groups of one style, the frontend calling the backend once per call (issue 11:
    the messages a nested call costs). ``stats()`` is the frontend's counters plus the backend's
    ``null_messages`` and the reply copies the frontend's backups pulled from it (``nested_pulls``)."""

    def __init__(self, style: str, replicas: int = 3, **settings: Any) -> None:
        super().__init__(style, replicas, cls=NestedBench, **settings)
        self.name = f"ftactors-{style}-nested"
        self.backend: Any = None

    def start(self) -> None:
        self.backend = ftactors.replicated(replicas=self.replicas, style=self.style, **self._settings)(Bench).remote()
        ray.get(self.backend.inc.remote(0), timeout=120)
        self._init_args = (self.backend,)
        super().start()

    def stats(self) -> Dict[str, int]:
        out = dict(ftactors.stats(self.h))
        back = ftactors.stats(self.backend)
        out["nested_pulls"] = back["reply_copies"]
        out["backend_null_messages"] = back["null_messages"]
        return out

    def stop(self) -> None:
        super().stop()
        if self.backend is not None:
            try:
                ftactors.shutdown(self.backend)
            except Exception:
                pass


# --------------------------------------------------------------------------- bare relay


class RelayExecutor(Bench):
    """One replica of the bare relay: a threaded actor that executes what comes on its direct link."""

    def __init__(self, secret: bytes) -> None:
        super().__init__()
        from ftactors.runtime import wire

        self._lock = threading.Lock()
        self._wire = wire.WireServer(ray.util.get_node_ip_address(), None, secret, self._run, 64 * 2**20,
                                     name="bare relay executor")

    def address(self) -> Tuple[str, int]:
        return self._wire.address

    def _run(self, call_id: int, seq: int, epoch: str, body: bytes) -> Tuple[int, bytes]:
        from ftactors.runtime import wire

        method, args = wire.loads(body)
        with self._lock:
            out = getattr(self, method)(*args)
        return wire.KIND_DELIVERED, wire.dumps(out)


class RelayRouter:
    """The bare relay's router: an async actor that forwards each call over the direct links of
    ftactors' data plane to the primary and the backups, and answers with the primary's result.
    No ordering protocol, no exactly-once table, no failover: the least such a router can cost."""

    def __init__(self, addresses: List[Tuple[str, int]], secret: bytes) -> None:
        from ftactors.runtime import wire

        self._links = [wire.DirectLink((str(a[0]), int(a[1])), secret, 64 * 2**20) for a in addresses]
        self._seq = 0
        self._backup_calls: set = set()

    async def call(self, method: str, *args: Any) -> Any:
        import asyncio

        self._seq += 1
        msg = (method, args)
        for link in self._links[1:]:  # the backups execute too; their answers are not awaited
            t = asyncio.ensure_future(link.deliver(msg, "relay", self._seq))
            self._backup_calls.add(t)
            t.add_done_callback(self._backup_calls.discard)
        return await self._links[0].deliver(msg, "relay", self._seq)


class BareRelay(System):
    """The physical limit of ftactors' design on this machine (issue 11): a router actor relaying
    every call over the same direct links to a primary and two backups that execute it."""

    name = "bare-relay"

    def __init__(self, replicas: int = 3) -> None:
        self.replicas = replicas
        self.execs: List[Any] = []
        self.router: Any = None

    def start(self) -> None:
        from ftactors.runtime import wire

        secret = wire.new_secret()
        self.execs = [ray.remote(RelayExecutor).options(max_concurrency=4, enable_task_events=False).remote(secret)
                      for _ in range(self.replicas)]
        addresses = ray.get([e.address.remote() for e in self.execs], timeout=120)
        self.router = ray.remote(RelayRouter).options(max_concurrency=1000, enable_task_events=False) \
            .remote(addresses, secret)
        ray.get(self.router.call.remote("inc", 0), timeout=120)

    def call(self, method: str, *args: Any) -> Any:
        return ray.get(self.router.call.remote(method, *args), timeout=120)

    def pipelined(self, method: str, args_list: List[tuple]) -> List[Any]:
        return ray.get([self.router.call.remote(method, *a) for a in args_list], timeout=600)

    def pids(self) -> List[int]:
        return ray.get([e.pid.remote() for e in self.execs]) + [
            ray.get(self.router.__ray_call__.remote(lambda self: os.getpid()))]

    def stop(self) -> None:
        for h in [*self.execs, self.router]:
            if h is not None:
                ray.kill(h)


# --------------------------------------------------------------------------- PySyncObj

#: systems that need a Python package beyond ftactors' own (the ``bench`` extra)
_NEEDS = {"pysyncobj": "pysyncobj"}


def missing_dependency(name: str) -> Optional[str]:
    """Why the system ``name`` cannot run here, or None if it can.

    Args:
        name: a system name (``ftactors.bench.SYSTEM_NAMES``).

    Returns:
        None, or a short reason such as ``"pysyncobj is not installed (pip install
        'ftactors[bench]')"`` when a package the system needs cannot be imported.
    """
    module = _NEEDS.get(name)
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{module} is not installed (pip install 'ftactors[bench]')"
    return None


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RaftClient:
    """A connection to one Raft node's RPC; pipelining allowed (one thread per client)."""

    def __init__(self, rpc_port: int) -> None:
        self.port = rpc_port
        self.conn = Client(("127.0.0.1", rpc_port), authkey=b"ftactors-bench")
        self._next = 0

    def send(self, op: str, *args: Any) -> int:
        self._next += 1
        self.conn.send((self._next, op, args))
        return self._next

    def recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"no reply from raft node :{self.port} in {timeout}s")
        return self.conn.recv()

    def rpc(self, op: str, *args: Any, timeout: float = 5.0) -> Any:
        rid = self.send(op, *args)
        while True:
            got, value, err = self.recv(timeout)
            if got == rid:
                if err is not None:
                    raise RaftError(err)
                return value

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


class RaftError(Exception):
    """A PySyncObj failure reason (MISSING_LEADER, LEADER_CHANGED, ...) or transport error."""


class PySyncObjRaft(System):
    """PySyncObj Raft, 3 node subprocesses on loopback: the non-Ray reference."""

    name = "pysyncobj"
    has_failover = True
    ray_based = False

    def __init__(self, replicas: int = 3) -> None:
        self.replicas = replicas
        self.raft_ports = [_free_port() for _ in range(replicas)]
        self.rpc_ports = [_free_port() for _ in range(replicas)]
        self.procs: List[Optional[subprocess.Popen]] = [None] * replicas
        self._main: Optional[RaftClient] = None
        self._lock = threading.Lock()
        self.retries = 0

    # -- processes
    def _spawn(self, i: int) -> None:
        me = f"127.0.0.1:{self.raft_ports[i]}"
        partners = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(self.raft_ports) if j != i)
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "ftactors.bench.raft_node", "--self", me, "--partners", partners,
             "--rpc", str(self.rpc_ports[i])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self._proc(i).stdout.readline()  # type: ignore[union-attr]  # stdout=PIPE: "ready"
        if "ready" not in line:
            raise RuntimeError(f"raft node {i} did not start")

    def _proc(self, i: int) -> subprocess.Popen:
        proc = self.procs[i]
        assert proc is not None, f"raft node {i} was never started"
        return proc

    def _leader_client(self) -> RaftClient:
        assert self._main is not None, "start() connects to the leader first"
        return self._main

    def _status(self, i: int) -> Optional[Dict[str, Any]]:
        try:
            c = RaftClient(self.rpc_ports[i])
            try:
                return c.rpc("status", timeout=1.0)
            finally:
                c.close()
        except Exception:
            return None

    def leader_index(self) -> Optional[int]:
        for i in range(self.replicas):
            st = self._status(i)
            if st and st["leader"]:
                port = int(st["leader"].rsplit(":", 1)[1])
                j = self.raft_ports.index(port)
                proc = self.procs[j]
                if proc is not None and proc.poll() is None:
                    return j
        return None

    def _wait_leader(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            j = self.leader_index()
            if j is not None:
                return j
            time.sleep(0.05)
        raise RuntimeError("pysyncobj: no leader elected")

    def start(self) -> None:
        for i in range(self.replicas):
            self._spawn(i)
        self._connect_main()
        self.call("inc", 0)

    def _connect_main(self) -> None:
        if self._main is not None:
            self._main.close()
        self._main = RaftClient(self.rpc_ports[self._wait_leader()])

    # -- calls (callers talk to the leader, and retry elsewhere on failure)
    def call(self, method: str, *args: Any) -> Any:
        if method == "read":
            self.call("inc", 0)  # everything before is applied on the leader
            return self._leader_client().rpc("read")
        return self._leader_client().rpc(method, *args, timeout=30.0)

    def pipelined(self, method: str, args_list: List[tuple]) -> List[Any]:
        c = self._leader_client()
        ids = {c.send(method, *a): k for k, a in enumerate(args_list)}
        out: List[Any] = [None] * len(args_list)
        left = len(ids)
        while left:
            rid, value, err = c.recv(60.0)
            if rid in ids:
                if err is not None:
                    raise RaftError(err)
                out[ids[rid]] = value
                left -= 1
        return out

    def client(self) -> "RaftCaller":
        return RaftCaller(self)

    def kill_primary(self) -> None:
        j = self.leader_index()
        if j is None:
            raise RuntimeError("pysyncobj: no leader to kill")
        os.kill(self._proc(j).pid, signal.SIGKILL)
        self._proc(j).wait()
        self._killed: Optional[int] = j

    def recovered(self) -> bool:
        j = getattr(self, "_killed", None)
        if j is not None and self.procs[j] is not None and self.procs[j].poll() is not None:
            # a new leader among the survivors first (a fresh node must not vote before that)
            leader = self._wait_leader(30.0)
            target = (self._status(leader) or {}).get("commit_idx", 0)
            self._spawn(j)
            self._target: Optional[Tuple[int, Any]] = (j, target)
        pending = getattr(self, "_target", None)
        if j is not None and pending:
            k, target = pending
            st = self._status(k)
            if not st or not st["leader"] or st["last_applied"] < target:
                return False
            self._target = None
            self._killed = None
        self._connect_main()
        return True

    def pids(self) -> List[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def stop(self) -> None:
        if self._main is not None:
            self._main.close()
        for p in self.procs:
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


class RaftCaller(System):
    """A per-thread Raft caller: talks to the leader, retries on another node on failure
    (a retried call may have been applied already: Raft without client sessions is at-least-once)."""

    def __init__(self, system: PySyncObjRaft) -> None:
        self.s = system
        self.c: Optional[RaftClient] = None
        self.retries = 0

    def _connect(self) -> None:
        if self.c is not None:
            self.c.close()
            self.c = None
        j = self.s.leader_index()
        order = ([j] if j is not None else []) + list(range(self.s.replicas))
        for i in order:
            try:
                self.c = RaftClient(self.s.rpc_ports[i])
                return
            except Exception:
                continue
        raise RaftError("no raft node reachable")

    def call(self, method: str, *args: Any) -> Any:
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.c is None:
                    self._connect()
                assert self.c is not None
                return self.c.rpc(method, *args, timeout=1.0)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                with self.s._lock:
                    self.s.retries += 1
                time.sleep(0.01)
                try:
                    self._connect()
                except Exception:
                    time.sleep(0.05)

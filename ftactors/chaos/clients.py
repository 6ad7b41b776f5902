"""The clients of a chaos run: threads calling the campaign's workload, and the history they record."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

#: the prefix of ``Op.error_type`` for an error the campaign allows (an application error)
ALLOWED = "allowed:"


@dataclass(frozen=True)
class Op:
    """One operation of the history.

    Args:
        index: unique across clients (the workload's ``op_index``).
        client: which client thread issued it.
        start_s: when it was issued, seconds since the clients started.
        end_s: when its reply (or error) came.
        value: the reply.
        error: ``Type: message`` of its error, None when it succeeded.
        error_type: the error's type name, prefixed with ``allowed:`` when the campaign allows it.
    """

    index: int
    client: int
    start_s: float
    end_s: float
    value: Any = None
    error: Optional[str] = None
    error_type: Optional[str] = None

    @property
    def ok(self) -> bool:
        """It succeeded."""
        return self.error is None

    @property
    def allowed(self) -> bool:
        """It failed with an error the campaign allows."""
        return (self.error_type or "").startswith(ALLOWED)

    @property
    def latency_s(self) -> float:
        """Seconds from issue to reply."""
        return self.end_s - self.start_s


def brief(exc: BaseException) -> str:
    """``Type: last line`` of an exception, unwrapping Ray's task errors (at most 300 characters)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:300]


def _is_ref(x: Any) -> bool:
    import ray

    return isinstance(x, ray.ObjectRef) or (isinstance(x, list) and bool(x)
                                            and all(isinstance(r, ray.ObjectRef) for r in x))


class Clients:
    """Client threads calling ``workload(handle, rng, op_index)`` until stopped; every call goes
    into the history.

    Args:
        workload: issues one operation; returns ObjectRef(s) to wait for, or a value.
        handle: the group.
        clients: how many threads.
        seed: seeds each client's ``random.Random`` (a replay issues the same operations).
        allowed_errors: exception types recorded as allowed.
        call_timeout_s: how long one call may take.
    """

    def __init__(self, workload: Callable[..., Any], handle: Any, clients: int, seed: int,
                 allowed_errors: Tuple[type, ...] = (), call_timeout_s: float = 120.0) -> None:
        self.workload, self.handle, self.call_timeout_s = workload, handle, call_timeout_s
        self.allowed_errors = allowed_errors
        self.history: List[Op] = []
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i, random.Random(f"{seed}/client/{i}")),
                                          daemon=True, name=f"ftactors-client-{i}")
                         for i in range(clients)]

    def start(self) -> "Clients":
        """Start the threads; times count from now."""
        self.t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def now(self) -> float:
        """Seconds since :meth:`start`."""
        return time.monotonic() - self.t0

    def _index(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def _call(self, client: int, rng: random.Random) -> Op:
        import ray

        index, start = self._index(), self.now()
        try:
            out = self.workload(self.handle, rng, index)
            value = ray.get(out, timeout=self.call_timeout_s) if _is_ref(out) else out
            return Op(index, client, start, self.now(), value)
        except Exception as exc:  # recorded in the history; checks decide
            etype = type(getattr(exc, "cause", None) or exc).__name__
            if self.allowed_errors and isinstance(exc, self.allowed_errors):
                etype = ALLOWED + etype
            return Op(index, client, start, self.now(), None, brief(exc), etype)

    def _run(self, client: int, rng: random.Random) -> None:
        while not self._stop.is_set():
            op = self._call(client, rng)
            with self._lock:
                self.history.append(op)

    @property
    def completed(self) -> int:
        """Calls recorded so far."""
        return len(self.history)

    def signal_stop(self) -> None:
        """Ask the threads to stop after their current call."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the threads and wait for their current calls."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.call_timeout_s + 10)

    def snapshot(self) -> List[Op]:
        """The history, by operation index."""
        with self._lock:
            return sorted(self.history, key=lambda op: op.index)

"""Application models the simulator replicates, and their reference replay.

A model is a deterministic object with a small mutable ``dict`` state. A method
either returns its value directly or is a generator that ``yield``s
:class:`NestedCall` (a call into another replicated group) and receives the
nested reply's value, like an actor method awaiting another actor.

The same code runs at every replica and in :func:`replay`, the reference
execution used by the linearizability check (invariant I2).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ftactors.core import MsgId, nested_source

State = Dict[str, Any]


@dataclass(frozen=True, slots=True)
class NestedCall:
    """Yielded by a model method: call ``method(*args)`` on ``group`` and resume with its value.

    Args:
        group: the target group.
        method: the method to call there.
        args: its arguments (must depend only on the caller's request, see ``Frontend``).
        oneway: a one-way call (``.options(oneway=True)``): the method goes on at once with None,
            and the call takes effect at the callee once, ordered there apart from its caller.
    """

    group: str
    method: str
    args: Tuple[Any, ...] = ()
    oneway: bool = False


@dataclass(frozen=True, slots=True)
class Work:
    """Yielded by a model method: keep executing for ``ticks`` more ticks (a long method).

    The host stays inside the execution meanwhile (a router can crash under it);
    the reference replay (:func:`run_method`) skips it.

    Args:
        ticks: how long, at least 1.
    """

    ticks: int


@dataclass(frozen=True, slots=True)
class Sleep:
    """Yielded by a model method: wait ``ticks`` ticks on a timer, as ``await asyncio.sleep(...)``.

    With async steps (``SimOptions.async_steps``) the step ends and the call is suspended; the
    timer's firing is an event like a nested reply: the primary resumes the call when its timer
    fired (in its own arrival order with the other events) and announces it (``wake`` names the
    timer), backups resume it when the order says so, at once (the primary waited). Without async
    steps it blocks the replica like :class:`Work`. The reference replay (:func:`run_method`)
    skips the wait.

    Args:
        ticks: how long, at least 1.
    """

    ticks: int


@dataclass(frozen=True, slots=True)
class Draw:
    """Yielded by a model method: a nondeterministic value, as ``ftactors.now()`` (``kind="now"``)
    or ``ftactors.random()`` (``kind="random"``).

    The primary executing a new message draws it and records it; the core announces the record
    (``Execute.nondet``, ``ReplicaCore.executed(..., nondet)``) and every other execution of the
    message (a backup, a new primary replaying the order, :func:`run_method`) gets the recorded
    values back in the same order (``runtime/context.py``: ``CallContext.value``).

    Args:
        kind: "now" or "random".
    """

    kind: str

    def __post_init__(self) -> None:
        if self.kind not in DRAW_KINDS:
            raise ValueError(f"Draw.kind must be one of {DRAW_KINDS}, got {self.kind!r}")


DRAW_KINDS = ("now", "random")

#: who draws a value: () for the method itself, ``(k,)`` for the ``k``-th task it created (asyncio
#: tasks a call gathers; ``runtime/context.py``: ``CallContext.stream``)
Stream = Tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Gather:
    """Yielded by a model method: ``await asyncio.gather(*tasks)``, each task a generator that
    yields only :class:`Draw` and returns a value; the method resumes with their values in task order.

    Each task draws on its own stream (``(k,)`` for the call's ``k``-th task, the runtime's
    ``CallContext.task_created``): the tasks interleave in another order on each replica (in Ray
    their nested replies arrive in another order), so the primary's values are replayed per task.

    Args:
        tasks: the sub-tasks, at least one.

    Raises:
        ValueError: no task.
    """

    tasks: Tuple[Generator[Draw, Any, Any], ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("Gather needs at least one task")


def canonical(drawn: Sequence[Tuple[Stream, Any]]) -> Tuple[Tuple[Stream, Any], ...]:
    """The ``(stream, value)`` pairs one step drew, grouped by stream, each stream in its draw order:
    equal on replicas whose tasks drew the same values, whatever order the tasks interleaved in.

    Args:
        drawn: the pairs in draw order.

    Returns:
        The pairs sorted by stream (stably).
    """
    return tuple(sorted(drawn, key=lambda pair: pair[0]))


def by_stream(recorded: Sequence[Tuple[Stream, Any]]) -> Dict[Stream, List[Any]]:
    """The recorded values of each stream, in order (``CallContext._replay_by_stream``).

    Args:
        recorded: ``(stream, value)`` pairs.

    Returns:
        {stream: values}.
    """
    out: Dict[Stream, List[Any]] = {}
    for stream, value in recorded:
        out.setdefault(stream, []).append(value)
    return out


#: sub-tasks one ``Model.op_gathered`` call gathers at most
GATHER_TASKS_MAX = 4


@dataclass(frozen=True, slots=True)
class Raised:
    """A method's exception as the caller gets it, portable and comparable (the runtime's
    ``portable_error``): an application exception keeps its type name; ``SystemExit``,
    ``KeyboardInterrupt`` and other ``BaseException`` errors become ``MethodAbortedError``.

    Args:
        kind: the exception type's name.
        text: its message.
    """

    kind: str
    text: str

    @classmethod
    def of(cls, model: str, method: str, exc: BaseException) -> "Raised":
        """What the caller gets when ``method`` of ``model`` raised ``exc`` (``_Replica._execute``).

        Args:
            model: the model's name.
            method: the method that raised.
            exc: what it raised.

        Returns:
            The portable exception.
        """
        if isinstance(exc, RaisedError):
            return exc.raised  # a nested call's exception, not caught: the caller's caller gets it as is
        if isinstance(exc, Exception):
            return cls(type(exc).__name__, str(exc))
        return cls("MethodAbortedError", f"{model}.{method}() raised {type(exc).__name__}{exc.args!r}; the call "
                                         f"failed on every replica alike and the replicated group stays up")


class RaisedError(Exception):
    """A nested call's exception, raised into the calling method (``ray.get`` raises it there).

    Args:
        raised: the callee's exception.
    """

    def __init__(self, raised: Raised) -> None:
        super().__init__(f"{raised.kind}: {raised.text}")
        self.raised = raised


@dataclass(frozen=True, slots=True)
class ByRef:
    """Arguments passed by reference: the payload names an object in the simulated object store
    (``ray.put`` above ``large_arg_bytes``), owned by the caller; a replica fetches it when it
    executes the call, and fails to if its owner exited meanwhile (Ray's ``OwnerDiedError``).

    Args:
        key: the object's name in the store.
        owner: the client that put it.
        fallback: the caller's object, when a router put it again (``_RouterLoop._own_argument``):
            read if the router's is lost with it and the caller still lives.
    """

    key: str
    owner: str
    fallback: Optional["ByRef"] = None


MethodResult = Union[Any, Generator[Union[NestedCall, Work, Sleep, Draw, Gather], Any, Any]]

#: a state field that folds an order in (31-fold, modulo a prime): equal on replicas that agree
FOLD_MOD = 1_000_003


def fold(state: "State", key: str, value: int) -> None:
    """Fold ``value`` into ``state[key]``: a digest of the order in which values came."""
    state[key] = (state.get(key, 0) * 31 + value) % FOLD_MOD


class Model:
    """Base class: name, initial state, dispatch, random operations, state checks."""

    name = "model"
    #: operations that do not change the state (for the linearizability checker)
    read_only: frozenset = frozenset()

    def initial(self) -> State:
        """A fresh state."""
        raise NotImplementedError

    def copy(self, state: State) -> State:
        """A deep enough copy of ``state`` (for checkpoints)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in state.items()}

    def call(self, state: State, method: str, args: Tuple[Any, ...]) -> MethodResult:
        """Run ``method`` on ``state``: a value, or a generator of NestedCall.

        Raises:
            AttributeError: for an unknown method (a simulator bug).
        """
        return getattr(self, "op_" + method)(state, *args)

    def random_op(self, rng: random.Random) -> Tuple[str, Tuple[Any, ...]]:
        """A random (method, args) pair."""
        raise NotImplementedError

    def op_slow(self, state: State, ticks: int, method: str, args: Tuple[Any, ...]) -> MethodResult:
        """A long method: work for ``ticks`` ticks, then run ``method(*args)``."""
        yield Work(ticks)
        result = self.call(state, method, tuple(args))
        if isinstance(result, Generator):
            result = yield from result
        return result

    def op_nap(self, state: State, ticks: int, method: str, args: Tuple[Any, ...]) -> MethodResult:
        """Sleep ``ticks`` ticks on a timer (``await asyncio.sleep``), then run ``method(*args)``.

        The call takes a ticket before it sleeps and folds it into ``woke`` when it wakes: the
        order in which sleeping calls resume (among each other and other calls' steps) shows in
        every replica's digest.
        """
        ticket = state["naps"] = state.get("naps", 0) + 1
        yield Sleep(ticks)
        fold(state, "woke", ticket)
        result = self.call(state, method, tuple(args))
        if isinstance(result, Generator):
            result = yield from result
        return result

    def op_bounce(self, state: State, group: str, method: str, args: Tuple[Any, ...], inner: str,
                  inner_args: Tuple[Any, ...]) -> MethodResult:
        """Call ``method(*args)`` on ``group`` (back into the group that called this one: a
        re-entrant ring), then run ``inner(*inner_args)`` here.

        Returns:
            (the inner method's value, the called-back method's value).
        """
        back = yield NestedCall(group, method, tuple(args))
        fold(state, "bounced", back if isinstance(back, int) else 0)
        result = self.call(state, inner, tuple(inner_args))
        if isinstance(result, Generator):
            result = yield from result
        return result, back

    def op_stamped(self, state: State, method: str, args: Tuple[Any, ...]) -> MethodResult:
        """Read ``now()`` and ``random()``, keep them in the state, then run ``method(*args)``.

        Returns:
            (the method's value, the time, the random value).
        """
        at = yield Draw("now")
        luck = yield Draw("random")
        state["stamp"] = (at, luck)
        result = self.call(state, method, tuple(args))
        if isinstance(result, Generator):
            result = yield from result
        return result, at, luck

    def op_gathered(self, state: State, tasks: int, method: str, args: Tuple[Any, ...]) -> MethodResult:
        """Gather ``tasks`` sub-tasks that each read ``now()`` and ``random()`` (``asyncio.gather`` in an
        async method), fold each task's values into the state under its index, then run ``method(*args)``.

        Returns:
            (the method's value, each task's (time, random value)).

        Raises:
            ValueError: ``tasks`` is not in 1..``GATHER_TASKS_MAX``.
        """
        if not 1 <= tasks <= GATHER_TASKS_MAX:
            raise ValueError(f"gathered: tasks must be in 1..{GATHER_TASKS_MAX}, got {tasks!r}")
        values = yield Gather(tuple(_stamp_task() for _ in range(tasks)))
        for i, (at, luck) in enumerate(values):
            fold(state, "gathered", i + 1 + 10 * int(at) + int(luck * FOLD_MOD))
        result = self.call(state, method, tuple(args))
        if isinstance(result, Generator):
            result = yield from result
        return result, tuple(values)

    def op_raising(self, state: State, method: str, args: Tuple[Any, ...]) -> MethodResult:
        """Run ``method(*args)``, then raise ``ValueError``: the caller gets the exception, and the
        state keeps what the method changed (the runtime rolls nothing back)."""
        result = self.call(state, method, tuple(args))
        if isinstance(result, Generator):
            result = yield from result
        raise ValueError(f"{method} rejected after it ran (it returned {result!r})")

    def op_poison(self, state: State, which: str, method: str, args: Tuple[Any, ...]) -> MethodResult:
        """Run ``method(*args)``, then raise ``SystemExit`` or ``KeyboardInterrupt`` (``which``):
        the runtime turns it into ``MethodAbortedError`` for the caller, on every replica alike."""
        result = self.call(state, method, tuple(args))
        if isinstance(result, Generator):
            result = yield from result
        if which == "exit":
            raise SystemExit(3)
        raise KeyboardInterrupt(f"after {method} returned {result!r}")

    def check_state(self, state: State) -> Optional[str]:
        """An application invariant; returns a description of the violation or None."""
        return None

    def digest(self, state: State) -> str:
        """A stable digest of ``state``."""
        return repr(sorted((k, sorted(v.items()) if isinstance(v, dict) else v) for k, v in state.items()))


def _stamp_task() -> Generator[Draw, Any, Tuple[Any, Any]]:
    """A sub-task of :meth:`Model.op_gathered`: reads ``now()`` and ``random()`` on its own stream."""
    at = yield Draw("now")
    luck = yield Draw("random")
    return at, luck


#: methods every model has (``Model.op_*``) that wrap another: (name, how many leading args precede it)
WRAPPERS = {"slow": 1, "nap": 1, "stamped": 0, "gathered": 1, "raising": 0, "poison": 1}


def inner_method(method: str, args: Tuple[Any, ...]) -> Tuple[str, Tuple[Any, ...]]:
    """The application method a (possibly wrapped) operation finally runs.

    Args:
        method: the operation's method.
        args: its arguments.

    Returns:
        (method, args) with every wrapper (``slow``, ``nap``, ``stamped``, ``gathered``, ``raising``,
        ``poison``) removed.
    """
    while method in WRAPPERS:
        lead = WRAPPERS[method]
        method, args = args[lead], tuple(args[lead + 1])
    return method, args


class Counter(Model):
    """A counter: ``add(k)`` returns the new total; ``get()`` reads it."""

    name = "counter"
    read_only = frozenset({"get"})

    def initial(self) -> State:
        return {"n": 0}

    def op_add(self, state: State, k: int) -> int:
        state["n"] += k
        return state["n"]

    def op_get(self, state: State) -> int:
        return state["n"]

    def random_op(self, rng: random.Random) -> Tuple[str, Tuple[Any, ...]]:
        return ("get", ()) if rng.random() < 0.2 else ("add", (rng.randint(1, 9),))


class Bank(Model):
    """Accounts with transfers; the total amount of money never changes."""

    name = "bank"
    read_only = frozenset({"balance", "audit"})
    accounts = ("a", "b", "c", "d")
    opening = 100

    def initial(self) -> State:
        return {"acct": {a: self.opening for a in self.accounts}}

    def op_transfer(self, state: State, src: str, dst: str, amount: int) -> bool:
        acct = state["acct"]
        if src == dst or acct[src] < amount:
            return False
        acct[src] -= amount
        acct[dst] += amount
        return True

    def op_balance(self, state: State, name: str) -> int:
        return state["acct"][name]

    def op_audit(self, state: State) -> int:
        return sum(state["acct"].values())

    def random_op(self, rng: random.Random) -> Tuple[str, Tuple[Any, ...]]:
        r = rng.random()
        if r < 0.15:
            return "balance", (rng.choice(self.accounts),)
        if r < 0.2:
            return "audit", ()
        return "transfer", (rng.choice(self.accounts), rng.choice(self.accounts), rng.randint(1, 80))

    def check_state(self, state: State) -> Optional[str]:
        total = sum(state["acct"].values())
        want = self.opening * len(self.accounts)
        if total != want or min(state["acct"].values()) < 0:
            return f"bank: money not conserved: total {total} != {want} or negative balance {state['acct']}"
        return None


class KeyValue(Model):
    """A key-value register: ``put(k, v)`` returns the old value; ``get(k)``."""

    name = "kv"
    read_only = frozenset({"get"})
    keys = ("x", "y", "z")

    def initial(self) -> State:
        return {"kv": {}}

    def op_put(self, state: State, key: str, value: int) -> Optional[int]:
        old = state["kv"].get(key)
        state["kv"][key] = value
        return old

    def op_get(self, state: State, key: str) -> Optional[int]:
        return state["kv"].get(key)

    def random_op(self, rng: random.Random) -> Tuple[str, Tuple[Any, ...]]:
        key = rng.choice(self.keys)
        return ("get", (key,)) if rng.random() < 0.3 else ("put", (key, rng.randint(0, 99)))


class Frontend(Model):
    """A group that forwards calls to a backend group (nested invocations A -> B).

    ``fwd(method, args)`` makes one nested call, ``fwd2(m1, a1, m2, a2)`` two;
    each counts the calls it served in its own state and returns
    ``(count, nested values...)``. The nested arguments depend only on the
    request, so every replica and every re-execution makes the same call.

    Args:
        backend_group: the target group's name.
        backend: the target group's model (to draw operations).
        name_in_ring: this group's own name, which ``ring`` asks the backend to call back.
    """

    name = "frontend"

    def __init__(self, backend_group: str, backend: Model, name_in_ring: str = "front") -> None:
        self.backend_group = backend_group
        self.backend = backend
        self.name_in_ring = name_in_ring

    def initial(self) -> State:
        return {"calls": 0}

    def op_fwd(self, state: State, method: str, args: Tuple[Any, ...]) -> Generator[NestedCall, Any, Any]:
        state["calls"] += 1
        calls = state["calls"]
        value = yield NestedCall(self.backend_group, method, tuple(args))
        self._resumed(state, calls)
        return calls, value

    def op_fwd1(self, state: State, method: str, args: Tuple[Any, ...]) -> Generator[NestedCall, Any, Any]:
        """``fwd`` with its nested call one-way: it goes on at once, its value is None.

        Returns:
            (count, None).
        """
        state["calls"] += 1
        calls = state["calls"]
        value = yield NestedCall(self.backend_group, method, tuple(args), oneway=True)
        return calls, value

    def op_fwd2(self, state: State, m1: str, a1: Tuple[Any, ...], m2: str,
                a2: Tuple[Any, ...]) -> Generator[NestedCall, Any, Any]:
        state["calls"] += 1
        calls = state["calls"]
        v1 = yield NestedCall(self.backend_group, m1, tuple(a1))
        self._resumed(state, calls)
        v2 = yield NestedCall(self.backend_group, m2, tuple(a2))
        self._resumed(state, calls)
        return calls, v1, v2

    def op_ring(self, state: State, token: int, method: str, args: Tuple[Any, ...]) -> Generator[NestedCall, Any, Any]:
        """A re-entrant ring A -> B -> A: call the backend's ``bounce``, which calls back into this
        group's :meth:`op_relay` while this call is suspended, then runs ``method(*args)`` there.

        Returns:
            (count, (the backend method's value, the relay's value)).
        """
        state["calls"] += 1
        calls = state["calls"]
        value = yield NestedCall(self.backend_group, "bounce", (self.name_in_ring, "relay", (token,), method,
                                                                 tuple(args)))
        self._resumed(state, calls)
        return calls, value

    def op_relay(self, state: State, token: int) -> int:
        """The call back into this group (from the backend's ``bounce``): it runs while the ring's
        first call is suspended; its value depends on what ran here before it.

        Returns:
            The relay counter folded with ``token``.
        """
        fold(state, "relayed", token + state["calls"])
        return int(state["relayed"])

    @staticmethod
    def _resumed(state: State, calls: int) -> None:
        """Fold which call went on after its nested reply into the state: with async steps the
        order in which suspended calls resume shows in every replica's digest."""
        fold(state, "resumed", calls)

    def random_op(self, rng: random.Random) -> Tuple[str, Tuple[Any, ...]]:
        m1, a1 = self.backend.random_op(rng)
        if rng.random() < 0.1:  # the backend raises: the exception reaches this method, and its caller
            m1, a1 = "raising", (m1, a1)
        if rng.random() < 0.3:
            m2, a2 = self.backend.random_op(rng)
            return "fwd2", (m1, a1, m2, a2)
        return "fwd", (m1, a1)


MODELS: Mapping[str, Callable[[], Model]] = {"counter": Counter, "bank": Bank, "kv": KeyValue}


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One executed step in a replica's lineage log: a whole message, or (async steps) the part of
    one from its start or a resume to its next nested call or its end.

    Args:
        position: its place in the group's order.
        msg_id: the message.
        method: the method called.
        args: its arguments.
        nondet: the ``now()``/``random()`` values this step used, as ``(stream, value)`` pairs grouped by
            stream (:func:`canonical`).
        raised: what the message raised, if it finished by raising.
        resume: 0 for the step that starts the message, ``k`` for its ``k``-th resume.
        suspends: the step ended with the method suspended on a nested call or a timer (async steps).
    """

    position: int
    msg_id: MsgId
    method: str
    args: Tuple[Any, ...]
    nondet: Tuple[Any, ...] = ()
    raised: Optional[Raised] = None
    resume: int = 0
    suspends: bool = False


class ReplayExhausted(RuntimeError):
    """A method asked for more nondeterministic values than the primary drew (``CallContext.value``)."""


def run_method(model: Model, state: State, group: str, entry: LogEntry,
               nested: Callable[[MsgId, NestedCall], Any]) -> Any:
    """Run one logged message to completion, answering nested calls with ``nested`` and
    ``now()`` / ``random()`` with the values the entry recorded.

    Args:
        model: the group's model.
        state: the state to mutate.
        group: the group's name (nested message ids derive from it).
        entry: the message.
        nested: ``nested(nested_msg_id, call)`` returns the nested call's value (a
            :class:`Raised` is raised into the method).

    Returns:
        The method's value, or the :class:`Raised` the caller gets if it raised.
    """
    run = StepRun(model, group, entry)
    done, value = run.step(state, entry, nested)
    assert done, f"{entry.msg_id}: a whole-message entry suspended"
    return value


class StepRun:
    """One message's method in the reference replay, run step by step as the log orders them.

    Args:
        model: the group's model.
        group: the group's name (nested message ids derive from it).
        entry: the message's first step.
    """

    def __init__(self, model: Model, group: str, entry: LogEntry) -> None:
        self.model, self.entry = model, entry
        self.source = nested_source(group, entry.msg_id)
        self.gen: Optional[Generator[Any, Any, Any]] = None
        self.pending: Optional[Union[NestedCall, Sleep]] = None  # the nested call or timer it is suspended on
        self.index = 0  # nested calls made so far (their ids count per message)
        self.tasks = 0  # asyncio tasks the method created so far (their streams count per message)

    def _gather(self, call: Gather, replay: "Replay") -> Any:
        """Run a gather's tasks in task order, each replaying its own stream's values.

        Returns:
            Their values, or the first exception one raised (to raise into the method).
        """
        first, self.tasks = self.tasks, self.tasks + len(call.tasks)
        try:
            return run_tasks(call.tasks, first, lambda running: running[0], lambda kind, s: replay.next(s))
        except BaseException as exc:  # noqa: B036 - raised into the method, as gather raises it
            return exc

    def step(self, state: State, entry: LogEntry, nested: Callable[[MsgId, NestedCall], Any]) -> Tuple[bool, Any]:
        """Run the step ``entry``: start the method, or resume it with its nested call's answer (or
        after its timer); a step that ``suspends`` stops at its next nested call or timer, any other
        answers them in place.

        Returns:
            (True, the method's value or :class:`Raised`) once it finished, else (False, None).
        """
        model = self.model
        if self.gen is None:
            try:
                result = model.call(state, entry.method, entry.args)
            except BaseException as exc:  # noqa: B036 - the runtime catches BaseException too
                return True, Raised.of(model.name, entry.method, exc)
            if not isinstance(result, Generator):
                return True, result
            self.gen, value = result, None
        else:
            assert self.pending is not None, f"{entry.msg_id} resumes but was not suspended"
            # the answer first: a joint replay (:func:`replay_groups`) may say it is not there yet
            # (:class:`NotYet`), and the step is tried again later unchanged
            value = None if isinstance(self.pending, Sleep) else nested(MsgId(self.source, self.index), self.pending)
            self.pending = None
        result, replay = self.gen, Replay(entry.nondet)
        while True:
            try:
                if isinstance(value, Raised):
                    call = result.throw(RaisedError(value))
                elif isinstance(value, ReplayExhausted):
                    call = result.throw(value)
                else:
                    call = result.send(value)
            except StopIteration as stop:
                return True, stop.value
            except BaseException as exc:  # noqa: B036
                return True, Raised.of(model.name, entry.method, exc)
            if isinstance(call, Work):
                value = None
            elif isinstance(call, Sleep):
                if entry.suspends:  # an async step ends on its timer
                    self.pending = call
                    return False, None
                value = None
            elif isinstance(call, Draw):
                value = replay.next(())
            elif isinstance(call, Gather):
                value = self._gather(call, replay)
            else:
                self.index += 1
                if entry.suspends and not call.oneway:  # a one-way call goes on at once
                    self.pending = call
                    return False, None
                value = nested(MsgId(self.source, self.index), call)


class Replay:
    """The recorded values of one step, handed out per stream in order (``CallContext.value``).

    Args:
        recorded: the step's ``(stream, value)`` pairs.
    """

    def __init__(self, recorded: Sequence[Tuple[Stream, Any]]) -> None:
        self.recorded = tuple(recorded)
        self.values = by_stream(recorded)
        self.cursors: Dict[Stream, int] = {}

    def next(self, stream: Stream) -> Any:
        """The next value of ``stream``, or a :class:`ReplayExhausted` (to raise into the method)."""
        values, i = self.values.get(stream, []), self.cursors.get(stream, 0)
        if i >= len(values):
            return ReplayExhausted("ftactors: method asked for more nondeterministic values than the "
                                   "primary did; replicated methods must be deterministic")
        self.cursors[stream] = i + 1
        return values[i]


def run_tasks(tasks: Sequence[Generator[Draw, Any, Any]], first: int, order: Callable[[List[int]], int],
              draw: Callable[[str, Stream], Any]) -> List[Any]:
    """Run gathered sub-tasks, one draw at a time, in the interleaving ``order`` picks.

    Args:
        tasks: the sub-tasks (generators yielding :class:`Draw`).
        first: the index the call's creations reached: task ``i`` draws on stream ``(first + i,)``.
        order: picks the next task to step among the indices still running.
        draw: ``draw(kind, stream)`` gives the value (or a :class:`ReplayExhausted` to raise into it).

    Returns:
        Each task's value, in task order.

    Raises:
        BaseException: the first exception a task raised (``asyncio.gather`` raises it).
    """
    results: List[Any] = [None] * len(tasks)
    sends: Dict[int, Any] = {i: None for i in range(len(tasks))}
    while sends:
        i = order(sorted(sends))
        value = sends[i]
        try:
            call = tasks[i].throw(value) if isinstance(value, BaseException) else tasks[i].send(value)
        except StopIteration as stop:
            results[i] = stop.value
            del sends[i]
            continue
        assert isinstance(call, Draw), f"a gathered task yielded {call!r}, not a Draw"
        sends[i] = draw(call.kind, (first + i,))
    return results


def run_local(model: Model, state: State, method: str, args: Tuple[Any, ...]) -> Any:
    """Run a method that makes no nested call (long ones included) to completion.

    Raises:
        AssertionError: it made a nested call.
    """
    def no_nested(mid: MsgId, call: NestedCall) -> Any:
        raise AssertionError(f"{method} made a nested call {call}")

    return run_method(model, state, "local", LogEntry(0, MsgId("local", 1), method, tuple(args)), no_nested)


class NotYet(Exception):
    """Raised by a joint replay's ``nested``: the called group's replay has not reached the nested
    call's answer yet (a re-entrant ring: each group's order waits on the other's)."""


class GroupReplay:
    """One group's reference replay, run a step at a time (:func:`replay`, :func:`replay_groups`).

    Args:
        model: the group's model.
        group: the group's name.
        log: the group's order, positions 1..n without gaps.
    """

    def __init__(self, model: Model, group: str, log: Sequence[LogEntry]) -> None:
        self.model, self.group, self.log = model, group, log
        self.state = model.initial()
        self.answers: Dict[MsgId, Tuple[int, Any]] = {}
        self.runs: Dict[MsgId, StepRun] = {}  # messages started and suspended, by the log's steps
        self.next = 0  # index in ``log`` of the next step

    @property
    def done(self) -> bool:
        """True once every step ran."""
        return self.next >= len(self.log)

    def step(self, nested: Callable[[MsgId, NestedCall], Any]) -> None:
        """Run the next step of the order.

        Raises:
            NotYet: ``nested`` has no answer yet; nothing changed, try again later.
            AssertionError: the log has gaps, or resumes a message that is not suspended.
        """
        i, entry = self.next + 1, self.log[self.next]
        assert entry.position == i, f"{self.group}: log has a gap at {i}: {entry}"
        run = self.runs.get(entry.msg_id) if entry.resume else StepRun(self.model, self.group, entry)
        assert run is not None, f"I2: {self.group} position {i} resumes {entry.msg_id}, which is not suspended"
        done, value = run.step(self.state, entry, nested)
        self.next += 1
        if done:
            self.runs.pop(entry.msg_id, None)
            self.answers[entry.msg_id] = (i, value)
        else:
            self.runs[entry.msg_id] = run


def replay(model: Model, group: str, log: Sequence[LogEntry],
           nested: Callable[[MsgId, NestedCall], Any]) -> Tuple[State, Dict[MsgId, Tuple[int, Any]]]:
    """Execute ``log`` in order on a fresh state: the reference the replicas must match.

    Args:
        model: the group's model.
        group: the group's name.
        log: the group's order, positions 1..n without gaps.
        nested: answers nested calls (see :func:`run_method`).

    Returns:
        (final state, {msg_id: (position, value)}).

    Raises:
        AssertionError: the log has gaps (a simulator bug).
    """
    run = GroupReplay(model, group, log)
    while not run.done:
        run.step(nested)
    return run.state, run.answers


#: the most rounds a joint replay takes (each advances at least one group by a step)
REPLAY_ROUNDS_MAX = 1_000_000


def replay_groups(models: Mapping[str, Model], logs: Mapping[str, Sequence[LogEntry]],
                  check: Callable[[str, MsgId, NestedCall, LogEntry], None],
                  gone: Optional[Mapping[MsgId, Any]] = None) -> Dict[str, GroupReplay]:
    """Replay several groups' orders together, each answering the others' nested calls with its own
    replayed answers: a group whose next step needs an answer the callee's replay has not reached
    waits, and the other groups go on (a re-entrant ring A -> B -> A needs A's order before and
    after B's). Groups are tried in ``logs``' order, each as far as it can go, round after round.

    Args:
        models: each group's model.
        logs: each group's order.
        check: ``check(callee, nested_id, call, executed_entry)`` raises if the callee executed
            something other than the call the replay makes.
        gone: nested calls the callee executed but whose caller's method got an error instead of the
            reply (its reply was gone, ``ReplicaCore.suspended_reply_gone``) -> that error.

    Returns:
        Each group's finished replay (its state and answers).

    Raises:
        LookupError: a nested call that is not in its callee's order (its message says which).
        RuntimeError: the groups wait on each other for good (a cycle the orders cannot satisfy).
    """
    runs = {g: GroupReplay(models[g], g, log) for g, log in logs.items()}
    where = {g: {e.msg_id: e for e in log if not e.resume} for g, log in logs.items()}

    def nested(mid: MsgId, call: NestedCall) -> Any:
        entry = where.get(call.group, {}).get(mid)
        if entry is None:
            raise LookupError(f"nested call {mid} is not in the order of {call.group}")
        check(call.group, mid, call, entry)
        if call.oneway:  # nothing waits for it: its effect is ordered at the callee on its own
            return None
        if gone is not None and mid in gone:
            return gone[mid]
        answer = runs[call.group].answers.get(mid)
        if answer is None:
            if runs[call.group].done:
                raise LookupError(f"nested call {mid} never finished in {call.group}")
            raise NotYet(mid)
        return answer[1]

    for _ in range(REPLAY_ROUNDS_MAX):
        if all(r.done for r in runs.values()):
            return runs
        moved = False
        for r in runs.values():
            while not r.done:
                try:
                    r.step(nested)
                except NotYet:
                    break
                moved = True
        if not moved:
            stuck = {g: r.log[r.next].msg_id for g, r in runs.items() if not r.done}
            raise RuntimeError(f"the replays wait on each other for good at {stuck}")
    raise RuntimeError(f"replay not done in {REPLAY_ROUNDS_MAX} rounds")


def build_history_ops(entries: List[LogEntry]) -> List[Tuple[MsgId, str, Tuple[Any, ...]]]:
    """(msg_id, method, args) triples of ``entries``, for reports."""
    return [(e.msg_id, e.method, e.args) for e in entries]

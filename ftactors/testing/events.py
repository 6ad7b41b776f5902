"""Simulator events: what travels on a simulated link or fires on a timer.

Every event is a frozen, slotted dataclass. Router<->replica events carry the
router *incarnation* that sent or should receive them: a restarted router is a
new incarnation, and the dead one's traffic is dropped (its Ray calls fail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ftactors.core import Deliver, Delivered, MsgId, Reply, Request, StateReport


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Who waits for a reply: a client, or a replica making a nested call.

    Args:
        group: the replica's group, or "" for a client.
        name: the client's source name or the replica id.
    """

    group: str
    name: str

    @property
    def is_client(self) -> bool:
        """True for a client endpoint."""
        return not self.group


@dataclass(frozen=True, slots=True)
class Ping:
    """Router to replica: are you alive? (``RouterReady.pings``)."""


@dataclass(frozen=True, slots=True)
class Pong:
    """Replica to router: alive."""


@dataclass(frozen=True, slots=True)
class StateQuery:
    """Router to replica: send a StateReport (``RouterReady.queries``)."""


@dataclass(frozen=True, slots=True)
class LinkBeat:
    """Router to replica on the direct link: a heartbeat (the link was silent for an interval)."""


@dataclass(frozen=True, slots=True)
class LinkBeatAck:
    """Replica to router on the direct link: the heartbeat's answer (the replica's reader runs)."""


@dataclass(frozen=True, slots=True)
class ParkedAnswer:
    """Replica to router on the direct link: the answer is parked at the replica (it holds an
    ObjectRef or is over a frame); the router fetches ``delivered`` with a Ray call."""

    delivered: Delivered


ToReplicaMsg = Union[Deliver, Ping, StateQuery, LinkBeat]
ToRouterMsg = Union[Delivered, Pong, StateReport, LinkBeatAck, ParkedAnswer]


@dataclass(frozen=True, slots=True)
class RequestArrives:
    """A request (from a client or a nested call) reaches a group's router.

    ``incarnation``: on a Ray caller's link (``SimOptions.client_fifo``), the router incarnation
    it was sent to; a call in flight to a router that died is lost (the caller resubmits it
    to the restarted one). 0 on the lossy links, where any incarnation takes it.
    """

    group: str
    request: Request
    sender: Endpoint
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class ArgumentFetched:
    """A router's fetch of a request's argument passed by reference is over (``_RouterLoop._own_argument``
    awaits the caller's object, then puts it again): the router submits the request, or fails it if
    the caller's object is gone (its owner exited meanwhile).

    ``incarnation``: the router incarnation that fetches; a later one drops it (the fetch died with
    its router, the caller's retry fetches again).
    """

    group: str
    request: Request
    sender: Endpoint
    incarnation: int


@dataclass(frozen=True, slots=True)
class ReplyArrives:
    """A reply reaches the endpoint that waits for it."""

    to: Endpoint
    reply: Reply


@dataclass(frozen=True, slots=True)
class PullArrives:
    """A backup asks the target router for a nested reply copy (``RouterCore.lookup``)."""

    group: str
    request: Request
    sender: Endpoint


@dataclass(frozen=True, slots=True)
class ToReplica:
    """Router incarnation ``incarnation`` of ``group`` to replica ``replica``: reliable; FIFO, except
    that Delivers may overtake each other (Ray runs a threaded actor's calls concurrently), so
    each carries its number ``seq`` on the link (0 for pings and state queries)."""

    group: str
    incarnation: int
    replica: str
    msg: ToReplicaMsg
    seq: int = 0
    wire: bool = False  # on the direct link (dropped once the router closed it)


@dataclass(frozen=True, slots=True)
class ToRouter:
    """Replica to router incarnation ``incarnation`` (FIFO, reliable while both live)."""

    group: str
    incarnation: int
    replica: str
    msg: ToRouterMsg
    wire: bool = False  # on the direct link (dropped once the router closed it)


@dataclass(frozen=True, slots=True)
class FailureNotice:
    """Ray's ActorDiedError: a call from the router to a dead replica failed."""

    group: str
    incarnation: int
    replica: str


@dataclass(frozen=True, slots=True)
class SpawnReady:
    """A replica asked for with ``RouterReady.spawns`` has started."""

    group: str
    incarnation: int
    replica: str


@dataclass(frozen=True, slots=True)
class StopReplica:
    """The host stops a retired replica."""

    group: str
    replica: str


@dataclass(frozen=True, slots=True)
class RouterRestart:
    """A crashed router restarts and rebuilds itself from the surviving replicas."""

    group: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class WakeReplica:
    """A paused replica wakes up (its stale output must be fenced)."""

    group: str
    replica: str


@dataclass(frozen=True, slots=True)
class ClientRetry:
    """A client's retransmission timer for request ``msg_id``."""

    client: str
    msg_id: MsgId


@dataclass(frozen=True, slots=True)
class NestedRetry:
    """A replica's retransmission (primary) or pull (backup) timer for a nested request."""

    group: str
    replica: str
    msg_id: MsgId


@dataclass(frozen=True, slots=True)
class TimerFires:
    """A replica's timer (an async method's ``Sleep``) fires.

    Args:
        group: the replica's group.
        replica: the replica.
        msg_id: the sleeping call.
        timer: the timer's name, ``("t", position)``.
    """

    group: str
    replica: str
    msg_id: MsgId
    timer: tuple


@dataclass(frozen=True, slots=True)
class CancelCall:
    """A client cancels its call ``msg_id`` (``ray.cancel``; ``SimOptions.p_cancel``)."""

    client: str
    msg_id: MsgId


@dataclass(frozen=True, slots=True)
class AbandonArrives:
    """The notice of a cancelled call reaches its group's router (``_AsyncRouter.abandon``: a Ray call of
    its own, which may overtake the call or come after the router took it); ``again``: a notice sent again
    (``core.CancelRenotices``, docs/faults.md row 88)."""

    group: str
    msg_id: MsgId
    again: bool = False


@dataclass(frozen=True, slots=True)
class RenoticeDue:
    """A client's process looks for the notices of its cancelled calls to send again
    (``CancelRenotices.due``; ``runtime/api.py:_Caller.renotice``, docs/faults.md row 88)."""

    client: str


@dataclass(frozen=True, slots=True)
class CancelNotice:
    """Not an event: the waiter ``RouterHost.abandon`` keeps for the notice of cancelled call ``msg_id``
    that its router had taken (``_AsyncRouter.abandon`` awaiting the call's reply), told once it ran."""

    msg_id: MsgId


@dataclass(frozen=True, slots=True)
class NoticeAnswered:
    """The router's answer "ran" to the notice of cancelled call ``msg_id`` reaches its caller's process,
    which settles the call (``runtime/api.py:_given_up``; docs/faults.md row 82)."""

    msg_id: MsgId


@dataclass(frozen=True, slots=True)
class ClientIssue:
    """A client issues its next operation."""

    client: str


@dataclass(frozen=True, slots=True)
class LinkOpened:
    """The router's attempt to open its direct link to ``replica`` ended (up, or unreachable)."""

    group: str
    incarnation: int
    replica: str


@dataclass(frozen=True, slots=True)
class LinkClosed:
    """The OS closed the direct link: the replica's process is gone (its socket closed at once)."""

    group: str
    incarnation: int
    replica: str


@dataclass(frozen=True, slots=True)
class FetchParked:
    """The router's Ray call fetching a parked answer reaches the replica (``back``: its result
    reaches the router)."""

    group: str
    incarnation: int
    replica: str
    delivered: Delivered
    ticket: int
    back: bool = False
    lost: bool = False  # the call failed: the replica is dead


@dataclass(frozen=True, slots=True)
class OnewayCrash:
    """Crash the primary ``replica`` of ``group`` if its one-way nested call ``msg_id`` is still on
    its way (its method finished, the callee's router has not taken it: docs/faults.md row 54)."""

    group: str
    replica: str
    msg_id: MsgId


Event = Union[RequestArrives, ArgumentFetched, ReplyArrives, PullArrives, ToReplica, ToRouter, FailureNotice, SpawnReady,
              StopReplica, RouterRestart, WakeReplica, ClientRetry, NestedRetry, TimerFires, ClientIssue,
              LinkOpened, LinkClosed, FetchParked, OnewayCrash, CancelCall, AbandonArrives,
              NoticeAnswered, RenoticeDue]


@dataclass(frozen=True, slots=True)
class HistoryOp:
    """One client operation, as the client saw it (for invariant I2).

    Args:
        client: the client.
        group: the group called.
        msg_id: its request id.
        method: the method.
        args: the arguments.
        invoked: the tick it was first sent.
        completed: the tick the reply arrived (None while pending).
        position: where the group executed it.
        value: the reply's value (a ``Raised`` if the method raised; None for a one-way call).
        oneway: a one-way call: only its acknowledgement came back.
    """

    client: str
    group: str
    msg_id: MsgId
    method: str
    args: tuple
    invoked: int
    completed: Optional[int] = None
    position: int = 0
    value: object = None
    oneway: bool = False

"""Protocol messages: frozen, slotted dataclasses with an explicit numbered kind.

Every message that crosses a process boundary in ftactors is one of these.
Kinds are numbered once and never reused (a retired kind keeps its number).

Vocabulary (see ``docs/protocol.md``):

* A *group* is one replicated object: a primary replica and its backups.
* A *source* is whoever issues requests on a connection: a client handle, or a
  replicated group calling another group (a nested invocation). Each source
  numbers its requests ``seq = 1, 2, 3...``; ``MsgId(source, seq)`` names a
  message everywhere, so copies and retries are recognised as one message.
* A *position* is the place of a message in the group's total execution order,
  ``1, 2, 3...``, continuous across views. The primary chooses it; an
  :class:`Announcement` tells everyone else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ftactors.core.errors import RemoteProtocolError


class Kind(enum.IntEnum):
    """Numbered message kinds. Numbers are stable and never reused."""

    SYNC_REQUEST = 1
    ASYNC_REQUEST = 2
    ONEWAY = 3
    REPLY = 4
    NULL = 5  # a Deliver carrying only announcements (or a heartbeat)
    CHECKPOINT = 6
    DELIVER = 7
    DELIVERED = 8
    NEW_VIEW = 9
    STATE_QUERY = 10
    STATE_REPORT = 11
    JOIN = 12
    ANNOUNCEMENT = 13

    def __reduce_ex__(self, protocol: Any) -> str:  # type: ignore[override]
        """Pickle a kind by name, as a global (``Kind.SYNC_REQUEST``): unpickling is an attribute
        lookup, where ``Enum``'s own reduction calls ``Kind(1)`` through the enum's metaclass."""
        return f"Kind.{self.name}"


REQUEST_KINDS = frozenset({Kind.SYNC_REQUEST, Kind.ASYNC_REQUEST, Kind.ONEWAY})


@dataclass(frozen=True, slots=True, order=True)
class MsgId:
    """Identity of one application message: who sent it and its number.

    Args:
        source: the sending client or connection, unique in the system.
        seq: the sender's sequence number, starting at 1.
    """

    source: str
    seq: int

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise RemoteProtocolError(f"MsgId.source must be a non-empty str, got {self.source!r}")
        if not isinstance(self.seq, int) or self.seq < 1:
            raise RemoteProtocolError(f"MsgId.seq must be an int >= 1, got {self.seq!r}")

    def __str__(self) -> str:
        return f"{self.source}#{self.seq}"

    def __reduce__(self) -> Tuple[Any, Tuple[str, int]]:
        """Pickle as the fields' values, rebuilt (and validated) by the constructor: a frozen slotted
        dataclass otherwise pickles through ``dataclasses``' Python ``__getstate__``/``__setstate__``
        (each caller's ``Request`` crosses Ray's serializer on every call)."""
        return MsgId, (self.source, self.seq)


def nested_source(group: str, caller: MsgId) -> str:
    """The source name of nested requests made while executing ``caller`` in ``group``.

    Deriving it from the calling message makes it the same at every replica and
    on every re-execution, so copies and retries are one message (exactly once).
    Client sources never contain ``|``, so the name can be read back (:func:`lineage`).

    Args:
        group: the calling group.
        caller: the message whose execution makes the nested calls.

    Returns:
        ``"group|caller.source#caller.seq"``.
    """
    return f"{group}|{caller.source}#{caller.seq}"


def caller_of(group: str, source: str) -> Optional[MsgId]:
    """The calling message of a nested source of ``group`` (the inverse of :func:`nested_source`).

    Args:
        group: the calling group.
        source: a source name.

    Returns:
        ``caller`` if ``source == nested_source(group, caller)``, else None.
    """
    prefix = f"{group}|"
    if not source.startswith(prefix):
        return None
    caller_source, sep, seq = source[len(prefix):].rpartition("#")
    if not sep or not caller_source or not seq.isdigit() or int(seq) < 1:
        return None
    return MsgId(caller_source, int(seq))


def lineage(source: str) -> Tuple[str, Tuple[int, ...]]:
    """Split a source name into its root and the calling sequence numbers below it.

    A client source is its own root: ``lineage("c") == ("c", ())``. A nested source
    names the calling group and message: ``lineage("A|c#5") == ("A|c", (5,))`` and,
    one level deeper, ``lineage("B|A|c#5#1") == ("B|A|c", (5, 1))``. Sources with
    one root are ordered by their path: a calling message's nested source comes after
    those of the messages its source sent before it.

    Args:
        source: a source name.

    Returns:
        (root, path).
    """
    if "|" not in source:
        return source, ()
    group, caller = source.split("|", 1)
    caller_source, sep, seq = caller.rpartition("#")
    if not sep or not seq.isdigit() or not caller_source:
        return source, ()  # not made by nested_source: a root of its own
    root, path = lineage(caller_source)
    return f"{group}|{root}", path + (int(seq),)


#: runs of held calling paths a nested request carries at most in ``Request.holds`` (the lowest ones)
HOLD_RANGES_MAX = 64

#: a run of held calling paths: ``(prefix, lo, hi)`` names the paths ``prefix + (q,)`` for every
#: ``lo <= q <= hi`` (the calls ``lo..hi`` of one source, or of one calling message's nested source)
HoldRun = Tuple[Tuple[int, ...], int, int]

#: calling paths a caller holds unfinished (``Request.holds``): runs sorted by ``(prefix, lo)``, those
#: of one prefix disjoint and apart (:func:`hold_runs`)
Holds = Tuple[HoldRun, ...]


def normalize_runs(runs: Iterable[HoldRun]) -> Holds:
    """Runs as :data:`Holds` carries them: sorted by ``(prefix, lo)``, the overlapping or adjacent
    runs of one prefix merged, the lowest ``HOLD_RANGES_MAX`` kept.

    Args:
        runs: any runs ``(prefix, lo, hi)`` with ``lo <= hi``.

    Returns:
        The same paths as runs (fewer paths if there were more than ``HOLD_RANGES_MAX`` runs).
    """
    by_prefix: Dict[Tuple[int, ...], List[Tuple[int, int]]] = {}
    for prefix, lo, hi in runs:
        by_prefix.setdefault(prefix, []).append((lo, hi))
    out: List[HoldRun] = []
    for prefix in sorted(by_prefix):
        merged: List[List[int]] = []
        for lo, hi in sorted(by_prefix[prefix]):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        out.extend((prefix, lo, hi) for lo, hi in merged)
        if len(out) >= HOLD_RANGES_MAX:
            break
    return tuple(out[:HOLD_RANGES_MAX])


def hold_runs(paths: Iterable[Tuple[int, ...]]) -> Holds:
    """Held calling paths as runs: ``hold_runs([(1,), (2,), (3,), (5, 1)]) == (((), 1, 3), ((5,), 1, 1))``.

    Args:
        paths: calling paths (:func:`calling_path`), non-empty.

    Returns:
        The runs, at most ``HOLD_RANGES_MAX`` (the lowest).
    """
    return normalize_runs((p[:-1], p[-1], p[-1]) for p in paths if p)


def merge_holds(a: Holds, b: Holds) -> Holds:
    """Both sets of held calling paths, as runs, the lowest ``HOLD_RANGES_MAX`` of them.

    Args:
        a: runs.
        b: runs.

    Returns:
        Their union.
    """
    if not a or a == b:
        return b
    if not b:
        return a
    return normalize_runs(a + b)


def _valid_holds(holds: Any) -> bool:
    """Whether ``holds`` is well formed (:data:`Holds`, at most ``HOLD_RANGES_MAX`` runs)."""
    if not isinstance(holds, tuple) or len(holds) > HOLD_RANGES_MAX:
        return False
    for run in holds:
        if not (isinstance(run, tuple) and len(run) == 3 and isinstance(run[0], tuple)
                and all(isinstance(q, int) for q in run[0]) and isinstance(run[1], int)
                and isinstance(run[2], int) and run[1] <= run[2]):
            return False
    return True


def calling_path(msg_id: MsgId) -> Tuple[str, Tuple[int, ...]]:
    """A message's place among the calling messages of its root: its source's :func:`lineage`
    followed by its own sequence number. The nested source it mints has this path.

    Args:
        msg_id: the message.

    Returns:
        (root, path): ``calling_path(MsgId("A|c#5", 2)) == ("A|c", (5, 2))``.
    """
    root, path = lineage(msg_id.source)
    return root, path + (msg_id.seq,)


@dataclass(frozen=True, slots=True)
class Announcement:
    """The primary of ``group`` executed (or is executing) ``msg_id`` at ``position``.

    Args:
        group: the group whose order this is.
        view: the view in which the primary chose this position.
        position: 1-based place in the group's execution order.
        msg_id: the message executed there.
        nondet: values the primary chose while executing it (``ftactors.now()``,
            ``ftactors.random()``); backups replay them. Opaque to the core.
        resume: 0 when the message starts at this position; ``k >= 1`` when the
            message, suspended since its previous position (an async method waiting
            for a nested reply or a timer), resumes for the ``k``-th time here. A
            message that suspends holds one position per step; its reply carries the
            announcement of the step that finished it (claims 1, 5, 39: the primary
            orders the replies to its nested calls like any other message).
        wake: the host's name of the event that resumed it (which reply, which timer),
            so that a backup admits that event and not another that arrived first.
            Opaque to the core; None for a start.
    """

    group: str
    view: int
    position: int
    msg_id: MsgId
    nondet: Tuple[Any, ...] = ()
    resume: int = 0
    wake: Any = None

    kind = Kind.ANNOUNCEMENT

    def __post_init__(self) -> None:
        if self.position < 1:
            raise RemoteProtocolError(f"Announcement.position must be >= 1, got {self.position}")
        if self.view < 0:
            raise RemoteProtocolError(f"Announcement.view must be >= 0, got {self.view}")
        if not isinstance(self.resume, int) or self.resume < 0:
            raise RemoteProtocolError(f"Announcement.resume must be an int >= 0, got {self.resume!r}")

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        """Pickle as the fields' values (see :meth:`MsgId.__reduce__`): announcements ride on every
        reply and copy."""
        return Announcement, (self.group, self.view, self.position, self.msg_id, self.nondet, self.resume,
                              self.wake)


@dataclass(frozen=True, slots=True)
class Request:
    """An application message to a group: a synchronous or asynchronous request, or one-way.

    Args:
        kind: SYNC_REQUEST, ASYNC_REQUEST or ONEWAY (no reply is released).
        msg_id: identity of the message.
        group: the destination group.
        method: the method to call.
        payload: the arguments, opaque to the core (the runtime serialises them).
        priority: scheduling hint, higher first.
        deadline_tick: scheduling hint, earliest first; ``None`` means no deadline.
        resources: names of resources the call needs (resource scheduling).
        ack_below: the source has every reply with ``seq < ack_below``; the
            receiving group may forget them.
        source_view: for nested invocations, the view of the calling group's
            primary (used to fence a deposed primary); ``None`` for clients.
        peer_announcements: announcements of the destination group that the
            source learned from earlier replies (claim 66): carried back so the
            destination's backups learn them even if their own copy was lost.
        size_bytes: payload size, for bounds; 0 if unknown.
        holds: for nested invocations, the calling paths (:func:`calling_path`) of the calling
            message's root that its caller still held unfinished besides the calling message
            (queued behind it by a reordering scheduler, suspended, or held so by the caller's
            own caller), or that made a one-way nested call still on its way (``ReplicaCore.oneway_out``),
            as runs (:func:`hold_runs`), the lowest ``HOLD_RANGES_MAX``. A floor of the receiving
            group that rises past one keeps its subtree apart (:class:`~ftactors.core.dedup.DedupTable`).
    """

    kind: Kind
    msg_id: MsgId
    group: str
    method: str
    payload: Any = None
    priority: int = 0
    deadline_tick: Optional[int] = None
    resources: Tuple[str, ...] = ()
    ack_below: int = 0
    source_view: Optional[int] = None
    peer_announcements: Tuple[Announcement, ...] = ()
    size_bytes: int = 0
    holds: "Holds" = ()

    def __post_init__(self) -> None:
        if self.holds != () and not _valid_holds(self.holds):  # () for every client's request
            raise RemoteProtocolError(f"Request.holds must be a tuple of at most {HOLD_RANGES_MAX} runs "
                                      f"(prefix, lo, hi), got {self.holds!r}")
        if self.kind not in REQUEST_KINDS:
            raise RemoteProtocolError(f"Request.kind must be a request kind, got {self.kind!r}")
        if not isinstance(self.method, str) or not self.method:
            raise RemoteProtocolError(f"Request.method must be a non-empty str, got {self.method!r}")
        if not isinstance(self.priority, int):
            raise RemoteProtocolError(f"Request.priority must be an int, got {self.priority!r}")
        if self.size_bytes < 0:
            raise RemoteProtocolError("Request.size_bytes must be >= 0")

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        """Pickle as the fields' values, rebuilt (and validated) by the constructor (see
        :meth:`MsgId.__reduce__`)."""
        return Request, (self.kind, self.msg_id, self.group, self.method, self.payload, self.priority,
                         self.deadline_tick, self.resources, self.ack_below, self.source_view,
                         self.peer_announcements, self.size_bytes, self.holds)

    @property
    def wants_reply(self) -> bool:
        """True unless the request is one-way."""
        return self.kind != Kind.ONEWAY


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of executing a call: a value or an exception, opaque to the core."""

    ok: bool
    value: Any = None

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        """Pickle as the fields' values (see :meth:`MsgId.__reduce__`)."""
        return Outcome, (self.ok, self.value)


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply to a request, released to its source exactly once.

    Args:
        msg_id: the request answered.
        group: the group that answered.
        view: the view of the primary that produced the reply.
        position: where the request was executed in the group's order; 0 when it was
            answered without executing (an error such as overload): the router retains nothing.
        outcome: the value or the exception.
        announcements: the group's announcements piggybacked on this reply
            (claims 42-47); the source carries them back (claim 66).
    """

    msg_id: MsgId
    group: str
    view: int
    position: int
    outcome: Outcome
    announcements: Tuple[Announcement, ...] = ()

    kind = Kind.REPLY

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        """Pickle as the fields' values (see :meth:`MsgId.__reduce__`)."""
        return Reply, (self.msg_id, self.group, self.view, self.position, self.outcome, self.announcements)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A snapshot of a replica after executing ``position`` messages (passive style).

    Args:
        group: the group.
        view: the view of the primary that took it.
        position: number of messages executed when it was taken.
        state: the application state, opaque (the runtime may pass a reference).
        dedup: the exactly-once table at that point (``DedupTable.export()``).
        digest: a digest of ``state``, for divergence checks.
        oneway: the one-way nested calls the primary sent that the callee's router had not taken yet
            (``ReplicaCore.oneway_kept``): a backup promoted after restoring this checkpoint sends
            them again, as it does not run their calling messages again (docs/faults.md, row 54).
    """

    group: str
    view: int
    position: int
    state: Any
    dedup: Any
    digest: str = ""
    oneway: Tuple["Request", ...] = ()

    kind = Kind.CHECKPOINT


@dataclass(frozen=True, slots=True)
class NewView:
    """Installs a view: its number and members in rank order (primary first)."""

    view: int
    members: Tuple[str, ...]

    kind = Kind.NEW_VIEW

    def __post_init__(self) -> None:
        if not self.members:
            raise RemoteProtocolError("NewView.members must not be empty")
        if len(set(self.members)) != len(self.members):
            raise RemoteProtocolError(f"NewView.members has duplicates: {self.members}")

    @property
    def primary(self) -> str:
        """The primary of the view: the first member."""
        return self.members[0]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Router to replica: one multicast leg, carrying a batch.

    A Deliver with requests is the ordinary multicast of requests; one with
    only announcements is a *null message* (claim 46); one with nothing is a
    heartbeat. ``new_view`` installs a view; ``checkpoint`` carries a passive
    checkpoint; ``join`` carries a state transfer for a joining replica.

    Args:
        view: the sender's view; replicas reject older views (fencing).
        requests: request copies, in reception order.
        announcements: ordering announcements, ascending by position.
        reply_copies: replies to nested requests made by this group, pushed by its primary
            for the backups (claim 48): they ride on this Deliver like the announcements of
            the calling messages, so a backup needs no message of its own to get them.
        new_view: a view to install, or None.
        checkpoint: a checkpoint to store (passive backups) or restore (join).
        snapshot_wanted: ask the primary for a checkpoint now (on demand).
        join: True if ``checkpoint`` is a state transfer to a joining replica.
        give_up_from: to a new primary replaying the order it took over: nobody holds the
            message of this announced position (its request, or the announcement itself), and
            none came within ``recovery_timeout_ticks`` of the router's running time; a primary
            blocked there gives the order up from it (0: none). Only the router knows whether
            anyone holds it: a primary never gives the order up on its own clock.
        oneway_taken: to a backup: one-way nested calls of this group that their callee's router took,
            as the primary learnt (``Delivered.oneway_taken``); the backup forgets them and a promotion
            does not send them again (docs/faults.md, row 69). They ride on a Deliver that goes anyway.
        busy_poll: the router's busy poll of a primary silent on a Deliver (``busy_poll_ticks``): its
            answer says so (``Delivered.busy_poll``), so the router tells it from the answer of a
            Deliver sent before it (docs/faults.md, row 81).
    """

    view: int
    requests: Tuple[Request, ...] = ()
    announcements: Tuple[Announcement, ...] = ()
    reply_copies: Tuple[Reply, ...] = ()
    new_view: Optional[NewView] = None
    checkpoint: Optional[Checkpoint] = None
    snapshot_wanted: bool = False
    join: bool = False
    give_up_from: int = 0
    oneway_taken: Tuple[MsgId, ...] = ()
    busy_poll: bool = False

    kind = Kind.DELIVER

    @property
    def is_null(self) -> bool:
        """True if it carries nothing an unreplicated system would send (announcements and
        reply copies are replication's own traffic: alone, they make a null message)."""
        return not self.requests and self.new_view is None \
            and self.checkpoint is None and not self.snapshot_wanted


@dataclass(frozen=True, slots=True)
class Delivered:
    """Replica to router: the answer to a Deliver.

    Args:
        replica: the sender.
        view: the view the replica is in.
        replies: replies to release (primary only).
        announcements: new announcements (primary only), ascending.
        acked_position: every position up to this one is executed (semi-active)
            or logged (passive) at this replica.
        checkpoint: a checkpoint to relay to passive backups, or None.
        digests: (position, digest) pairs for divergence checks.
        suspended: messages the replica holds suspended (async methods waiting for a
            nested reply or a timer); the router keeps a Deliver outstanding to a
            primary that holds some, which carries their replies back.
        reply_copies: replies to this group's nested requests that the primary consumed
            (primary only): the router relays them to the backups on the Delivers that
            carry the calling messages' announcements (claim 48, no extra message).
        lost_reply: a nested request whose reply this replica needed to replay an announced step
            and pulled from the callee's router, which read it "expired" (its callee forgot it):
            the replica gave that step up and executes nothing until the router repairs it by
            state transfer (``ReplicaCore.pulled_reply_gone``, ``RouterCore._resync_lost_reply``).
            None: nothing lost.
        oneway_taken: one-way nested calls this primary sent that their callee's router took since its
            last answer (``ReplicaCore.oneway_taken``): the router passes them to the backups
            (``Deliver.oneway_taken``), which then do not keep them to send again (row 69).
        busy_poll: this answers a busy poll (``Deliver.busy_poll``; set by the replica host).
    """

    replica: str
    view: int
    replies: Tuple[Reply, ...] = ()
    announcements: Tuple[Announcement, ...] = ()
    acked_position: int = 0
    checkpoint: Optional[Checkpoint] = None
    digests: Tuple[Tuple[int, str], ...] = ()
    suspended: int = 0
    reply_copies: Tuple[Reply, ...] = ()
    lost_reply: Optional[MsgId] = None
    oneway_taken: Tuple[MsgId, ...] = ()
    busy_poll: bool = False

    kind = Kind.DELIVERED


@dataclass(frozen=True, slots=True)
class StateReport:
    """Replica to router during recovery: what this replica holds.

    Args:
        replica: the sender.
        view: the view the replica is in.
        executed_position: positions executed (semi-active) or covered by its
            checkpoint plus replayable log (passive).
        requests: every request it holds that is not yet executed.
        announcements: every announcement it holds beyond ``executed_position``.
        source_views: (calling group, the highest of its views) of the nested requests this
            replica accepted: a rebuilt router learns them here and fences a deposed primary
            of a calling group as its predecessor did (``RouterCore.submit``).
    """

    replica: str
    view: int
    executed_position: int
    requests: Tuple[Request, ...] = ()
    announcements: Tuple[Announcement, ...] = ()
    source_views: Tuple[Tuple[str, int], ...] = ()

    kind = Kind.STATE_REPORT

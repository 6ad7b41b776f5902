"""The sending side of a connection, as a pure state machine.

A client handle (in a driver, a task or an unreplicated actor) numbers its
requests and says which replies it already holds (``ack_below``), so groups can
trim their exactly-once tables. It also carries a group's announcements, learnt
from that group's replies, back to the group on its next request (claim 66).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

from ftactors.core.errors import LocalProtocolError
from ftactors.core.messages import Announcement, Kind, MsgId, Reply, Request


class ClientCore:
    """Numbers requests from one source and tracks which are outstanding.

    Args:
        source: a name unique in the system (the runtime uses a random id).
        carried_announcements_max: announcements kept to carry back, per group.
    """

    def __init__(self, source: str, carried_announcements_max: int = 64) -> None:
        if not source or "|" in source:
            raise LocalProtocolError(f"client source must be non-empty and without '|': {source!r}")
        self.source = source
        self._next = 1
        self._outstanding: Dict[int, None] = {}  # insertion order is seq order: the first is the least
        self._carry: Dict[str, "OrderedDict[int, Announcement]"] = {}
        self._carry_max = carried_announcements_max

    def request(
        self,
        group: str,
        method: str,
        payload: Any = None,
        kind: Kind = Kind.SYNC_REQUEST,
        priority: int = 0,
        deadline_tick: Optional[int] = None,
        resources: Tuple[str, ...] = (),
        size_bytes: int = 0,
        track: bool = True,
    ) -> Request:
        """Make the next request of this source.

        Args:
            track: keep it outstanding until ``on_reply`` (False for a sender
                that never sees replies; then ``ack_below`` stays 0).

        Returns:
            The request, with carried announcements of ``group`` attached.
        """
        seq = self._next
        self._next += 1
        if track and kind != Kind.ONEWAY:
            self._outstanding[seq] = None
        carry = self._carry.pop(group, None)
        return Request(
            kind=kind, msg_id=MsgId(self.source, seq), group=group, method=method, payload=payload,
            priority=priority, deadline_tick=deadline_tick, resources=resources,
            ack_below=self.ack_below() if track else 0,
            peer_announcements=tuple(carry.values()) if carry else (), size_bytes=size_bytes,
        )

    def on_reply(self, reply: Reply) -> None:
        """A reply arrived: it is no longer outstanding; keep its announcements to carry back."""
        if reply.msg_id.source != self.source:
            raise LocalProtocolError(f"reply for {reply.msg_id} given to client {self.source}")
        self._outstanding.pop(reply.msg_id.seq, None)
        carry = self._carry.setdefault(reply.group, OrderedDict())
        for ann in reply.announcements:
            carry[ann.position] = ann
        while len(carry) > self._carry_max:
            carry.popitem(last=False)

    def on_settled(self, seq: int) -> None:
        """The reply to request ``seq`` reached this client by a path that gives no
        :class:`Reply` (a Ray result): it is no longer outstanding."""
        self._outstanding.pop(seq, None)

    def settled(self, seq: int) -> bool:
        """Request ``seq`` was made and its reply is held (or it was settled): ``ack_below`` may pass it.

        Args:
            seq: a sequence number of this source.

        Returns:
            True if settled.
        """
        return seq < self._next and seq not in self._outstanding

    def ack_below(self) -> int:
        """Every reply with a lower sequence number is held by this client."""
        return next(iter(self._outstanding)) if self._outstanding else self._next

    @property
    def outstanding(self) -> int:
        """Requests sent whose reply has not arrived."""
        return len(self._outstanding)

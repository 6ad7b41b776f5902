"""The router's links: what it knows of, and has queued for, each replica.

One ``Link`` per member: the requests and announcements waiting to go out on
it, the view, checkpoint or join it must carry next, the Delivers in flight,
the highest position the replica acknowledged, and when it was last heard
from, pinged and sent to. ``LinkTracker`` holds them all, plus the replicas on
their way in (spawning, joining), those to repair by state transfer, and the
divergences seen. It suspects failures (silence) and picks whom to ping; it
never decides a view.

A transcript::

    tracker = LinkTracker(("g-r0", "g-r1"))
    tracker.queue_request(req, now=0)            # on every link
    tracker.acknowledge("g-r1", 3, now=5)        # g-r1 executed up to 3
    tracker.floor()                              # 0: g-r0 acknowledged nothing yet
    tracker.silent(now=40, failure_timeout_ticks=30, primary="g-r0")  # {"g-r0"} if only g-r1 spoke
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ftactors.core.messages import Announcement, Checkpoint, MsgId, NewView, Reply, Request

#: Divergences a router remembers (the most recent; ``describe()`` shows them).
DIVERGED_MAX = 64

#: One-way calls named taken (``Delivered.oneway_taken``) that wait on a backup's link for a Deliver
#: to ride on, at most (the oldest dropped first; as ``ONEWAY_OUT_MAX`` of the replica core)
ONEWAY_TAKEN_MAX = 256


@dataclass(slots=True)
class Link:
    """The router's view of one replica."""

    requests: List[Request] = field(default_factory=list)
    announcements: List[Announcement] = field(default_factory=list)
    reply_copies: List[Reply] = field(default_factory=list)  # pushed nested replies, at most reply_copies_max
    oneway_taken: List[MsgId] = field(default_factory=list)  # one-way calls taken, at most ONEWAY_TAKEN_MAX
    anns_since: Optional[int] = None
    reqs_since: Optional[int] = None
    checkpoint: Optional[Checkpoint] = None
    new_view: Optional[NewView] = None
    join: bool = False
    snapshot_wanted: bool = False
    inflight: int = 0
    acked: int = 0
    last_heard: int = 0
    last_ping: int = 0
    last_sent: int = 0
    progress_tick: int = 0  # when ``acked`` last advanced
    suspended: int = 0  # messages the replica holds suspended (async methods), as it last said
    give_up_from: int = 0  # the primary's next Deliver tells it to give the order up from here
    out_since: Optional[int] = None  # Delivers are in flight, none answered since this tick
    busy_poll_out: bool = False  # a busy poll is out, not yet answered (busy_poll_ticks)

    def queue_request(self, req: Request, now: int) -> None:
        """Queue ``req`` for the next Deliver on this link (batching counts from the first one)."""
        if not self.requests:
            self.reqs_since = now
        self.requests.append(req)

    def queue_announcement(self, ann: Announcement, now: int) -> None:
        """Queue ``ann`` (a null message carries it ``null_message_ticks`` after the first one)."""
        if self.anns_since is None:
            self.anns_since = now
        self.announcements.append(ann)

    def queue_reply_copy(self, rep: Reply, now: int, copies_max: int) -> bool:
        """Queue a nested reply copy: it rides with the announcements (a null message carries
        them ``null_message_ticks`` after the first). At most ``copies_max`` wait.

        Returns:
            False if the oldest copy was dropped to make room (the backup will pull it).
        """
        if self.anns_since is None:
            self.anns_since = now
        self.reply_copies.append(rep)
        if len(self.reply_copies) > copies_max:
            del self.reply_copies[0]
            return False
        return True

    def queue_oneway_taken(self, taken: Iterable[MsgId]) -> int:
        """Queue one-way call ids the primary names taken: they ride on the next Deliver that goes to
        this backup anyway (never a message of their own). At most ``ONEWAY_TAKEN_MAX`` wait.

        Args:
            taken: the ids.

        Returns:
            How many of the oldest were dropped to make room (that backup keeps those calls).
        """
        self.oneway_taken.extend(taken)
        over = len(self.oneway_taken) - ONEWAY_TAKEN_MAX
        if over > 0:
            del self.oneway_taken[:over]
        return max(over, 0)

    def reload(self, requests: Iterable[Request], announcements: List[Announcement], now: int) -> None:
        """Replace what waits on this link by the whole retained log (a join, repair or new view)."""
        self.requests = list(requests)
        self.announcements = announcements
        self.anns_since = now if announcements else None

    def transfer(self, nv: NewView, cp: Checkpoint, requests: Iterable[Request], announcements: List[Announcement],
                 now: int) -> None:
        """State transfer: the next Deliver carries ``nv``, ``cp`` and ``join``, then the retained log."""
        self.new_view, self.join, self.checkpoint = nv, True, cp
        self.reload(requests, announcements, now)


class LinkTracker:
    """The links of a group's members and the replicas on their way in.

    Args:
        members: the initial replicas.
    """

    def __init__(self, members: Iterable[str]) -> None:
        self.links: Dict[str, Link] = {m: Link(last_heard=0) for m in members}
        self.joining: Dict[str, int] = {}  # replica -> tick the snapshot was asked for
        self.spawning: Set[str] = set()  # asked for with ``spawns``, not yet started
        self.resync: Set[str] = set()  # members whose state diverged: state transfer in place
        self.diverged: List[Tuple[str, int]] = []

    # --------------------------------------------------------------- queues

    def queue_request(self, req: Request, now: int, skip: Optional[str] = None) -> None:
        """Queue ``req`` on every link but ``skip``'s."""
        for name, link in self.links.items():
            if name != skip:
                link.queue_request(req, now)

    def queue_reply_copy(self, rep: Reply, now: int, skip: Optional[str], copies_max: int) -> int:
        """Queue a nested reply copy on every link but ``skip``'s (the primary that pushed it).

        Returns:
            How many links dropped their oldest copy to stay within ``copies_max``.
        """
        dropped = 0
        for name, link in self.links.items():
            if name != skip:
                dropped += not link.queue_reply_copy(rep, now, copies_max)
        return dropped

    def queue_announcement(self, ann: Announcement, now: int, skip: Optional[str]) -> None:
        """Queue ``ann`` on every link but ``skip``'s (the primary that made it, in a normal view)."""
        for name, link in self.links.items():
            if name != skip:
                link.queue_announcement(ann, now)

    def install_view(self, nv: NewView) -> None:
        """Make the next Deliver to each of ``nv``'s members with a link carry ``nv``."""
        for m in nv.members:
            if m in self.links:
                self.links[m].new_view = nv

    def want_snapshot(self, primary: Optional[str]) -> None:
        """Ask ``primary`` (if any) for a checkpoint on its next Deliver."""
        if primary is not None:
            self.links[primary].snapshot_wanted = True

    # ------------------------------------------------------------- liveness

    def acknowledge(self, replica: str, acked_position: int, now: int, busy_poll: bool = False) -> Optional[Link]:
        """A Delivered from ``replica``: one Deliver less in flight, heard now, progress noted.

        Args:
            replica: who answered.
            acked_position: the position it executed (or logged) up to.
            now: the current tick.
            busy_poll: the answer is a busy poll's (``Delivered.busy_poll``): another busy poll may go.
                The answer of a Deliver sent before the poll leaves the poll out (taken for the
                poll's, a poll went every tick after it while the previous one was still out and
                the link never had room again: docs/faults.md, row 81).

        Returns:
            Its link, or None if ``replica`` is not a member (its output is fenced).
        """
        link = self.links.get(replica)
        if link is None:
            return None
        link.inflight = max(0, link.inflight - 1)
        link.last_heard = now
        link.out_since = now if link.inflight else None
        if busy_poll or not link.inflight:
            link.busy_poll_out = False
        if acked_position > link.acked:
            link.progress_tick = now
        link.acked = max(link.acked, acked_position)
        return link

    def heard(self, replica: str, now: int) -> None:
        """``replica`` answered (a pong or a report): it is alive."""
        link = self.links.get(replica)
        if link is not None:
            link.last_heard = now

    def excuse(self, gap_ticks: int) -> None:
        """The router itself did not run for ``gap_ticks`` (starved, paused): silence meanwhile
        proves nothing."""
        for link in self.links.values():
            link.last_heard += gap_ticks

    def excuse_busy(self, gap_ticks: int) -> None:
        """The router did not run for ``gap_ticks`` (a pause longer than ``heartbeat_ticks``; a tick
        merely late counts, docs/faults.md row 87): a replica's answer may be unread, so that time
        does not count toward a busy poll (``busy_poll_ticks``)."""
        for link in self.links.values():
            if link.out_since is not None:
                link.out_since += gap_ticks

    def silent(self, now: int, failure_timeout_ticks: int, primary: Optional[str]) -> Set[str]:
        """The members silent for more than ``failure_timeout_ticks``.

        Every member silent at once points at the router's side: the freshest (the
        primary on a tie) is kept.
        """
        dead = {r for r, link in self.links.items() if now - link.last_heard > failure_timeout_ticks}
        if dead and dead == set(self.links):
            dead.discard(max(self.links, key=lambda r: (self.links[r].last_heard, r == primary)))
        return dead

    def pings(self, now: int, heartbeat_ticks: int) -> List[str]:
        """The members quiet (neither heard nor pinged) for ``heartbeat_ticks``: pinged now."""
        out = []
        for name, link in self.links.items():
            quiet = now - max(link.last_heard, link.last_ping)
            if quiet >= heartbeat_ticks:
                link.last_ping = now
                out.append(name)
        return out

    # ------------------------------------------------------------- progress

    def floor(self) -> int:
        """The lowest position every member acknowledged."""
        return min(link.acked for link in self.links.values())

    def slowest(self, backups: List[str]) -> str:
        """The backup that acknowledged least (the first such in rank order)."""
        return min(backups, key=lambda r: self.links[r].acked)

    def idle_since(self, replica: str) -> Optional[int]:
        """When ``replica`` last advanced, if nothing waits for or is in flight to it; else None."""
        link = self.links[replica]
        if link.requests or link.announcements or link.reply_copies or link.inflight:
            return None
        return link.progress_tick

    def flag_divergence(self, replica: str, position: int) -> None:
        """``replica``'s state differs from the primary's at ``position``: repair it in place."""
        self.diverged.append((replica, position))
        del self.diverged[:-DIVERGED_MAX]
        self.resync.add(replica)

    def drop(self, replica: str) -> None:
        """Forget ``replica``'s link (it left the view)."""
        del self.links[replica]

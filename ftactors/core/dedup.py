"""The exactly-once table: which messages took effect, and their cached replies.

Every replica keeps one; it is part of a checkpoint, so a passive backup that
takes over knows what its predecessor executed. It is bounded two ways:

* a source's ``ack_below`` (carried on its requests) says it holds every reply
  with a lower sequence number: those entries are dropped;
* at most ``reply_cache_max`` entries are kept in all; the oldest go first and
  a late duplicate of one of them gets :class:`ReplyUnavailableError` instead
  of running twice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from ftactors.core.messages import MsgId, Reply

#: What a table looks like inside a checkpoint:
#: ((source, floor, evicted_upto, ((seq, reply_or_None), ...)), ...)
DedupExport = Tuple[Tuple[str, int, int, Tuple[Tuple[int, Optional[Reply]], ...]], ...]


def forget_acknowledged(table: "OrderedDict[MsgId, Any]", source: str, floor: int, ack_below: int) -> None:
    """Drop ``source``'s entries with ``floor <= seq < ack_below`` from ``table``.

    Walks the sequence range when it is shorter than the table, else the table.
    """
    if ack_below - floor <= len(table):
        for seq in range(floor, ack_below):
            table.pop(MsgId(source, seq), None)
    else:
        for mid in [m for m in table if m.source == source and floor <= m.seq < ack_below]:
            del table[mid]


@dataclass(slots=True)
class _Source:
    floor: int = 1  # every seq below this is done and forgotten
    evicted_upto: int = 0  # seqs <= this may have been forgotten by the bound


class DedupTable:
    """Tracks executed messages per source, with their replies.

    Args:
        reply_cache_max: entries kept at most.
    """

    def __init__(self, reply_cache_max: int) -> None:
        self._max = reply_cache_max
        self._sources: Dict[str, _Source] = {}
        self._done: "OrderedDict[MsgId, Optional[Reply]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._done)

    def status(self, msg_id: MsgId) -> str:
        """Classify a message: "new", "done" (reply cached), "forgotten" or "expired".

        "forgotten": the source acknowledged the reply; drop the duplicate silently.
        "expired": executed, but the reply was evicted by the bound.
        """
        if msg_id in self._done:
            return "done"
        src = self._sources.get(msg_id.source)
        if src is None:
            return "new"
        if msg_id.seq < src.floor:
            return "forgotten"
        if msg_id.seq <= src.evicted_upto:
            return "expired"
        return "new"

    def reply(self, msg_id: MsgId) -> Optional[Reply]:
        """The cached reply of a done message (None for one-way messages)."""
        return self._done.get(msg_id)

    def record(self, msg_id: MsgId, reply: Optional[Reply]) -> None:
        """Remember that ``msg_id`` took effect, with its reply.

        Raises:
            AssertionError: if it was recorded already (a message ran twice: our bug).
        """
        assert self.status(msg_id) == "new", f"{msg_id} executed twice"
        self._sources.setdefault(msg_id.source, _Source())
        self._done[msg_id] = reply
        while len(self._done) > self._max:
            old, _ = self._done.popitem(last=False)
            src = self._sources[old.source]
            src.evicted_upto = max(src.evicted_upto, old.seq)

    def acknowledge(self, source: str, ack_below: int) -> None:
        """The source holds every reply with ``seq < ack_below``: forget them."""
        if ack_below <= 1:
            return
        src = self._sources.setdefault(source, _Source())
        if ack_below <= src.floor:
            return
        forget_acknowledged(self._done, source, src.floor, ack_below)
        src.floor = ack_below

    def export(self) -> DedupExport:
        """A plain, picklable copy for a checkpoint."""
        by_source: Dict[str, list] = {s: [] for s in self._sources}
        for mid, rep in self._done.items():
            by_source[mid.source].append((mid.seq, rep))
        return tuple(
            (s, src.floor, src.evicted_upto, tuple(by_source[s])) for s, src in sorted(self._sources.items())
        )

    @classmethod
    def restore(cls, data: DedupExport, reply_cache_max: int) -> "DedupTable":
        """Rebuild a table from :meth:`export` output."""
        table = cls(reply_cache_max)
        for source, floor, evicted_upto, entries in data:
            table._sources[source] = _Source(floor=floor, evicted_upto=evicted_upto)
            for seq, rep in entries:
                table._done[MsgId(source, seq)] = rep
        return table

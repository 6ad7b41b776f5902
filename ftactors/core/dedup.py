"""The exactly-once table: which messages took effect, and their cached replies.

Every replica keeps one; it is part of a checkpoint, so a passive backup that
takes over knows what its predecessor executed. It is bounded three ways:

* a source's ``ack_below`` (carried on its requests) says it holds every reply
  with a lower sequence number: those entries are dropped;
* at most ``reply_cache_max`` entries are kept in all; the oldest go first and
  a late duplicate of one of them gets :class:`ReplyUnavailableError` instead
  of running twice;
* at most ``sources_max`` sources are tracked. Nested calls mint a source per
  calling message (:func:`~ftactors.core.messages.nested_source`), so without
  this bound the table, and every checkpoint, would grow for ever. The source
  idle longest goes first, preferring one with no cached reply left. What it
  executed is kept as a *floor* of its root (:func:`~ftactors.core.messages.lineage`):
  a later message of that root at or below the floor is "expired", never "new",
  so a duplicate of a forgotten source's request still does not run twice.
  At most ``sources_max`` floors are kept too.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Set, Tuple

from ftactors.core.messages import MsgId, Reply, lineage

#: What a table looks like inside a checkpoint: (sources least recently active first,
#: root floors, settled sources oldest first), so a restored table forgets in the same order:
#: (((source, floor, evicted_upto, ((seq, reply_or_None), ...)), ...), ((root, floor_path), ...),
#:  (source, ...))
DedupExport = Tuple[
    Tuple[Tuple[str, int, int, Tuple[Tuple[int, Optional[Reply]], ...]], ...],
    Tuple[Tuple[str, Tuple[int, ...]], ...],
    Tuple[str, ...],
]


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
    top: int = 0  # the highest seq recorded
    held: Set[int] = field(default_factory=set)  # seqs of this source's entries in the table


class DedupTable:
    """Tracks executed messages per source, with their replies.

    Args:
        reply_cache_max: entries kept at most.
        sources_max: sources (and root floors) kept at most; default ``reply_cache_max``.

    Raises:
        ValueError: a bound below 1.
    """

    def __init__(self, reply_cache_max: int, sources_max: Optional[int] = None) -> None:
        if reply_cache_max < 1 or (sources_max is not None and sources_max < 1):
            raise ValueError(f"bounds must be >= 1: reply_cache_max={reply_cache_max} sources_max={sources_max}")
        self._max = reply_cache_max
        self._sources_max = sources_max if sources_max is not None else reply_cache_max
        self._sources: "OrderedDict[str, _Source]" = OrderedDict()  # least recently active first
        self._settled: "OrderedDict[str, None]" = OrderedDict()  # sources holding no entry, oldest first
        self._floors: "OrderedDict[str, Tuple[int, ...]]" = OrderedDict()  # root -> highest forgotten path
        self._done: "OrderedDict[MsgId, Optional[Reply]]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._done)

    def sources(self) -> int:
        """Sources tracked now (at most ``sources_max``)."""
        return len(self._sources)

    def status(self, msg_id: MsgId) -> str:
        """Classify a message: "new", "done" (reply cached), "forgotten" or "expired".

        "forgotten": the source acknowledged the reply; drop the duplicate silently.
        "expired": executed, but the reply (or its whole source) was evicted by a bound.
        """
        if msg_id in self._done:
            return "done"
        src = self._sources.get(msg_id.source)
        if src is not None:
            if msg_id.seq < src.floor:
                return "forgotten"
            if msg_id.seq <= src.evicted_upto:
                return "expired"
        root, path = lineage(msg_id.source)
        floor = self._floors.get(root)
        if floor is not None and path + (msg_id.seq,) <= floor:
            return "expired"
        return "new"

    def reply(self, msg_id: MsgId) -> Optional[Reply]:
        """The cached reply of a done message (None for one-way messages)."""
        return self._done.get(msg_id)

    def record(self, msg_id: MsgId, reply: Optional[Reply]) -> None:
        """Remember that ``msg_id`` took effect, with its reply.

        A message accepted as "new" may read "expired" by the time it runs (a bound forgot
        what lies around it meanwhile); it is recorded all the same: it ran once.

        Raises:
            AssertionError: if it is recorded or acknowledged already (a message ran twice: our bug).
        """
        known = self._sources.get(msg_id.source)
        assert msg_id not in self._done and (known is None or msg_id.seq >= known.floor), \
            f"{msg_id} executed twice"
        src = self._touch(msg_id.source)
        src.top = max(src.top, msg_id.seq)
        src.held.add(msg_id.seq)
        self._settled.pop(msg_id.source, None)
        self._done[msg_id] = reply
        self._bound_entries()
        self._bound_sources()

    def acknowledge(self, source: str, ack_below: int) -> None:
        """The source holds every reply with ``seq < ack_below``: forget them."""
        if ack_below <= 1:
            return
        src = self._touch(source)
        if ack_below > src.floor:
            for seq in [q for q in src.held if q < ack_below]:
                del self._done[MsgId(source, seq)]
                self._release(source, src, seq)
            src.floor = ack_below
        self._bound_sources()

    def export(self) -> DedupExport:
        """A plain, picklable copy for a checkpoint (bounded like the table)."""
        by_source: Dict[str, list] = {s: [] for s in self._sources}
        for mid, rep in self._done.items():
            by_source[mid.source].append((mid.seq, rep))
        sources = tuple((s, src.floor, src.evicted_upto, tuple(by_source[s])) for s, src in self._sources.items())
        return sources, tuple(self._floors.items()), tuple(self._settled)

    @classmethod
    def restore(cls, data: DedupExport, reply_cache_max: int, sources_max: Optional[int] = None) -> "DedupTable":
        """Rebuild a table from :meth:`export` output.

        Args:
            data: what :meth:`export` returned.
            reply_cache_max: see the class.
            sources_max: see the class.

        Returns:
            The table, trimmed to the bounds if they are smaller than the exporter's.
        """
        table = cls(reply_cache_max, sources_max)
        sources, floors, settled = data
        table._floors.update(floors)
        for source, floor, evicted_upto, entries in sources:
            src = table._sources[source] = _Source(floor=floor, evicted_upto=evicted_upto)
            for seq, rep in entries:
                table._done[MsgId(source, seq)] = rep
                src.held.add(seq)
                src.top = max(src.top, seq)
            src.top = max(src.top, evicted_upto, floor - 1)
        table._settled.update((s, None) for s in settled)
        table._bound_entries()
        table._bound_sources()
        return table

    # ------------------------------------------------------------- internals

    def _touch(self, source: str) -> _Source:
        """The source's record, made the most recently active."""
        src = self._sources.get(source)
        if src is None:
            src = self._sources[source] = _Source()
            self._settled[source] = None
        else:
            self._sources.move_to_end(source)
            if source in self._settled:
                self._settled.move_to_end(source)
        return src

    def _release(self, source: str, src: _Source, seq: int) -> None:
        """Entry ``seq`` of ``source`` left the table."""
        src.held.remove(seq)
        if not src.held:
            self._settled[source] = None

    def _bound_entries(self) -> None:
        """Evict the oldest entries past ``reply_cache_max``: their duplicates become "expired"."""
        while len(self._done) > self._max:
            old, _ = self._done.popitem(last=False)
            src = self._sources[old.source]
            src.evicted_upto = max(src.evicted_upto, old.seq)
            self._release(old.source, src, old.seq)

    def _bound_sources(self) -> None:
        """Forget sources past ``sources_max``: settled ones first, each the least recently active."""
        while len(self._sources) > self._sources_max:
            victim = next(iter(self._settled)) if self._settled else next(iter(self._sources))
            self._forget_source(victim)

    def _forget_source(self, source: str) -> None:
        """Drop ``source`` and its entries; raise its root's floor over everything it executed."""
        src = self._sources.pop(source)
        self._settled.pop(source, None)
        for seq in src.held:
            del self._done[MsgId(source, seq)]
        root, path = lineage(source)
        mark = path + (max(src.top, src.evicted_upto, src.floor - 1),)
        floor = self._floors.pop(root, None)
        self._floors[root] = mark if floor is None else max(floor, mark)  # most recent last
        while len(self._floors) > self._sources_max:
            self._floors.popitem(last=False)

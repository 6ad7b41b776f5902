"""The exactly-once table: which messages took effect, and their cached replies.

Every replica keeps one; it is part of a checkpoint, so a passive backup that
takes over knows what its predecessor executed. It is bounded three ways:

* a source's ``ack_below`` (carried on its requests) says it holds every reply
  with a lower sequence number: those entries are dropped;
* at most ``reply_cache_max`` entries are kept in all; the oldest go first and
  a late duplicate of one of them gets :class:`ReplyUnavailableError` instead
  of running twice. A source's *watermark* (``evicted_upto``) says which of its
  sequence numbers may have been evicted; a reordering scheduler can run later
  calls before an earlier one, so the watermark may pass calls that never ran:
  those are kept as the source's *gaps* (at most ``GAPS_MAX`` per source) and
  stay "new" until they run;
* at most ``sources_max`` sources are tracked. Nested calls mint a source per
  calling message (:func:`~ftactors.core.messages.nested_source`), so without
  this bound the table, and every checkpoint, would grow for ever. The source
  idle longest goes first, preferring one with no cached reply left. What it
  executed is kept as a *floor* of its root (:func:`~ftactors.core.messages.lineage`):
  a later message of that root at or below the floor is "expired", never "new",
  so a duplicate of a forgotten source's request still does not run twice.
  At most ``sources_max`` floors are kept too.

A root's calling messages need not run in their order at the caller: a priority, deadline, fair
or resources scheduler lets a call wait while later calls of its client run. A floor raised past
a waiting call would make its first nested call read "expired". So each nested request carries
the calling paths its caller still holds unfinished (``Request.holds``); a floor raised past one
of them *exempts* its subtree, which keeps a floor of its own (a floor per waiting message): a
source below it that the table never saw is "new". At most ``sources_max`` exemptions are kept;
the oldest goes first and its subtree falls under the root's floor again (a call still waiting
there then fails as before, never runs twice). A tracked source is judged by its own record
alone, which takes over what the floors covered when it is recorded again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Set, Tuple

from ftactors.core.messages import HOLDS_CARRIED_MAX, Holds, MsgId, Reply, lineage

Path = Tuple[int, ...]

#: Sequence numbers of one source that its watermark passed before they ran (``_Source.gaps``),
#: kept at most; past this a source's oldest gaps read "expired" (a call that still waits then
#: fails as it did before gaps were kept, never runs twice).
GAPS_MAX = 256

#: What a table looks like inside a checkpoint: (sources least recently active first,
#: root floors, settled sources oldest first, exemptions oldest first, each nested root's latest
#: holds), so a restored table forgets in the same order:
#: (((source, floor, evicted_upto, ((seq, reply_or_None), ...), holds, gaps), ...), ((root, floor_path), ...),
#:  (source, ...), ((root, exempt_path, its_floor_or_None), ...), ((root, holds), ...))
DedupExport = Tuple[
    Tuple[Tuple[str, int, int, Tuple[Tuple[int, Optional[Reply]], ...], Holds, Tuple[int, ...]], ...],
    Tuple[Tuple[str, Path], ...],
    Tuple[str, ...],
    Tuple[Tuple[str, Path, Optional[Path]], ...],
    Tuple[Tuple[str, Holds], ...],
]


def merge_holds(a: Holds, b: Holds) -> Holds:
    """Both sets of held calling paths, sorted, the lowest ``HOLDS_CARRIED_MAX`` of them."""
    if not a or a == b:
        return b
    if not b:
        return a
    return tuple(sorted(set(a) | set(b))[:HOLDS_CARRIED_MAX])


def covered_seqs(floor: Optional[Path], path: Path, seq: int) -> int:
    """The sequence numbers of the source at ``path`` that ``floor`` covers: all up to the result.

    Args:
        floor: a floor of the source's root (or of the exemption it lies in).
        path: the source's path in its root.
        seq: the sequence number being recorded (it ran: the floor rose past it meanwhile).

    Returns:
        0 if none, the floor's own number under ``path``, or ``seq - 1`` if the whole source lies below.
    """
    if floor is None:
        return 0
    head = floor[:len(path)]
    if head == path:
        return floor[len(path)] if len(floor) > len(path) else 0
    return max(0, seq - 1) if head > path else 0


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
    holds: Holds = ()  # calling paths its caller held unfinished when it made these calls
    gaps: Set[int] = field(default_factory=set)  # seqs <= evicted_upto that never ran here (GAPS_MAX)


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
        # (root, path of a calling message a floor passed while its caller held it) -> that subtree's floor
        self._exempt: "OrderedDict[Tuple[str, Path], Optional[Path]]" = OrderedDict()
        self._exempt_of: Dict[str, Set[Path]] = {}  # root -> its exempt paths
        self._holds: "OrderedDict[str, Holds]" = OrderedDict()  # nested root -> its latest holds

    def __len__(self) -> int:
        return len(self._done)

    def sources(self) -> int:
        """Sources tracked now (at most ``sources_max``)."""
        return len(self._sources)

    def exemptions(self) -> int:
        """Subtrees kept apart from their root's floor (at most ``sources_max``): calling messages
        their caller held while the floor rose past them."""
        return len(self._exempt)

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
            if msg_id.seq <= src.evicted_upto and msg_id.seq not in src.gaps:
                return "expired"
            return "new"  # recording it took over what the floors covered (_touch)
        root, path = lineage(msg_id.source)
        floor = self._floor_over(root, path)
        if floor is not None and path + (msg_id.seq,) <= floor:
            return "expired"
        return "new"

    def reply(self, msg_id: MsgId) -> Optional[Reply]:
        """The cached reply of a done message (None for one-way messages)."""
        return self._done.get(msg_id)

    def record(self, msg_id: MsgId, reply: Optional[Reply], holds: Holds = ()) -> None:
        """Remember that ``msg_id`` took effect, with its reply.

        A message accepted as "new" may read "expired" by the time it runs (a bound forgot
        what lies around it meanwhile); it is recorded all the same: it ran once.

        Args:
            msg_id: the message.
            reply: its reply (None for a one-way message).
            holds: its request's ``holds``: calling paths of its root its caller still held
                unfinished; a floor raised past one of them exempts its subtree.

        Raises:
            AssertionError: if it is recorded or acknowledged already (a message ran twice: our bug).
        """
        known = self._sources.get(msg_id.source)
        assert msg_id not in self._done and (known is None or msg_id.seq >= known.floor), \
            f"{msg_id} executed twice"
        src = self._touch(msg_id.source, msg_id.seq)
        src.top = max(src.top, msg_id.seq)
        src.held.add(msg_id.seq)
        src.gaps.discard(msg_id.seq)
        src.holds = merge_holds(src.holds, holds)
        self._learn_holds(msg_id.source, holds)
        self._settled.pop(msg_id.source, None)
        self._done[msg_id] = reply
        self._bound_entries()
        self._bound_sources()

    def acknowledge(self, source: str, ack_below: int) -> None:
        """The source holds every reply with ``seq < ack_below``: forget them."""
        if ack_below <= 1:
            return
        src = self._touch(source, 0)
        if ack_below > src.floor:
            for seq in [q for q in src.held if q < ack_below]:
                del self._done[MsgId(source, seq)]
                self._release(source, src, seq)
            src.floor = ack_below
            src.gaps = {q for q in src.gaps if q >= ack_below}
        self._bound_sources()

    def export(self) -> DedupExport:
        """A plain, picklable copy for a checkpoint (bounded like the table)."""
        by_source: Dict[str, list] = {s: [] for s in self._sources}
        for mid, rep in self._done.items():
            by_source[mid.source].append((mid.seq, rep))
        sources = tuple((s, src.floor, src.evicted_upto, tuple(by_source[s]), src.holds, tuple(sorted(src.gaps)))
                        for s, src in self._sources.items())
        exempt = tuple((root, path, floor) for (root, path), floor in self._exempt.items())
        return sources, tuple(self._floors.items()), tuple(self._settled), exempt, tuple(self._holds.items())

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
        sources, floors, settled, exempt, holds = data
        table._floors.update(floors)
        table._holds.update(holds)
        for root, path, below in exempt:
            table._add_exempt(root, path, below)
        for source, acked, evicted_upto, entries, src_holds, gaps in sources:
            src = table._sources[source] = _Source(floor=acked, evicted_upto=evicted_upto, holds=src_holds,
                                                   gaps=set(gaps))
            for seq, rep in entries:
                table._done[MsgId(source, seq)] = rep
                src.held.add(seq)
                src.top = max(src.top, seq)
            src.top = max(src.top, evicted_upto, acked - 1)
        table._settled.update((s, None) for s in settled)
        table._bound_entries()
        table._bound_sources()
        table._bound_exempt()
        while len(table._holds) > table._sources_max:
            table._holds.popitem(last=False)
        return table

    # ------------------------------------------------------------- internals

    def _touch(self, source: str, seq: int) -> _Source:
        """The source's record, made the most recently active. A new record takes over what the
        floors cover of the source (it was forgotten before, and its calling message still runs).

        Args:
            source: the source.
            seq: the sequence number being recorded (0: none, an acknowledgement).
        """
        src = self._sources.get(source)
        if src is None:
            root, path = lineage(source)
            src = self._sources[source] = _Source(
                evicted_upto=covered_seqs(self._floor_over(root, path), path, seq))
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
            self._raise_watermark(src, old.seq)
            self._release(old.source, src, old.seq)

    @staticmethod
    def _raise_watermark(src: _Source, seq: int) -> None:
        """Entry ``seq`` of ``src`` is evicted: its watermark rises to it. The seqs it passes that
        never ran here (neither in the table nor under the floor: an evicted one raised the
        watermark over itself when it went) become gaps, at most ``GAPS_MAX``, the highest kept."""
        if seq <= src.evicted_upto:
            return
        low = max(src.evicted_upto + 1, src.floor)
        if seq - low > GAPS_MAX:
            low = seq - GAPS_MAX
        src.gaps.update(q for q in range(low, seq) if q not in src.held)
        while len(src.gaps) > GAPS_MAX:
            src.gaps.remove(min(src.gaps))
        src.evicted_upto = seq

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
        exempt = self._exempt_over(root, path)
        if exempt is not None:
            key = (root, exempt)
            floor = self._exempt[key]
            self._exempt[key] = mark if floor is None else max(floor, mark)
            return
        floor = self._floors.pop(root, None)
        for held in merge_holds(src.holds, self._holds.get(root, ())):
            # a calling message its caller still held, below the new floor: its subtree keeps its own
            if held < mark and (floor is None or held > floor) and held != path[:len(held)]:
                self._add_exempt(root, held, None)
        self._floors[root] = mark if floor is None else max(floor, mark)  # most recent last
        while len(self._floors) > self._sources_max:
            self._floors.popitem(last=False)
        self._bound_exempt()

    def _floor_over(self, root: str, path: Path) -> Optional[Path]:
        """The floor that judges sources at ``path``: its exemption's, else its root's."""
        exempt = self._exempt_over(root, path)
        if exempt is not None:
            return self._exempt[(root, exempt)]
        return self._floors.get(root)

    def _exempt_over(self, root: str, path: Path) -> Optional[Path]:
        """The exempt path ``path`` lies in (itself or a prefix), if any."""
        paths = self._exempt_of.get(root)
        if not paths:
            return None
        for n in range(1, len(path) + 1):
            if path[:n] in paths:
                return path[:n]
        return None

    def _add_exempt(self, root: str, path: Path, floor: Optional[Path]) -> None:
        """Exempt the subtree at ``path`` unless it overlaps one already exempt."""
        paths = self._exempt_of.setdefault(root, set())
        if any(p[:len(path)] == path or path[:len(p)] == p for p in paths):
            return
        paths.add(path)
        self._exempt[(root, path)] = floor

    def _bound_exempt(self) -> None:
        """Past ``sources_max`` exemptions, drop the oldest: its subtree lies below its root's floor."""
        while len(self._exempt) > self._sources_max:
            (root, path), _ = self._exempt.popitem(last=False)
            paths = self._exempt_of[root]
            paths.discard(path)
            if not paths:
                del self._exempt_of[root]

    def _learn_holds(self, source: str, holds: Holds) -> None:
        """A nested root's latest holds (at most ``sources_max`` roots, the oldest go first)."""
        root, path = lineage(source)
        if not path:
            return  # a client's own source: no caller holds anything for it
        self._holds.pop(root, None)
        self._holds[root] = holds
        while len(self._holds) > self._sources_max:
            self._holds.popitem(last=False)

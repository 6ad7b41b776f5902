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
the calling paths its caller still holds unfinished (``Request.holds``, as runs of sequence
numbers); a floor raised past them *exempts* their subtrees, kept as runs too: a run of waiting
messages none of which ran here has no floor; once a source in it is forgotten, its message is
split off into a run of its own that keeps a floor (a floor per waiting message that ran): a
source below it that the table never saw is "new". A waiting message may also have run part of
its subtree before the root's floor rose into it (its own source forgotten, the floor at its first
nested calls): when the floor rises past it, the rest of its subtree keeps the floor it had. At most ``sources_max`` exempt runs are kept;
the oldest goes first and its subtrees fall under the root's floor again (a call still waiting
there then fails as before, never runs twice). A tracked source is judged by its own record
alone, which takes over what the floors covered when it is recorded again.

A caller's router may also relay a call past an earlier one of its client that has not come
(``sequence_gap_ticks``): the earlier one never ran at the caller, nothing holds it, and a
callee's floor raised by the later calls' nested calls would pass it. So a nested request also
names the earlier calls of its calling message's source that never ran at the caller
(:meth:`DedupTable.unrun_below`). Only a table that knows it: once it dropped a root floor (more
than ``sources_max`` roots), a source it does not track, or tracks anew, may have run calls it
forgot with that floor; naming those would make a callee exempt subtrees whose nested calls ran
there, and a duplicate of one would run again. Such a table names none (``floor_dropped``, kept in
the checkpoint). A callee exempts only what lies above its floor when it makes the run; a call the
floor had already passed stays "expired".
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from ftactors.core.messages import Holds, MsgId, Reply, lineage, merge_holds

__all__ = ["DedupExport", "DedupTable", "GAPS_MAX", "covered_seqs", "forget_acknowledged", "merge_holds"]

Path = Tuple[int, ...]

#: Sequence numbers of one source that its watermark passed before they ran (``_Source.gaps``),
#: kept at most; past this a source's oldest gaps read "expired" (a call that still waits then
#: fails as it did before gaps were kept, never runs twice).
GAPS_MAX = 256

#: What a table looks like inside a checkpoint: (sources least recently active first,
#: root floors, settled sources oldest first, exemptions oldest first, each nested root's latest
#: holds, whether it ever dropped a root floor), so a restored table forgets in the same order:
#: (((source, floor, evicted_upto, ((seq, reply_or_None), ...), holds, gaps), ...), ((root, floor_path), ...),
#:  (source, ...), ((root, prefix, lo, hi, its_floor_or_None), ...), ((root, holds), ...), floor_dropped);
#: an exemption is a run: the subtrees of the paths ``prefix + (q,)``, ``lo <= q <= hi``
DedupExport = Tuple[
    Tuple[Tuple[str, int, int, Tuple[Tuple[int, Optional[Reply]], ...], Holds, Tuple[int, ...]], ...],
    Tuple[Tuple[str, Path], ...],
    Tuple[str, ...],
    Tuple[Tuple[str, Path, int, int, Optional[Path]], ...],
    Tuple[Tuple[str, Holds], ...],
    bool,
]

#: an exempt run of a root: (root, prefix, lo, hi)
_ExemptKey = Tuple[str, Path, int, int]


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
        # (root, prefix, lo, hi): a run of calling messages a floor passed while their caller held them
        # -> the run's floor (None for a run of several: only a run of one message keeps a floor)
        self._exempt: "OrderedDict[_ExemptKey, Optional[Path]]" = OrderedDict()
        self._exempt_of: Dict[str, Dict[Path, List[Tuple[int, int]]]] = {}  # root -> prefix -> its runs, sorted
        self._holds: "OrderedDict[str, Holds]" = OrderedDict()  # nested root -> its latest holds
        # a root floor was dropped (more than sources_max roots): a source not tracked, or tracked anew,
        # may have run calls this table no longer knows of (unrun_below then names nothing)
        self._floor_dropped = False

    def __len__(self) -> int:
        return len(self._done)

    def sources(self) -> int:
        """Sources tracked now (at most ``sources_max``)."""
        return len(self._sources)

    def exemptions(self) -> int:
        """Runs of subtrees kept apart from their root's floor (at most ``sources_max``): calling
        messages their caller held while the floor rose past them."""
        return len(self._exempt)

    def floor_dropped(self) -> bool:
        """Whether the table ever dropped a root floor (more than ``sources_max`` roots): from then
        on a source it does not track, or tracks anew, may have run calls it no longer knows of."""
        return self._floor_dropped

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

    def unrun_below(self, source: str, seq: int, low: int, limit: int) -> Tuple[Tuple[int, int], ...]:
        """The sequence numbers of ``source`` in ``[low, seq)`` that never ran here and may still
        come (they read "new"), as runs ``(lo, hi)``, the lowest ``limit`` runs. A caller running
        ``seq`` of a source whose earlier calls it has not run (a router relayed it past a missing
        one after ``sequence_gap_ticks``, or it waits) names them in its nested requests' ``holds``,
        so a callee's floor raised by ``seq``'s nested calls never passes them.

        Args:
            source: the source of the message running.
            seq: its sequence number.
            low: the lowest worth naming (its request's ``ack_below``: the source holds the
                replies below).
            limit: runs at most.

        Returns:
            The runs, ascending, disjoint and apart. An untracked source (never seen, or
            forgotten) names every number from ``low`` its root's floor does not cover: one run.
            Nothing (``()``) once the table dropped a root floor (:meth:`floor_dropped`): a
            source it does not track, or tracks anew, may have run calls it forgot with that
            floor, and naming one of those would let a callee run a duplicate of its nested
            calls again.
        """
        if self._floor_dropped:
            return ()
        src = self._sources.get(source)
        if src is None:
            root, path = lineage(source)
            start = max(low, 1, covered_seqs(self._floor_over(root, path), path, seq) + 1)
            return ((start, seq - 1),) if start < seq and limit > 0 else ()
        start = max(low, src.floor)
        # the gaps lie at or below the watermark, the rest above it, where what is not held never ran
        nums = [q for q in src.gaps if start <= q < seq]
        out: List[Tuple[int, int]] = []
        for q in sorted(nums):
            if out and q == out[-1][1] + 1:
                out[-1] = (out[-1][0], q)
            else:
                out.append((q, q))
        q = max(start, src.evicted_upto + 1)
        for h in sorted(x for x in src.held if q <= x < seq) + [seq]:  # at most reply_cache_max
            if q < h:
                if out and q == out[-1][1] + 1:
                    out[-1] = (out[-1][0], h - 1)
                else:
                    out.append((q, h - 1))
            q = h + 1
        return tuple(out[:limit])

    def export(self) -> DedupExport:
        """A plain, picklable copy for a checkpoint (bounded like the table)."""
        by_source: Dict[str, list] = {s: [] for s in self._sources}
        for mid, rep in self._done.items():
            by_source[mid.source].append((mid.seq, rep))
        sources = tuple((s, src.floor, src.evicted_upto, tuple(by_source[s]), src.holds, tuple(sorted(src.gaps)))
                        for s, src in self._sources.items())
        exempt = tuple((root, prefix, lo, hi, floor) for (root, prefix, lo, hi), floor in self._exempt.items())
        return (sources, tuple(self._floors.items()), tuple(self._settled), exempt, tuple(self._holds.items()),
                self._floor_dropped)

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
        sources, floors, settled, exempt, holds, floor_dropped = data
        table._floor_dropped = bool(floor_dropped)
        table._floors.update(floors)
        table._holds.update(holds)
        for root, prefix, lo, hi, below in exempt:
            table._add_exempt(root, prefix, lo, hi, below)
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
        run = self._exempt_over(root, path)
        if run is not None:
            key = (root,) + run
            floor = self._exempt[key]
            self._set_exempt_floor(key, path, mark if floor is None else max(floor, mark))
            return
        floor = self._floors.pop(root, None)
        for prefix, lo, hi in merge_holds(src.holds, self._holds.get(root, ())):
            # calling messages their caller still held, below the new floor: their subtrees keep their own
            n, seqs = len(prefix), range(lo, hi + 1)
            top = lo + bisect_left(seqs, True, key=lambda q: prefix + (q,) >= mark) - 1
            own = path[n] if len(path) > n and path[:n] == prefix else None  # the forgotten source's branch
            if floor is not None:
                # the old floor lies inside at most one held subtree (forgotten sources of that calling
                # message, or its own source): the new floor passes the rest of it, which keeps the old
                # floor as its own (seed 6423: the held message's later nested calls read "expired")
                inside = floor[n] if len(floor) > n + 1 and floor[:n] == prefix else None
                if inside is not None and lo <= inside <= top and inside != own:
                    self._add_exempt(root, prefix, inside, inside, floor)
                lo = lo + bisect_left(seqs, True, key=lambda q: prefix + (q,) > floor)
            for a, b in ((lo, top),) if own is None or not lo <= own <= top else ((lo, own - 1), (own + 1, top)):
                if a <= b:
                    self._add_exempt(root, prefix, a, b, None)
        self._floors[root] = mark if floor is None else max(floor, mark)  # most recent last
        while len(self._floors) > self._sources_max:
            self._floors.popitem(last=False)
            self._floor_dropped = True
        self._bound_exempt()

    def _floor_over(self, root: str, path: Path) -> Optional[Path]:
        """The floor that judges sources at ``path``: its exempt run's, else its root's."""
        run = self._exempt_over(root, path)
        if run is not None:
            return self._exempt[(root,) + run]
        return self._floors.get(root)

    def _exempt_over(self, root: str, path: Path) -> Optional[Tuple[Path, int, int]]:
        """The exempt run ``(prefix, lo, hi)`` whose subtrees ``path`` lies in, if any."""
        prefixes = self._exempt_of.get(root)
        if not prefixes:
            return None
        for n in range(len(path)):
            runs = prefixes.get(path[:n])
            if runs:
                q = path[n]
                i = bisect_right(runs, q, key=lambda r: r[0]) - 1
                if i >= 0 and runs[i][1] >= q:
                    return path[:n], runs[i][0], runs[i][1]
        return None

    def _add_exempt(self, root: str, prefix: Path, lo: int, hi: int, floor: Optional[Path]) -> None:
        """Exempt the subtrees of the run ``(prefix, lo, hi)``, but for what overlaps a run already
        exempt: a subtree within one, or holding one, stays as it is.

        Args:
            root: the root.
            prefix: the run's prefix.
            lo: its first sequence number.
            hi: its last.
            floor: the run's floor (None: nothing of it ran here and was forgotten).
        """
        if prefix and self._exempt_over(root, prefix) is not None:
            return  # within an exempt subtree
        prefixes = self._exempt_of.get(root, {})
        n = len(prefix)
        taken = sorted([(a, b) for a, b in prefixes.get(prefix, ()) if a <= hi and b >= lo]
                       + [(p[n], p[n]) for p in prefixes if len(p) > n and p[:n] == prefix and lo <= p[n] <= hi])
        for a, b in taken:
            if a > lo:
                self._insert_exempt(root, prefix, lo, min(a - 1, hi), floor)
            lo = max(lo, b + 1)
        if lo <= hi:
            self._insert_exempt(root, prefix, lo, hi, floor)

    def _insert_exempt(self, root: str, prefix: Path, lo: int, hi: int, floor: Optional[Path]) -> None:
        insort(self._exempt_of.setdefault(root, {}).setdefault(prefix, []), (lo, hi))
        self._exempt[(root, prefix, lo, hi)] = floor

    def _unlink_exempt(self, key: _ExemptKey) -> None:
        """Drop run ``key`` from the index (not from ``_exempt``)."""
        root, prefix, lo, hi = key
        prefixes = self._exempt_of[root]
        runs = prefixes[prefix]
        runs.remove((lo, hi))
        if not runs:
            del prefixes[prefix]
            if not prefixes:
                del self._exempt_of[root]

    def _set_exempt_floor(self, key: _ExemptKey, path: Path, floor: Path) -> None:
        """A source at ``path`` in exempt run ``key`` is forgotten: its calling message's subtree gets
        ``floor``. A run of several is split in place (same age): that message's own run keeps the
        floor, the others none."""
        root, prefix, lo, hi = key
        if lo == hi:
            self._exempt[key] = floor
            return
        q = path[len(prefix)]
        old = self._exempt[key]
        pieces = [(a, b, f) for a, b, f in ((lo, q - 1, old), (q, q, floor), (q + 1, hi, old)) if a <= b]
        self._unlink_exempt(key)
        items = list(self._exempt.items())
        self._exempt.clear()
        for k, f in items:
            if k != key:
                self._exempt[k] = f
                continue
            for a, b, g in pieces:
                self._insert_exempt(root, prefix, a, b, g)
        self._bound_exempt()

    def _bound_exempt(self) -> None:
        """Past ``sources_max`` exempt runs, drop the oldest: its subtrees lie below their root's floor."""
        while len(self._exempt) > self._sources_max:
            key, _ = self._exempt.popitem(last=False)
            self._unlink_exempt(key)

    def _learn_holds(self, source: str, holds: Holds) -> None:
        """A nested root's latest holds (at most ``sources_max`` roots, the oldest go first)."""
        root, path = lineage(source)
        if not path:
            return  # a client's own source: no caller holds anything for it
        self._holds.pop(root, None)
        self._holds[root] = holds
        while len(self._holds) > self._sources_max:
            self._holds.popitem(last=False)

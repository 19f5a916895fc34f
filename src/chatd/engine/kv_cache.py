"""KV-cache bookkeeping: which sequence owns which cells, and the prefix cache.

llama.cpp's unified cache tags every cell with the sequences that own it; a cell is free
when no sequence owns it. ``KVCells`` mirrors that exactly (llama.cpp has no API for the
number of used cells): every sequence holds *pieces*, ranges of a *run* of cells created
together by one decode of one sequence, and every cell of a run has a reference count.
Sharing a prefix (``llama_memory_seq_cp``) adds references; removing a sequence drops
them, and cells whose count reaches zero are free again.

``PrefixCache`` keeps finished sequences' cells under cache seq ids so that a later
prompt with the same token prefix reuses them instead of recomputing. Why its eviction
is shaped as it is (see docs/engine.md, "Prefix cache"): freeing cells while sequences
run leaves holes that llama.cpp fills with those sequences' next tokens, out of position
order, and results then drift; so while anything runs, cells are never freed unless the
cache is full, and at idle the cache is either kept whole or cleared whole.

Every lender (an entry or a running sequence) belongs to a *partition* (the service's
caller, opaque here: ``CacheScope``), and a prompt reuses another partition's cells only
within the public *shared* part both declare (an operator's shared system prompt):
otherwise a tenant could guess another's prompt token by token from its own
``cached_tokens`` (docs/security.md, "Prefix cache isolation"). Whatever else compares
tokens across lenders (redundant entries, the idle keep-or-clear choice) is scoped the
same way. The partition is part of what an entry is: an entry moved to another tier
(host memory, disk) must keep it in its key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = ["KVAllocator", "KVCells", "PrefixCache", "CacheHit", "Lender", "reusable"]

_MIN_KEPT_HIT = 64  # tokens a waiting prompt must reuse for an idle cache over budget to stay


class _Memory(Protocol):
    """The part of the model runner that edits llama.cpp's KV memory."""

    def seq_remove(self, seq_id: int) -> None: ...
    def seq_move(self, src: int, dst: int) -> None: ...
    def seq_copy(self, src: int, dst: int, n_tokens: int) -> None: ...
    def seq_move_tail(self, src: int, dst: int, start: int) -> None: ...
    def memory_clear(self) -> None: ...


class _Run:
    """Cells created by one sequence for consecutive positions from ``start``."""

    __slots__ = ("start", "refs")

    def __init__(self, start: int, n: int) -> None:
        self.start = start
        self.refs = [1] * n


@dataclass
class _Piece:
    run: _Run
    lo: int  # indices into run.refs
    hi: int

    @property
    def end_pos(self) -> int:
        return self.run.start + self.hi


class KVCells:
    """Exact cell accounting over llama.cpp's KV memory, and the only caller of its
    sequence edits (so the two never disagree)."""

    def __init__(self, memory: _Memory) -> None:
        self.memory = memory
        self.used = 0
        self._pieces: dict[int, list[_Piece]] = {}

    def length(self, seq_id: int) -> int:
        pieces = self._pieces.get(seq_id)
        return pieces[-1].end_pos if pieces else 0

    def appended(self, seq_id: int, start: int, n: int) -> None:
        """``n`` new cells were decoded for ``seq_id`` at positions ``start``...``"""
        pieces = self._pieces.setdefault(seq_id, [])
        last = pieces[-1] if pieces else None
        if last is not None and last.hi == len(last.run.refs) and last.end_pos == start:
            last.run.refs.extend([1] * n)  # grow this sequence's own newest run
            last.hi += n
        else:
            pieces.append(_Piece(_Run(start, n), 0, n))
        self.used += n

    def share(self, src: int, dst: int, n_tokens: int) -> None:
        """Give ``dst`` (empty) the cells of ``src``'s first ``n_tokens`` positions."""
        assert not self._pieces.get(dst), f"seq {dst} is not empty"
        self.memory.seq_copy(src, dst, n_tokens)
        taken: list[_Piece] = []
        for p in self._pieces.get(src, []):
            if p.run.start + p.lo >= n_tokens:
                break
            hi = min(p.hi, n_tokens - p.run.start)
            for i in range(p.lo, hi):
                p.run.refs[i] += 1
            taken.append(_Piece(p.run, p.lo, hi))
        self._pieces[dst] = taken

    def move(self, src: int, dst: int) -> None:
        """Hand every cell of ``src`` to ``dst`` (no cell is freed)."""
        self.memory.seq_move(src, dst)
        self._pieces.setdefault(dst, []).extend(self._pieces.pop(src, []))

    def move_tail(self, src: int, dst: int, start: int) -> None:
        """Hand ``src``'s cells from position ``start`` on to ``dst`` (none is freed:
        freeing them now would leave holes among running sequences' cells)."""
        self.memory.seq_move_tail(src, dst, start)
        kept: list[_Piece] = []
        moved: list[_Piece] = []
        for p in self._pieces.get(src, []):
            first = p.run.start + p.lo
            if p.end_pos <= start:
                kept.append(p)
            elif first >= start:
                moved.append(p)
            else:
                cut = start - p.run.start
                kept.append(_Piece(p.run, p.lo, cut))
                moved.append(_Piece(p.run, cut, p.hi))
        self._pieces[src] = kept
        self._pieces.setdefault(dst, []).extend(moved)

    def remove(self, seq_id: int) -> None:
        self.memory.seq_remove(seq_id)
        for p in self._pieces.pop(seq_id, []):
            refs = p.run.refs
            for i in range(p.lo, p.hi):
                refs[i] -= 1
                if refs[i] == 0:
                    self.used -= 1

    def clear(self) -> None:
        self.memory.memory_clear()
        self._pieces.clear()
        self.used = 0

    def holds(self, seq_id: int) -> bool:
        return bool(self._pieces.get(seq_id))


@dataclass(frozen=True)
class CacheHit:
    source: int  # seq id whose cells are shared
    n_tokens: int


@dataclass
class _Entry:
    """A finished sequence's cells. What it is, for lookups: (partition, tokens); an entry
    is never found by a prompt of another partition beyond both ``shared`` parts."""

    tokens: np.ndarray  # the tokens whose KV the entry's cells hold, from position 0
    tiled: int  # positions before this were computed in wide passes (PrefillContext)
    partition: str = ""  # whose prompt it was (CacheScope.partition)
    shared: int = 0  # leading tokens any partition may reuse (CacheScope.shared)


@dataclass(frozen=True)
class Lender:
    """Cells a new prompt may share: a cache entry's or a running sequence's."""

    seq_id: int
    tokens: np.ndarray  # tokens of the cells, from position 0
    tiled: int  # positions before this were computed in wide passes
    partition: str = ""  # whose cells they are
    shared: int = 0  # leading tokens other partitions may reuse


def reusable(
    prompt: np.ndarray, tiled: int, lender: Lender, partition: str = "", shared: int = 0
) -> int:
    """How many leading positions of ``prompt`` (of ``partition``, whose first ``shared``
    tokens are public) can take ``lender``'s cells: its common prefix, within the shared
    part of both when they belong to different partitions, as long as each position was
    computed the way this prompt would compute it (in wide passes below ``tiled``, one row
    at a time from there): the two ways give different numbers, and a hit must give the
    answer a cold prompt gives. Leaves at least the prompt's last token to compute (its
    logits start the answer)."""
    n = min(_common_prefix(prompt, lender.tokens), len(prompt) - 1)
    n = _in_scope(n, lender.partition, lender.shared, partition, shared)
    if lender.tiled != tiled:
        n = min(n, lender.tiled, tiled)
    return max(n, 0)


def _in_scope(n: int, lender: str, lender_shared: int, partition: str, shared: int) -> int:
    """A common prefix of ``n`` tokens as far as ``partition`` may see it: all of it in
    its own partition, only what both sides declared public in another's."""
    return n if lender == partition else min(n, lender_shared, shared)


@dataclass
class PrefixCache:
    """Finished sequences' cells, kept under their own seq ids, found by longest token
    prefix; least recently used first out.

    ``budget`` bounds the cells kept while the engine is idle: every kept cell widens
    the attention of every later step in the unified cache, so an idle cache above it is
    cleared (whole: see the module's docstring).
    """

    cells: KVCells
    entry_ids: list[int]  # seq ids reserved for entries
    retired_id: int  # holds cells that must outlive their owner until a safe moment
    budget: int
    hit_tokens: int = 0  # prompt tokens served from the cache (metrics)
    miss_tokens: int = 0  # prompt tokens computed
    _entries: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._free = list(reversed(self.entry_ids))

    @property
    def enabled(self) -> bool:
        return self.budget > 0 and bool(self.entry_ids)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(
        self,
        prompt: np.ndarray,
        tiled: int = 0,
        live: Sequence[Lender] = (),
        partition: str = "",
        shared: int = 0,
    ) -> CacheHit | None:
        """The longest prefix of ``prompt`` (whose positions before ``tiled`` are computed
        in wide passes; of ``partition``, its first ``shared`` tokens public) that an
        entry or a live sequence can lend (see ``reusable``)."""
        best: CacheHit | None = None
        entries = (
            [
                Lender(sid, e.tokens, e.tiled, e.partition, e.shared)
                for sid, e in self._entries.items()
            ]
            if self.enabled
            else []
        )
        for lender in [*entries, *live]:
            n = reusable(prompt, tiled, lender, partition, shared)
            if n > 0 and (best is None or n > best.n_tokens):
                best = CacheHit(lender.seq_id, n)
        if best is not None and best.source in self._entries:
            self._entries.move_to_end(best.source)
        return best

    def store(
        self, seq_id: int, tokens: np.ndarray, tiled: int = 0, partition: str = "", shared: int = 0
    ) -> None:
        """Keep a finished sequence's cells (``seq_id`` is freed for reuse by the
        caller); entries it makes redundant (of its partition, a prefix of it, computed
        the same way and sharing no more) retire. Never another partition's: that would
        let one tenant's prompt decide another's hits."""
        if not self.enabled or len(tokens) == 0:
            self.cells.move(seq_id, self.retired_id)
            return
        redundant = [
            s
            for s, e in self._entries.items()
            if e.partition == partition
            and e.tiled == tiled
            and e.shared <= shared
            and _is_prefix(e.tokens, tokens)
        ]
        for sid in redundant:
            self._retire(sid)
        if not self._free:
            self._retire(next(iter(self._entries)))  # least recently used
        entry_id = self._free.pop()
        self.cells.move(seq_id, entry_id)
        self._entries[entry_id] = _Entry(tokens, tiled, partition, shared)

    def _retire(self, entry_id: int) -> None:
        del self._entries[entry_id]
        self.cells.move(entry_id, self.retired_id)
        self._free.append(entry_id)

    def free_retired(self) -> bool:
        if not self.cells.holds(self.retired_id):
            return False
        self.cells.remove(self.retired_id)
        return True

    def settle(self) -> bool:
        """At rest with no entry kept, whatever cells are held belong to the retired
        sequence alone: freeing them is clearing whole, so they go at once and a resting
        engine holds no cell. True when that was the case."""
        if self._entries:
            return False
        if self.cells.used:
            self.cells.clear()
        return True

    def evict_one(self) -> bool:
        """Under memory pressure: free the least recently used entry's cells."""
        if not self._entries:
            return False
        entry_id = next(iter(self._entries))
        del self._entries[entry_id]
        self.cells.remove(entry_id)
        self._free.append(entry_id)
        return True

    def on_idle(
        self, next_prompt: np.ndarray | None = None, partition: str = "", shared: int = 0
    ) -> None:
        """Nothing runs: keep the whole cache, or clear it whole when over budget,
        unless the request about to start (of ``partition``, ``shared`` tokens public)
        reuses part of it (it is kept for that one: clearing it would lose the very
        prefix a repeated prompt needs). Only what that request may reuse counts: were
        another partition's tokens compared, whether the cache survives (and so the
        sender's own later hits) would tell how far its prompt matched theirs."""
        if self.settle():
            return
        if self.cells.used <= self.budget:
            return
        if next_prompt is not None and self.enabled:
            # Worth keeping: a hit of 64+ tokens, or the whole prompt of a short one (not
            # the few template tokens that every prompt shares).
            wanted = min(_MIN_KEPT_HIT, len(next_prompt) - 1)
            for e in self._entries.values():
                n = _common_prefix(next_prompt, e.tokens)
                if wanted > 0 and _in_scope(n, e.partition, e.shared, partition, shared) >= wanted:
                    return
        self.cells.clear()
        self._entries.clear()
        self._free = list(reversed(self.entry_ids))


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def _is_prefix(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) <= len(b) and _common_prefix(a, b) == len(a)


class KVAllocator:
    """The KV cache's one owner: seq ids and cells for running choices, the prefix cache,
    and the retired sequence.

    llama.cpp's sequence ids are split three ways: ids for running choices, ids for
    prefix-cache entries, and the last one for the retired sequence (cells that must
    outlive their owner until a safe moment: see ``PrefixCache``).
    """

    def __init__(self, memory: _Memory, n_seq_ids: int, entries: int, idle_budget: int) -> None:
        n_entries = min(entries, max(0, n_seq_ids - 2))
        self.n_live = n_seq_ids - 1 - n_entries  # concurrent choices
        self.cells = KVCells(memory)
        self.cache = PrefixCache(
            self.cells,
            list(range(self.n_live, self.n_live + n_entries)),
            n_seq_ids - 1,
            idle_budget,
        )
        self.free_ids = list(range(self.n_live - 1, -1, -1))

    @staticmethod
    def seq_ids_needed(max_sequences: int, entries: int) -> int:
        """llama.cpp sequences to create for this many choices and cache entries."""
        return max_sequences + entries + 1

    def allocate(self) -> int:
        return self.free_ids.pop()

    def release(
        self, seq_id: int, tokens: np.ndarray, tiled: int, partition: str = "", shared: int = 0
    ) -> None:
        """A choice is done with ``seq_id``: its cells go to the prefix cache (or the
        retired sequence), the id back to the pool."""
        self.cache.store(seq_id, tokens, tiled, partition, shared)
        self.free_ids.append(seq_id)

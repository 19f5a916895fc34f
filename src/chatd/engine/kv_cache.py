"""The KV cache's owner: seq ids for running choices, their cells (kv_cells.py), and the
prefix cache of finished sequences, kept in host memory rather than in KV cells.

Why host memory: llama.cpp attends over every used cell of its unified cache in every
step, so cells kept for finished requests made every live token slower (measured: 1
stream at 0.66x llama-server's speed with the cache on, parity with it off). Now only
live sequences hold cells. A finished sequence's KV is serialized
(``llama_state_seq_get_data``, ~4 ms per 1000 tokens) into an entry bounded in bytes,
least recently used first out, like llama-server's ``--cache-ram``, and comes back into
cells only on a hit (``llama_state_seq_set_data``); an optional disk tier under it
(prefix_disk.py) survives restarts. Live sequences that share a prefix (n > 1, requests
with one system prompt) share cells in the window as before.

Every lender (an entry or a running sequence) belongs to a *partition* (the service's
caller, opaque here: ``CacheScope``), and a prompt reuses another partition's cells only
within the public *shared* part both declare (an operator's shared system prompt):
otherwise a tenant could guess another's prompt token by token from its own
``cached_tokens`` (docs/security.md, "Prefix cache isolation"). Whatever else compares
tokens across lenders (redundant entries) is scoped the same way, and the partition is
part of an entry's key in every tier.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chatd.engine.kv_cells import KVCells, KVMemory
from chatd.engine.prefix_disk import PrefixDisk, StoredPrefix

__all__ = [
    "SEGMENT",
    "CacheHit",
    "KVAllocator",
    "Lender",
    "PrefixCache",
    "pack_segments",
    "reusable",
    "unpack_segments",
]

log = logging.getLogger("chatd.engine")


SEGMENT = 512  # tokens an entry's state is saved in, so that part of it can come back


@dataclass(frozen=True)
class CacheHit:
    """Where a prompt's first ``n_tokens`` come from: a running sequence's cells
    (``source``), a host entry's saved state (``entry``), or both: the first ``shared``
    (whole segments) from the running sequence, the rest restored from the entry. Why
    both: sessions that share a long system prompt and each have their own history hold
    that prompt once in the KV cells, not once per session."""

    n_tokens: int
    source: int = -1
    entry: int = -1
    shared: int = 0


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
    n = n if lender.partition == partition else min(n, lender.shared, shared)
    if lender.tiled != tiled:
        n = min(n, lender.tiled, tiled)
    return max(n, 0)


@dataclass
class _Entry:
    """A finished sequence's KV, serialized: what it is for lookups (partition, tokens),
    and the state that brings its cells back, one ``SEGMENT`` of positions per part."""

    meta: StoredPrefix
    segments: list[Any]  # llama.cpp's per-sequence state (buffers); len() is bytes

    @property
    def size(self) -> int:
        return sum(len(s) for s in self.segments)


@dataclass
class PrefixCache:
    """Finished sequences' KV in host memory, found by longest token prefix; least
    recently used first out, within ``max_bytes`` and ``max_entries``. With ``disk``,
    every entry is also written there (in the background) and a longer hit there is
    loaded back."""

    memory: KVMemory
    max_bytes: int
    max_entries: int
    disk: PrefixDisk | None = None
    hit_tokens: int = 0  # prompt tokens served from the cache (metrics)
    miss_tokens: int = 0  # prompt tokens computed
    bytes_used: int = 0
    _entries: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)
    _next_key: int = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(
        self,
        prompt: np.ndarray,
        tiled: int = 0,
        live: Sequence[Lender] = (),
        partition: str = "",
        shared: int = 0,
        room: int = 1 << 62,
    ) -> CacheHit | None:
        """The longest prefix of ``prompt`` (whose positions before ``tiled`` are computed
        in wide passes; of ``partition``, its first ``shared`` tokens public) that a live
        sequence or an entry can lend (see ``reusable``). A live sequence wins a tie (its
        cells are shared, nothing is restored); an entry's hit takes the whole segments a
        live sequence lends from it (``CacheHit.shared``), and counts only if the rest of
        the entry fits in ``room`` free cells (its segments come back whole before the
        last one's tail is dropped)."""
        best: CacheHit | None = None
        for lender in live:
            n = reusable(prompt, tiled, lender, partition, shared)
            if n > 0 and (best is None or n > best.n_tokens):
                best = CacheHit(n, source=lender.seq_id)
        if not self.enabled:
            return best
        # what a running sequence lends, in whole segments, need not be restored
        base = best.n_tokens // SEGMENT * SEGMENT if best is not None else 0
        entries = ((key, e.meta) for key, e in self._entries.items())
        n, key = _longest(entries, prompt, tiled, partition, shared, room + base)
        if n > (best.n_tokens if best else 0):
            best = _hit(n, key, best, base)
        found = self._from_disk(prompt, tiled, partition, shared, room + base, best)
        if found is not None and (best is None or found[0] > best.n_tokens):
            best = _hit(found[0], found[1], best, base)
        if best is not None and best.entry >= 0:
            self._entries.move_to_end(best.entry)
        return best

    def segments(self, hit: CacheHit) -> list[Any]:
        return self._entries[hit.entry].segments

    def store(
        self, seq_id: int, tokens: np.ndarray, tiled: int = 0, partition: str = "", shared: int = 0
    ) -> None:
        """Keep a finished sequence's KV (its cells themselves are the caller's to
        retire); entries it makes redundant (of its partition, a prefix of it, computed
        the same way and sharing no more) go. Never another partition's: that would let
        one tenant's prompt decide another's hits."""
        if not self.enabled or len(tokens) == 0:
            return
        meta = StoredPrefix(tokens, tiled, partition, shared)
        n = len(tokens)
        segments = [
            self.memory.seq_state(seq_id, a, min(a + SEGMENT, n)) for a in range(0, n, SEGMENT)
        ]
        if sum(len(s) for s in segments) > self.max_bytes:
            return
        self._add(meta, segments)
        if self.disk is not None:
            self.disk.put(meta, pack_segments(segments))

    def _add(self, meta: StoredPrefix, segments: list[Any]) -> int:
        entry = _Entry(meta, segments)
        for key in [k for k, e in self._entries.items() if _redundant(e.meta, meta)]:
            self._drop(key)
        while self._entries and (
            len(self._entries) >= self.max_entries or self.bytes_used + entry.size > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))  # least recently used
        key = self._next_key
        self._next_key += 1
        self._entries[key] = entry
        self.bytes_used += entry.size
        return key

    def _drop(self, key: int) -> None:
        self.bytes_used -= self._entries.pop(key).size

    def _from_disk(
        self,
        prompt: np.ndarray,
        tiled: int,
        partition: str,
        shared: int,
        room: int,
        best: CacheHit | None,
    ) -> tuple[int, int] | None:
        """A longer hit on disk than in memory is loaded into memory: (its length, its key
        there). A corrupt or vanished file is a miss: the disk tier checks every payload."""
        if self.disk is None:
            return None
        on_disk = dict(self.disk.entries())
        n, key = _longest(on_disk.items(), prompt, tiled, partition, shared, room)
        if n <= (best.n_tokens if best else 0):
            return None
        data = self.disk.load(key)
        segments = unpack_segments(data) if data is not None else None
        if not segments or len(segments) != -(-len(on_disk[key].tokens) // SEGMENT):
            return None
        return n, self._add(on_disk[key], segments)


def _hit(n: int, key: int, live: CacheHit | None, base: int) -> CacheHit:
    """An entry's hit of ``n`` tokens, its first ``base`` shared from ``live``'s source."""
    if live is not None and base > 0:
        return CacheHit(n, source=live.source, entry=key, shared=base)
    return CacheHit(n, entry=key)


def pack_segments(segments: Sequence[Any]) -> bytes:
    """An entry's segments as one payload for the disk tier: each one's length (8 bytes,
    little-endian), then its bytes."""
    out = bytearray()
    for s in segments:
        out += len(s).to_bytes(8, "little")
        out += bytes(s)
    return bytes(out)


def unpack_segments(data: bytes) -> list[bytes] | None:
    """``pack_segments`` read back; None when it does not parse (the disk tier's digest
    makes that a bug rather than damage, but a miss either way)."""
    out, i = [], 0
    while i < len(data):
        if i + 8 > len(data):
            return None
        n = int.from_bytes(data[i : i + 8], "little")
        if i + 8 + n > len(data):
            return None
        out.append(data[i + 8 : i + 8 + n])
        i += 8 + n
    return out


def _longest(
    entries: Iterable[tuple[int, StoredPrefix]],
    prompt: np.ndarray,
    tiled: int,
    partition: str,
    shared: int,
    room: int,
) -> tuple[int, int]:
    """The longest reusable prefix among ``entries`` of at most ``room`` cells, and its
    key ((0, -1): none)."""
    best = (0, -1)
    for key, m in entries:
        if len(m.tokens) <= room:
            lender = Lender(-1, m.tokens, m.tiled, m.partition, m.shared)
            n = reusable(prompt, tiled, lender, partition, shared)
            if n > best[0]:
                best = (n, key)
    return best


def _redundant(old: StoredPrefix, new: StoredPrefix) -> bool:
    return (
        old.partition == new.partition
        and old.tiled == new.tiled
        and old.shared <= new.shared
        and len(old.tokens) <= len(new.tokens)
        and _common_prefix(old.tokens, new.tokens) == len(old.tokens)
    )


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


class KVAllocator:
    """Seq ids and cells for running choices, the prefix cache, and the retired sequence.

    llama.cpp's sequence ids are split in two: ids for running choices, and the last one
    for the retired sequence (cells that must outlive their owner until they can be freed
    without a hole: kv_cells.py).
    """

    def __init__(self, memory: KVMemory, n_seq_ids: int, cache: PrefixCache) -> None:
        self.n_live = n_seq_ids - 1  # concurrent choices
        self.cells = KVCells(memory, n_seq_ids - 1)
        self.cache = cache
        self.free_ids = list(range(self.n_live - 1, -1, -1))

    @staticmethod
    def seq_ids_needed(max_sequences: int) -> int:
        """llama.cpp sequences to create for this many choices."""
        return max_sequences + 1

    def allocate(self) -> int:
        return self.free_ids.pop()

    def release(
        self, seq_id: int, tokens: np.ndarray, tiled: int, partition: str = "", shared: int = 0
    ) -> None:
        """A choice is done with ``seq_id``: its KV goes to the prefix cache, its cells to
        the retired sequence, the id back to the pool."""
        self.cache.store(seq_id, tokens, tiled, partition, shared)
        self.cells.retire(seq_id)
        self.free_ids.append(seq_id)

    def restore(self, hit: CacheHit, seq_id: int, n_tokens: int) -> bool:
        """Bring positions ``hit.shared``..``n_tokens`` of a host entry into ``seq_id``
        (which holds the positions before, shared): segment by segment, after every held
        cell, the last segment's tail freed at once (it lies above every live cell, so no
        hole opens below one). False when they do not fit (what was restored is freed)."""
        start = hit.shared
        assert start % SEGMENT == 0
        for i, state in enumerate(self.cache.segments(hit)):
            a = i * SEGMENT
            if a >= n_tokens:
                break
            if a < start:
                continue
            b = min(a + SEGMENT, n_tokens)
            if not self.cells.memory.seq_restore(state, [(seq_id, a, b)]):
                if self.cells.length(seq_id) > start:  # the newest cells of all: freed
                    self.cells.trim(seq_id, start)
                return False
            self.cells.appended(seq_id, a, b - a)
        return True

    def settle(self) -> None:
        """At rest: whatever cells are held belong to the retired sequence alone, so they
        are freed whole and a resting engine holds no cell."""
        if self.cells.used:
            self.cells.clear()

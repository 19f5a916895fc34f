"""Exact cell accounting over llama.cpp's KV memory, and the only caller of its sequence
edits (so the two never disagree).

llama.cpp's unified cache tags every cell with the sequences that own it; a cell is free
when no sequence owns it. ``KVCells`` mirrors that exactly (llama.cpp has no API for the
number of used cells): every sequence holds *pieces*, ranges of a *run* of cells created
together for consecutive positions, and every cell of a run has a reference count.
Sharing a prefix (``llama_memory_seq_cp``) adds references; removing a sequence drops
them, and cells whose count reaches zero are free again.

Why cells are never freed one sequence at a time while others run (docs/engine.md,
"Determinism"): llama.cpp puts the next tokens of running sequences into the holes, before
their earlier cells, and attention then sums in another order. Cells a finished sequence
leaves behind go to the *retired* sequence instead, and ``repack`` frees them without
leaving a hole: it serializes every live run, clears the memory and restores the runs in
the order they were created, so each sequence's cells stay in position order and the
attention window shrinks to the live cells.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["KVCells", "KVMemory"]

_serials = itertools.count()


class KVMemory(Protocol):
    """The part of the model runner that edits llama.cpp's KV memory."""

    def seq_move(self, src: int, dst: int) -> None: ...
    def seq_copy(self, src: int, dst: int, n_tokens: int) -> None: ...
    def seq_move_tail(self, src: int, dst: int, start: int) -> None: ...
    def seq_trim(self, seq_id: int, start: int) -> None: ...
    def memory_clear(self) -> None: ...
    def seq_state(self, seq_id: int, start: int, end: int) -> Any: ...
    def seq_restore(self, state: Any, owners: Sequence[tuple[int, int, int]]) -> bool: ...


class _Run:
    """Cells created by one sequence for consecutive positions from ``start``; ``serial``
    orders runs by creation (a sequence's runs are created in position order)."""

    __slots__ = ("start", "refs", "serial")

    def __init__(self, start: int, n: int) -> None:
        self.start = start
        self.refs = [1] * n
        self.serial = next(_serials)


@dataclass
class _Piece:
    run: _Run
    lo: int  # indices into run.refs
    hi: int

    @property
    def end_pos(self) -> int:
        return self.run.start + self.hi


class KVCells:
    """Who holds which cells, mirrored exactly; ``retired`` is the sequence that holds cells
    whose owners are gone until they can be freed without a hole."""

    def __init__(self, memory: KVMemory, retired: int) -> None:
        self.memory = memory
        self.retired = retired
        self.used = 0
        self._pieces: dict[int, list[_Piece]] = {}
        self._dead: int | None = 0  # cells held by the retired sequence alone (None: count)

    def length(self, seq_id: int) -> int:
        pieces = self._pieces.get(seq_id)
        return pieces[-1].end_pos if pieces else 0

    def holds(self, seq_id: int) -> bool:
        return bool(self._pieces.get(seq_id))

    @property
    def dead(self) -> int:
        """Cells only the retired sequence holds: what a repack would free."""
        if self._dead is None:
            self._dead = sum(
                1
                for p in self._pieces.get(self.retired, [])
                for i in range(p.lo, p.hi)
                if p.run.refs[i] == 1
            )
        return self._dead

    def appended(self, seq_id: int, start: int, n: int) -> None:
        """``n`` new cells were decoded (or restored) for ``seq_id`` at ``start``..."""
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
        self._dead = None

    def retire(self, seq_id: int) -> None:
        """Hand every cell of ``seq_id`` to the retired sequence (no cell is freed)."""
        self.memory.seq_move(seq_id, self.retired)
        self._pieces.setdefault(self.retired, []).extend(self._pieces.pop(seq_id, []))
        self._dead = None

    def retire_tail(self, seq_id: int, start: int) -> None:
        """Hand ``seq_id``'s cells from position ``start`` on to the retired sequence
        (rejected drafts: freeing them now would leave holes)."""
        self.memory.seq_move_tail(seq_id, self.retired, start)
        kept: list[_Piece] = []
        moved: list[_Piece] = []
        for p in self._pieces.get(seq_id, []):
            first = p.run.start + p.lo
            if p.end_pos <= start:
                kept.append(p)
            elif first >= start:
                moved.append(p)
            else:
                cut = start - p.run.start
                kept.append(_Piece(p.run, p.lo, cut))
                moved.append(_Piece(p.run, cut, p.hi))
        self._pieces[seq_id] = kept
        self._pieces.setdefault(self.retired, []).extend(moved)
        self._dead = None

    def trim(self, seq_id: int, start: int) -> None:
        """Free ``seq_id``'s cells from position ``start`` on at once: only when they are the
        newest cells of the whole memory (a lone sequence's rejected drafts), so llama.cpp
        refills them with that sequence's next tokens, in order."""
        self.memory.seq_trim(seq_id, start)
        kept: list[_Piece] = []
        for p in self._pieces.get(seq_id, []):
            cut = max(p.lo, min(p.hi, start - p.run.start))
            for i in range(cut, p.hi):
                p.run.refs[i] -= 1
                self.used -= p.run.refs[i] == 0
            if cut > p.lo:
                kept.append(_Piece(p.run, p.lo, cut))
        self._pieces[seq_id] = kept
        self._dead = None

    def clear(self) -> None:
        self.memory.memory_clear()
        self._pieces.clear()
        self.used = 0
        self._dead = 0

    def repack(self) -> int:
        """Free the retired sequence's cells without leaving a hole: every cell a live
        sequence holds is serialized, the memory cleared, and the cells restored in the
        order their runs were created (cells shared by several sequences stay shared, each
        sequence's cells stay in position order). Returns the cells freed. Costs about
        8 ms per 1000 live cells here, so the caller repacks only when the retired cells
        are worth it."""
        if not self.holds(self.retired):
            return 0
        held: dict[int, tuple[_Run, list[tuple[int, _Piece]]]] = {}
        for seq, pieces in self._pieces.items():
            if seq != self.retired:
                for p in pieces:
                    held.setdefault(id(p.run), (p.run, []))[1].append((seq, p))
        saved: list[tuple[Any, list[tuple[int, int, int]]]] = []
        for run, holders in sorted(held.values(), key=lambda h: h[0].serial):
            cuts = sorted({p.lo for _, p in holders} | {p.hi for _, p in holders})
            for lo, hi in itertools.pairwise(cuts):
                owners = [s for s, p in holders if p.lo <= lo and p.hi >= hi]
                if owners:
                    a, b = run.start + lo, run.start + hi
                    state = self.memory.seq_state(owners[0], a, b)
                    saved.append((state, [(s, a, b) for s in owners]))
        before = self.used
        self.memory.memory_clear()
        for state, owners in saved:
            if not self.memory.seq_restore(state, owners):  # fewer cells than before: never
                raise RuntimeError("KV repack could not restore a sequence's cells")
        self._drop(self.retired)
        return before - self.used

    def _drop(self, seq_id: int) -> None:
        for p in self._pieces.pop(seq_id, []):
            refs = p.run.refs
            for i in range(p.lo, p.hi):
                refs[i] -= 1
                if refs[i] == 0:
                    self.used -= 1
        self._dead = None

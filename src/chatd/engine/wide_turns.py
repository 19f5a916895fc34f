"""Whose prompt the wide-prefill context computes, one pass a step (docs/engine.md, "Wide
prefill", "Whose blocks go next").

The prefill context (``PrefillContext``) holds one prompt at a time. Each pass goes to the
prompt with the least wide work left, less a credit (the tokens computed for others while
it waited): a short prompt never waits behind a long one, and a long one waits at most
about its own length of others' blocks. The prompt in the context keeps it unless another
needs at most half its rest; one that steps aside hands its computed blocks to the main
context and gets them back when it resumes (as a cache hit does: cell = position, so the
passes that follow compute exactly what they would have).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chatd.engine.kv_cells import KVCells
from chatd.engine.sequence import SequenceGroup

if TYPE_CHECKING:
    from chatd.engine.model_runner import ModelRunner

__all__ = ["WideTurns", "in_wide_part"]


def in_wide_part(req: SequenceGroup) -> bool:
    """Whether ``req``'s lead still has wide blocks to compute (or to receive)."""
    return not req.forked and req.lead.n_cached < req.tiled_len


def _ready(req: SequenceGroup) -> bool:
    """Wants the prefill context now (a follower waits for another's prefix first)."""
    return in_wide_part(req) and req.follows is None and not req.cancelled


class WideTurns:
    """The prefill context's owner and how far its prompt got there."""

    def __init__(self, runner: ModelRunner, cells: KVCells) -> None:
        self.runner = runner
        self.cells = cells
        self.owner: SequenceGroup | None = None
        self.done = 0  # prompt positions of the owner computed so far

    def release(self, req: SequenceGroup) -> None:
        """``req`` left the running set: nothing of it stays in the context."""
        if self.owner is req:
            self.owner = None

    @staticmethod
    def pending(running: Sequence[SequenceGroup]) -> int:
        """Cells the prefill context will hand to the main context for these requests."""
        return sum(r.tiled_len - r.lead.n_cached for r in running if _ready(r))

    def step(
        self, running: Sequence[SequenceGroup], tokens: int, make_room: Callable[[], None]
    ) -> bool:
        """One pass of at most ``tokens`` for the prompt chosen by ``_next``; when its
        blocks are done they move to the main context (``make_room`` is called when they do
        not fit yet: they move at a later step). Whether it did anything."""
        req = self._next(running)
        prefill = self.runner.prefill if req is not None else None
        if req is None or prefill is None:
            self.owner = None
            return False
        if req is not self.owner:
            if self._pause(running):
                lead = req.lead
                prefill.begin(lead.seq_id if lead.n_cached else None, lead.n_cached)
                self.owner, self.done = req, lead.n_cached
            else:  # the owner's blocks do not fit in the main context yet: it keeps going
                req = self.owner
                assert req is not None
        lead = req.lead
        n = min(req.tiled_len - self.done, tokens)
        if n > 0:
            prefill.run(lead.tokens[self.done : self.done + n], self.done)
            self.done += n
            for r in running:  # the others' credit: how long they have waited
                if r is not req and _ready(r):
                    r.tiled_credit += n
        if self.done == req.tiled_len:
            if self._hand_over():
                self.owner = None
            else:
                make_room()
        return True

    def _next(self, running: Sequence[SequenceGroup]) -> SequenceGroup | None:
        ready = [r for r in running if _ready(r)]
        if not ready:
            return None
        owner = self.owner if self.owner in ready else None

        def left(r: SequenceGroup) -> int:
            return r.tiled_len - (self.done if r is owner else r.lead.n_cached)

        best = min(ready, key=lambda r: (left(r) - r.tiled_credit, r.arrival))
        if owner is not None and (best is owner or 2 * left(best) > left(owner)):
            return owner
        return best

    def _pause(self, running: Sequence[SequenceGroup]) -> bool:
        """The owner steps aside, its computed blocks moved to the main context; False when
        they do not fit there yet."""
        req = self.owner
        if req is None or req not in running or not in_wide_part(req):
            self.owner = None
            return True
        if self.done == req.lead.n_cached or self._hand_over():
            self.owner = None
            return True
        return False

    def _hand_over(self) -> bool:
        """Move the owner's computed blocks (from what the main context holds on) there."""
        req, prefill = self.owner, self.runner.prefill
        assert req is not None and prefill is not None
        lead = req.lead
        assert lead.seq_id is not None
        start = lead.n_cached
        if not prefill.finish(start, lead.seq_id):
            return False
        self.cells.appended(lead.seq_id, start, self.done - start)
        lead.n_cached = self.done
        return True

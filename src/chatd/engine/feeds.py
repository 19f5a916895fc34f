"""What the scheduler hands the model runner for one step: per sequence, the tokens to put
into the pass (its next uncomputed ones, then drafts to verify) and the rows it needs back."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatd.engine.batch import Chunk
from chatd.engine.sequence import Sequence, SequenceGroup

__all__ = ["Feed", "Work"]


@dataclass
class Work:
    """What one step computes: the main pass's feeds, and whether a lone row is padded."""

    feeds: list[Feed]
    pad: bool


@dataclass
class Feed:
    request: SequenceGroup
    seq: Sequence
    n_tokens: int
    wants_logits: bool
    fork: bool  # this row is the last prompt token of an unforked request
    drafts: list[int] = field(default_factory=list)  # predicted tokens to verify
    prompt_rows: bool = False  # a row for every prompt token fed (its prompt logprobs)

    @property
    def n_rows(self) -> int:
        """Rows of logits this feed gets back."""
        if self.prompt_rows:
            return self.n_tokens
        return 1 + len(self.drafts) if self.drafts else int(self.wants_logits)

    def chunk(self) -> Chunk:
        """The tokens this feed puts into the pass: the next ones not yet computed, then
        the drafts to verify."""
        seq = self.seq
        assert seq.seq_id is not None
        start = seq.n_cached
        tokens = seq.tokens[start : start + self.n_tokens - len(self.drafts)] + self.drafts
        every_row = bool(self.drafts) or self.prompt_rows
        return Chunk(tokens, start, seq.seq_id, self.wants_logits, every_row)

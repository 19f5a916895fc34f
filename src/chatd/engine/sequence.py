"""One request (a group of n choices sharing a prompt) and its sequences (one per choice)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from chatd.engine.detokenizer import Detokenizer
from chatd.engine.grammar import Matcher
from chatd.engine.params import (
    UNSCOPED,
    CacheScope,
    Delta,
    FinishReason,
    SamplingParams,
    TokenLogprob,
)
from chatd.engine.sampler import Sampler
from chatd.engine.speculation import Drafter

_ids = itertools.count()


def wide_stride(n_tokens: int, block: int) -> int:
    """Where the wide part of an ``n_tokens`` prompt may end: a multiple of this, whole
    ``block``s, about a 16th of the prompt (64 below 2,048 tokens, 256 from 4,096, 1,024
    from 16,384)."""
    power = 1 << max(0, n_tokens.bit_length() - 1)
    return max(block, power // 16 // block * block)


class Phase(Enum):
    WAITING = "waiting"  # no KV cells held
    RUNNING = "running"  # holds seq ids and KV cells
    DONE = "done"


@dataclass
class Sequence:
    """One choice: its tokens, its place in the KV cache, its sampler and detokenizer."""

    index: int
    tokens: list[int]
    sampler: Sampler
    detok: Detokenizer
    matcher: Matcher | None = None  # grammar state when the output is constrained
    drafter: Drafter | None = None  # drafts from a predicted output
    seq_id: int | None = None
    n_cached: int = 0  # tokens of `tokens` already in the KV cache
    # Positions before this were computed by the batch-invariant kernels, so their cells
    # may be lent to other prompts (see Scheduler._schedule: lone rows of requests that
    # need no exactness skip the padding row and take llama.cpp's split-KV attention).
    lendable: int = 1 << 62
    n_generated: int = 0
    finish_reason: FinishReason | None = None
    # Logprob entries not yet attached to released text: (first char index, entry).
    pending_logprobs: list[tuple[int, TokenLogprob]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def pending(self) -> int:
        return len(self.tokens) - self.n_cached


class SequenceGroup:
    """A prompt and its n choices, as the scheduler sees them.

    ``emit`` is called from the engine thread with every step's deltas (or an exception);
    it must be thread-safe and must not block.
    """

    def __init__(
        self,
        prompt: list[int],
        params: SamplingParams,
        n_vocab: int,
        emit: Callable[[list[Delta] | BaseException], None],
        scope: CacheScope = UNSCOPED,
    ) -> None:
        self.id = next(_ids)
        # Whose cells it may reuse, and whose turn it is in the waiting queue (CacheScope).
        self.partition = scope.partition
        # Prompt tokens other partitions may share with it; the scheduler caps it at
        # admission to what it can lend whatever the rest of the prompt is (-1: not yet).
        self.shared_asked = scope.shared
        self.shared = -1
        self.prompt = np.asarray(prompt, dtype=np.int32)
        self.prompt_len = len(prompt)
        self.cached_tokens: int | None = None  # prompt tokens reused at first admission
        self.tiled_len = -1  # prompt positions computed in wide passes (set at admission)
        # With params.prompt_logprobs: each prompt position's logprob given the tokens
        # before it (none for the first), filled as its rows are computed
        self.prompt_logprobs: list[TokenLogprob | None] | None = (
            [None] * len(prompt) if params.prompt_logprobs else None
        )
        self.params = params
        self.emit = emit
        self.arrival = time.monotonic()
        self.phase = Phase.WAITING
        self.forked = False  # prompt KV shared with every choice
        # A running request computing a longer prefix of this prompt, which this one waits
        # for instead of computing it too (Scheduler._follow); None: computes at once.
        self.follows: SequenceGroup | None = None
        self.follow_until = 0  # how far into this prompt that request computes
        self.tiled_credit = 0  # wide-prefill tokens computed for others while this waited
        self.cancelled = False
        self.sequences = [
            Sequence(
                index=i,
                tokens=list(prompt),
                sampler=Sampler(params, i, n_vocab, self.prompt),
                detok=Detokenizer(params.stop),
                matcher=params.grammar.matcher() if params.grammar else None,
                drafter=Drafter(params.prediction) if params.prediction else None,
            )
            for i in range(params.n)
        ]

    def shape(self, block: int) -> None:
        """Set once, before the first lookup: ``tiled_len``, the prompt positions computed
        in wide passes (whole ``block``-token blocks, short of the last token, which the
        main context computes with the rest one row at a time, its logits starting the
        answer; 0 when there is no prefill context, ``block`` 0), and ``shared``, the
        part other partitions may reuse. That part is cut to whole wide blocks: it is
        followed by at least the last token, so those blocks are computed wide whatever
        the rest of the prompt, while past them whether a position is computed wide
        depends on how long the rest is, and another tenant must not learn that.

        The wide part ends on a multiple of a *stride* that grows with the prompt (a 16th
        of it, in whole blocks: ``wide_stride``), not of one block, and covers at least
        the shared part. Why: positions computed one way are reused only by a prompt that
        computes them the same way, and a conversation's next turn is its last prompt plus
        ~100 tokens; with a one-block stride each turn's wide part ends past the last
        one's, so the earlier answer (computed a row at a time) was recomputed every turn.
        With the stride, consecutive turns mostly end their wide part at the same place
        and the next turn reuses all of its history; the cost is at most a 16th of a cold
        prompt computed a row at a time (~25% slower than wide) instead of wide."""
        if self.tiled_len >= 0:
            return
        last = self.prompt_len - 1
        shared = max(0, min(self.shared_asked, last))
        self.shared = shared // block * block if block else shared
        # a prompt whose logprobs are asked is computed row by row in the main context
        wide = block if self.prompt_logprobs is None else 0
        if wide:
            stride = wide_stride(last, wide)
            self.tiled_len = max(last // stride * stride, self.shared)
        else:
            self.tiled_len = 0

    @property
    def lead(self) -> Sequence:
        """The choice that carries the prompt until it is shared (the first unfinished one:
        after a preemption choice 0 may already be done)."""
        return next(s for s in self.sequences if not s.finished)

    def active(self) -> list[Sequence]:
        return [s for s in self.sequences if not s.finished]

    def kv_needed(self) -> int:
        """Cells needed to (re)admit this request and give each choice one more token:
        after a preemption that includes everything its choices had generated."""
        active = self.active()
        return self.prompt_len + sum(len(s.tokens) - self.prompt_len + 1 for s in active)

    def all_finished(self) -> bool:
        return all(s.finished for s in self.sequences)

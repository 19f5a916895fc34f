"""Which computed prefix a prompt reuses, and when it waits for one (docs/engine.md,
"Prefix cache", "A prefix computed once").

At admission a prompt takes the longest prefix it may reuse (``kv_cache.reusable``: in
its tenant's scope, computed the way it would compute it) from a running sequence's cells
(shared) or the prefix cache (restored). A prompt whose prefix a running request is still
computing, by at least a block more than anything ready, waits for it instead of
computing it a second time: it is admitted as that request's *follower*, computes nothing
until the running sequences hold all of the prefix they will lend (or are gone), then
takes it. Followers never wait for each other (only for a request that computes), so no
cycle can form.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chatd.engine.contexts import PrefillContext
from chatd.engine.kv_cache import CacheHit, KVAllocator, Lender, reusable
from chatd.engine.sequence import Sequence as Choice
from chatd.engine.sequence import SequenceGroup

__all__ = ["PrefixReuse", "lendable_tokens", "lenders", "usable"]


def lendable_tokens(seq: Choice) -> np.ndarray:
    """The tokens of ``seq``'s cells that other prompts may share."""
    return np.asarray(seq.tokens[: min(seq.n_cached, seq.lendable)], dtype=np.int32)


def lenders(running: Sequence[SequenceGroup]) -> list[Lender]:
    """Running sequences' computed tokens, which a new prompt may share."""
    return [
        Lender(s.seq_id, lendable_tokens(s), r.tiled_len, r.partition, r.shared)
        for r in running
        for s in r.sequences
        if s.seq_id is not None and min(s.n_cached, s.lendable) > 0
    ]


def usable(req: SequenceGroup, hit: CacheHit | None) -> int:
    """Positions of ``hit`` the prompt takes: all of them, but inside its wide part the
    prefill context restarts at a block boundary."""
    reused = hit.n_tokens if hit is not None else 0
    if reused < req.tiled_len:
        reused -= reused % PrefillContext.BLOCK
    return reused


class PrefixReuse:
    """Hits for prompts being admitted, and their followers' waits."""

    def __init__(self, kv: KVAllocator, n_ctx: int) -> None:
        self.kv = kv
        self.n_ctx = n_ctx

    def lookup(self, req: SequenceGroup, live: list[Lender], room: int) -> CacheHit | None:
        """The best hit for ``req``'s prompt among running sequences and the prefix cache
        (entries that fit in ``room`` free cells); none when its prompt's logprobs are
        asked (every position is then computed)."""
        if req.prompt_logprobs is not None:
            return None
        return self.kv.cache.lookup(
            req.prompt, req.tiled_len, live, req.partition, req.shared, room
        )

    def take(self, req: SequenceGroup, hit: CacheHit | None, reused: int) -> None:
        """Give the lead the first ``reused`` positions of ``hit``: a running sequence's
        cells, shared, and (past the part shared) a cache entry's, restored; the client is
        told at the first admission."""
        lead, cache = req.lead, self.kv.cache
        assert lead.seq_id is not None
        if reused > 0 and hit is not None:
            shared = reused if hit.entry < 0 else min(hit.shared, reused)
            if shared > 0:
                self.kv.cells.share(hit.source, lead.seq_id, shared)
            if reused > shared and not self.kv.restore(hit, lead.seq_id, reused):
                reused = shared  # the entry did not fit: what was shared stays
            lead.n_cached = reused
        if req.cached_tokens is None:
            req.cached_tokens = reused
            cache.hit_tokens += reused
            cache.miss_tokens += req.prompt_len - reused

    def ahead(
        self,
        req: SequenceGroup,
        reused: int,
        running: Sequence[SequenceGroup],
        margin: int = PrefillContext.BLOCK,
    ) -> tuple[SequenceGroup | None, int]:
        """A running request still computing a prompt that shares at least ``margin``
        tokens beyond ``reused`` with ``req``'s (in scope: ``reusable``), and how far:
        ``req`` then waits for that prefix instead of computing it a second time."""
        if req.prompt_logprobs is not None:
            return None, 0
        best: tuple[SequenceGroup | None, int] = (None, 0)
        for r in running:  # not another follower: two would wait for each other
            lead = r.lead
            if r.forked or r.follows is not None or lead.seq_id is None or r.cancelled:
                continue
            lender = Lender(lead.seq_id, r.prompt, r.tiled_len, r.partition, r.shared)
            n = reusable(req.prompt, req.tiled_len, lender, req.partition, req.shared)
            if n >= reused + margin and n > best[1] and n > lead.n_cached:
                best = (r, n)
        return best

    def follow(self, req: SequenceGroup, running: Sequence[SequenceGroup]) -> bool:
        """Whether ``req`` (waiting for a prefix another request computes) may compute: once
        the running sequences lend what it waited for, or its lender is gone, it takes the
        best hit there is then."""
        lender = req.follows
        if (
            lender in running
            and not (lender.cancelled or lender.forked or lender.all_finished())
            and lender.lead.n_cached < req.follow_until
        ):
            return False  # still computing what this one waits for (the cheap test)
        hit = self.lookup(req, lenders(running), self.n_ctx - self.kv.cells.used)
        reused = usable(req, hit)
        _, ahead = self.ahead(req, reused, running, margin=1)  # admitted to wait: to the end
        if ahead > 0:
            return False
        req.follows = None
        self.take(req, hit, reused)
        return True

"""Drafts for speculative decoding: from a predicted output (OpenAI's ``prediction``), or
from the prompt itself (prompt lookup, a server option).

The model verifies a run of drafted tokens in one pass; the drafter only guesses. It
follows its source while the output matches it, and after a mismatch (an edit)
re-aligns where the output rejoins it: the longest suffix of the output (up to
``_MAX_NGRAM`` tokens, at least ``min_ngram``) found in the source, nearest after where
it left off. A prompt-lookup drafter starts unaligned and needs a 2-token match, so it
proposes nothing until the output starts repeating a stretch of the prompt.
"""

from __future__ import annotations

from collections import defaultdict

__all__ = ["Drafter"]

_MAX_NGRAM = 4


class Drafter:
    def __init__(self, prediction: tuple[int, ...], *, from_prompt: bool = False) -> None:
        self.prediction = prediction
        self.from_prompt = from_prompt  # prompt lookup: its matches are not "accepted" ones
        self.min_ngram = 2 if from_prompt else 1
        self.pos = 0  # index of the prediction token expected next
        self.synced = not from_prompt  # the output so far ends where prediction[:pos] ends
        self.matched = 0  # output tokens that followed the prediction (OpenAI's "accepted")
        # Drafts per step: a verified row costs compute, so the width follows how much of
        # the last draft the model kept (doubling after a full match, the kept length + 1
        # after a miss).
        self.width = 4
        self._index: dict[tuple[int, ...], list[int]] | None = None  # built when needed

    def _ngram_ends(self) -> dict[tuple[int, ...], list[int]]:
        """Where each n-gram of the source ends (built on the first re-alignment: most
        prompt-lookup drafters never need it)."""
        if self._index is None:
            index: dict[tuple[int, ...], list[int]] = defaultdict(list)
            p = self.prediction
            for n in range(self.min_ngram, _MAX_NGRAM + 1):
                for i in range(len(p) - n + 1):
                    index[p[i : i + n]].append(i + n)
            self._index = index
        return self._index

    def advance(self, token: int) -> None:
        """The output grew by ``token``."""
        p = self.prediction
        if self.synced and self.pos < len(p) and p[self.pos] == token:
            self.pos += 1
            self.matched += 1
        else:
            self.synced = False

    def propose(self, output: list[int], k: int) -> list[int]:
        """Up to ``k`` tokens the output may continue with."""
        if k <= 0:
            return []
        if not self.synced and not self._realign(output):
            return []
        return list(self.prediction[self.pos : self.pos + min(k, self.width)])

    def verified(self, drafted: int, kept: int, limit: int) -> None:
        """``kept`` of ``drafted`` tokens were confirmed by the model."""
        self.width = min(limit, self.width * 2) if kept == drafted else max(1, kept + 1)

    def _realign(self, output: list[int]) -> bool:
        for n in range(min(_MAX_NGRAM, len(output)), self.min_ngram - 1, -1):
            ends = self._ngram_ends().get(tuple(output[-n:]))
            if not ends:
                continue
            after = [e for e in ends if e >= self.pos]
            end = after[0] if after else ends[-1]
            if end >= len(self.prediction):
                continue
            self.pos, self.synced = end, True
            return True
        return False

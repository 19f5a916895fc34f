"""Per-choice token sampling and logprobs, in numpy on one row of logits.

Order of operations (as in OpenAI's description and vLLM): penalties on the tokens
generated so far, then logit_bias, then temperature (0 = greedy), then top_p (nucleus).
Logprobs describe the model's own distribution (raw logits), not the processed one.
"""

from __future__ import annotations

import numpy as np

from chatd.engine.params import SamplingParams

_NUCLEUS_FAST_K = 1024


class Sampler:
    def __init__(self, params: SamplingParams, choice_index: int, n_vocab: int) -> None:
        self.params = params
        if params.seed is not None:
            # Each choice gets its own stream derived from (seed, index): reproducible
            # per choice, and choices differ from each other.
            self.rng = np.random.default_rng([params.seed & 0xFFFFFFFFFFFFFFFF, choice_index])
        else:
            self.rng = np.random.default_rng()
        self._penalize = bool(params.presence_penalty or params.frequency_penalty)
        self._counts = np.zeros(n_vocab, dtype=np.float32) if self._penalize else None
        if params.logit_bias:
            self._bias_ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
            self._bias_vals = np.fromiter(params.logit_bias.values(), dtype=np.float32)
        else:
            self._bias_ids = None

    def accept(self, token: int) -> None:
        """Record a generated token (for the penalties)."""
        if self._counts is not None:
            self._counts[token] += 1

    def sample(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> int:
        p = self.params
        x = logits.astype(np.float32, copy=True)
        if self._counts is not None:
            x -= p.frequency_penalty * self._counts
            x -= p.presence_penalty * (self._counts > 0)
        if self._bias_ids is not None:
            x[self._bias_ids] += self._bias_vals
        if allowed is not None:
            x[~allowed] = -np.inf
        if p.temperature == 0:
            return int(np.argmax(x))
        x /= p.temperature
        x -= x.max()
        probs = np.exp(x, dtype=np.float64)
        if p.top_p < 1.0:
            ids, probs = _nucleus(probs, p.top_p)
        else:
            ids = None
        cdf = np.cumsum(probs)
        i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        i = min(i, len(cdf) - 1)
        return int(ids[i]) if ids is not None else i


def _nucleus(probs: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest set of most likely tokens whose mass reaches top_p (sorted desc)."""
    total = probs.sum()
    target = top_p * total
    n = probs.shape[0]
    if n > _NUCLEUS_FAST_K:
        cand = np.argpartition(-probs, _NUCLEUS_FAST_K)[:_NUCLEUS_FAST_K]
        cand = cand[np.argsort(-probs[cand], kind="stable")]
        cum = np.cumsum(probs[cand])
        if cum[-1] < target:
            cand = np.argsort(-probs, kind="stable")
            cum = np.cumsum(probs[cand])
    else:
        cand = np.argsort(-probs, kind="stable")
        cum = np.cumsum(probs[cand])
    keep = int(np.searchsorted(cum, target, side="left")) + 1
    keep = max(1, min(keep, n))
    ids = cand[:keep]
    return ids, probs[ids]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def top_k(logprobs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logprobs, largest first."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    k = min(k, logprobs.shape[0])
    idx = np.argpartition(-logprobs, k - 1)[:k]
    return idx[np.argsort(-logprobs[idx], kind="stable")]

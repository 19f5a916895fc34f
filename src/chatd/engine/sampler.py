"""Per-choice token sampling and logprobs, in numpy on one row of logits.

Order of operations (as in OpenAI's description and vLLM): the repetition penalty on the
tokens of the prompt and the output (multiplicative, vLLM's and llama.cpp's meaning),
presence and frequency penalties on the tokens generated so far, then logit_bias, then
temperature (0 = greedy), then top_k, min_p (relative to the most likely token, after
temperature) and top_p (nucleus). ``top_k`` of 1 is exactly greedy.
Logprobs describe the model's own distribution (raw logits), not the processed one.

Speed matters here: this runs once per choice per step on the engine thread, between
two ``llama_decode`` calls, so every microsecond is a microsecond both cores wait. The
obvious version (float64 ``exp`` and ``cumsum`` over the whole vocabulary) took 0.9 ms
per token for a 49k vocabulary, 15% of a 32-stream step; this one takes ~0.1 ms and
samples the same distribution: probabilities in float32 (as the logits are), sums in
float64, and the inverse CDF found per block of 1024 tokens instead of over all of them.
"""

from __future__ import annotations

import numpy as np

from chatd.engine.params import SamplingParams

_NUCLEUS_FLOORS = (1e-2, 1e-4, 1e-7)  # tried in turn before sorting everything
_BLOCK = 1024  # tokens per block of the two-level inverse CDF


class Sampler:
    def __init__(
        self,
        params: SamplingParams,
        choice_index: int,
        n_vocab: int,
        prompt: np.ndarray | list[int] | None = None,
    ) -> None:
        self.params = params
        if params.seed is not None:
            # Each choice gets its own stream derived from (seed, index): reproducible
            # per choice, and choices differ from each other.
            self.rng = np.random.default_rng([params.seed & 0xFFFFFFFFFFFFFFFF, choice_index])
        else:
            self.rng = np.random.default_rng()
        self._penalize = bool(params.presence_penalty or params.frequency_penalty)
        self._counts = np.zeros(n_vocab, dtype=np.float32) if self._penalize else None
        self._seen: np.ndarray | None = None  # tokens of prompt and output (repetition)
        if params.repetition_penalty != 1.0:
            self._seen = np.zeros(n_vocab, dtype=bool)
            if prompt is not None and len(prompt):
                self._seen[np.asarray(prompt, dtype=np.int64)] = True
        if params.logit_bias:
            self._bias_ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
            self._bias_vals = np.fromiter(params.logit_bias.values(), dtype=np.float32)
        else:
            self._bias_ids = None

    def accept(self, token: int) -> None:
        """Record a generated token (for the penalties)."""
        if self._counts is not None:
            self._counts[token] += 1
        if self._seen is not None:
            self._seen[token] = True

    def penalized(self, logits: np.ndarray) -> np.ndarray:
        """A float32 copy of ``logits`` with the penalties and logit_bias applied."""
        p = self.params
        x = logits.astype(np.float32, copy=True)
        if self._seen is not None:
            r = p.repetition_penalty
            seen = x[self._seen]
            x[self._seen] = np.where(seen > 0, seen / r, seen * r)
        if self._counts is not None:
            x -= p.frequency_penalty * self._counts
            x -= p.presence_penalty * (self._counts > 0)
        if self._bias_ids is not None:
            x[self._bias_ids] += self._bias_vals
        return x

    def sample(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> int:
        p = self.params
        x = self.penalized(logits)
        if allowed is not None:
            x[~allowed] = -np.inf
        if p.temperature == 0 or p.top_k == 1:
            return int(np.argmax(x))
        x /= p.temperature
        x -= x.max()
        probs = np.exp(x, out=x)  # float32, the largest is exactly 1
        if 1 < p.top_k < probs.shape[0]:
            probs[probs < _kth_largest(probs, p.top_k)] = 0.0  # ties with the k-th are kept
        if p.min_p > 0.0:
            probs[probs < p.min_p] = 0.0  # relative to the largest, which is 1
        if p.top_p < 1.0:
            ids, kept = _nucleus(probs, p.top_p)
            cdf = np.cumsum(kept, dtype=np.float64)
            i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
            return int(ids[min(i, len(cdf) - 1)])
        return _inverse_cdf(probs, self.rng.random())


def _kth_largest(probs: np.ndarray, k: int) -> float:
    """The k-th largest probability. Partitioning the whole vocabulary costs ~0.4 ms; the k
    best are almost always above a floor, and then only those are partitioned."""
    for floor in _NUCLEUS_FLOORS:  # the largest probability is 1
        above = probs[probs >= floor]
        if len(above) >= k:
            return float(np.partition(above, -k)[-k])
    return float(np.partition(probs, -k)[-k])


def _inverse_cdf(probs: np.ndarray, u: float) -> int:
    """The token where the cumulative probability first exceeds ``u`` (in [0, 1)) of the
    total: block sums first, then a cumulative sum inside one block only."""
    n = probs.shape[0]
    full = n - n % _BLOCK
    sums = probs[:full].reshape(-1, _BLOCK).sum(axis=1, dtype=np.float64)
    if full < n:
        sums = np.append(sums, probs[full:].sum(dtype=np.float64))
    cum = np.cumsum(sums)
    target = u * cum[-1]
    b = min(int(np.searchsorted(cum, target, side="right")), len(cum) - 1)
    while sums[b] == 0:  # rounding landed on an empty block: the nearest one before it
        b -= 1
    start = b * _BLOCK
    block = probs[start : start + _BLOCK]
    inner = np.cumsum(block, dtype=np.float64)
    j = min(
        int(np.searchsorted(inner, target - (cum[b - 1] if b else 0.0), side="right")),
        len(inner) - 1,
    )
    if block[j] == 0:  # never a token the constraints or the bias ruled out
        j = int(np.flatnonzero(block)[-1]) if j == len(inner) - 1 else _next_nonzero(block, j)
    return start + j


def _next_nonzero(block: np.ndarray, j: int) -> int:
    nz = np.flatnonzero(block)
    k = int(np.searchsorted(nz, j))
    return int(nz[min(k, len(nz) - 1)])


def _nucleus(probs: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest set of most likely tokens whose mass reaches top_p (sorted desc).

    Sorting the whole vocabulary is the slow part, so only tokens above a threshold are
    sorted, once they hold enough mass: every token below it is less likely than every
    token above, so the nucleus is the same."""
    total = probs.sum(dtype=np.float64)
    target = top_p * total
    cand = np.arange(probs.shape[0])
    for floor in _NUCLEUS_FLOORS:  # the largest probability is 1
        above = np.flatnonzero(probs >= floor)
        if probs[above].sum(dtype=np.float64) >= target:
            cand = above
            break
    cand = cand[np.argsort(-probs[cand], kind="stable")]
    cum = np.cumsum(probs[cand], dtype=np.float64)
    keep = int(np.searchsorted(cum, target, side="left")) + 1
    ids = cand[: max(1, min(keep, len(cand)))]
    return ids, probs[ids]


def logprobs_of(logits: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Log-softmax of ``logits`` at ``tokens`` only (float64): the normalizer is a
    float64 sum of float32 exponentials, computed once."""
    m = float(logits.max())
    lse = m + float(np.log(np.exp(logits - m).sum(dtype=np.float64)))
    return logits[tokens].astype(np.float64) - lse


def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits, largest first (ties: lower id first).

    A full partition of the vocabulary costs ~0.7 ms; the k best are almost always
    within a few nats of the maximum, so those few are sorted first."""
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    k = min(k, logits.shape[0])
    top = float(logits.max())
    for gap in (4.0, 16.0):
        cand = np.flatnonzero(logits >= top - gap)
        if len(cand) >= k:
            return cand[np.argsort(-logits[cand], kind="stable")[:k]]
    return np.argsort(-logits, kind="stable")[:k]

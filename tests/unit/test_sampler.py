"""Sampler: greedy, bias, penalties, seeding, temperature, nucleus, the inverse CDF;
logprobs_of and top_k."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from chatd.engine.params import SamplingParams
from chatd.engine.sampler import Sampler, _inverse_cdf, _nucleus, logprobs_of, top_k


def make(n_vocab: int = 8, choice_index: int = 0, **kw: object) -> Sampler:
    return Sampler(SamplingParams(**kw), choice_index, n_vocab)  # type: ignore[arg-type]


def draws(s: Sampler, logits: np.ndarray, n: int) -> list[int]:
    return [s.sample(logits) for _ in range(n)]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


# --- greedy and logit_bias ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_temperature_zero_is_argmax(seed: int) -> None:
    logits = np.random.default_rng(seed).normal(size=50).astype(np.float32)
    s = make(50, temperature=0.0)
    assert draws(s, logits, 5) == [int(np.argmax(logits))] * 5


def test_temperature_zero_does_not_modify_logits() -> None:
    logits = np.array([0.0, 3.0, 1.0], dtype=np.float32)
    before = logits.copy()
    make(3, temperature=0.0, logit_bias={0: 100.0}).sample(logits)
    make(3, temperature=1.0, seed=1, logit_bias={0: 100.0}).sample(logits)
    np.testing.assert_array_equal(logits, before)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 1.5])
def test_logit_bias_minus_100_bans(temperature: float) -> None:
    logits = np.array([0.0, 5.0, 4.5, 0.0], dtype=np.float32)
    s = make(4, temperature=temperature, seed=7, logit_bias={1: -100.0})
    got = draws(s, logits, 300)
    assert 1 not in got
    assert 2 in got


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 1.5])
def test_logit_bias_plus_100_forces(temperature: float) -> None:
    logits = np.random.default_rng(3).normal(size=20).astype(np.float32)
    forced = int(np.argmin(logits))
    s = make(20, temperature=temperature, seed=7, logit_bias={forced: 100.0})
    assert set(draws(s, logits, 300)) == {forced}


def test_logit_bias_several_tokens() -> None:
    logits = np.zeros(6, dtype=np.float32)
    s = make(6, temperature=1.0, seed=0, logit_bias={0: -100.0, 2: -100.0, 4: -100.0})
    assert set(draws(s, logits, 500)) == {1, 3, 5}


# --- penalties ----------------------------------------------------------------------------

LOGITS_P = np.array([0.0, 2.0, 1.0, -1.0], dtype=np.float32)  # argmax 1, runner-up 2 (gap 1.0)


@pytest.mark.parametrize(
    ("presence", "frequency", "accepted", "expected"),
    [
        (0.0, 0.0, [1, 1, 1], 1),  # no penalty: unchanged
        (1.5, 0.0, [1], 2),  # presence flips
        (0.6, 0.0, [1], 1),  # too small
        (0.6, 0.0, [1, 1, 1], 1),  # presence does not grow with the count
        (0.0, 1.5, [1], 2),  # frequency flips
        (0.0, 0.6, [1], 1),  # once is not enough ...
        (0.0, 0.6, [1, 1], 2),  # ... twice is (grows with the count)
        (0.4, 0.4, [1], 1),  # 0.8 total < 1.0 gap
        (0.4, 0.4, [1, 1], 2),  # 0.4 + 0.8 > 1.0
        (1.5, 1.5, [3], 1),  # penalizing another token changes nothing
        (-2.0, 0.0, [2], 2),  # negative presence penalty favours repeats
        (0.0, -1.0, [3, 3, 3, 3], 3),  # negative frequency penalty favours repeats
    ],
)
def test_penalties(presence: float, frequency: float, accepted: list[int], expected: int) -> None:
    s = make(4, temperature=0.0, presence_penalty=presence, frequency_penalty=frequency)
    for t in accepted:
        s.accept(t)
    assert s.sample(LOGITS_P) == expected


def test_penalties_also_shape_sampling() -> None:
    # Token 1 is heavily favoured until it has been generated; then token 2 takes over.
    logits = np.array([0.0, 10.0, 9.0], dtype=np.float32)
    s = make(3, temperature=0.5, seed=0, presence_penalty=2.0, frequency_penalty=2.0)
    assert Counter(draws(s, logits, 200)).most_common(1)[0][0] == 1
    s.accept(1)
    counts = Counter(draws(s, logits, 200))
    assert counts[2] > 190


def test_accept_without_penalties_is_noop() -> None:
    s = make(4, temperature=0.0)
    for _ in range(10):
        s.accept(1)
    assert s.sample(LOGITS_P) == 1


# --- seeding ------------------------------------------------------------------------------

FLAT = np.zeros(1000, dtype=np.float32)


@pytest.mark.parametrize("seed", [0, 42, 2**40 + 3, -5])
@pytest.mark.parametrize("choice", [0, 3])
def test_same_seed_same_choice_same_sequence(seed: int, choice: int) -> None:
    a = make(1000, choice_index=choice, seed=seed)
    b = make(1000, choice_index=choice, seed=seed)
    assert draws(a, FLAT, 50) == draws(b, FLAT, 50)


@pytest.mark.parametrize("seed", [0, 42])
def test_different_choice_index_different_stream(seed: int) -> None:
    streams = [draws(make(1000, choice_index=i, seed=seed), FLAT, 50) for i in range(4)]
    assert len({tuple(s) for s in streams}) == 4


def test_different_seed_different_stream() -> None:
    a = draws(make(1000, seed=1), FLAT, 50)
    b = draws(make(1000, seed=2), FLAT, 50)
    assert a != b


def test_no_seed_differs_across_instances() -> None:
    # Chance of a collision: 1000**-50.
    a = draws(make(1000), FLAT, 50)
    b = draws(make(1000), FLAT, 50)
    assert a != b


# --- temperature: empirical frequencies ---------------------------------------------------

SMALL = np.array([1.0, 2.0, 0.5, -1.0], dtype=np.float32)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_empirical_frequencies_match_softmax(temperature: float) -> None:
    n = 5000
    s = make(4, temperature=temperature, seed=1234)
    counts = Counter(draws(s, SMALL, n))
    freq = np.array([counts[i] / n for i in range(4)])
    expected = softmax(SMALL.astype(np.float64) / temperature)
    # ~4.5 standard deviations at p=0.5 and n=5000.
    np.testing.assert_allclose(freq, expected, atol=0.03)


# --- top_p --------------------------------------------------------------------------------


def test_top_p_keeps_dominant_token_only() -> None:
    probs = np.array([0.6, 0.1, 0.1, 0.1, 0.05, 0.05])
    logits = np.log(probs).astype(np.float32)
    s = make(6, temperature=1.0, top_p=0.5, seed=0)
    assert set(draws(s, logits, 500)) == {0}
    # Without top_p the others do show up.
    s = make(6, temperature=1.0, seed=0)
    assert len(set(draws(s, logits, 500))) > 1


def test_top_p_renormalizes_inside_nucleus() -> None:
    probs = np.array([0.6, 0.25, 0.1, 0.05])
    logits = np.log(probs).astype(np.float32)
    n = 5000
    s = make(4, temperature=1.0, top_p=0.8, seed=5)
    counts = Counter(draws(s, logits, n))
    assert set(counts) == {0, 1}
    assert counts[0] / n == pytest.approx(0.6 / 0.85, abs=0.03)


def _nucleus_reference(probs: np.ndarray, top_p: float) -> np.ndarray:
    order = np.argsort(-probs, kind="stable")
    cum = np.cumsum(probs[order])
    target = top_p * probs.sum()
    keep = next((i + 1 for i, c in enumerate(cum) if c >= target), len(order))
    return order[:keep]


@pytest.mark.parametrize("n", [5, 100, 1024, 1025, 5000])
@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0, 30.0])
def test_nucleus_matches_reference(n: int, top_p: float, scale: float) -> None:
    # scale 0.01: so flat that every floor but the last is too high; 30: a few tokens
    # hold all the mass and most underflow to 0.
    rng = np.random.default_rng(n)
    logits = rng.normal(size=n) * scale
    probs = np.exp(logits - logits.max())
    ids, p = _nucleus(probs, top_p)
    ref = _nucleus_reference(probs, top_p)
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_array_equal(p, probs[ref])
    assert p.sum() >= top_p * probs.sum() * (1 - 1e-12)


def test_nucleus_from_the_tokens_above_a_floor() -> None:
    # 10 tokens hold ~98% of the mass: only they are sorted, and only they are drawn.
    n = 5000
    logits = np.zeros(n, dtype=np.float32)
    top = np.arange(100, 1100, 100)
    logits[top] = 10.0
    s = make(n, temperature=1.0, top_p=0.9, seed=11)
    got = draws(s, logits, 1000)
    assert set(got) == set(top.tolist())


def test_nucleus_of_a_flat_distribution_needs_every_token() -> None:
    # 4000 tokens at logit 0 and 96 at logit -1: top_p=0.99 needs ~3995 tokens. The 96 low
    # tokens (~0.9% of the mass) must never be drawn.
    n = 4096
    logits = np.zeros(n, dtype=np.float32)
    low = np.arange(0, n, 42)[:96]
    logits[low] = -1.0
    s = make(n, temperature=1.0, top_p=0.99, seed=3)
    got = draws(s, logits, 1500)
    assert not set(got) & set(low.tolist())
    assert len(set(got)) > 1024
    # Without top_p the low tokens are drawn (~26 expected).
    s = make(n, temperature=1.0, seed=3)
    assert set(draws(s, logits, 3000)) & set(low.tolist())


@pytest.mark.parametrize("n", [1, 7, 1024, 1025, 3000, 49152])
def test_inverse_cdf_matches_a_full_cumulative_sum(n: int) -> None:
    rng = np.random.default_rng(n)
    probs = np.exp(rng.normal(size=n) * 3).astype(np.float32)
    probs[rng.random(n) < 0.3] = 0  # tokens ruled out
    if not probs.any():
        probs[0] = 1
    cdf = np.cumsum(probs.astype(np.float64))
    for u in [0.0, 1e-9, *rng.random(200), 1 - 1e-12]:
        got = _inverse_cdf(probs, u)
        want = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), n - 1)
        assert probs[got] > 0
        # equal, unless float rounding moved a boundary by a hair onto a neighbour
        assert got == want or abs(cdf[got] - u * cdf[-1]) < 1e-9 * cdf[-1]


def test_inverse_cdf_never_returns_a_ruled_out_token() -> None:
    probs = np.zeros(3000, dtype=np.float32)
    probs[[5, 2047, 2999]] = [1e-30, 1.0, 1e-30]
    assert {_inverse_cdf(probs, u) for u in np.linspace(0, 0.999999, 500)} <= {5, 2047, 2999}
    probs = np.zeros(2048, dtype=np.float32)
    probs[1500] = 1.0
    assert {_inverse_cdf(probs, u) for u in (0.0, 0.5, 0.9999999999)} == {1500}


def test_sampling_frequencies_match_the_distribution() -> None:
    probs = np.array([0.5, 0.0, 0.2, 0.3] * 700)  # 2800 tokens over three blocks
    logits = np.log(probs + 1e-45).astype(np.float32)
    s = make(len(probs), temperature=1.0, seed=3)
    counts = np.bincount(draws(s, logits, 20000), minlength=len(probs)).reshape(-1, 4).sum(0)
    assert counts[1] == 0
    np.testing.assert_allclose(counts / 20000, [0.5, 0, 0.2, 0.3], atol=0.015)


def test_allowed_mask_restricts_sampling() -> None:
    logits = np.array([5.0, 0.0, 0.0, 0.0], dtype=np.float32)
    allowed = np.array([False, True, False, True])
    assert make(4, temperature=0.0).sample(logits, allowed) in (1, 3)
    s = make(4, temperature=1.0, seed=0)
    assert set(s.sample(logits, allowed) for _ in range(200)) == {1, 3}


# --- logprobs_of / top_k ------------------------------------------------------------------


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


@pytest.mark.parametrize(
    "logits",
    [
        np.array([0.0], dtype=np.float32),
        np.array([1.0, 2.0, 3.0], dtype=np.float32),
        np.array([1000.0, 999.0, -1000.0], dtype=np.float32),  # no overflow
        np.random.default_rng(0).normal(size=32000).astype(np.float32) * 10,
    ],
    ids=["single", "small", "huge", "vocab"],
)
def test_logprobs_of_is_the_log_softmax(logits: np.ndarray) -> None:
    ids = np.arange(len(logits))
    lp = logprobs_of(logits, ids)
    assert lp.dtype == np.float64
    assert np.all(np.isfinite(lp))
    assert np.all(lp <= 1e-12)
    np.testing.assert_allclose(lp, _log_softmax(logits), atol=1e-6)
    assert np.exp(lp).sum() == pytest.approx(1.0, abs=1e-6)


def test_logprobs_of_known_values() -> None:
    lp = logprobs_of(np.array([0.0, np.log(3.0)], dtype=np.float32), np.array([0, 1]))
    np.testing.assert_allclose(np.exp(lp), [0.25, 0.75], rtol=1e-6)


@pytest.mark.parametrize(
    ("n", "k", "scale"),
    [
        (10, 1, 1),
        (10, 2, 1),
        (10, 10, 1),
        (1000, 5, 1),
        (1000, 20, 1),
        (1000, 500, 1),
        (50000, 20, 1),
        (50000, 20, 0.01),
        (50000, 20, 30),
    ],
)
def test_top_k_sorted_descending(n: int, k: int, scale: float) -> None:
    logits = (np.random.default_rng(k).normal(size=n) * scale).astype(np.float32)
    idx = top_k(logits, k)
    assert len(idx) == k
    assert np.all(np.diff(logits[idx]) <= 0)
    np.testing.assert_array_equal(idx, np.argsort(-logits, kind="stable")[:k])


def test_top_k_ties_go_to_the_lower_id() -> None:
    np.testing.assert_array_equal(top_k(np.array([1.0, 3.0, 3.0, 3.0], np.float32), 2), [1, 2])


@pytest.mark.parametrize("k", [0, -1])
def test_top_k_nonpositive_is_empty(k: int) -> None:
    idx = top_k(np.array([-1.0, -2.0]), k)
    assert idx.shape == (0,)


@pytest.mark.parametrize("k", [3, 4, 100])
def test_top_k_clipped_to_vocab(k: int) -> None:
    lp = np.array([-2.0, -0.5, -1.0])
    np.testing.assert_array_equal(top_k(lp, k), [1, 2, 0])

"""The sampling extensions (llama.cpp's and vLLM's knobs): top_k, min_p, repetition_penalty
in the sampler, and min_tokens in the output step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from chatd.engine.output import OutputStep
from chatd.engine.params import FinishReason, SamplingParams
from chatd.engine.sampler import Sampler, _kth_largest
from chatd.engine.sequence import SequenceGroup


def make(n_vocab: int, prompt: list[int] | None = None, **kw: object) -> Sampler:
    return Sampler(SamplingParams(**kw), 0, n_vocab, prompt)  # type: ignore[arg-type]


def draws(s: Sampler, logits: np.ndarray, n: int) -> list[int]:
    return [s.sample(logits) for _ in range(n)]


# --- top_k ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_top_k_one_is_greedy_at_any_temperature(seed: int) -> None:
    logits = np.random.default_rng(seed).normal(size=500).astype(np.float32)
    greedy = draws(make(500, temperature=0.0), logits, 5)
    assert draws(make(500, temperature=2.0, top_k=1, seed=seed), logits, 50) == greedy * 10


def test_top_k_keeps_the_k_most_likely() -> None:
    logits = np.array([0.0, 3.0, 2.9, 2.8, 0.1, 2.7], dtype=np.float32)
    got = set(draws(make(6, temperature=1.5, top_k=3, seed=1), logits, 600))
    assert got == {1, 2, 3}


@pytest.mark.parametrize("off", [0, -1])
def test_top_k_off_samples_the_whole_vocabulary(off: int) -> None:
    logits = np.zeros(5, dtype=np.float32)
    assert set(draws(make(5, top_k=off, seed=2), logits, 400)) == set(range(5))


@pytest.mark.parametrize("scale", [0.01, 1.0, 10.0])
@pytest.mark.parametrize("k", [2, 40, 3000])
def test_kth_largest_matches_a_full_sort(scale: float, k: int) -> None:
    x = np.random.default_rng(k).normal(size=5000).astype(np.float32) * scale
    probs = np.exp(x - x.max())
    assert _kth_largest(probs, k) == np.sort(probs)[-k]


# --- min_p ---------------------------------------------------------------------------------


def test_min_p_drops_tokens_below_a_fraction_of_the_top_one() -> None:
    # probabilities relative to the top: 1, e^-1 (0.37), e^-2 (0.14), e^-3 (0.05)
    logits = np.array([3.0, 2.0, 1.0, 0.0], dtype=np.float32)
    assert set(draws(make(4, min_p=0.1, seed=3), logits, 800)) == {0, 1, 2}
    assert set(draws(make(4, min_p=0.2, seed=3), logits, 800)) == {0, 1}
    assert set(draws(make(4, min_p=1.0, seed=3), logits, 100)) == {0}


def test_min_p_applies_after_temperature() -> None:
    # at temperature 2 the second token is e^-0.5 (0.61) of the first: above min_p 0.5
    logits = np.array([2.0, 1.0, -5.0], dtype=np.float32)
    assert set(draws(make(3, min_p=0.5, seed=4), logits, 300)) == {0}
    assert set(draws(make(3, min_p=0.5, temperature=2.0, seed=4), logits, 300)) == {0, 1}


# --- repetition_penalty --------------------------------------------------------------------


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    logits = np.array([4.0, 3.0, -1.0, -1.5], dtype=np.float32)
    # token 0 (seen, in the prompt): 4 / 2 = 2 < 3 -> token 1 wins
    assert make(4, [0], temperature=0.0, repetition_penalty=2.0).sample(logits) == 1
    # token 3 (seen, generated): -1.5 * 2 = -3 < -1 -> token 2 is now the better of the two
    s = make(4, [0, 1], temperature=0.0, repetition_penalty=2.0, logit_bias={0: -9, 1: -9})
    assert s.sample(logits) == 2
    s.accept(2)
    s.accept(3)
    assert s.sample(logits) == 2  # -2 against -3


def test_repetition_penalty_values() -> None:
    logits = np.array([4.0, 3.0, -1.0, -1.5], dtype=np.float32)
    s = make(4, [0], temperature=0.0, repetition_penalty=2.0)
    s.accept(2)
    seen = np.array([True, False, True, False])
    expected = np.where(seen, np.where(logits > 0, logits / 2.0, logits * 2.0), logits)
    np.testing.assert_allclose(s.penalized(logits), expected)
    np.testing.assert_array_equal(logits, [4.0, 3.0, -1.0, -1.5])  # the row is untouched


def test_repetition_penalty_below_one_favours_repeats() -> None:
    logits = np.array([2.0, 3.0], dtype=np.float32)
    assert make(2, [0], temperature=0.0, repetition_penalty=0.5).sample(logits) == 0


def test_repetition_penalty_one_is_off() -> None:
    s = make(4, [0, 1, 2], temperature=0.0, repetition_penalty=1.0)
    assert s.sample(np.array([4.0, 3.0, 0.0, 0.0], dtype=np.float32)) == 0


# --- min_tokens (the output step) ----------------------------------------------------------

EOS = 0


@dataclass
class Vocab:
    eog: frozenset[int] = frozenset({EOS})
    control: frozenset[int] = frozenset({EOS})
    token_bytes: list[bytes] = None  # type: ignore[assignment]
    token_names: list[bytes] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.token_bytes = [b"", b"a", b"b", b"c"]
        self.token_names = [b"<eos>", b"a", b"b", b"c"]


def run(params: SamplingParams, rows: list[np.ndarray]) -> tuple[str, FinishReason | None, int]:
    """Advance one choice over ``rows`` until it finishes: (text, finish reason, tokens)."""
    group = SequenceGroup([1], params, 4, lambda _: None)
    seq = group.sequences[0]
    step = OutputStep(Vocab(), n_ctx_seq=100)
    text = ""
    for row in rows:
        for delta in step.advance(group, seq, row):
            text += delta.text
        if seq.finished:
            break
    return text, seq.finish_reason, seq.n_generated


END_FIRST = np.array([5.0, 1.0, 0.5, 0.0], dtype=np.float32)  # the model wants to stop


def test_without_min_tokens_the_end_token_ends_at_once() -> None:
    assert run(SamplingParams(temperature=0.0), [END_FIRST] * 5) == (
        "",
        FinishReason.END_OF_GENERATION,
        1,
    )


def test_min_tokens_holds_back_the_end_token() -> None:
    params = SamplingParams(temperature=0.0, min_tokens=3)
    assert run(params, [END_FIRST] * 10) == ("aaa", FinishReason.END_OF_GENERATION, 4)


def test_min_tokens_at_temperature_never_samples_the_end_early() -> None:
    params = SamplingParams(temperature=1.0, seed=5, min_tokens=4, max_new_tokens=4)
    for _ in range(20):
        text, finish, n = run(params, [END_FIRST] * 10)
        assert (len(text), finish, n) == (4, FinishReason.LENGTH, 4)


def test_min_tokens_leaves_stop_to_the_length_limit() -> None:
    params = SamplingParams(temperature=0.0, min_tokens=5, max_new_tokens=2)
    assert run(params, [END_FIRST] * 10) == ("aa", FinishReason.LENGTH, 2)

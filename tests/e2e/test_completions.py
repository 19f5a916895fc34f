"""``POST /v1/completions`` on the real model (the embedded SmolLM2-135M): a raw prompt
with no chat template, the prompt's logprobs with echo (plausible numbers, and the same
as the generation's own for the same token), seeded sampling reproduced, a stream that
adds up to its usage, and ``suffix`` refused (the model has no fill-in-the-middle
tokens). A few short calls: the rest is tested in-process (tests/service/)."""

from __future__ import annotations

import math

import openai
import pytest
from conftest import MODEL

PROMPT = "The capital of France is"


def test_echo_with_logprobs_matches_the_generations_own(client: openai.OpenAI) -> None:
    first = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=1, temperature=0, logprobs=1
    )
    lp = first.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs
    word, logprob = lp.tokens[0], lp.token_logprobs[0]
    assert logprob is not None and -30 < logprob <= 0
    # the same text as a prompt: its last token's logprob is the one the model gave it
    echoed = client.completions.create(
        model=MODEL, prompt=PROMPT + word, max_tokens=0, echo=True, logprobs=2
    )
    c = echoed.choices[0]
    lp = c.logprobs
    assert c.text == PROMPT + word and c.finish_reason == "length"
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.text_offset
    assert "".join(lp.tokens) == PROMPT + word
    assert lp.token_logprobs[0] is None  # SmolLM2 puts no BOS first: nothing before it
    assert all(v is not None and -40 < v <= 0 for v in lp.token_logprobs[1:])
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    assert lp.tokens[-1] == word
    last = lp.token_logprobs[-1]
    assert last is not None and math.isclose(last, logprob, abs_tol=0.05), (last, logprob)
    assert echoed.usage is not None and echoed.usage.completion_tokens == 0


def test_a_seed_reproduces_sampling(client: openai.OpenAI) -> None:
    def ask() -> list[str]:
        r = client.completions.create(
            model=MODEL, prompt=["Once upon a time", "def add(a, b):"], max_tokens=8,
            temperature=1.0, seed=1234, n=2,
        )  # fmt: skip
        return [c.text for c in r.choices]

    once = ask()
    assert len(once) == 4 and ask() == once


def test_a_stream_adds_up_to_its_usage(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 6 and usage.prompt_tokens > 0
    whole = client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=6, temperature=0)
    assert whole.choices[0].text == text


def test_suffix_needs_fill_in_the_middle_tokens(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt="def f(", suffix="    return x")
    assert e.value.param == "suffix"


def test_a_long_echoed_prompt_has_every_tokens_logprob(client: openai.OpenAI) -> None:
    """A prompt longer than a wide prefill block and a step's chunk: computed row by row
    in several steps. A passage said twice: the model copies its second time, so those
    tokens are far likelier than the first time's (plausible numbers, not noise); the
    same request twice gives the same numbers."""
    passage = (
        "Quietly the old lighthouse keeper climbed the spiral stairs each evening, counting"
        " forty-two worn steps, polishing the great brass lens, and writing the weather,"
        " the ships and the colour of the sea in a small green notebook."
    )
    prompt = passage + "\n" + passage

    def ask() -> list[float | None]:
        r = client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=0
        )
        lp = r.choices[0].logprobs
        assert lp is not None and lp.token_logprobs is not None and lp.tokens is not None
        assert "".join(lp.tokens) == prompt and r.choices[0].text == prompt
        return lp.token_logprobs

    values = ask()
    assert len(values) > 80 and values[0] is None and all(v is not None for v in values[1:])
    half = len(values) // 2
    first = [v for v in values[1:half] if v is not None]
    second = [v for v in values[half + 2 :] if v is not None]
    assert sum(second) / len(second) > sum(first) / len(first) + 1.0, (first, second)
    assert ask() == values

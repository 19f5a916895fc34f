"""A chat request's engine parameters (service/chat/sampling.py, then the core's
``engine_params``): only the fields given are passed, each lands where the field table
says, and the completion budget fits the window."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chatd.engine.params import SamplingParams
from chatd.protocol.chat_fields import engine_fields
from chatd.protocol.chat_request import ChatCompletionRequest, validate_chat_request
from chatd.protocol.errors import APIError
from chatd.service.chat.sampling import sampling_fields
from chatd.service.generation import engine_params

WINDOW = 100
DEFAULTS = SamplingParams()


def request(**fields: Any) -> ChatCompletionRequest:
    return validate_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    )


def params(prompt_tokens: int = 10, grammar: Any = None, **fields: Any) -> SamplingParams:
    return engine_params(sampling_fields(request(**fields)), prompt_tokens, WINDOW, grammar)


def differences(p: SamplingParams) -> dict[str, Any]:
    """The parameters that are not SamplingParams's defaults."""
    return {
        f.name: getattr(p, f.name)
        for f in dataclasses.fields(p)
        if getattr(p, f.name) != getattr(DEFAULTS, f.name)
    }


def test_absent_fields_give_the_engine_defaults() -> None:
    assert differences(params()) == {"max_new_tokens": WINDOW - 10}


def test_null_fields_are_absent() -> None:
    nulls = {name: None for name in engine_fields()}
    assert params(**nulls) == params()


# One example value per engine field, and what the engine gets for it.
EXAMPLES: dict[str, tuple[Any, Any]] = {
    "max_completion_tokens": (7, 7),
    "max_tokens": (8, 8),
    "n": (3, 3),
    "temperature": (0, 0.0),
    "top_p": (0.5, 0.5),
    "presence_penalty": (1.5, 1.5),
    "frequency_penalty": (-1, -1.0),
    "logprobs": (True, True),
    "seed": (42, 42),
    "stop": ("END", ("END",)),
    "logit_bias": ({"5": -100, "9": 3}, {5: -100.0, 9: 3.0}),
    "top_k": (40, 40),
    "min_p": (1, 1.0),
    "repetition_penalty": (2, 2.0),
    "min_tokens": (5, 5),
}


def test_every_engine_field_has_an_example() -> None:
    assert set(engine_fields()) == set(EXAMPLES) | {"top_logprobs"}


@pytest.mark.parametrize("field", sorted(EXAMPLES))
def test_each_field_lands_where_the_table_says(field: str) -> None:
    value, expected = EXAMPLES[field]
    target = engine_fields()[field].engine
    assert target is not None
    got = params(**{field: value})
    assert getattr(got, target) == expected
    assert type(getattr(got, target)) is type(expected)
    assert set(differences(got)) <= {target, "max_new_tokens"}


def test_top_logprobs() -> None:
    got = params(logprobs=True, top_logprobs=5)
    assert (got.logprobs, got.top_logprobs) == (True, 5)
    assert params(logprobs=False).logprobs is False


def test_stop_as_a_list_and_empty() -> None:
    assert params(stop=["a", "b"]).stop == ("a", "b")
    assert params(stop=[]).stop == ()


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert params(max_completion_tokens=5, max_tokens=9).max_new_tokens == 5
    assert params(max_completion_tokens=None, max_tokens=9).max_new_tokens == 9


def test_grammar_is_passed() -> None:
    grammar: Any = object()
    assert params(grammar=grammar).grammar is grammar
    assert params().grammar is None


def test_budget_is_the_rest_of_the_window_when_not_asked() -> None:
    assert params(prompt_tokens=99).max_new_tokens == 1
    assert params(prompt_tokens=0).max_new_tokens == WINDOW


@pytest.mark.parametrize("prompt_tokens", [WINDOW, WINDOW + 5])
def test_prompt_filling_the_window(prompt_tokens: int) -> None:
    with pytest.raises(APIError) as caught:
        params(prompt_tokens=prompt_tokens)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "messages", "context_length_exceeded")
    assert error.message == (
        f"This model's maximum context length is {WINDOW} tokens. However, your messages"
        f" resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
    )


@pytest.mark.parametrize("field", ["max_completion_tokens", "max_tokens"])
def test_prompt_and_budget_beyond_the_window(field: str) -> None:
    assert params(prompt_tokens=60, **{field: 40}).max_new_tokens == 40  # exactly fits
    with pytest.raises(APIError) as caught:
        params(prompt_tokens=60, **{field: 41})
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "messages", "context_length_exceeded")
    assert error.message == (
        f"This model's maximum context length is {WINDOW} tokens. However, you requested 101"
        " tokens (60 in the messages, 41 in the completion). Please reduce the length of the"
        " messages or completion."
    )

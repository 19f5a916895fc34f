"""What the service hands the engine (prompt and SamplingParams) for a request, and how
the engine's finish reasons read in Chat Completions; checked against the FakeEngine's
record of each submission, so the fake itself is held to the engine's contract too."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fakes.engine import FakeEngine

from .checks import URL, body, check_error
from .harness import API_KEY, MODEL, running_chatd

HI = [{"role": "user", "content": "hi"}]


async def test_request_fields_map_to_sampling_params(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine) as chatd:
        r = await chatd.http().post(
            "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "developer", "content": "Be brief."}, *HI],
                "max_completion_tokens": 5,
                "temperature": 0.5,
                "top_p": 0.9,
                "seed": 7,
                "n": 2,
                "stop": ["x", "y"],
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "logprobs": True,
                "top_logprobs": 3,
                "logit_bias": {"42": -100},
            },
        )
    assert r.status_code == 200, r.text
    p = engine.last_params
    assert (p.max_new_tokens, p.temperature, p.top_p, p.seed, p.n) == (5, 0.5, 0.9, 7, 2)
    assert p.stop == ("x", "y")
    assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.5)
    assert (p.logprobs, p.top_logprobs) == (True, 3)
    assert p.logit_bias == {42: -100.0}
    assert p.grammar is None
    assert "Be brief." in engine.last_prompt_text and "hi" in engine.last_prompt_text
    assert r.json()["usage"]["prompt_tokens"] == len(engine.submitted[-1][0])


async def test_without_max_tokens_the_rest_of_the_window_is_allowed(tmp_path: Path) -> None:
    engine = FakeEngine(context_window=100)
    async with running_chatd(tmp_path, engine) as chatd:
        r = await chatd.http().post("/v1/chat/completions", json={"model": MODEL, "messages": HI})
    assert r.status_code == 200, r.text
    prompt = len(engine.submitted[-1][0])
    assert engine.last_params.max_new_tokens == 100 - prompt


@pytest.mark.parametrize(
    ("fields", "content", "finish"),
    [
        ({}, "one two three", "stop"),  # END_OF_GENERATION
        ({"max_tokens": 2}, "one two", "length"),  # LENGTH
        ({"stop": ["thr"]}, "one two ", "stop"),  # STOP_SEQUENCE: the stop is not included
        ({"response_format": {"type": "json_object"}}, "one two three", "stop"),  # GRAMMAR_END
    ],
    ids=["end", "length", "stop-sequence", "grammar-end"],
)
async def test_finish_reasons(
    tmp_path: Path, fields: dict[str, object], content: str, finish: str
) -> None:
    engine = FakeEngine("one two three")
    messages = [{"role": "user", "content": "Answer in JSON."}]
    async with running_chatd(tmp_path, engine) as chatd:
        body = {"model": MODEL, "messages": messages, **fields}
        r = await chatd.http().post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert (choice["message"]["content"], choice["finish_reason"]) == (content, finish)
        if "response_format" in fields:
            assert engine.last_params.grammar is not None
            assert engine.grammars.compiled[-1].kind == "json_schema"


async def test_each_choice_follows_its_own_script(tmp_path: Path) -> None:
    engine = FakeEngine(lambda call: f"choice {call.index} of {call.params.n}")
    async with running_chatd(tmp_path, engine) as chatd:
        client = chatd.sdk(API_KEY)
        r = await client.chat.completions.create(model=MODEL, messages=HI, n=3)  # type: ignore[arg-type]
    assert [c.message.content for c in r.choices] == [f"choice {i} of 3" for i in range(3)]
    assert r.usage is not None and r.usage.completion_tokens == 3 * 4


# --------------------------------------------------------------------------------------------
# Sampling extensions (llama.cpp's and vLLM's knobs): mapped as given, or a 400
# --------------------------------------------------------------------------------------------


async def test_sampling_extensions_map_to_sampling_params(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine) as chatd:
        http = chatd.http()
        given = {"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.3, "min_tokens": 4}
        r = await http.post(URL, json={"model": MODEL, "messages": HI, **given})
        assert r.status_code == 200, r.text
        p = engine.last_params
        assert (p.top_k, p.min_p, p.repetition_penalty, p.min_tokens) == (40, 0.05, 1.3, 4)
        # integers where floats are taken, and the edges of each range
        edges = {"top_k": -1, "min_p": 1, "repetition_penalty": 2, "min_tokens": 5}
        r = await http.post(URL, json=body(max_tokens=5, **edges))
        assert r.status_code == 200, r.text
        p = engine.last_params
        assert (p.top_k, p.min_p, p.repetition_penalty, p.min_tokens) == (-1, 1.0, 2.0, 5)
        assert isinstance(p.min_p, float) and isinstance(p.repetition_penalty, float)
        # absent: SamplingParams's defaults (sampling unchanged)
        r = await http.post(URL, json={"model": MODEL, "messages": HI})
        p = engine.last_params
        assert (p.top_k, p.min_p, p.repetition_penalty, p.min_tokens) == (0, 0.0, 1.0, 0)


@pytest.mark.parametrize(
    ("fields", "param", "code", "message"),
    [
        (
            {"top_k": -2},
            "top_k",
            "integer_below_min_value",
            "Invalid 'top_k': integer below minimum value. Expected a value >= -1, but got -2"
            " instead.",
        ),
        ({"top_k": 1.5}, "top_k", "invalid_type", None),
        (
            {"min_p": -0.1},
            "min_p",
            "decimal_below_min_value",
            "Invalid 'min_p': decimal below minimum value. Expected a value >= 0, but got -0.1"
            " instead.",
        ),
        (
            {"min_p": 1.5},
            "min_p",
            "decimal_above_max_value",
            "Invalid 'min_p': decimal above maximum value. Expected a value <= 1, but got 1.5"
            " instead.",
        ),
        (
            {"repetition_penalty": 0},
            "repetition_penalty",
            "decimal_below_min_value",
            "Invalid 'repetition_penalty': decimal below minimum value. Expected a value > 0,"
            " but got 0 instead.",
        ),
        ({"repetition_penalty": -1.0}, "repetition_penalty", "decimal_below_min_value", None),
        ({"repetition_penalty": "1.1"}, "repetition_penalty", "invalid_type", None),
        (
            {"min_tokens": -1},
            "min_tokens",
            "integer_below_min_value",
            "Invalid 'min_tokens': integer below minimum value. Expected a value >= 0, but got"
            " -1 instead.",
        ),
        (
            {"min_tokens": 2},  # body() asks max_tokens 1
            "min_tokens",
            "integer_above_max_value",
            "Invalid 'min_tokens': integer above maximum value. Expected a value <= max_tokens"
            " (1), but got 2 instead.",
        ),
        (
            {"min_tokens": 9, "max_completion_tokens": 8},
            "min_tokens",
            "integer_above_max_value",
            "Invalid 'min_tokens': integer above maximum value. Expected a value <="
            " max_completion_tokens (8), but got 9 instead.",
        ),
    ],
    ids=[
        "top_k-below",
        "top_k-float",
        "min_p-below",
        "min_p-above",
        "repetition_penalty-zero",
        "repetition_penalty-negative",
        "repetition_penalty-string",
        "min_tokens-negative",
        "min_tokens-above-max_tokens",
        "min_tokens-above-max_completion_tokens",
    ],
)
async def test_sampling_extensions_out_of_range_are_400(
    http: httpx.AsyncClient, fields: dict, param: str, code: str, message: str | None
) -> None:
    r = await http.post(URL, json=body(**fields))
    check_error(r, 400, param=param, code=code, message=message)


async def test_other_unknown_fields_stay_a_400(http: httpx.AsyncClient) -> None:
    r = await http.post(URL, json=body(top_a=0.1, typical_p=0.9))
    unknown = "Unrecognized request arguments supplied: top_a, typical_p"
    check_error(r, 400, param=None, code=None, message=unknown)


async def test_responses_keep_openais_contract(http: httpx.AsyncClient) -> None:
    """The extensions are chat's: the Responses API stays strict (docs/engine.md)."""
    r = await http.post("/v1/responses", json={"model": MODEL, "input": "hi", "top_k": 1})
    check_error(
        r, 400, param="top_k", code="unknown_parameter", message="Unknown parameter: 'top_k'."
    )

"""What the service hands the engine (prompt and SamplingParams) for a request, and how
the engine's finish reasons read in Chat Completions; checked against the FakeEngine's
record of each submission, so the fake itself is held to the engine's contract too."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.engine import FakeEngine

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

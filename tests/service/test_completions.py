"""``POST /v1/completions`` (the legacy Completions API) in-process, over the FakeEngine,
through the openai SDK's ``client.completions.create`` (and raw httpx for the stream's
bytes and the 400s): raw prompts in every shape, n and best_of, stop, seed and the
sampling fields, logprobs with text_offset, echo, max_tokens 0, streaming with usage,
suffix, usage accounting, and every bad input named. Answers are checked against the
official spec's ``CreateCompletionResponse``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes.engine import FakeEngine
from openapi_schemas import assert_valid

from chatd.protocol.request_limits import Limits

from .harness import MODEL, running_chatd

TEXT = "Hello! How can I help you today?"  # what the FakeEngine writes


def spec_valid(body: dict[str, Any]) -> None:
    assert_valid("CreateCompletionResponse", body)


async def test_a_string_prompt_goes_to_the_model_raw(
    chatd: Any, client: openai.AsyncOpenAI
) -> None:
    r = await client.completions.create(model=MODEL, prompt="Once upon a time")
    body = r.model_dump(exclude_unset=True)
    spec_valid(body)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.model == MODEL and r.system_fingerprint == "fp_fakeengine"
    assert [(c.index, c.text, c.finish_reason, c.logprobs) for c in r.choices] == [
        (0, TEXT, "stop", None)
    ]
    assert chatd.engine.last_prompt_text == "Once upon a time"  # no chat template
    params = chatd.engine.last_params
    assert params.max_new_tokens == 16 and params.n == 1  # the live API's default
    assert r.usage is not None and r.usage.prompt_tokens == 4
    assert r.usage.completion_tokens == 7 and r.usage.total_tokens == 11


async def test_max_tokens_cuts_with_length(client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
    assert (r.choices[0].text, r.choices[0].finish_reason) == ("Hello! How", "length")


async def test_prompts_times_n_are_indexed_as_the_live_api(
    chatd: Any, client: openai.AsyncOpenAI
) -> None:
    before = len(chatd.engine.submitted)
    r = await client.completions.create(model=MODEL, prompt=["first one", "second one"], n=2)
    spec_valid(r.model_dump(exclude_unset=True))
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    submitted = chatd.engine.submitted[before:]
    assert [chatd.engine.detokenize(p) for p, _ in submitted] == ["first one", "second one"]
    assert all(params.n == 2 for _, params in submitted)
    assert r.usage is not None and r.usage.prompt_tokens == 4
    assert r.usage.completion_tokens == 4 * 7


async def test_token_prompts_go_in_as_ids(chatd: Any, client: openai.AsyncOpenAI) -> None:
    ids = chatd.engine.tokenize_text("the quick fox")
    r = await client.completions.create(model=MODEL, prompt=ids, echo=True, max_tokens=1)
    assert chatd.engine.submitted[-1][0] == ids
    assert r.choices[0].text == "the quick fox" + "Hello!"
    other = chatd.engine.tokenize_text("lazy dog")
    r = await client.completions.create(model=MODEL, prompt=[ids, other], max_tokens=1)
    assert [p for p, _ in chatd.engine.submitted[-2:]] == [ids, other]
    assert len(r.choices) == 2


async def test_stop_seed_and_sampling_fields_reach_the_engine(
    chatd: Any, client: openai.AsyncOpenAI
) -> None:
    r = await client.completions.create(
        model=MODEL,
        prompt="x",
        stop=[" can"],
        seed=7,
        temperature=0.5,
        top_p=0.9,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"42": -100},
        user="someone",
        extra_body={"top_k": 5, "min_p": 0.1},
    )
    assert (r.choices[0].text, r.choices[0].finish_reason) == ("Hello! How", "stop")
    p = chatd.engine.last_params
    assert (p.seed, p.temperature, p.top_p) == (7, 0.5, 0.9)
    assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.5)
    assert p.logit_bias == {42: -100.0} and p.stop == (" can",)
    assert (p.top_k, p.min_p) == (5, 0.1)
    assert p.logprobs is False


async def test_logprobs_with_text_offset(chatd: Any, client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model=MODEL, prompt="x", logprobs=2, max_tokens=4)
    spec_valid(r.model_dump(exclude_unset=True))
    assert chatd.engine.last_params.logprobs and chatd.engine.last_params.top_logprobs == 2
    c = r.choices[0]
    lp = c.logprobs
    assert lp is not None and lp.tokens == ["Hello!", " How", " can", " I"]
    assert lp.token_logprobs == [-0.5] * 4
    assert lp.text_offset == [0, 6, 10, 14]
    for token, at in zip(lp.tokens, lp.text_offset, strict=True):
        assert c.text[at:].startswith(token)
    assert lp.top_logprobs is not None
    for token, top in zip(lp.tokens, lp.top_logprobs, strict=True):
        assert token in top and len(top) <= 3


async def test_logprobs_zero_gives_the_sampled_token_alone(client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model=MODEL, prompt="x", logprobs=0, max_tokens=2)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.top_logprobs == [{"Hello!": -0.5}, {" How": -0.5}]


async def test_echo_and_max_tokens_zero(chatd: Any, client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model=MODEL, prompt="Say it", echo=True, max_tokens=3)
    assert r.choices[0].text == "Say it" + "Hello! How can"
    before = len(chatd.engine.submitted)
    r = await client.completions.create(
        model=MODEL, prompt=["Say it", "b"], echo=True, max_tokens=0
    )
    spec_valid(r.model_dump(exclude_unset=True))
    assert [(c.text, c.finish_reason) for c in r.choices] == [("Say it", "length"), ("b", "length")]
    assert len(chatd.engine.submitted) == before  # nothing generated
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (3, 0)


async def test_echo_with_logprobs_gives_the_prompt_tokens_first(
    chatd: Any, client: openai.AsyncOpenAI
) -> None:
    r = await client.completions.create(
        model=MODEL, prompt="The cat", echo=True, logprobs=1, max_tokens=2
    )
    # not spec_valid: the spec's arrays hold no null, while the live API writes null for
    # the first prompt token's logprob and top_logprobs, as here
    assert chatd.engine.last_params.prompt_logprobs
    c = r.choices[0]
    lp = c.logprobs
    assert c.text == "The cat" + "Hello! How" and lp is not None
    assert lp.tokens == ["The", " cat", "Hello!", " How"]
    assert lp.token_logprobs == [None, -0.5, -0.5, -0.5]  # the first has nothing before it
    assert lp.top_logprobs is not None and lp.top_logprobs[0] is None
    assert lp.text_offset == [0, 3, 7, 13]
    # max_tokens 0: the prompt's logprobs alone (the model runs, its token not returned)
    r = await client.completions.create(
        model=MODEL, prompt="The cat", echo=True, logprobs=0, max_tokens=0
    )
    lp = r.choices[0].logprobs
    assert r.choices[0].text == "The cat" and r.choices[0].finish_reason == "length"
    assert lp is not None and lp.tokens == ["The", " cat"] and lp.token_logprobs == [None, -0.5]
    assert r.usage is not None and r.usage.completion_tokens == 0
    # streamed: the echo (with its logprobs) first
    stream = await client.completions.create(
        model=MODEL, prompt="The cat", echo=True, logprobs=0, max_tokens=1, stream=True
    )
    chunks = [c.choices[0] async for c in stream]
    assert chunks[0].text == "The cat" and chunks[0].logprobs is not None
    assert chunks[0].logprobs.tokens == ["The", " cat"]
    assert chunks[1].logprobs is not None and chunks[1].logprobs.text_offset == [7]


async def test_best_of_returns_the_n_best(chatd: Any, client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model=MODEL, prompt="x", best_of=3, n=2, max_tokens=2)
    spec_valid(r.model_dump(exclude_unset=True))
    p = chatd.engine.last_params
    assert p.n == 3 and p.logprobs  # the candidates, ranked by their logprobs
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.logprobs is None for c in r.choices)  # not asked for
    assert r.usage is not None and r.usage.completion_tokens == 6  # every candidate billed


async def test_a_stream_adds_up_to_the_whole_answer(chatd: Any, http: httpx.AsyncClient) -> None:
    body = {
        "model": MODEL,
        "prompt": ["one", "two"],
        "logprobs": 1,
        "max_tokens": 3,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = await http.post("/v1/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    lines = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    usage = chunks[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    assert all("usage" not in c for c in chunks[:-1])
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    for c in chunks[:-1]:
        (choice,) = c["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
        if choice["finish_reason"]:
            finish[choice["index"]] = choice["finish_reason"]
        else:
            assert choice["text"] and choice["logprobs"]["tokens"] == [choice["text"]]
    assert texts == {0: "Hello! How can", 1: "Hello! How can"}
    assert finish == {0: "length", 1: "length"}
    # without include_usage: no usage anywhere
    del body["stream_options"]
    r = await http.post("/v1/completions", json=body)
    assert '"usage"' not in r.text and r.text.endswith("data: [DONE]\n\n")


async def test_a_streamed_echo_comes_first(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model=MODEL, prompt="Echo me", echo=True, max_tokens=2, stream=True
    )
    texts = [c.choices[0].text async for c in stream]
    assert texts[0] == "Echo me" and "".join(texts) == "Echo meHello! How"


async def test_suffix_without_fim_tokens_is_refused(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        await client.completions.create(model=MODEL, prompt="def f(", suffix="return x")
    assert e.value.param == "suffix" and e.value.code == "unsupported_parameter"


async def test_suffix_with_fim_tokens_fills_the_middle(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.fim = True
    async with running_chatd(tmp_path, engine) as c:
        r = await c.sdk().completions.create(model=MODEL, prompt="def f(", suffix=" return x")
        assert r.choices[0].text == TEXT
        assert engine.last_prompt_text == "<|fim_pre|>def f(<|fim_suf|> return x<|fim_mid|>"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"max_tokens": -1}, "max_tokens"),
    ({"logprobs": 6}, "logprobs"),
    ({"logprobs": True}, "logprobs"),
    ({"n": 0}, "n"),
    ({"n": 3, "best_of": 2}, "best_of"),
    ({"best_of": 21}, "best_of"),
    ({"best_of": 2, "stream": True}, "best_of"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [[]]}, "prompt"),
    ({"prompt": {"text": "x"}}, "prompt"),
    ({"prompt": ["a", 1]}, "prompt"),
    ({"prompt": [1, True]}, "prompt"),
    ({"prompt": [49152]}, "prompt"),
    ({"prompt": [[1], [-1]]}, "prompt"),
    ({"logit_bias": {"x": 1}}, "logit_bias"),
    ({"logit_bias": {"49152": 1}}, "logit_bias"),
    ({"temperature": 3}, "temperature"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"min_tokens": 20}, "min_tokens"),
    ({"max_tokens": 9000}, "prompt"),
    ({"unknown_field": 1}, "unknown_field"),
]


@pytest.mark.parametrize(("fields", "param"), BAD, ids=[p + str(i) for i, (_, p) in enumerate(BAD)])
async def test_bad_input_is_a_400_naming_the_field(
    http: httpx.AsyncClient, fields: dict[str, Any], param: str
) -> None:
    r = await http.post("/v1/completions", json={"model": MODEL, "prompt": "x", **fields})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text


async def test_missing_prompt_and_model(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/completions", json={"model": MODEL})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = await http.post("/v1/completions", json={"prompt": "x"})
    assert r.status_code == 400 and "model" in r.json()["error"]["message"]
    r = await http.post("/v1/completions", json={"model": "no-such-model", "prompt": "x"})
    assert r.status_code == 404


async def test_null_prompt_is_the_start_of_a_document(chatd: Any, http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/completions", json={"model": MODEL, "prompt": None, "max_tokens": 1})
    assert r.status_code == 200, r.text
    assert chatd.engine.last_prompt_text == "<|endoftext|>"


async def test_usage_is_counted_as_for_chat(chatd: Any, client: openai.AsyncOpenAI) -> None:
    services = chatd.app.state.services
    usage = services.completions.usage
    seen: list[tuple[Any, ...]] = []
    add = usage.add
    usage.add = lambda *a, **k: (seen.append(a), add(*a, **k))[1]
    try:
        await client.completions.create(model=MODEL, prompt="one two", max_tokens=2)
        stream = await client.completions.create(model=MODEL, prompt="x", max_tokens=3, stream=True)
        async for _ in stream:
            pass
    finally:
        usage.add = add
    assert [(model, p, c) for _, model, p, c, _ in seen] == [(MODEL, 2, 2), (MODEL, 1, 3)]


async def test_without_a_key_it_is_refused(chatd: Any) -> None:
    r = await chatd.http(None).post("/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert r.status_code == 401


@pytest.mark.usefixtures("still_minute")
async def test_rate_limits_count_completions_with_chat(tmp_path: Path) -> None:
    """A key's requests and tokens per minute: a completion spends them as a chat request
    does (the same admission, api/answering.py)."""
    from .test_rate_limits import assert_limited, limited, make_key

    rpm = make_key(tmp_path, "--rpm", "2")
    tpm = make_key(tmp_path, "--tpm", "10", "--name", "tokens")
    async with running_chatd(tmp_path, api_keys=[]) as srv:
        body = {"model": MODEL, "prompt": "one two three", "max_tokens": 8}
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        assert (await srv.http(rpm).post("/v1/chat/completions", json=chat)).status_code == 200
        assert (await srv.http(rpm).post("/v1/completions", json=body)).status_code == 200
        assert_limited(await srv.http(rpm).post("/v1/completions", json=body), "requests")
        r = await srv.http(tpm).post("/v1/completions", json=body)  # 3 + 7 tokens: all of it
        assert r.status_code == 200
        assert_limited(await limited(srv, tpm), "tokens")


async def test_request_limits_bound_the_prompts(tmp_path: Path) -> None:
    limits = Limits(max_messages=2, max_chars=20)
    async with running_chatd(tmp_path, limits=limits) as srv:
        http = srv.http()
        r = await http.post("/v1/completions", json={"model": MODEL, "prompt": ["a", "b", "c"]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
        many_ids = {"model": MODEL, "prompt": [1, 2, 3, 4], "max_tokens": 1}
        assert (await http.post("/v1/completions", json=many_ids)).status_code == 200  # one prompt
        long = {"model": MODEL, "prompt": "x" * 15, "suffix": "y" * 10}
        r = await http.post("/v1/completions", json=long)
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text

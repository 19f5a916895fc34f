"""The prefix cache over HTTP: reused prompt tokens are reported exactly in
``usage.prompt_tokens_details.cached_tokens``, and an answer is bit-identical (text and
logprobs) whether its prompt was computed or reused, greedy or seeded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import API_KEY, MODEL, Server
from openapi_schemas import assert_valid
from sse import stream

EOG = {"0": -100, "2": -100, "4": -100}
# ~350 tokens: long enough that every pass attends over 512+ cells.
SYSTEM = "You are a careful assistant. " + " ".join(
    f"Rule {i}: answer briefly and name the rule you follow." for i in range(40)
)


@pytest.fixture(scope="module")
def uncached() -> Iterator[openai.OpenAI]:
    """A server without a prefix cache: every prompt computed from scratch."""
    srv = Server("--api-key", API_KEY, "--prefix-cache-mib", "0")
    yield openai.OpenAI(base_url=srv.base_url + "/v1", api_key=API_KEY, max_retries=0)
    srv.stop()


def messages(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def ask(client: openai.OpenAI, user: str, **kw: Any) -> Any:
    args: dict[str, Any] = {"max_tokens": 24, "logit_bias": EOG, "logprobs": True, **kw}
    return client.chat.completions.create(model=MODEL, messages=messages(user), **args)


def answer(r: Any) -> list[tuple[str | None, list[tuple[str, float]]]]:
    return [
        (c.message.content, [(t.token, t.logprob) for t in c.logprobs.content]) for c in r.choices
    ]


def cached(r: Any) -> int:
    return r.usage.prompt_tokens_details.cached_tokens


@pytest.mark.parametrize(
    "sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 11}], ids=["greedy", "seeded"]
)
def test_a_repeated_prompt_is_a_hit_with_the_same_answer(
    client: openai.OpenAI, uncached: openai.OpenAI, sampling: dict[str, Any]
) -> None:
    user = f"Conversation {uuid.uuid4()}: name one colour."
    first = ask(client, user, **sampling)
    again = ask(client, user, **sampling)
    assert cached(again) == again.usage.prompt_tokens - 1  # all but the last token
    assert cached(first) < first.usage.prompt_tokens - 1
    reference = ask(uncached, user, **sampling)
    assert cached(reference) == 0
    assert answer(first) == answer(again) == answer(reference)


def test_a_shared_system_prompt_is_reused_for_a_new_question(
    client: openai.OpenAI, uncached: openai.OpenAI
) -> None:
    ask(client, f"Warm {uuid.uuid4()}")
    question = f"Question {uuid.uuid4()}: what is two plus two?"
    r = ask(client, question, temperature=0)
    system_tokens = 300  # SYSTEM alone is more than this
    assert system_tokens < cached(r) < r.usage.prompt_tokens
    assert answer(r) == answer(ask(uncached, question, temperature=0))


def test_n_choices_on_a_hit(client: openai.OpenAI, uncached: openai.OpenAI) -> None:
    user = f"Choices {uuid.uuid4()}"
    ask(client, user, max_tokens=4)
    r = ask(client, user, n=3, temperature=1.0, seed=5)
    assert cached(r) == r.usage.prompt_tokens - 1
    assert answer(r) == answer(ask(uncached, user, n=3, temperature=1.0, seed=5))


def test_json_schema_on_a_hit(client: openai.OpenAI, uncached: openai.OpenAI) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {
            "name": "colour",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "hex": {"type": "string"}},
                "required": ["name", "hex"],
                "additionalProperties": False,
            },
        },
    }
    user = f"Colour {uuid.uuid4()}: give one as JSON."
    kw: dict[str, Any] = {"response_format": fmt, "temperature": 0, "max_tokens": 40}
    kw["logit_bias"] = {}
    ask(client, user, **kw)
    r = ask(client, user, **kw)
    assert cached(r) == r.usage.prompt_tokens - 1
    assert answer(r) == answer(ask(uncached, user, **kw))


def test_tool_calls_on_a_hit(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    user = f"Weather {uuid.uuid4()}: what is the weather in Paris?"
    kw: dict[str, Any] = {"tools": tools, "tool_choice": "required", "temperature": 0}
    kw.update(logit_bias={}, logprobs=False, max_tokens=60)
    first, again = ask(client, user, **kw), ask(client, user, **kw)
    assert cached(again) == again.usage.prompt_tokens - 1
    calls = [c.message.tool_calls[0].function for c in (first.choices[0], again.choices[0])]
    assert calls[0].name == calls[1].name == "get_weather"
    assert calls[0].arguments == calls[1].arguments


def test_streamed_and_stored_hits_report_cached_tokens(http: httpx.Client) -> None:
    user = f"Stored {uuid.uuid4()}"
    body = {"model": MODEL, "messages": messages(user), "max_tokens": 8, "logit_bias": EOG}
    http.post("/v1/chat/completions", json=body).raise_for_status()
    s = stream(http, {**body, "stream": True, "stream_options": {"include_usage": True}})
    usage = s.chunks[-1]["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1
    assert_valid("CreateChatCompletionStreamResponse", s.chunks[-1])
    stored = http.post("/v1/chat/completions", json={**body, "store": True}).json()
    assert_valid("CreateChatCompletionResponse", stored)
    got = http.get(f"/v1/chat/completions/{stored['id']}").json()
    assert got["usage"]["prompt_tokens_details"]["cached_tokens"] == (
        stored["usage"]["prompt_tokens"] - 1
    )


def test_metrics_count_hit_and_miss_tokens(http: httpx.Client) -> None:
    text = http.get("/metrics").text
    hits = [ln for ln in text.splitlines() if ln.startswith("chatd_engine_prefix_cache_hit")]
    misses = [ln for ln in text.splitlines() if ln.startswith("chatd_engine_prefix_cache_miss")]
    assert hits and misses
    assert float(hits[0].split()[-1]) > 0

"""``POST /v1/responses`` on the real model (SmolLM2-135M in a real ``chatd serve``): the
openai SDK's ``client.responses`` and raw httpx where bytes matter. Every response body is
a valid ``Response`` and every stream event a valid ``ResponseStreamEvent`` of the
OpenAPI spec. Answers are short (max_output_tokens 16..40) and greedy."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
from conftest import MODEL
from openapi_schemas import assert_valid
from pydantic import BaseModel
from sse import response_events

URL = "/v1/responses"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
# ~350 tokens: a prefix long enough that a reuse is unmistakable.
RULES = "You are a careful assistant. " + " ".join(
    f"Rule {i}: answer briefly and name the rule you follow." for i in range(40)
)


def create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"model": MODEL, "temperature": 0, "max_output_tokens": 16, **fields}
    resp = http.post(URL, json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert_valid("Response", out)
    return out


def events_of(http: httpx.Client, **fields: Any) -> list[dict[str, Any]]:
    """The raw stream: ``event:`` names each ``data``'s type, every event is valid, the
    sequence numbers count from 0 without a gap, and there is no ``[DONE]``."""
    body = {"model": MODEL, "temperature": 0, "max_output_tokens": 16, "stream": True, **fields}
    with http.stream("POST", URL, json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    return response_events(text)


def text_of(body: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in body["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def check_finished(body: dict[str, Any], max_output_tokens: int) -> None:
    """completed, or incomplete because it reached max_output_tokens; usage adds up."""
    u = body["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert 0 < u["output_tokens"] <= max_output_tokens
    assert u["input_tokens"] > 0
    if body["status"] == "incomplete":
        assert body["incomplete_details"] == {"reason": "max_output_tokens"}
        assert u["output_tokens"] == max_output_tokens
    else:
        assert body["status"] == "completed" and body["incomplete_details"] is None


def test_sdk_create(client: openai.OpenAI, http: httpx.Client) -> None:
    r = client.responses.create(
        model=MODEL,
        instructions="Be brief.",
        input="Name one colour.",
        temperature=0,
        max_output_tokens=16,
    )
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    assert r.output_text.strip()
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    body = r.model_dump(mode="json", exclude_unset=True)
    check_finished(body, 16)
    got = http.get(f"{URL}/{r.id}")  # stored by default
    assert got.status_code == 200
    assert_valid("Response", got.json())
    assert got.json()["output"] == body["output"]


def test_stream_events_add_up(http: httpx.Client) -> None:
    events = events_of(http, input="Say hello to the world.", store=False)
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert types[-1] in ("response.completed", "response.incomplete")
    final = events[-1]["response"]
    assert final["status"] == types[-1].removeprefix("response.")
    check_finished(final, 16)
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert deltas and deltas == done["text"] == text_of(final)
    # the same request, whole, says the same thing
    whole = create(http, input="Say hello to the world.", store=False)
    assert text_of(whole) == deltas


def test_sdk_stream(client: openai.OpenAI) -> None:
    seen = []
    with client.responses.stream(
        model=MODEL, input="What is the sky?", temperature=0, max_output_tokens=16
    ) as stream:
        for event in stream:
            seen.append(event)
    # the SDK's get_final_response() wants response.completed; a capped answer ends
    # with response.incomplete, whose response is just as final
    final = seen[-1].response
    assert seen[0].type == "response.created" and seen[1].type == "response.in_progress"
    assert seen[-1].type in ("response.completed", "response.incomplete")
    deltas = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert deltas == final.output_text != ""
    again = client.responses.retrieve(final.id)  # committed before the final event
    assert again.output_text == final.output_text and again.status == final.status


def test_parse_gives_a_valid_object(client: openai.OpenAI) -> None:
    class City(BaseModel):
        name: str
        country: str

    r = client.responses.parse(
        model=MODEL,
        input="Give one city and its country as JSON.",
        text_format=City,
        temperature=0,
        max_output_tokens=40,
    )
    assert r.status == "completed"  # the grammar closes the object within 40 tokens
    assert isinstance(r.output_parsed, City)
    assert City.model_validate_json(r.output_text) == r.output_parsed
    assert r.text.format.type == "json_schema"


def test_function_call_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_output_tokens=40,
    )
    assert_valid("Response", first.model_dump(mode="json", exclude_unset=True))
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    args = json.loads(calls[0].arguments)  # the grammar makes them valid
    assert set(args) == {"city"} and isinstance(args["city"], str)
    assert calls[0].call_id and calls[0].id.startswith("fc_")
    second = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 25C"}
        ],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_output_tokens=24,
    )
    assert_valid("Response", second.model_dump(mode="json", exclude_unset=True))
    assert second.previous_response_id == first.id
    assert second.output_text.strip()
    assert not [o for o in second.output if o.type == "function_call"]
    items = client.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["function_call_output"]


def test_logprobs_have_bytes(http: httpx.Client) -> None:
    body = create(
        http,
        input="Name a fruit.",
        include=["message.output_text.logprobs"],
        top_logprobs=2,
        temperature=0,
        store=False,
    )
    assert body["top_logprobs"] == 2
    part = body["output"][0]["content"][0]
    lps = part["logprobs"]
    # every output token has its logprobs but the end-of-generation token of a completed
    # answer: counted in usage (as vLLM and llama.cpp count it), with no text nor logprob
    ended = body["status"] == "completed"
    assert len(lps) == body["usage"]["output_tokens"] - ended
    for lp in lps:
        assert lp["logprob"] <= 0
        assert isinstance(lp["bytes"], list) and all(0 <= b < 256 for b in lp["bytes"])
        assert len(lp["top_logprobs"]) == 2
        assert lp["top_logprobs"][0]["logprob"] >= lp["top_logprobs"][1]["logprob"]
        for top in lp["top_logprobs"]:
            assert isinstance(top["bytes"], list) and top["logprob"] <= 0
        # greedy: the chosen token is the likeliest one
        assert lp["top_logprobs"][0]["token"] == lp["token"]
    assert bytes(b for lp in lps for b in lp["bytes"]).decode() == part["text"]
    # without include, no logprobs
    plain = create(http, input="Name a fruit.", store=False)
    assert plain["output"][0]["content"][0].get("logprobs") in (None, [])
    assert text_of(plain) == part["text"]


def test_greedy_is_deterministic(http: httpx.Client) -> None:
    fields = {"input": f"Story {uuid.uuid4().hex[:8]}: once upon a time", "max_output_tokens": 24}
    first, second = create(http, **fields, store=False), create(http, **fields, store=False)
    assert text_of(first) == text_of(second) != ""
    assert first["usage"]["output_tokens"] == second["usage"]["output_tokens"]


def test_continuation_reuses_the_cached_prefix(http: httpx.Client) -> None:
    """A follow-up by previous_response_id renders the earlier turn again: its tokens
    are the prefix cache's, reported in input_tokens_details.cached_tokens."""
    first = create(http, instructions=RULES, input=f"Question {uuid.uuid4()}: name a colour.")
    assert first["usage"]["input_tokens"] > 300
    second = create(
        http,
        instructions=RULES,
        input="And another one?",
        previous_response_id=first["id"],
    )
    cached = second["usage"]["input_tokens_details"]["cached_tokens"]
    # the first prompt's whole 64-token blocks (prefill computes them wide, its answer
    # was decoded row by row: docs/engine.md, "Wide prefill"), at least
    wide = 64 * ((first["usage"]["input_tokens"] - 1) // 64)
    assert 300 < wide <= cached < second["usage"]["input_tokens"]
    # a repeat of the same request: all but its last token
    again = create(
        http,
        instructions=RULES,
        input="And another one?",
        previous_response_id=first["id"],
        store=False,
    )
    usage = again["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == usage["input_tokens"] - 1
    assert text_of(again) == text_of(second)

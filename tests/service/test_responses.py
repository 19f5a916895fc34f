"""``POST /v1/responses`` on the local engine, in-process over the real app (a scripted
FakeEngine writes the answers): the openai SDK's ``client.responses`` (create, stream,
parse, retrieve, delete, input_items), and raw httpx for every event and status code.
Every response body and stream event is validated against the OpenAPI spec."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from fakes.engine import Call, FakeEngine
from openapi_schemas import assert_valid
from pydantic import BaseModel
from sse import response_events

from .checks import check_error
from .harness import MODEL, Chatd, running_chatd

URL = "/v1/responses"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CALL = '<tool_call>\n{"name":"get_weather","arguments":{"city":"Paris"}}\n</tool_call>'


def script(call: Call) -> str:
    """Calls the tool when offered one and no result came back yet; JSON when a schema
    constrains the output; otherwise answers about what it was told."""
    prompt = call.prompt
    if "<tool_response>" in prompt:
        return "It is sunny in Paris."
    if "get_weather" in prompt and call.params.grammar is not None:
        return CALL
    if call.params.grammar is not None:
        return '{"name":"Ada","age":36}'
    return "Hello there, friend."


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    engine = FakeEngine(script)
    async with running_chatd(tmp_path_factory.mktemp("responses"), engine) as c:
        yield c


async def create(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    resp = await http.post(URL, json={"model": MODEL, **fields})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert_valid("Response", body)
    return body


async def events_of(http: httpx.AsyncClient, **fields: Any) -> list[dict[str, Any]]:
    """The stream's events, each checked: ``event:`` names its ``data``'s type, the data
    is a valid ``ResponseStreamEvent``, sequence numbers count from 0 with no gap."""
    async with http.stream("POST", URL, json={"model": MODEL, "stream": True, **fields}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = (await r.aread()).decode()
    return response_events(text)


# --------------------------------------------------------------------------------------------
# Whole responses
# --------------------------------------------------------------------------------------------


async def test_sdk_create_text(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    r = await client.responses.create(model=MODEL, input="Say hello", instructions="Be brief.")
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.output_text == "Hello there, friend."
    assert r.instructions == "Be brief."
    message = r.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert r.usage is not None and r.usage.output_tokens == 3
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.store is True
    prompt = chatd.engine.last_prompt_text
    assert "Be brief." in prompt and "Say hello" in prompt


async def test_defaults_echoed_and_valid(http: httpx.AsyncClient) -> None:
    body = await create(http, input="hi", metadata={"k": "v"}, user="u-1")
    assert body["temperature"] == 1.0 and body["top_p"] == 1.0
    assert body["tool_choice"] == "auto" and body["tools"] == []
    assert body["text"] == {"format": {"type": "text"}}
    assert body["truncation"] == "disabled"
    assert body["metadata"] == {"k": "v"} and body["user"] == "u-1"
    assert body["service_tier"] == "default"
    assert body["error"] is None and body["incomplete_details"] is None
    assert isinstance(body["completed_at"], int)


async def test_sampling_fields_reach_the_engine(http: httpx.AsyncClient, chatd: Chatd) -> None:
    await create(http, input="hi", temperature=0.3, top_p=0.5, max_output_tokens=64)
    params = chatd.engine.last_params
    assert (params.temperature, params.top_p, params.max_new_tokens) == (0.3, 0.5, 64)


async def test_max_output_tokens_makes_it_incomplete(http: httpx.AsyncClient, chatd: Chatd) -> None:
    body = await create(http, input="hi", max_output_tokens=16, store=False)
    assert body["status"] == "completed"  # the script is shorter than 16 tokens
    saved = chatd.engine.script
    chatd.engine.script = " ".join(["word"] * 40)
    try:
        body = await create(http, input="hi", max_output_tokens=16)
    finally:
        chatd.engine.script = saved
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert body["usage"]["output_tokens"] == 16


async def test_logprobs_by_include(http: httpx.AsyncClient) -> None:
    body = await create(http, input="hi", include=["message.output_text.logprobs"], top_logprobs=2)
    part = body["output"][0]["content"][0]
    assert len(part["logprobs"]) == 3
    assert len(part["logprobs"][0]["top_logprobs"]) == 2
    assert body["top_logprobs"] == 2


async def test_json_schema_parse(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    class Person(BaseModel):
        name: str
        age: int

    r = await client.responses.parse(model=MODEL, input="Who?", text_format=Person)
    assert r.output_parsed == Person(name="Ada", age=36)
    assert chatd.engine.grammars.compiled[-1].kind == "json_schema"
    assert r.text.format.type == "json_schema"


# --------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------


async def test_stream_events_in_order(http: httpx.AsyncClient) -> None:
    events = await events_of(http, input="hi")
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == "Hello there, friend."
    assert all("obfuscation" in d for d in deltas)  # on by default, as OpenAI's
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello there, friend."
    assert events[0]["response"]["status"] == "in_progress"


async def test_stream_without_obfuscation(http: httpx.AsyncClient) -> None:
    events = await events_of(http, input="hi", stream_options={"include_obfuscation": False})
    assert not any("obfuscation" in e for e in events)


async def test_sdk_stream_and_retrieve(client: openai.AsyncOpenAI) -> None:
    seen = []
    async with client.responses.stream(model=MODEL, input="hi") as stream:
        async for event in stream:
            seen.append(event.type)
        final = await stream.get_final_response()
    assert seen[0] == "response.created" and seen[-1] == "response.completed"
    assert final.output_text == "Hello there, friend."
    again = await client.responses.retrieve(final.id)  # committed before the final event
    assert again.output_text == final.output_text and again.status == "completed"


# --------------------------------------------------------------------------------------------
# Function calls and state
# --------------------------------------------------------------------------------------------


async def test_function_call_round_trip(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    first = await client.responses.create(
        model=MODEL, input="Weather in Paris?", tools=[WEATHER], tool_choice="required"
    )
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert calls[0].id.startswith("fc_") and calls[0].call_id
    second = await client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
    )
    assert second.output_text == "It is sunny in Paris."
    assert second.previous_response_id == first.id
    prompt = chatd.engine.last_prompt_text
    assert "Weather in Paris?" in prompt and "get_weather" in prompt and "sunny" in prompt
    items = await client.responses.input_items.list(second.id)
    assert [i.type for i in items.data] == ["function_call_output"]


async def test_streamed_function_call(http: httpx.AsyncClient) -> None:
    events = await events_of(http, input="Weather?", tools=[WEATHER], tool_choice="required")
    types = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in types
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert json.loads(done["arguments"]) == {"city": "Paris"}
    assert events[-1]["response"]["output"][0]["type"] == "function_call"


async def test_conversation_chain(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    r = await client.responses.create(model=MODEL, input="first question")
    for n in range(3):
        r = await client.responses.create(
            model=MODEL, input=f"question {n}", previous_response_id=r.id
        )
    prompt = chatd.engine.last_prompt_text
    for text in ("first question", "question 0", "question 1", "question 2"):
        assert text in prompt
    assert prompt.count("Hello there, friend.") == 3  # the answers before this one


async def test_item_reference(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    first = await client.responses.create(model=MODEL, input="remember the falcon")
    listed = await client.responses.input_items.list(first.id)
    ref = listed.data[0].id
    await client.responses.create(
        model=MODEL, input=[{"type": "item_reference", "id": ref}, {"role": "user", "content": "?"}]
    )
    assert "remember the falcon" in chatd.engine.last_prompt_text


async def test_retrieve_delete_and_owners(
    client: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    r = await client.responses.create(model=MODEL, input="hi")
    got = await http.get(f"{URL}/{r.id}")
    assert got.status_code == 200
    assert_valid("Response", got.json())
    deleted = await client.responses.delete(r.id)
    assert deleted is None  # the SDK returns nothing; the body is checked below
    gone = await http.get(f"{URL}/{r.id}")
    check_error(gone, 404, param="response_id", code=None)
    again = await http.delete(f"{URL}/{r.id}")
    check_error(again, 404, param="response_id", code=None)
    chained = await http.post(
        URL, json={"model": MODEL, "input": "x", "previous_response_id": r.id}
    )
    check_error(chained, 400, param="previous_response_id", code="previous_response_not_found")


async def test_delete_body(http: httpx.AsyncClient) -> None:
    body = await create(http, input="hi")
    resp = await http.delete(f"{URL}/{body['id']}")
    assert resp.status_code == 200
    assert resp.json() == {"id": body["id"], "object": "response", "deleted": True}


async def test_not_stored(http: httpx.AsyncClient) -> None:
    body = await create(http, input="hi", store=False)
    assert body["store"] is False
    check_error(await http.get(f"{URL}/{body['id']}"), 404, param="response_id", code=None)


async def test_cancel_is_for_background_only(http: httpx.AsyncClient) -> None:
    body = await create(http, input="hi")
    check_error(await http.post(f"{URL}/{body['id']}/cancel"), 400, param=None, code=None)
    check_error(await http.post(f"{URL}/resp_nope/cancel"), 404, param="response_id", code=None)


async def test_truncation_auto_drops_oldest_turns(tmp_path_factory: pytest.TempPathFactory) -> None:
    engine = FakeEngine("ok", context_window=400)
    async with running_chatd(tmp_path_factory.mktemp("trunc"), engine) as c:
        http = c.http()
        old = [{"role": "user", "content": f"old turn {i} " + "blah " * 60} for i in range(10)]
        items = [*old, {"role": "user", "content": "the newest question"}]
        refused = await http.post(URL, json={"model": MODEL, "input": items, "store": False})
        check_error(refused, 400, param="input", code="context_length_exceeded")
        ok = await http.post(
            URL,
            json={"model": MODEL, "input": items, "truncation": "auto", "instructions": "SYS"},
        )
        assert ok.status_code == 200, ok.text
        prompt = engine.last_prompt_text
        assert "the newest question" in prompt and "SYS" in prompt
        assert "old turn 0 " not in prompt

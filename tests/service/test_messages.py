"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` on the local engine, in-process
over the real app (a scripted FakeEngine writes the answers): Anthropic's own SDK
(create, ``messages.stream()`` with its helpers, tools, count_tokens), and raw httpx for
the event order, the SSE bytes, pings and headers. Errors: test_messages_errors.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from fakes.engine import Call, FakeEngine
from pydantic import BaseModel

from .harness import API_KEY, MODEL, Chatd, running_chatd

URL = "/v1/messages"
HI = [{"role": "user", "content": "Hi!"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = '<tool_call>\n{"name":"get_weather","arguments":{"city":"Paris"}}\n</tool_call>'
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}


def script(call: Call) -> str:
    """Calls the tool when one may be called and no result came back yet; JSON under a
    schema; otherwise a fixed answer."""
    prompt = call.prompt
    if "<tool_response>" in prompt:
        return "It is sunny in Paris."
    grammar = call.params.grammar
    if grammar is not None and grammar.kind == "lark":
        return CALL
    if grammar is not None:
        return '{"name":"Ada","age":36}'
    return "one two three four five"


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    async with running_chatd(tmp_path_factory.mktemp("messages"), FakeEngine(script)) as c:
        yield c


@pytest.fixture(scope="module")
def client(chatd: Chatd) -> anthropic.AsyncAnthropic:
    return chatd.anthropic()


@pytest.fixture(scope="module")
def http(chatd: Chatd) -> httpx.AsyncClient:
    c = chatd.http(None)
    c.headers.update(HEADERS)
    return c


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Each event's name and data, checking the framing: ``event:`` names the data's
    ``type``, one blank line ends each event, no ``[DONE]``."""
    assert "[DONE]" not in text
    out = []
    for chunk in text.split("\n\n"):
        if not chunk:
            continue
        head, data = chunk.split("\n")
        assert head.startswith("event: ") and data.startswith("data: "), chunk
        event = json.loads(data[len("data: ") :])
        assert event["type"] == head[len("event: ") :]
        out.append((event["type"], event))
    return out


async def stream_events(http: httpx.AsyncClient, **body: Any) -> list[tuple[str, Json]]:
    payload = {"model": MODEL, "max_tokens": 100, "messages": HI, "stream": True, **body}
    async with http.stream("POST", URL, json=payload) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["request-id"] == r.headers["x-request-id"]
        return sse((await r.aread()).decode())


Json = dict[str, Any]


# --- whole messages ------------------------------------------------------------------------


async def test_create_answers_anthropics_message(client: anthropic.AsyncAnthropic) -> None:
    raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=HI)
    assert raw.headers["request-id"].startswith("req_")
    m = await raw.parse()
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == MODEL
    assert [(b.type, b.text) for b in m.content] == [("text", "one two three four five")]
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == 5
    assert m.usage.cache_read_input_tokens == 0 and m.usage.cache_creation_input_tokens == 0


async def test_sampling_fields_reach_the_engine(
    chatd: Chatd, client: anthropic.AsyncAnthropic
) -> None:
    await client.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=HI,
        extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 40},  # not in this SDK's args
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "u-1"},
    )
    p = chatd.engine.last_params
    assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens) == (0.2, 0.9, 40, 50)
    assert "system\nBe brief." in chatd.engine.last_prompt_text


async def test_max_tokens_beyond_the_window_is_clamped(
    chatd: Chatd, client: anthropic.AsyncAnthropic
) -> None:
    """Claude Code asks 32,000 on every request: what the window leaves is granted."""
    async with client.messages.stream(model=MODEL, max_tokens=32000, messages=HI) as s:
        m = await s.get_final_message()
    assert m.stop_reason == "end_turn"
    prompt = len(chatd.engine.submitted[-1][0])
    assert chatd.engine.last_params.max_new_tokens == chatd.engine.context_window - prompt


async def test_reaching_max_tokens_is_its_stop_reason(client: anthropic.AsyncAnthropic) -> None:
    m = await client.messages.create(model=MODEL, max_tokens=2, messages=HI)
    assert m.stop_reason == "max_tokens" and m.content[0].text == "one two"  # type: ignore[union-attr]


async def test_a_stop_sequence_is_named(client: anthropic.AsyncAnthropic) -> None:
    m = await client.messages.create(
        model=MODEL, max_tokens=100, messages=HI, stop_sequences=["nope", " four"]
    )
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == " four"
    assert m.content[0].text == "one two three"  # type: ignore[union-attr]


async def test_history_blocks_are_the_conversation(
    chatd: Chatd, client: anthropic.AsyncAnthropic
) -> None:
    """Thinking blocks are dropped; an error result says so; text blocks join."""
    await client.messages.create(
        model=MODEL,
        max_tokens=10,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "SECRET-THOUGHT", "signature": "s"},
                    {"type": "redacted_thinking", "data": "xx"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                     "content": [{"type": "text", "text": "service down"}]},
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
    )  # fmt: skip
    prompt = chatd.engine.last_prompt_text
    assert "SECRET-THOUGHT" not in prompt
    assert "Let me look." in prompt and '"city":"Oslo"' in prompt
    assert "Error: service down" in prompt and "And now?" in prompt
    assert chatd.engine.last_params.grammar is None  # tool_choice none: no call


# --- tools -----------------------------------------------------------------------------------


async def test_a_tool_round_trip(client: anthropic.AsyncAnthropic) -> None:
    first = await client.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    assert use.type == "tool_use" and use.id.startswith("toolu_")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    second = await client.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "It is sunny in Paris."  # type: ignore[union-attr]


async def test_a_forced_tool_is_the_grammar(chatd: Chatd, client: anthropic.AsyncAnthropic) -> None:
    other = {**WEATHER, "name": "get_time"}
    m = await client.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[other, WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=HI,
    )
    assert m.stop_reason == "tool_use" and m.content[0].type == "tool_use"
    grammar = chatd.engine.last_params.grammar
    assert grammar is not None and "get_weather" in grammar.source
    assert "get_time" not in grammar.source.split("payload:")[1]  # only the forced one
    assert 'call ("\\n" call)*' not in grammar.source  # one call


async def test_any_requires_a_call_and_parallel_can_be_disabled(
    chatd: Chatd, client: anthropic.AsyncAnthropic
) -> None:
    await client.messages.create(
        model=MODEL,
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=HI,
    )
    source = chatd.engine.last_params.grammar.source  # type: ignore[union-attr]
    assert source.startswith("start: calls\n") and "calls: call\n" in source


async def test_a_server_tool_is_accepted_and_never_offered(
    chatd: Chatd, client: anthropic.AsyncAnthropic
) -> None:
    m = await client.messages.create(
        model=MODEL,
        max_tokens=20,
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        messages=HI,
    )
    assert m.stop_reason == "end_turn"
    assert "web_search" not in chatd.engine.last_prompt_text
    assert chatd.engine.last_params.grammar is None


async def test_structured_output_follows_the_schema(
    chatd: Chatd, client: anthropic.AsyncAnthropic
) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    m = await client.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=HI,
        output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"},
    )
    assert json.loads(m.content[0].text) == {"name": "Ada", "age": 36}  # type: ignore[union-attr]
    grammar = chatd.engine.last_params.grammar
    assert grammar is not None and grammar.kind == "json_schema" and grammar.source == schema


async def test_the_sdks_parse_gets_its_model(client: anthropic.AsyncAnthropic) -> None:
    """``messages.parse(output_format=<pydantic model>)`` sends ``output_config.format``."""

    class Person(BaseModel):
        name: str
        age: int

    m = await client.messages.parse(model=MODEL, max_tokens=100, messages=HI, output_format=Person)
    assert m.parsed_output == Person(name="Ada", age=36)


# --- streams -------------------------------------------------------------------------------


async def test_stream_helpers_add_up_to_the_message(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=HI) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text == "one two three four five" == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5
    assert final.usage.input_tokens > 0


async def test_stream_events_come_in_anthropics_order(http: httpx.AsyncClient) -> None:
    events = await stream_events(http)
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0 and start["usage"]["output_tokens"] == 0
    assert events[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [e["delta"] for n, e in events if n == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "one two three four five"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 5
    assert delta["usage"]["input_tokens"] == start["usage"]["input_tokens"]


async def test_a_streamed_tool_call_is_input_json_deltas(http: httpx.AsyncClient) -> None:
    events = await stream_events(
        http, tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}
    )
    starts = [e for n, e in events if n == "content_block_start"]
    (block,) = [s["content_block"] for s in starts]
    assert block["type"] == "tool_use" and block["name"] == "get_weather"
    assert block["id"].startswith("toolu_") and block["input"] == {}
    parts = [e["delta"] for n, e in events if n == "content_block_delta"]
    assert {p["type"] for p in parts} == {"input_json_delta"}
    assert json.loads("".join(p["partial_json"] for p in parts)) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_a_streamed_tool_use_parses_in_the_sdk(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=HI,
        tools=[WEATHER],  # type: ignore[list-item]
    ) as s:
        final = await s.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}


async def test_claude_codes_request_is_answered(http: httpx.AsyncClient) -> None:
    """The fields Claude Code sends, each with its honest meaning on a model that does
    not think: answered, no thinking block, usage in message_start."""
    tools = [
        {**WEATHER, "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 8},
    ]
    body = {
        "model": MODEL,
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code.",
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be concise."},
        ],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}],
        "metadata": {"user_id": "user_abc_account__session_123"},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "tools": tools,
        "tool_choice": {"type": "auto"},
    }  # fmt: skip
    headers = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"}
    async with http.stream("POST", URL + "?beta=true", json=body, headers=headers) as r:
        assert r.status_code == 200
        events = sse((await r.aread()).decode())
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0
    assert events[-1][0] == "message_stop"
    kinds = [e["content_block"]["type"] for n, e in events if n == "content_block_start"]
    assert "thinking" not in kinds


@pytest.mark.parametrize(
    "fixture", ["claude_code_request.json", "claude_code_request_fallback.json"]
)
async def test_claude_codes_captured_requests_are_accepted_as_sent(
    http: httpx.AsyncClient, fixture: str
) -> None:
    """Claude Code 2.1.337's real requests (tests/fixtures/, captured; its ~12.5k-token
    prompt is served by the real model in tests/e2e/test_claude_code.py): its first one
    (a system message inside ``messages``, 12 tools with draft 2020-12 schemas and
    ``defer_loading``) and its fallback, each a 200 stream, never a 400 it would work
    around."""
    fx = json.loads((Path(__file__).parents[1] / "fixtures" / fixture).read_text())
    headers = {k: v for k, v in fx["headers"].items() if k.lower().startswith("anthropic-")}
    body = {**fx["body"], "model": MODEL}
    async with http.stream("POST", f"{URL}?{fx['query']}", json=body, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        events = sse((await r.aread()).decode())
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"


async def test_a_failure_after_the_start_is_an_error_event(
    chatd: Chatd, http: httpx.AsyncClient
) -> None:
    chatd.engine.fail_after = 2
    try:
        events = await stream_events(http)
    finally:
        chatd.engine.fail_after = None
    name, last = events[-1]
    assert name == "error"
    assert last["error"]["type"] == "api_error" and last["error"]["message"]
    assert "message_stop" not in [n for n, _ in events]


# --- count_tokens and models ---------------------------------------------------------------


async def test_count_tokens_is_what_the_message_bills(client: anthropic.AsyncAnthropic) -> None:
    kw: dict[str, Any] = {
        "model": MODEL,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER],
    }
    counted = await client.messages.count_tokens(**kw)
    m = await client.messages.create(max_tokens=100, **kw)
    u = m.usage
    billed = (
        u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    )
    assert counted.input_tokens == billed > 0


async def test_models_in_anthropics_shape_for_anthropic_clients(
    chatd: Chatd, client: anthropic.AsyncAnthropic, http: httpx.AsyncClient
) -> None:
    page = await client.models.list()
    assert [m.id for m in page.data] == [MODEL]
    assert page.data[0].type == "model" and page.data[0].created_at.year > 2000
    one = await client.models.retrieve(MODEL)
    assert one.id == MODEL and one.display_name == MODEL
    body = (await http.get("/v1/models")).json()
    assert body["has_more"] is False and body["first_id"] == body["last_id"] == MODEL
    plain = (await chatd.http().get("/v1/models")).json()  # no anthropic-version: OpenAI's
    assert plain["object"] == "list" and plain["data"][0]["object"] == "model"


async def test_a_bearer_key_works_too(chatd: Chatd) -> None:
    r = await chatd.http().post(URL, json={"model": MODEL, "max_tokens": 5, "messages": HI})
    assert r.status_code == 200 and r.json()["type"] == "message"


async def test_concurrent_messages_each_get_their_own_answer(
    client: anthropic.AsyncAnthropic,
) -> None:
    results = await asyncio.gather(
        *(client.messages.create(model=MODEL, max_tokens=100, messages=HI) for _ in range(4))
    )
    assert len({m.id for m in results}) == 4

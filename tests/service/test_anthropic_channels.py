"""Chat Completions and Responses requests for models on Anthropic channels (``api =
"anthropic"``), over HTTP with the openai SDK against the real app in process and a fake
Anthropic upstream on a real port (tests/fakes/anthropic_upstream.py): translated to
Messages and back, whole and streamed, a tool round trip, usage; the upstream's 401 a 502
naming the channel (counted, cooled down); a client fault passed back redacted; a field
Anthropic cannot keep refused before anything is sent; failover from an Anthropic channel
to a chat channel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openapi_schemas import assert_valid

from .harness import (
    Chatd,
    FakeAnthropic,
    Upstream,
    channel_toml,
    fake_anthropic,
    fake_upstream,
    running_chatd,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with fake_anthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def openai_upstream() -> Iterator[Upstream]:
    with fake_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
async def gateway(
    claude: FakeAnthropic, openai_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Chatd]:
    many = "failures_before_cooldown = 1000\n"
    toml = "".join(
        [
            channel_toml(
                "claude",
                claude.url,
                {"sonnet": "claude-ok", "sonnet-tools": "claude-tools", "sonnet-400": "claude-400"},
                "anthropic",
                many + 'user = "gw-{owner}"\nmax_tokens = 777\n',
            ),
            channel_toml(
                "badkey",
                claude.url,
                {"sonnet-badkey": "claude-401"},
                "anthropic",
                "failures_before_cooldown = 2\ncooldown_seconds = 600\n",
            ),  # fmt: skip
            channel_toml(
                "overloaded",
                claude.url,
                {"failover": "claude-529"},
                "anthropic",
                many + "priority = 0\n",
            ),  # fmt: skip
            channel_toml(
                "backup", openai_upstream.url + "/v1", {"failover": "ok"}, "chat", "priority = 1\n"
            ),  # fmt: skip
        ]
    )
    async with running_chatd(tmp_path_factory.mktemp("anthropic"), config=toml) as c:
        yield c


@pytest.fixture(scope="module")
def client(gateway: Chatd) -> openai.AsyncOpenAI:
    return gateway.sdk()


@pytest.fixture(scope="module")
def http(gateway: Chatd) -> httpx.AsyncClient:
    return gateway.http()


async def channels(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {ch["name"]: ch for ch in (await http.get("/v1/channels")).json()["data"]}


# --------------------------------------------------------------------------------------------
# Chat Completions
# --------------------------------------------------------------------------------------------


async def test_chat_whole(client: openai.AsyncOpenAI, claude: FakeAnthropic) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="sonnet",
        messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        temperature=0.3,
        stop=["END"],
        user="alice@example.com",
    )
    assert_valid("CreateChatCompletionResponse", json.loads(raw.text))
    completion = raw.parse()
    assert completion.model == "sonnet"
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 2)
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 3
    sent = claude.last["claude-ok"]
    assert sent["system"] == [{"type": "text", "text": "Be kind."}]
    assert sent["max_tokens"] == 777  # the channel's setting: the client named none
    assert (sent["temperature"], sent["stop_sequences"]) == (0.3, ["END"])
    assert sent["metadata"]["user_id"].startswith("gw-")  # the pseudonym, not alice
    assert "alice" not in json.dumps(sent)


async def test_chat_streamed(client: openai.AsyncOpenAI, claude: FakeAnthropic) -> None:
    stream = await client.chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "Hi"}],
        max_completion_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13
    assert {c.model for c in chunks} == {"sonnet"}
    assert claude.last["claude-ok"]["max_tokens"] == 50 and claude.last["claude-ok"]["stream"]


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_tool_round_trip(client: openai.AsyncOpenAI, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    kw: dict[str, Any] = {"model": "sonnet-tools", "tools": [WEATHER], "tool_choice": "required"}
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            messages=messages, stream=True, **kw)]  # fmt: skip
        calls: dict[int, dict[str, str]] = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += tc.id or ""
                call["name"] += (tc.function.name or "") if tc.function else ""
                call["arguments"] += (tc.function.arguments or "") if tc.function else ""
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        [call] = calls.values()
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        completion = await client.chat.completions.create(messages=messages, **kw)
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look."
        [tool_call] = choice.message.tool_calls or []
        assert tool_call.type == "function"
        call_id = tool_call.id
        name, arguments = tool_call.function.name, tool_call.function.arguments
    assert call_id == "toolu_1" and name == "weather"
    assert json.loads(arguments) == {"city": "Paris"}
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "18C"},
    ]
    answer = await client.chat.completions.create(
        messages=messages, **{**kw, "tool_choice": "auto"}
    )
    assert answer.choices[0].message.content == "Sunny, and the result was: 18C"
    assert answer.choices[0].finish_reason == "stop"


async def test_a_field_anthropic_cannot_keep_is_a_400(
    client: openai.AsyncOpenAI, claude: FakeAnthropic
) -> None:
    before = claude.calls.get("claude-ok", 0)
    with pytest.raises(openai.BadRequestError) as e:
        await client.chat.completions.create(
            model="sonnet", messages=[{"role": "user", "content": "Hi"}], logprobs=True
        )
    assert e.value.status_code == 400 and "logprobs" in e.value.message
    assert claude.calls.get("claude-ok", 0) == before  # nothing sent


async def test_the_upstreams_client_error_is_passed_back_redacted(
    http: httpx.AsyncClient,
) -> None:
    body = {"model": "sonnet-400", "messages": [{"role": "user", "content": "Hi"}]}
    r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("messages.0")
    assert "sk-ant-secret" not in r.text and "anthropic.internal" not in r.text
    assert (await channels(http))["claude"]["failures"] == 0


@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_the_upstreams_401_is_a_502_naming_thechannel_toml(
    http: httpx.AsyncClient, api: str
) -> None:
    if api == "chat":
        url, body = "/v1/chat/completions", {"model": "sonnet-badkey", "messages": [
            {"role": "user", "content": "Hi"}]}  # fmt: skip
    else:
        url, body = "/v1/responses", {"model": "sonnet-badkey", "input": "Hi"}
    state = (await channels(http))["badkey"]
    if not state["healthy"]:
        pytest.skip("cooled down by the other case")
    r = await http.post(url, json=body)
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["type"] == "upstream_error" and error["code"] == "channel_auth_failed"
    assert "`badkey`" in error["message"] and "x-api-key" not in r.text
    assert (await channels(http))["badkey"]["failures"] == state["failures"] + 1


async def test_the_401_cools_the_channel_down(http: httpx.AsyncClient) -> None:
    body = {"model": "sonnet-badkey", "messages": [{"role": "user", "content": "Hi"}]}
    for _ in range(2):
        r = await http.post("/v1/chat/completions", json=body)
        if r.status_code == 503:
            break
        assert r.status_code == 502
    state = (await channels(http))["badkey"]
    assert not state["healthy"] and state["cooling_seconds_left"] > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_from_an_anthropic_channel_to_a_chatchannel_toml(
    client: openai.AsyncOpenAI, claude: FakeAnthropic, stream: bool
) -> None:
    before = claude.calls.get("claude-529", 0)
    messages: Any = [{"role": "user", "content": "Hi"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model="failover", messages=messages, stream=True)]  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        completion = await client.chat.completions.create(model="failover", messages=messages)
        text = completion.choices[0].message.content or ""
    assert text == "Hello"  # the chat channel's answer
    assert claude.calls["claude-529"] == before + 1


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


async def test_responses_whole(client: openai.AsyncOpenAI, claude: FakeAnthropic) -> None:
    raw = await client.responses.with_raw_response.create(
        model="sonnet", input="Hi", instructions="Be kind.", max_output_tokens=64
    )
    assert_valid("Response", json.loads(raw.text))
    response = raw.parse()
    assert response.status == "completed" and response.output_text == "Hello"
    assert response.model == "sonnet"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 2)
    assert response.usage.input_tokens_details.cached_tokens == 3
    sent = claude.last["claude-ok"]
    assert sent["system"] == [{"type": "text", "text": "Be kind."}] and sent["max_tokens"] == 64


async def test_responses_streamed(client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(model="sonnet", input="Hi", stream=True)
    events = [e async for e in stream]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello"
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage is not None
    assert events[-1].response.usage.input_tokens == 11


@pytest.mark.parametrize("stream", [False, True])
async def test_responses_function_call(client: openai.AsyncOpenAI, stream: bool) -> None:
    tool: Any = {
        "type": "function",
        "name": "weather",
        "parameters": WEATHER["function"]["parameters"],
    }
    if stream:
        events = [e async for e in await client.responses.create(
            model="sonnet-tools", input="Weather?", tools=[tool], stream=True)]  # fmt: skip
        assert events[-1].type == "response.completed"
        response = events[-1].response
    else:
        response = await client.responses.create(
            model="sonnet-tools", input="Weather?", tools=[tool]
        )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "weather" and calls[0].call_id == "toolu_1"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_stored_answer_from_an_anthropicchannel_toml(
    client: openai.AsyncOpenAI, stream: bool
) -> None:
    messages: Any = [{"role": "user", "content": "Hi"}]
    if stream:
        chunks = [c async for c in await client.chat.completions.create(
            model="sonnet", messages=messages, store=True, stream=True)]  # fmt: skip
        completion_id = chunks[0].id
    else:
        completion = await client.chat.completions.create(
            model="sonnet", messages=messages, store=True, metadata={"k": "v"}
        )
        completion_id = completion.id
    stored = await client.chat.completions.retrieve(completion_id)
    assert stored.choices[0].message.content == "Hello" and stored.model == "sonnet"

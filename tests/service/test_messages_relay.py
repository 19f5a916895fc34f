"""Messages requests for models served by channels, over HTTP with the ``anthropic`` SDK
against the real app in process: an Anthropic channel (tests/fakes/anthropic_upstream.py)
gets the request as it came and its events are passed on in its order; a Chat
Completions channel (tests/fakes/upstream.py) gets it translated and its answer is made
into a message as a local one is; ``count_tokens`` relayed; the upstream's 401 is a 502
in Anthropic's shape naming the channel, never the client's 401; failover from an
Anthropic channel to a chat channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import pytest

from .harness import (
    Chatd,
    FakeAnthropic,
    Upstream,
    channel_toml,
    fake_anthropic,
    fake_upstream,
    running_chatd,
)

HI = [{"role": "user", "content": "Hi"}]


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
    toml = "".join(
        [
            channel_toml(
                "claude",
                claude.url,
                {"sonnet": "claude-ok", "sonnet-tools": "claude-tools"},
                "anthropic",
                "failures_before_cooldown = 1000\n",
            ),
            channel_toml("badkey", claude.url, {"sonnet-badkey": "claude-401"}, "anthropic"),
            channel_toml("overloaded", claude.url, {"failover": "claude-529"}, "anthropic"),
            channel_toml(
                "openai",
                openai_upstream.url + "/v1",
                {"gpt": "ok", "failover": "ok"},
                "chat",
                "priority = 1\n",
            ),  # fmt: skip
        ]
    )
    async with running_chatd(tmp_path_factory.mktemp("messages-relay"), config=toml) as c:
        yield c


@pytest.fixture(scope="module")
def sdk(gateway: Chatd) -> anthropic.AsyncAnthropic:
    return gateway.anthropic()


async def test_an_anthropic_channel_gets_the_request_as_it_came(
    sdk: anthropic.AsyncAnthropic, claude: FakeAnthropic
) -> None:
    message = await sdk.messages.create(
        model="sonnet",
        max_tokens=100,
        system=[{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
        messages=HI,
        extra_headers={"anthropic-beta": "context-management-2025-06-27"},
    )
    assert message.model == "sonnet"
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    assert message.usage.cache_read_input_tokens == 3
    sent = claude.last["claude-ok"]
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["max_tokens"] == 100
    assert claude.headers["claude-ok"]["anthropic-beta"] == "context-management-2025-06-27"
    assert "x-api-key" not in claude.headers["claude-ok"]  # the client's key never goes up


async def test_an_anthropic_channel_streams_its_own_events(
    sdk: anthropic.AsyncAnthropic,
) -> None:
    weather = {
        "name": "weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    async with sdk.messages.stream(
        model="sonnet-tools", max_tokens=50, messages=HI, tools=[weather]
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and "message_stop" in kinds
    assert final.model == "sonnet-tools"
    assert final.stop_reason == "tool_use"
    call = final.content[-1]
    assert call.type == "tool_use" and call.input == {"city": "Paris"}


async def test_a_chat_channel_gets_it_translated(
    sdk: anthropic.AsyncAnthropic, openai_upstream: Upstream
) -> None:
    message = await sdk.messages.create(
        model="gpt", max_tokens=64, system="Be brief.", messages=HI, stop_sequences=["END"]
    )
    assert message.model == "gpt"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 2)
    sent = openai_upstream.last["ok"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_completion_tokens"] == 64
    assert sent["stop"] == ["END"]


async def test_a_chat_channel_streams_as_anthropic_events(
    gateway: Chatd,
) -> None:
    body = {"model": "gpt", "max_tokens": 64, "stream": True, "messages": HI}
    async with gateway.http().stream(
        "POST", "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
    ) as r:
        assert r.status_code == 200
        names = [
            line.removeprefix("event: ")
            async for line in r.aiter_lines()
            if line.startswith("event: ")
        ]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "content_block_delta" in names


async def test_count_tokens_on_each_channel_kind(
    sdk: anthropic.AsyncAnthropic, claude: FakeAnthropic
) -> None:
    counted = await sdk.messages.count_tokens(model="sonnet", messages=HI)
    assert counted.input_tokens == len('[{"role": "user", "content": "Hi"}]')  # the fake's count
    assert "count:claude-ok" in claude.last
    estimated = await sdk.messages.count_tokens(model="gpt", messages=HI)
    assert estimated.input_tokens > 0  # chatd's estimate: chat has no count endpoint


async def test_an_upstream_401_is_the_operators_not_the_clients(gateway: Chatd) -> None:
    r = await gateway.http().post(
        "/v1/messages",
        json={"model": "sonnet-badkey", "max_tokens": 10, "messages": HI},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 502
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "badkey" in body["error"]["message"]
    assert r.headers["request-id"].startswith("req_")


async def test_an_overloaded_anthropic_channel_fails_over_to_a_chatchannel_toml(
    sdk: anthropic.AsyncAnthropic, claude: FakeAnthropic
) -> None:
    message = await sdk.messages.create(model="failover", max_tokens=10, messages=HI)
    assert message.content[0].type == "text" and message.content[0].text == "Hello"
    assert claude.calls["claude-529"] >= 1


async def test_a_field_a_chat_channel_cannot_carry_is_a_400_before_sending(
    gateway: Chatd, openai_upstream: Upstream
) -> None:
    before = openai_upstream.calls.get("ok", 0)
    r = await gateway.http().post(
        "/v1/messages",
        json={"model": "gpt", "max_tokens": 10, "messages": HI, "mcp_servers": [
            {"type": "url", "url": "https://mcp.example", "name": "x"}]},
    )  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert openai_upstream.calls.get("ok", 0) == before

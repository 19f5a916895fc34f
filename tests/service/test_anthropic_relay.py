"""The upstream transport to Anthropic channels (``api = "anthropic"``) against a fake
Anthropic upstream in a thread: ``MessagesWire`` (a Messages request relayed as it came:
allowed fields, model mapped, the channel's metadata and betas, the answer and the
events passed on with usage read and the end seen, an ``error`` event passed on
redacted) and ``ChatWire`` speaking Messages to such a channel (what it sends, and the
chat objects it reads back). Over HTTP with the SDKs: test_anthropic_channels.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from fakes.anthropic_upstream import LEAKY_ANTHROPIC, create_app
from openapi_schemas import assert_valid

from chatd.protocol.errors import APIError, ModelUnavailable, ServerError
from chatd.upstream.channels import Channel
from chatd.upstream.messages_wire import CountTokensWire, MessagesWire
from chatd.upstream.relay import UpstreamCall
from chatd.upstream.relay_policy import RelayPolicy, owner_tag
from chatd.upstream.upstream_errors import ChannelFailed
from chatd.upstream.wires import ChatWire

from .harness import serve_in_thread

PUBLIC = "pub"
BODY: dict[str, Any] = {
    "model": PUBLIC,
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Hi"}],
    "metadata": {"user_id": "alice"},
    "container": "cntr_1",
}
STREAM: dict[str, Any] = {**BODY, "stream": True}
CHAT: dict[str, Any] = {"model": PUBLIC, "messages": [{"role": "user", "content": "Hi"}]}


class Fake:
    def __init__(self, url: str, state: Any) -> None:
        self.url = url + "/v1"
        self.last: dict[str, Any] = state.last
        self.headers: dict[str, dict[str, str]] = state.headers
        self.calls: dict[str, int] = state.calls


@pytest.fixture(scope="module")
def fake() -> Iterator[Fake]:
    app = create_app()
    with serve_in_thread(app) as url:
        yield Fake(url, app.state)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def channel(url: str, upstream: str, **kw: Any) -> Channel:
    return Channel(f"a-{upstream}", url, {PUBLIC: upstream}, "sk-ant-test", api="anthropic", **kw)


def messages_call(
    order: list[Channel], body: dict[str, Any], session: aiohttp.ClientSession, **kw: Any
) -> tuple[UpstreamCall, MessagesWire]:
    wire = MessagesWire(PUBLIC, body, "key_1", **kw)
    return UpstreamCall(PUBLIC, order, {}, session, wire_for=lambda _: wire), wire


async def test_a_whole_message_passed_on(fake: Fake, session: aiohttp.ClientSession) -> None:
    relay = RelayPolicy(user="gw-{owner}")
    ok = channel(fake.url, "claude-ok", relay=relay)
    call, wire = messages_call([ok], BODY, session, betas=["context-management-2025-06-27"])
    answer = await call.result()
    assert answer["type"] == "message" and answer["model"] == PUBLIC
    assert answer["content"] == [{"type": "text", "text": "Hello"}]
    assert wire.usage == {
        "input_tokens": 7,
        "output_tokens": 2,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 1,
    }
    sent = fake.last["claude-ok"]
    tag = owner_tag("key_1", ok.key)
    assert sent == {
        "model": "claude-ok",
        "max_tokens": 100,
        "messages": BODY["messages"],
        "metadata": {"user_id": "gw-" + tag},  # the channel's pseudonym, not the client's
    }  # container: the operator's account, not sent by default
    headers = fake.headers["claude-ok"]
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"
    assert headers["anthropic-beta"] == "context-management-2025-06-27"
    assert "authorization" not in headers


async def test_a_stream_passed_on_until_message_stop(
    fake: Fake, session: aiohttp.ClientSession
) -> None:
    call, wire = messages_call([channel(fake.url, "claude-tools")], {**STREAM, "tools": [
        {"name": "weather", "input_schema": {"type": "object"}}]}, session)  # fmt: skip
    events = [e async for e in call.chunks()]
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["message_start", "ping"] and kinds[-2:] == [
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["model"] == PUBLIC
    assert wire.ended and not wire.failed
    assert wire.usage == {
        "input_tokens": 7,
        "output_tokens": 2,  # message_delta's final count
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 1,
    }
    pieces = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"
              and e["delta"]["type"] == "input_json_delta"]  # fmt: skip
    assert json.loads("".join(pieces)) == {"city": "Paris"}
    assert "anthropic-beta" not in fake.headers["claude-tools"]


async def test_an_error_event_ends_the_stream_redacted(
    fake: Fake, session: aiohttp.ClientSession
) -> None:
    ch = channel(fake.url, "claude-midfail")
    call, wire = messages_call([ch], STREAM, session)
    events = [e async for e in call.chunks()]
    assert events[-1]["type"] == "error" and wire.ended and wire.failed
    error = events[-1]["error"]
    assert error["type"] == "overloaded_error"
    assert "sk-ant-secret" not in error["message"] and "anthropic.internal" not in error["message"]
    assert LEAKY_ANTHROPIC.split(" at ")[0] in error["message"]
    assert ch.failures == 1


async def test_a_cut_stream_is_broken(fake: Fake, session: aiohttp.ClientSession) -> None:
    call, _ = messages_call([channel(fake.url, "claude-cut")], STREAM, session)
    with pytest.raises(ServerError, match="message_stop|broke off"):
        async for _ in call.chunks():
            pass


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_and_errors(
    fake: Fake, session: aiohttp.ClientSession, stream: bool
) -> None:
    body = STREAM if stream else BODY
    bad = [channel(fake.url, m) for m in ("claude-529", "claude-429", "claude-401")]
    ok = channel(fake.url, "claude-ok")
    call, _ = messages_call([*bad, ok], body, session)
    if stream:
        assert [e["type"] async for e in call.chunks()][-1] == "message_stop"
    else:
        assert (await call.result())["type"] == "message"
    assert call.channel is ok and [c.failures for c in bad] == [1, 1, 1]
    # the operator's key refused: a 502 naming the channel
    call, _ = messages_call([channel(fake.url, "claude-401")], body, session)
    with pytest.raises(ChannelFailed, match="`a-claude-401`"):
        await (anext(call.chunks()) if stream else call.result())
    # the client's fault: passed back, redacted, not failed over
    after = channel(fake.url, "claude-ok")
    call, _ = messages_call([channel(fake.url, "claude-400"), after], body, session)
    with pytest.raises(APIError) as e:
        await (anext(call.chunks()) if stream else call.result())
    assert not isinstance(e.value, ModelUnavailable) and e.value.status == 400
    assert e.value.type == "invalid_request_error" and "sk-ant-secret" not in e.value.message
    assert call.channel is None and after.failures == 0


async def test_a_messages_wire_speaks_only_to_anthropic_channels() -> None:
    wire = MessagesWire(PUBLIC, BODY)
    with pytest.raises(ServerError):
        wire.prepare(Channel("c", "http://x/v1", {PUBLIC: "m"}))


# --------------------------------------------------------------------------------------------
# ChatWire to an Anthropic channel
# --------------------------------------------------------------------------------------------


def chat_call(
    order: list[Channel], body: dict[str, Any], session: aiohttp.ClientSession
) -> UpstreamCall:
    return UpstreamCall(PUBLIC, order, body, session, owner="key_1")


async def test_chat_translated_whole(fake: Fake, session: aiohttp.ClientSession) -> None:
    ch = channel(fake.url, "claude-ok", relay=RelayPolicy(max_tokens=321, user="{owner}"))
    call = chat_call([ch], {**CHAT, "temperature": 0.2, "user": "alice", "seed": 1}, session)
    answer = await call.result()
    assert_valid("CreateChatCompletionResponse", answer)
    assert answer["model"] == PUBLIC and answer["choices"][0]["message"]["content"] == "Hello"
    assert call.usage == answer["usage"] and answer["usage"]["prompt_tokens"] == 11
    assert isinstance(call.wire, ChatWire)
    assert fake.last["claude-ok"] == {
        "model": "claude-ok",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 321,  # the channel's default: the client named none
        "temperature": 0.2,
        "metadata": {"user_id": owner_tag("key_1", ch.key)},
    }


async def test_chat_translated_stream(fake: Fake, session: aiohttp.ClientSession) -> None:
    ch = channel(fake.url, "claude-ok")
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = [c async for c in chat_call([ch], body, session).chunks()]
    for c in chunks:
        assert_valid("CreateChatCompletionStreamResponse", c)
        assert c["model"] == PUBLIC
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello" and chunks[-1]["usage"]["completion_tokens"] == 2
    assert "stream_options" not in fake.last["claude-ok"]
    # without include_usage, no usage chunk (but the usage is still read, for accounting)
    call = chat_call([ch], {**CHAT, "stream": True}, session)
    chunks = [c async for c in call.chunks()]
    assert all(c["choices"] for c in chunks) and call.usage is not None
    assert call.usage["prompt_tokens"] == 11


async def test_chat_error_event_raises_redacted(fake: Fake, session: aiohttp.ClientSession) -> None:
    ch = channel(fake.url, "claude-midfail")
    with pytest.raises(ServerError) as e:
        async for _ in chat_call([ch], {**CHAT, "stream": True}, session).chunks():
            pass
    assert "sk-ant-secret" not in e.value.message and e.value.code == "upstream_error"
    assert ch.failures == 1


async def test_a_chat_field_anthropic_cannot_keep_is_refused_before_sending(
    fake: Fake, session: aiohttp.ClientSession
) -> None:
    before = fake.calls.get("claude-ok", 0)
    call = chat_call([channel(fake.url, "claude-ok")], {**CHAT, "n": 2}, session)
    with pytest.raises(APIError) as e:
        await call.result()
    assert (e.value.status, e.value.param) == (400, "n")
    assert fake.calls.get("claude-ok", 0) == before


def test_only_beta_names_are_passed_on() -> None:
    wire = MessagesWire(PUBLIC, BODY, betas=["a-2025-01-01", " b ", "x\r\nEvil: 1", ""])
    wire.prepare(channel("http://x/v1", "m", relay=RelayPolicy(anthropic_betas=frozenset({"b"}))))
    assert wire.extra_headers == {"anthropic-beta": "b"}
    wire = MessagesWire(PUBLIC, BODY, betas=["a-2025-01-01", "x\r\nEvil: 1"])
    wire.prepare(channel("http://x/v1", "m"))
    assert wire.extra_headers == {"anthropic-beta": "a-2025-01-01"}


async def test_count_tokens_sends_only_the_prompt(
    fake: Fake, session: aiohttp.ClientSession
) -> None:
    body = {**BODY, "system": "S", "temperature": 0.5, "stream": True}
    wire = CountTokensWire(PUBLIC, body, "key_1", betas=["token-counting-2024-11-01"])
    ok = channel(fake.url, "claude-ok", relay=RelayPolicy(user="{owner}"))
    call = UpstreamCall(PUBLIC, [ok], {}, session, wire_for=lambda _: wire)
    answer = await call.result()
    assert answer == {"input_tokens": len(json.dumps(BODY["messages"]))}
    assert fake.last["count:claude-ok"] == {
        "model": "claude-ok",
        "messages": BODY["messages"],
        "system": "S",
    }
    assert fake.headers["count:claude-ok"]["anthropic-beta"] == "token-counting-2024-11-01"
    assert wire.usage is None
    call = UpstreamCall(
        PUBLIC, [channel(fake.url, "claude-401")], {}, session, wire_for=lambda _: wire
    )
    with pytest.raises(ChannelFailed):
        await call.result()

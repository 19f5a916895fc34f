"""The upstream transport speaking the Responses API (``UpstreamCall`` with a
``ResponsesWire``) against the fake upstream in a thread: whole answers and streams
passed on untouched, failover before the first event (a 500, a 429, a dead port, a
hung channel), a client-fault 400 passed back, a stream cut before its terminal event
as a ServerError, ``response.failed`` relayed; channels speaking different wires in one
call; and the chat wire, still the default, as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from openapi_schemas import assert_valid

from chatd.protocol.errors import APIError, ModelUnavailable, ServerError
from chatd.upstream.channels import Channel
from chatd.upstream.relay import UpstreamCall
from chatd.upstream.wires import ChatWire, ResponsesWire, Wire

from .harness import Upstream, fake_upstream

PUBLIC = "pub"
DEAD = "http://127.0.0.1:1/v1"
BODY: dict[str, Any] = {"model": PUBLIC, "input": "Hi", "max_output_tokens": 16}
STREAM: dict[str, Any] = {**BODY, "stream": True}
EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def fake() -> Iterator[Upstream]:
    with fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def channel(url: str, upstream_id: str, api: str = "responses", **kw: Any) -> Channel:
    return Channel(f"{api}-{upstream_id}", url, {PUBLIC: upstream_id}, api=api, **kw)


def responses_call(
    order: list[Channel], body: dict[str, Any], session: aiohttp.ClientSession
) -> UpstreamCall:
    wire = ResponsesWire(PUBLIC, body)
    return UpstreamCall(PUBLIC, order, body, session, wire_for=lambda _: wire)


async def test_whole_answer_passed_on_untouched(
    fake: Upstream, session: aiohttp.ClientSession
) -> None:
    ok = channel(fake.url + "/v1", "ok")
    call = responses_call([ok], BODY, session)
    answer = await call.result()
    assert_valid("Response", answer)
    assert answer["status"] == "completed" and answer["model"] == "upstream-model"
    assert answer["output"][0]["content"][0]["text"] == "Hello"
    assert call.usage is not None and call.usage["input_tokens"] == 7
    assert call.channel is ok and isinstance(call.wire, ResponsesWire)
    # only the model mapped, and nothing stored upstream
    assert fake.last["responses:ok"] == {**BODY, "model": "ok", "store": False}


async def test_stream_events_until_the_terminal_one(
    fake: Upstream, session: aiohttp.ClientSession
) -> None:
    call = responses_call([channel(fake.url + "/v1", "ok")], STREAM, session)
    events = [e async for e in call.chunks()]
    assert [e["type"] for e in events] == EVENTS
    for e in events:
        assert_valid("ResponseStreamEvent", e)
    assert [e["sequence_number"] for e in events] == list(range(len(EVENTS)))
    assert "".join(e["delta"] for e in events if "delta" in e) == "Hello"
    assert events[-1]["response"]["model"] == "upstream-model"  # not rewritten here
    assert call.usage == events[-1]["response"]["usage"]
    # no stream_options added; nothing stored upstream
    assert fake.last["responses:ok"] == {**STREAM, "model": "ok", "store": False}


@pytest.mark.parametrize("stream", [False, True])
async def test_failover_before_the_first_event(
    fake: Upstream, session: aiohttp.ClientSession, stream: bool
) -> None:
    url = fake.url + "/v1"
    hang = channel(url, "hang", first_token_timeout=0.5, read_timeout=0.5)
    failing = [channel(url, "500"), channel(url, "429"), channel(DEAD, "x"), hang]
    ok = channel(url, "ok")
    call = responses_call([*failing, ok], STREAM if stream else BODY, session)
    if stream:
        types = [e["type"] async for e in call.chunks()]
        assert types == EVENTS
    else:
        assert (await call.result())["status"] == "completed"
    assert call.channel is ok
    assert [c.failures for c in failing] == [1, 1, 1, 1] and ok.failures == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_no_channel_answers(
    fake: Upstream, session: aiohttp.ClientSession, stream: bool
) -> None:
    call = responses_call([channel(fake.url + "/v1", "500")], STREAM if stream else BODY, session)
    with pytest.raises(ModelUnavailable, match="HTTP 500"):
        if stream:
            await anext(call.chunks())
        else:
            await call.result()


async def test_a_client_fault_is_passed_back_not_retried(
    fake: Upstream, session: aiohttp.ClientSession
) -> None:
    url = fake.url + "/v1"
    after = channel(url, "ok")
    before = fake.calls.get("responses:ok", 0)
    call = responses_call([channel(url, "400"), after], STREAM, session)
    with pytest.raises(APIError) as e:
        await anext(call.chunks())
    assert (e.value.status, e.value.param) == (400, "foo")
    assert fake.calls.get("responses:ok", 0) == before


async def test_a_stream_cut_before_its_terminal_event_is_an_error(
    fake: Upstream, session: aiohttp.ClientSession
) -> None:
    url = fake.url + "/v1"
    call = responses_call([channel(url, "cut"), channel(url, "ok")], STREAM, session)
    seen: list[str] = []
    with pytest.raises(ServerError, match="without a terminal event|broke off"):
        async for e in call.chunks():
            seen.append(e["type"])
    assert seen[-1] == "response.output_text.delta"  # bytes were sent: no failover
    assert fake.calls.get("responses:cut", 0) >= 1


async def test_response_failed_is_relayed_as_the_last_event(
    fake: Upstream, session: aiohttp.ClientSession
) -> None:
    call = responses_call([channel(fake.url + "/v1", "failed")], STREAM, session)
    events = [e async for e in call.chunks()]
    assert events[-1]["type"] == "response.failed"
    for e in events:
        assert_valid("ResponseStreamEvent", e)
    whole = await responses_call([channel(fake.url + "/v1", "failed")], BODY, session).result()
    assert whole["status"] == "failed"
    assert_valid("Response", whole)


async def test_each_channel_spoken_to_in_its_own_api(
    fake: Upstream, session: aiohttp.ClientSession
) -> None:
    """A chat-only channel gets the (here: given) chat body on /chat/completions, a
    Responses channel the Responses body; the caller learns which one answered."""
    url = fake.url + "/v1"
    chat_body = {"model": PUBLIC, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    responses = ResponsesWire(PUBLIC, STREAM)

    def wire_for(c: Channel) -> Wire:
        return responses if c.api == "responses" else ChatWire(PUBLIC, chat_body)

    chat_500 = channel(url, "500", api="chat")
    call = UpstreamCall(PUBLIC, [chat_500, channel(url, "ok")], {}, session, wire_for=wire_for)
    assert [e["type"] async for e in call.chunks()] == EVENTS
    assert call.wire is responses and chat_500.failures == 1

    call = UpstreamCall(PUBLIC, [channel(url, "ok", api="chat")], {}, session, wire_for=wire_for)
    chunks = [c async for c in call.chunks()]
    assert isinstance(call.wire, ChatWire)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello"
    assert call.usage == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


async def test_the_chat_wire_is_still_the_default(
    fake: Upstream, session: aiohttp.ClientSession
) -> None:
    url = fake.url + "/v1"
    body = {"model": PUBLIC, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    order = [channel(url, "500", "chat"), channel(url, "ok", "chat")]
    call = UpstreamCall(PUBLIC, order, body, session, "chatcmpl-own")
    chunks = [c async for c in call.chunks()]
    assert {(c["model"], c["id"]) for c in chunks} == {(PUBLIC, "chatcmpl-own")}
    assert all("usage" not in c for c in chunks)  # asked for accounting, not passed on
    assert call.usage is not None and call.usage["total_tokens"] == 9
    assert fake.last["ok"]["stream_options"] == {"include_usage": True}
    cut = UpstreamCall(PUBLIC, [channel(url, "cut", "chat")], body, session)
    with pytest.raises(ServerError, match=r"without \[DONE\]|broke off"):
        async for _ in cut.chunks():
            pass

"""``/v1/responses`` for models served by channels, in-process over the real app and the
fake upstream on a real port: relayed to a channel that speaks the Responses API
(``api = "responses"``), translated to Chat Completions and back for one that does not,
failover between the two, and the same state (stored responses, ``previous_response_id``
chains kept by chatd), usage and validity on every path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openapi_schemas import assert_valid

from .harness import MODEL, Chatd, Upstream, fake_upstream, running_chatd

URL = "/v1/responses"


@pytest.fixture(scope="module")
def fake() -> Iterator[Upstream]:
    with fake_upstream() as upstream:
        yield upstream


def _channel(name: str, url: str, model: str, upstream: str, api: str, priority: int = 0) -> str:
    return (
        f'[[channels]]\nname = "{name}"\nbase_url = "{url}"\napi = "{api}"\n'
        f'models = [{{id = "{model}", upstream = "{upstream}"}}]\npriority = {priority}\n'
    )


@pytest.fixture(scope="module")
async def gateway(fake: Upstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    url = fake.url + "/v1"
    toml = "".join(
        [
            f'[[models]]\nid = "{MODEL}"\npath = "embedded"\naliases = ["rfallback"]\n'
            "priority = 1\n",
            _channel("dead", "http://127.0.0.1:1/v1", "rfallback", "x", "responses"),
            _channel("native", url, "via-responses", "ok", "responses"),
            _channel("chat", url, "via-chat", "ok", "chat"),
            _channel("down", url, "failover", "500", "responses", 0),
            _channel("backup", url, "failover", "ok", "chat", 1),
            _channel("cut", url, "broken", "cut", "chat"),
        ]
    )
    async with running_chatd(tmp_path_factory.mktemp("rgw"), config=toml) as c:
        yield c


@pytest.fixture(scope="module")
def http(gateway: Chatd) -> httpx.AsyncClient:
    return gateway.http()


@pytest.fixture(scope="module")
def client(gateway: Chatd) -> openai.AsyncOpenAI:
    return gateway.sdk()


async def stream_events(http: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with http.stream("POST", URL, json={**body, "stream": True}) as r:
        assert r.status_code == 200, await r.aread()
        text = (await r.aread()).decode()
    events = [
        json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data:")
    ]
    for e in events:
        assert_valid("ResponseStreamEvent", e)
    return events


@pytest.mark.parametrize("model", ["via-responses", "via-chat"])
async def test_whole_response(client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.responses.with_raw_response.create(
        model=model, input="Hi", instructions="Be kind."
    )
    assert_valid("Response", json.loads(raw.text))
    r = raw.parse()
    assert r.output_text == "Hello"
    assert r.model == model and r.id.startswith("resp_") and r.store is True
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (7, 2)
    again = await client.responses.retrieve(r.id)
    assert again.output_text == "Hello" and again.id == r.id


async def test_responses_channel_gets_the_whole_conversation(
    client: openai.AsyncOpenAI, fake: Upstream
) -> None:
    first = await client.responses.create(model="via-responses", input="first", metadata={"a": "b"})
    second = await client.responses.create(
        model="via-responses", input="second", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    sent = fake.last["responses:ok"]
    assert sent["store"] is False and "previous_response_id" not in sent
    assert "metadata" not in sent
    texts = [item["content"] for item in sent["input"]]
    assert texts[0] == [{"type": "input_text", "text": "first"}]
    assert texts[-1] == [{"type": "input_text", "text": "second"}]
    assert sent["input"][1]["role"] == "assistant"
    assert all("id" not in item for item in sent["input"])
    assert first.metadata == {"a": "b"}


async def test_chat_channel_gets_messages(client: openai.AsyncOpenAI, fake: Upstream) -> None:
    first = await client.responses.create(model="via-chat", input="first")
    await client.responses.create(
        model="via-chat", input="second", instructions="SYS", previous_response_id=first.id
    )
    sent = fake.last["ok"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "SYS"
    assert "store" not in sent and "previous_response_id" not in sent


@pytest.mark.parametrize("model", ["via-responses", "via-chat"])
async def test_stream(http: httpx.AsyncClient, model: str) -> None:
    events = await stream_events(http, {"model": model, "input": "Hi"})
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Hello"
    final = events[-1]["response"]
    assert final["model"] == model and final["usage"]["input_tokens"] == 7
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1  # chatd's id on every event
    got = await http.get(f"{URL}/{final['id']}")  # stored before the final event
    assert got.status_code == 200 and got.json()["output"] == final["output"]


async def test_failover_from_responses_to_chat(client: openai.AsyncOpenAI, fake: Upstream) -> None:
    before = fake.calls.get("responses:500", 0)
    r = await client.responses.create(model="failover", input="Hi")
    assert r.output_text == "Hello"
    assert fake.calls["responses:500"] == before + 1


async def test_broken_stream_is_a_failed_response(http: httpx.AsyncClient) -> None:
    events = await stream_events(http, {"model": "broken", "input": "Hi"})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"


async def test_local_refusals_do_not_apply_to_channels(
    client: openai.AsyncOpenAI, fake: Upstream
) -> None:
    """The upstream decides what it supports: reasoning reaches it."""
    await client.responses.create(model="via-responses", input="Hi", reasoning={"effort": "low"})
    assert fake.last["responses:ok"]["reasoning"] == {"effort": "low"}


async def test_untranslatable_is_refused_before_sending(http: httpx.AsyncClient) -> None:
    resp = await http.post(
        URL, json={"model": "via-chat", "input": "Hi", "tools": [{"type": "web_search"}]}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "tools[0]"


@pytest.mark.parametrize("stream", [False, True])
async def test_dead_channel_falls_back_to_the_local_engine(
    http: httpx.AsyncClient, stream: bool
) -> None:
    body = {"model": "rfallback", "input": "Hi"}
    if stream:
        events = await stream_events(http, body)
        final = events[-1]["response"]
    else:
        resp = await http.post(URL, json=body)
        assert resp.status_code == 200, resp.text
        final = resp.json()
    assert final["status"] == "completed" and final["model"] == "rfallback"
    assert final["output"][0]["content"][0]["text"] == "Hello! How can I help you today?"

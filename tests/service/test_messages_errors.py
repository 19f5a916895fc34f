"""Every refusal on the Messages API's paths in Anthropic's shape: ``{"type": "error",
"error": {"type", "message"}, "request_id"}`` with Anthropic's status and type, whoever
refuses (the contract, the capabilities, auth, the router, the body reader, the rate and
in-flight limits, the engine's queue, the drain, the origin check, an unexpected
failure), and the ``request-id`` header. In-process, FakeEngine; the anthropic SDK where
it can send the request, raw httpx where it cannot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from fakes.engine import FakeEngine

from chatd.api.origins import BrowserPolicy
from chatd.protocol.request_limits import Limits
from chatd.service.quotas import Quotas

from .harness import API_KEY, MODEL, Chatd, running_chatd

URL = "/v1/messages"
HI = [{"role": "user", "content": "Hi!"}]
TOOL = {"name": "f", "input_schema": {"type": "object", "properties": {}}}
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    async with running_chatd(tmp_path_factory.mktemp("messages_errors")) as c:
        yield c


@pytest.fixture(scope="module")
def http(chatd: Chatd) -> httpx.AsyncClient:
    c = chatd.http(None)
    c.headers.update({"x-api-key": API_KEY, "anthropic-version": "2023-06-01"})
    return c


def check(r: httpx.Response, status: int, kind: str, message: str | None = None) -> str:
    """Anthropic's error body and headers; returns the message."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind, body
    assert body["request_id"] == r.headers["request-id"] == r.headers["x-request-id"]
    if message is not None:
        assert body["error"]["message"] == message, body
    return body["error"]["message"]


def msg(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 10, "messages": HI, **fields}


# --- the contract --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": HI}, "max_tokens: Field required"),
        (msg(foo=1), "foo: Extra inputs are not permitted"),
        (msg(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
        (msg(messages=[{"role": "user", "content": [{"type": "text"}]}]),
         "messages.0.content.0.text.text: Field required"),
        (msg(messages=[{"role": "tool", "content": "x"}]),
         "messages.0.role: Input should be 'user', 'assistant' or 'system'"),
        (msg(messages=[{"role": "user", "content": [{"type": "text", "text": "x", "x": 1}]}]),
         "messages.0.content.0.text.x: Extra inputs are not permitted"),
        (msg(temperature=2), "temperature: Input should be less than or equal to 1"),
        (msg(tools=[{"name": "f"}]), "tools.0.input_schema: Field required"),
    ],
)  # fmt: skip
async def test_a_bad_field_is_anthropics_400_naming_it(
    http: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    check(await http.post(URL, json=body), 400, "invalid_request_error", message)


async def test_invalid_json_and_a_non_object(http: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    check(await http.post(URL, content=b"{", headers=headers), 400, "invalid_request_error")
    check(await http.post(URL, json=[1]), 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, IMAGE]}]},
         "messages.0.content.1: 'image' blocks"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {
            "type": "text", "media_type": "text/plain", "data": "x"}}]}]},
         "messages.0.content.0: 'document' blocks"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking: "),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}],
          "tool_choice": {"type": "tool", "name": "web_search"}},
         "tool_choice: forcing the server tool 'web_search'"),
        ({"tool_choice": {"type": "any"}}, "tool_choice: 'any' requires"),
        ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "g"}},
         "tool_choice: Tool 'g' not found"),
        ({"mcp_servers": [{"type": "url", "url": "https://x.example", "name": "x"}]},
         "mcp_servers: "),
        ({"messages": [*HI, {"role": "assistant", "content": "Sure"}]},
         "messages.1: This model does not support assistant message prefill"),
        ({"messages": [*HI, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": "go on"}]},
         "messages.1: `tool_use` ids were found without `tool_result` blocks"),
        ({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]},
         "messages.0.content.0: unexpected `tool_use_id`"),
        ({"messages": []}, "messages: at least one message is required"),
    ],
)  # fmt: skip
async def test_what_the_local_model_cannot_do_is_a_400_naming_it(
    chatd: Chatd, http: httpx.AsyncClient, fields: dict[str, Any], named: str
) -> None:
    submitted = len(chatd.engine.submitted)
    message = check(await http.post(URL, json=msg(**fields)), 400, "invalid_request_error")
    assert message.startswith(named), message
    assert len(chatd.engine.submitted) == submitted


async def test_a_prompt_longer_than_the_context_is_anthropics_400(
    chatd: Chatd, client: anthropic.AsyncAnthropic
) -> None:
    long = " ".join(["word"] * (chatd.engine.context_window + 10))
    with pytest.raises(anthropic.BadRequestError) as e:
        await client.messages.create(
            model=MODEL, max_tokens=32000, messages=[{"role": "user", "content": long}]
        )
    counted = await client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": long}]
    )
    window = chatd.engine.context_window
    assert e.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": f"prompt is too long: {counted.input_tokens} tokens > {window - 1} maximum",
    }


@pytest.fixture(scope="module")
def client(chatd: Chatd) -> anthropic.AsyncAnthropic:
    return chatd.anthropic()


# --- who is asking, and for what -----------------------------------------------------------


async def test_a_wrong_or_missing_key_is_an_authentication_error(chatd: Chatd) -> None:
    with pytest.raises(anthropic.AuthenticationError) as e:
        await chatd.anthropic("sk-wrong-key-123456").messages.create(
            model=MODEL, max_tokens=5, messages=HI
        )
    assert e.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    bare = chatd.http(None)
    check(await bare.post(URL, json=msg()), 401, "authentication_error")
    check(await bare.post(URL + "/count_tokens", json=msg()), 401, "authentication_error")


async def test_an_unknown_model_is_not_found(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as e:
        await client.messages.create(model="claude-nope", max_tokens=5, messages=HI)
    assert e.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "claude-nope" in e.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(model="claude-nope", messages=HI)


async def test_http_level_refusals_are_anthropics_too(http: httpx.AsyncClient) -> None:
    check(await http.post(URL, content=b"{}", headers={"content-type": "text/plain"}),
          415, "invalid_request_error")  # fmt: skip
    check(await http.get(URL), 405, "invalid_request_error")
    check(await http.post(URL + "/batches", json={}), 404, "not_found_error")


async def test_an_unexpected_failure_is_an_api_error(
    chatd: Chatd, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(chatd.app.state.services.messages, "start", boom)
    message = check(await http.post(URL, json=msg()), 500, "api_error")
    assert "a bug" not in message


async def test_a_full_queue_is_529_overloaded(chatd: Chatd, http: httpx.AsyncClient) -> None:
    chatd.engine.queue_full = True
    try:
        r = await http.post(URL, json=msg())
    finally:
        chatd.engine.queue_full = False
    check(r, 529, "overloaded_error")
    assert r.headers["retry-after"] == "1"


# --- limits, the drain, browsers: their own servers ----------------------------------------


async def test_a_body_too_large_is_request_too_large(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=Limits(max_body_bytes=500)) as c:
        body = msg(messages=[{"role": "user", "content": "x" * 1000}])
        r = await c.http(None).post(URL, json=body, headers={"x-api-key": API_KEY})
        check(r, 413, "request_too_large")


async def test_too_many_in_flight_is_a_rate_limit_error(tmp_path: Path) -> None:
    engine = FakeEngine()
    gate = engine.hold("HOLD")
    quotas = Quotas(max_in_flight_per_key=1)
    async with running_chatd(tmp_path, engine, quotas=quotas) as c:
        http = c.http(None)
        http.headers["x-api-key"] = API_KEY
        held = msg(messages=[{"role": "user", "content": "HOLD"}])
        first = asyncio.create_task(http.post(URL, json=held))
        deadline = time.monotonic() + 120
        while not engine.in_flight:
            assert time.monotonic() < deadline, "the first request never started"
            await asyncio.sleep(0.005)
        r = await http.post(URL, json=msg())
        gate.set()
        assert (await first).status_code == 200
        check(r, 429, "rate_limit_error")


async def test_the_drain_refuses_in_anthropics_shape(tmp_path: Path) -> None:
    async with running_chatd(tmp_path) as c:
        c.app.state.services.drain.begin()
        r = await c.http(None).post(URL, json=msg(), headers={"x-api-key": API_KEY})
        check(r, 503, "overloaded_error")
        assert r.headers["retry-after"] == "5"


async def test_a_page_of_another_origin_is_a_permission_error(tmp_path: Path) -> None:
    policy = BrowserPolicy.build([], ())
    async with running_chatd(tmp_path, api_keys=[], browsers=policy) as c:
        headers = {"Host": "127.0.0.1:8080", "Origin": "http://evil.example"}
        r = await c.http(None).post(URL, json=msg(), headers=headers)
        check(r, 403, "permission_error")
        r = await c.http(None).post(URL, json=msg(), headers={"Host": "evil.example"})
        check(r, 400, "invalid_request_error")  # a Host not allowed (DNS rebinding)


@pytest.mark.parametrize(
    "content_type", ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None]
)
@pytest.mark.parametrize("path", [URL, URL + "/count_tokens"])
async def test_a_body_not_declared_as_json_is_refused(
    chatd: Chatd, http: httpx.AsyncClient, path: str, content_type: str | None
) -> None:
    """A web page may send these without asking the server first (a CORS "simple
    request"): never read as JSON, never run (docs/security.md)."""
    submitted = len(chatd.engine.submitted)
    request = http.build_request("POST", path, content=b'{"model": "x"}')
    if content_type is None:
        request.headers.pop("content-type", None)
    else:
        request.headers["content-type"] = content_type
    message = check(await http.send(request), 415, "invalid_request_error")
    assert "application/json" in message
    assert len(chatd.engine.submitted) == submitted

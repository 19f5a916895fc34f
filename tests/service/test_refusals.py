"""Authentication, routing, the context window and overload, in-process over the real
app: OpenAI's error shapes and statuses, before any byte of a stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes.engine import FakeEngine

from .checks import HI, URL, body, check_error, check_ok
from .harness import API_KEY, MODEL, Chatd, running_chatd

# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------

AUTH_ROUTES = [("POST", URL), ("GET", "/v1/models"), ("GET", f"/v1/models/{MODEL}")]


@pytest.mark.parametrize(("method", "path"), AUTH_ROUTES)
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, None, id="no-header"),
        pytest.param({"Authorization": ""}, None, id="empty-header"),
        pytest.param({"Authorization": "Bearer"}, None, id="bearer-no-key"),
        pytest.param({"Authorization": f"Basic {API_KEY}"}, None, id="basic-scheme"),
        pytest.param(
            {"Authorization": "Bearer sk-wrong-key-000000"}, "invalid_api_key", id="wrong"
        ),
        pytest.param({"Authorization": f"Bearer {API_KEY}x"}, "invalid_api_key", id="key-plus-x"),
    ],
)
async def test_auth_refused(
    chatd: Chatd, method: str, path: str, headers: dict[str, str], code: str | None
) -> None:
    resp = await chatd.http(None).request(
        method, path, json=body() if method == "POST" else None, headers=headers
    )
    err = check_error(resp, 401, param=None, code=code)
    if code is None:
        assert "You didn't provide an API key" in err["message"], err
    else:
        assert err["message"].startswith("Incorrect API key provided: "), err
        assert API_KEY not in err["message"] and "wrong-key" not in err["message"], err


async def test_auth_checked_before_body(chatd: Chatd) -> None:
    """A client without a key learns nothing about its request."""
    resp = await chatd.http("x").post(URL, content=b"{nope")
    check_error(resp, 401, param=None, code="invalid_api_key")


async def test_auth_via_sdk(chatd: Chatd) -> None:
    bad = chatd.sdk("sk-wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        await bad.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()


async def test_health_needs_no_key(chatd: Chatd) -> None:
    resp = await chatd.http(None).get("/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("POST", "/v1/edits"),  # a retired OpenAI route
        ("GET", "/playground/nope.js"),
        ("POST", "/v2/chat"),
    ],
)
async def test_unknown_route(http: httpx.AsyncClient, method: str, path: str) -> None:
    resp = await http.request(method, path)
    check_error(resp, 404, param=None, code=None, contains=(path,))


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", URL), ("PATCH", URL), ("DELETE", "/v1/models"), ("POST", "/v1/models")],
)
async def test_wrong_method(http: httpx.AsyncClient, method: str, path: str) -> None:
    resp = await http.request(method, path)
    check_error(resp, 405, param=None, code=None, contains=(method, path))


# --------------------------------------------------------------------------------------------
# Context window (8192 tokens per request)
# --------------------------------------------------------------------------------------------

LONG = [{"role": "user", "content": "hello " * 9000}]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"messages": LONG}, id="long-prompt"),
        pytest.param({"messages": LONG, "max_tokens": None}, id="long-prompt-no-max"),
        pytest.param({"max_tokens": 9000}, id="max-tokens-9000"),
        pytest.param({"max_tokens": None, "max_completion_tokens": 8192}, id="mct-8192"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_context_length_exceeded(
    http: httpx.AsyncClient, fields: dict[str, Any], stream: bool
) -> None:
    payload = {k: v for k, v in body(**fields).items() if v is not None}
    if stream:
        payload["stream"] = True
    resp = await http.post(URL, json=payload)
    assert "text/event-stream" not in resp.headers.get("content-type", "")
    assert b"data:" not in resp.content
    check_error(
        resp,
        400,
        param="messages",
        code="context_length_exceeded",
        contains=("maximum context length is 8192 tokens",),
    )


async def test_context_length_exceeded_via_sdk(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=1, stream=True)  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"


# --------------------------------------------------------------------------------------------
# Overload
# --------------------------------------------------------------------------------------------


async def test_overloaded(tmp_path: Path) -> None:
    """A full engine queue (what ``--max-waiting 1 --max-sequences 1`` gives: one running
    and one waiting request) refuses the rest of a burst with 503 + Retry-After."""
    engine = FakeEngine("one two three four five six seven eight", step_delay=0.005)
    engine.max_in_flight = 2
    async with running_chatd(tmp_path, engine) as app:
        http = app.http()
        payload = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count from one to fifty."}],
            "max_tokens": 32,
            "temperature": 0,
        }
        responses = await asyncio.gather(*[http.post(URL, json=payload) for _ in range(6)])
        statuses = [r.status_code for r in responses]
        assert 503 in statuses, statuses
        assert 200 in statuses, statuses
        for resp in responses:
            if resp.status_code == 503:
                assert int(resp.headers["Retry-After"]) >= 1, resp.headers
                check_error(resp, 503, param=None, code="server_overloaded", type="server_error")
            else:
                data = check_ok(resp)
                assert data["choices"][0]["message"]["content"], data
                assert data["usage"]["completion_tokens"] >= 1, data
        # The queue drains: a new request after the burst is served.
        check_ok(await http.post(URL, json=body()))

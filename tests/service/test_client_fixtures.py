"""Real clients' requests, captured once (tests/fixtures/), replayed as sent (our key in
Authorization) over the in-process app: the Vercel AI SDK's three (a streamed text, a
forced tool call, the call's output sent back: tests/clients/ai_sdk_stream.mjs) and the
OpenAI Agents SDK's three of a handoff run (tests/e2e/test_agents.py). Each is a 200 with
a well-formed answer (every stream event valid against the spec, a whole response
valid too), never a 400 the client would stumble on. The clients themselves run
against the real model in tests/e2e/ (test_ai_sdk.py, test_agents.py); Codex's captured
request is replayed by the tests of Responses field acceptance (issue 22)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.engine import Call, FakeEngine
from openapi_schemas import assert_valid
from sse import response_events

from .harness import API_KEY, Chatd, running_chatd

FIXTURES = Path(__file__).parents[1] / "fixtures"
ARGUMENTS = {"get_weather": {"city": "Paris"}, "transfer_to_weather": {}}


def script(call: Call) -> str:
    """Where the tool grammar requires a call (``tool_choice`` required or a named
    function), a call of the function it allows; otherwise (no tools, ``none``, or
    ``auto``: text allowed) a short text."""
    grammar = call.params.grammar
    if grammar is None or "start: calls | text" in grammar.source:
        return "It is sunny in Paris."
    name = next(n for n in ARGUMENTS if json.dumps(n) in grammar.source)
    payload = json.dumps({"name": name, "arguments": ARGUMENTS[name]}, separators=(",", ":"))
    return f"<tool_call>\n{payload}\n</tool_call>"


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    async with running_chatd(tmp_path_factory.mktemp("clients"), FakeEngine(script)) as c:
        yield c


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def replayed(request: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """Its headers with our key, and its body as bytes."""
    headers = {**request["headers"], "authorization": f"Bearer {API_KEY}"}
    return headers, json.dumps(request["body"]).encode()


async def send(http: httpx.AsyncClient, request: dict[str, Any]) -> dict[str, Any]:
    """The request as captured; its answer checked: a 200, a whole response valid
    against the spec, or a stream of valid events ending ``response.completed``, whose
    response is returned."""
    headers, body = replayed(request)
    assert request["method"] == "POST"
    if not request["body"].get("stream"):
        r = await http.post(request["path"], headers=headers, content=body)
        assert r.status_code == 200, r.text
        assert_valid("Response", r.json())
        return r.json()
    async with http.stream("POST", request["path"], headers=headers, content=body) as r:
        text = (await r.aread()).decode()
        assert r.status_code == 200, text
        assert r.headers["content-type"].startswith("text/event-stream")
    events = response_events(text)
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    return events[-1]["response"]


def text_of(response: dict[str, Any]) -> str:
    """Its messages' ``output_text`` parts, joined (the SDKs' ``output_text``)."""
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


AI_SDK = ["ai_sdk_request_text.json", "ai_sdk_request_tool.json", "ai_sdk_request_tool_output.json"]


@pytest.mark.parametrize("name", AI_SDK)
async def test_the_ai_sdks_requests_are_answered(chatd: Chatd, name: str) -> None:
    """A text, a call of the forced tool (``tool_choice`` a named function), and, given
    the call and its output back, a text; each streamed as the AI SDK asked."""
    fx = fixture(name)
    response = await send(chatd.http(key=None), fx)
    kinds = [item["type"] for item in response["output"]]
    if name == "ai_sdk_request_tool.json":
        assert kinds == ["function_call"]
        assert response["output"][0]["name"] == "get_weather"
        assert json.loads(response["output"][0]["arguments"]) == {"city": "Paris"}
    else:
        assert kinds == ["message"] and text_of(response)
    assert response["tool_choice"] == fx["body"].get("tool_choice", "auto")


async def test_the_agents_sdks_handoff_run_is_answered(chatd: Chatd) -> None:
    """The handoff (``transfer_to_weather``, forced), the weather agent's required tool
    call with the handoff's call and output in its input, then its answer with both
    calls and outputs: a function call, a function call, a text."""
    requests = fixture("agents_sdk_request.json")["requests"]
    assert len(requests) == 3
    http = chatd.http(key=None)
    outputs = [await send(http, request) for request in requests]
    first, second, third = ([item["type"] for item in r["output"]] for r in outputs)
    assert first == ["function_call"] and outputs[0]["output"][0]["name"] == "transfer_to_weather"
    assert second == ["function_call"] and outputs[1]["output"][0]["name"] == "get_weather"
    assert third == ["message"] and text_of(outputs[2])

"""Codex CLI's first turn, replayed byte for byte (tests/fixtures/codex_request.json:
Codex 0.171.0 with a custom provider, ``wire_api = "responses"``), in-process over the real
app: it is answered (200, a well-formed event stream ending ``response.completed``), with
everything Codex sends accepted for what it means (docs/acceptance.md): ``client_metadata``,
``prompt_cache_key``, ``store: false``, developer messages with client ids, the
``multi_agent_v1`` namespace offered as qualified names, ``web_search`` not run (said in
a header), ``reasoning`` and ``include`` with no reasoning item."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.engine import Call, FakeEngine
from sse import response_events

from .harness import MODEL, Chatd, running_chatd

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "codex_request.json"
SPAWN = (
    '<tool_call>\n{"name":"multi_agent_v1.spawn_agent","arguments":{"message":"hi"}}\n</tool_call>'
)


def _fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def script(call: Call) -> str:
    """Codex's first turn says hello; told to, the model spawns an agent."""
    if "SPAWN NOW" in call.prompt:
        return SPAWN
    return "Hello! How can I help?"


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    async with running_chatd(tmp_path_factory.mktemp("codex"), FakeEngine(script)) as c:
        yield c


async def replay(http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[httpx.Response, str]:
    fixture = _fixture()
    assert fixture["method"] == "POST" and fixture["path"] == "/v1/responses"
    async with http.stream(
        "POST", fixture["path"], content=json.dumps(body).encode(), headers=fixture["headers"]
    ) as r:
        text = (await r.aread()).decode()
    return r, text


def test_the_fixture_is_codex_first_turn() -> None:
    body = _fixture()["body"]
    assert body["model"] == MODEL and body["stream"] is True and body["store"] is False
    assert {"client_metadata", "prompt_cache_key", "reasoning", "include"} <= set(body)
    assert "max_output_tokens" not in body
    kinds = [t["type"] for t in body["tools"]]
    assert "namespace" in kinds and "web_search" in kinds


async def test_codex_first_turn_is_answered(chatd: Chatd, http: httpx.AsyncClient) -> None:
    r, text = await replay(http, _fixture()["body"])
    assert r.status_code == 200, text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-chatd-tools-not-run"] == "web_search"
    events = response_events(text)  # each event valid, numbered without a gap
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    final = events[-1]
    assert final["type"] == "response.completed"
    response = final["response"]
    assert (
        response["store"] is False
        and response["prompt_cache_key"] == _fixture()["body"]["prompt_cache_key"]
    )
    assert "client_metadata" not in response
    assert [i["type"] for i in response["output"]] == ["message"]  # no reasoning item
    assert response["output"][0]["content"][0]["text"] == "Hello! How can I help?"
    prompt = chatd.engine.last_prompt_text
    assert "multi_agent_v1.spawn_agent" in prompt and "exec_command" in prompt
    assert "web_search" not in prompt.split("<tools>")[-1].split("</tools>")[0]


async def test_codex_namespace_call_comes_back_as_codex_reads_it(http: httpx.AsyncClient) -> None:
    """The call of a namespace's member is a ``function_call`` with the member's ``name``
    and the ``namespace``: Codex builds its tool name from both (ToolName::new)."""
    body = _fixture()["body"]
    body["input"] = [*body["input"], {"role": "user", "content": "SPAWN NOW"}]
    r, text = await replay(http, body)
    assert r.status_code == 200, text
    events = response_events(text)
    (added,) = [e for e in events if e["type"] == "response.output_item.added"]
    assert added["item"]["type"] == "function_call"
    (done,) = [e for e in events if e["type"] == "response.output_item.done"]
    item = done["item"]
    assert (item["name"], item["namespace"]) == ("spawn_agent", "multi_agent_v1")
    assert json.loads(item["arguments"]) == {"message": "hi"}
    assert events[-1]["type"] == "response.completed"

"""Codex CLI's first turn (tests/fixtures/codex_request.json) replayed against a real
``chatd serve`` on the embedded model: the whole request as Codex sends it (its headers,
``client_metadata``, the ``multi_agent_v1`` namespace, ``web_search``, ``reasoning``,
``include``), answered with a completed response. The fixture sets no
``max_output_tokens``; 16 is added, so the test pays for the prefill and little else.

The prompt is ~9.2k tokens with SmolLM2's tokenizer (Codex's ~6.5k is counted with
OpenAI's), past the embedded model's 8,192-token window: the default server answers it
with an honest 400 ``context_length_exceeded`` (checked here too), so the replay runs on a
server of this module's whose window is stretched to 12k (YaRN, as tests/conftest.py's
32k one: the smaller cache is cheaper), with no request timeout: prefilling 9.2k tokens
took longer than the default 600 s on a machine shared by many test runs, and how long it
takes is no part of what this test checks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import API_KEY, Server
from sse import response_events

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "codex_request.json"
WINDOW_12K = ("--n-ctx", "12288", "--context-window", "12288", "--rope-scaling", "yarn")


def replay(base_url: str) -> tuple[httpx.Response, str]:
    fixture: dict[str, Any] = json.loads(FIXTURE.read_text())
    body = fixture["body"]
    assert "max_output_tokens" not in body  # else the fixture's own would be kept
    body = {**body, "max_output_tokens": 16}
    headers = {**fixture["headers"], "Authorization": f"Bearer {API_KEY}"}
    with (
        httpx.Client(base_url=base_url, timeout=None) as http,
        http.stream(
            fixture["method"], fixture["path"], content=json.dumps(body).encode(), headers=headers
        ) as r,
    ):
        text = r.read().decode()
    return r, text


def test_codex_first_turn_past_the_window_is_an_honest_400(server: Server) -> None:
    r, text = replay(server.base_url)
    assert r.status_code == 400, text
    error = json.loads(text)["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "input")


@pytest.fixture(scope="module")
def codex_server() -> Iterator[Server]:
    srv = Server("--api-key", API_KEY, *WINDOW_12K, "--request-timeout", "0")
    yield srv
    srv.stop()


def test_codex_first_turn_completes(codex_server: Server) -> None:
    server = codex_server
    r, text = replay(server.base_url)
    assert r.status_code == 200, text
    assert r.headers["x-chatd-tools-not-run"] == "web_search"
    events = response_events(text)
    final = events[-1]
    assert final["type"] in ("response.completed", "response.incomplete"), final
    response = final["response"]
    assert response["status"] in ("completed", "incomplete")
    assert response["usage"]["input_tokens"] > 4000  # the whole prompt was read
    assert all(item["type"] != "reasoning" for item in response["output"])
    for item in response["output"]:  # a call, if the model made one, is Codex-shaped
        if item["type"] == "function_call" and "." not in item["name"]:
            assert item.get("namespace") in (None, "multi_agent_v1")
    # the request log line: prompt size and time to the first token, for the report
    line = re.findall(r"path=/v1/responses status=200 .*prompt_tokens=\d+.*", server.log())
    assert line, server.log()[-2000:]
    print(line[-1])

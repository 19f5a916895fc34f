"""The Vercel AI SDK against chatd (issue 22, "Done means"): npm ``ai`` with
``@ai-sdk/openai`` (pinned in tests/npm_clients.py, installed on first use), whose
``createOpenAI({ baseURL, apiKey })(model)`` speaks the Responses API, runs
tests/clients/ai_sdk_stream.mjs on the embedded model: ``streamText`` of a text, and of
a tool call forced by ``toolChoice`` that the SDK runs and sends back (a second step
answers it). Its requests, captured once, are tests/fixtures/ai_sdk_request*.json,
replayed in the fast tier (tests/service/test_client_fixtures.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import API_KEY, MODEL, Server
from npm_clients import ai_sdk

SCRIPT = Path(__file__).parents[1] / "clients" / "ai_sdk_stream.mjs"
DEADLINE = 900  # seconds: two short prompts on 2 shared cores


def stream(server: Server, mode: str) -> list[dict[str, Any]]:
    """The script's stream parts (one JSON line each), its result last."""
    prefix = ai_sdk()
    done = subprocess.run(
        ["node", str(SCRIPT), mode],
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "AI_SDK_PREFIX": str(prefix),
            "CHATD_BASE_URL": server.base_url + "/v1",
            "CHATD_API_KEY": API_KEY,
            "CHATD_MODEL": MODEL,
        },
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    why = f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, why
    parts = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert parts and parts[-1]["type"] == "result", why
    assert not [p for p in parts if p["type"] in ("error", "tool-error")], why
    return parts


def test_ai_sdk_streams_a_text(server: Server) -> None:
    parts = stream(server, "text")
    kinds = [p["type"] for p in parts]
    assert kinds[:3] == ["start", "start-step", "text-start"], kinds
    assert kinds.count("text-delta") >= 1 and kinds[-3:] == ["finish-step", "finish", "result"]
    result = parts[-1]
    assert result["text"] == "".join(p["text"] for p in parts if p["type"] == "text-delta")
    assert result["text"].strip() and result["finishReason"] in ("stop", "length")
    assert result["responseId"].startswith("resp_") and result["modelId"] == MODEL
    assert result["usage"]["inputTokens"] > 0 and result["usage"]["outputTokens"] > 0


def test_ai_sdk_streams_a_forced_tool_call_and_answers_its_result(server: Server) -> None:
    """Step 1: the forced ``get_weather`` call streamed as tool-input parts, then the
    call, run by the SDK (its result); step 2: the call and its output sent back
    (``function_call_output``), a text streamed."""
    parts = stream(server, "tool")
    kinds = [p["type"] for p in parts]
    call = next(p for p in parts if p["type"] == "tool-call")
    assert call["toolName"] == "get_weather" and isinstance(call["input"]["city"], str)
    assert kinds.index("tool-input-start") < kinds.index("tool-call") < kinds.index("tool-result")
    steps = [p["finishReason"] for p in parts if p["type"] == "finish-step"]
    assert steps[0] == "tool-calls" and len(steps) == 2
    result = parts[-1]
    assert result["steps"] == 2 and result["calls"] == [call["input"]["city"]]
    assert result["text"].strip()

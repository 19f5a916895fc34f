"""Claude Code against chatd (issue 21, "Done means"): its real request replayed over raw
httpx, then Claude Code itself (npm ``@anthropic-ai/claude-code``, pinned in
tests/npm_clients.py, installed on first use) completing a turn with ``claude -p``.

NEEDS THE MESSAGES API: both tests fail until ``POST /v1/messages`` exists (built on
other branches of issue 21); a 404 there fails them with a message saying so.

Claude Code's prompt (system prompt and 12 tools, ~13k tokens with the embedded model's
tokenizer; tests/fixtures/claude_code_request*.json, captured from 2.1.337) is longer than
the embedded model's 8,192-token training context, so both run on ``stretched_server``
(YaRN, a 32,768-token window; conftest.STRETCHED_ARGS). Its prefill is this module's
cost: the replay computes it, and Claude Code's turn, whose prompt shares the system
prompt and tools, mostly reuses it from the prefix cache (once the billing header, which
differs in every request, is left out of the prompt: protocol.messages_blocks). The
answers' quality is not checked: the protocol is.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import API_KEY, MODEL, Server
from npm_clients import claude_code

FIXTURES = Path(__file__).parents[1] / "fixtures"
# Its first request has a role "system" message in ``messages`` (beta
# mid-conversation-tool-changes-2026-07-01). Refused with a 400, Claude Code would retry
# once without that beta, the system message's text moved into the user message
# (claude_code_request_fallback.json: replayed on the FakeEngine only,
# tests/service/test_claude_code_requests.py; one 12.5k-token prefill here is enough).
REQUEST = FIXTURES / "claude_code_request.json"
DEADLINE = 3600  # seconds: a ~13k-token prefill on a shared 2-core CI runner
# The one thing changed in the replayed requests: their max_tokens (32000, which chatd
# clamps to what the window leaves, tested with the Messages API's own tests), so that a
# rambling answer costs seconds, not minutes of CPU decoding.
MAX_TOKENS = 64


def claude_env(base_url: str, home: Path) -> dict[str, str]:
    """What Claude Code needs to run offline against chatd with no account (found by
    capturing its requests, see the fixture): the base URL and key; every model slot set
    to chatd's model (else it asks for claude-opus-* with max_tokens 128000); the
    window chatd serves (else it warns it assumes 1M tokens); no telemetry, error
    reports, update checks or other side traffic (else it also sends HEAD /api/hello);
    deadlines past a slow CPU prefill, and no retries (one turn, one request); a fresh
    HOME (no user settings, sessions, or login)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_MODEL": MODEL,
        "ANTHROPIC_SMALL_FAST_MODEL": MODEL,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": MODEL,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": MODEL,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": MODEL,
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "32768",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "API_TIMEOUT_MS": str(DEADLINE * 1000),
        "CLAUDE_STREAM_FIRST_BYTE_TIMEOUT_MS": str(DEADLINE * 1000),
        "CLAUDE_STREAM_IDLE_TIMEOUT_MS": str(DEADLINE * 1000),
        "CLAUDE_CODE_MAX_RETRIES": "0",
        # its max_tokens (32000 by default): the embedded model may ramble for thousands
        # of tokens, minutes on a CPU (chatd's --request-timeout cuts it at 600 s). An
        # answer cut at max_tokens is resumed by Claude Code 3 times, then reported as
        # its max_output_tokens error (exit 1): so at most 4 x 256 tokens are decoded.
        # Seen: at 32000 the model ended by itself after 265 tokens once; at 1024 it ran
        # to the limit, resumes included (~10 minutes of decoding on 2 shared cores).
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "256",
    }


def fixture_request() -> dict[str, Any]:
    return json.loads(REQUEST.read_text())


def require_messages_api(srv: Server) -> None:
    r = httpx.get(srv.base_url + "/v1/messages", headers={"x-api-key": API_KEY}, timeout=60)
    if r.status_code == 404:  # with the route, a GET is a 405
        pytest.fail("chatd has no POST /v1/messages yet: merge issue 21's Messages API first")


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """An Anthropic SSE body as (event name, data) pairs, each block checked to have
    both lines and the name to match the data's ``type``."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"event", "data"}, f"unexpected SSE block: {block!r}"
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"], block
        events.append((fields["event"], data))
    return events


def test_claude_codes_request_replayed_is_answered(stretched_server: Server) -> None:
    """The captured request, headers and all (x-api-key ours): a 200 stream of
    Anthropic's events in their order, usage in message_start and message_delta; its
    prompt, longer than the model's training context, served by the YaRN-stretched
    model."""
    require_messages_api(stretched_server)
    fx = fixture_request()
    headers = {**fx["headers"], "x-api-key": API_KEY}
    url = f"{stretched_server.base_url}{fx['path']}?{fx['query']}"
    body = {**fx["body"], "max_tokens": MAX_TOKENS}
    with httpx.Client(timeout=DEADLINE) as http:
        r = http.post(url, headers=headers, content=json.dumps(body).encode())
    assert r.status_code == 200, r.text[:2000]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers.get("request-id")
    events = named_events(r.text)
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    start = events[[n for n, _ in events].index("message_start")][1]["message"]
    assert start["id"].startswith("msg_") and start["role"] == "assistant"
    assert start["model"] == MODEL and start["content"] == []
    usage = start["usage"]
    prompt = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    assert sum(usage.get(k) or 0 for k in prompt) > 8192  # Anthropic's three parts
    blocks: dict[int, str] = {}
    for name, data in events:  # every block opened, then its deltas, then closed
        if name == "content_block_start":
            assert data["index"] not in blocks
            blocks[data["index"]] = "open"
            assert data["content_block"]["type"] in ("text", "tool_use")  # no thinking
        elif name == "content_block_delta":
            assert blocks[data["index"]] == "open"
        elif name == "content_block_stop":
            blocks[data["index"]] = "closed"
    assert blocks and set(blocks.values()) == {"closed"}
    assert sorted(blocks) == list(range(len(blocks)))
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] in ("end_turn", "max_tokens", "tool_use")
    assert delta["usage"]["output_tokens"] >= 1
    log = stretched_server.log()
    assert "rope scaling yarn, factor 4 (chosen for the context window)" in log
    assert "context window 32768 tokens" in log


def test_claude_code_completes_a_turn(stretched_server: Server) -> None:
    """``claude -p`` with chatd as its API: exit 0 and a successful result, or (the
    model's answer too long even after Claude Code resumed it) its max_output_tokens
    error; either way, each of its requests a 200 read to its end."""
    exe = claude_code()
    require_messages_api(stretched_server)
    log_before = len(stretched_server.log())
    with tempfile.TemporaryDirectory(prefix="chatd-claude-") as tmp:
        home = Path(tmp) / "home"
        work = Path(tmp) / "work"
        home.mkdir()
        work.mkdir()
        done = subprocess.run(
            [str(exe), "-p", "Say hi in one short sentence."]
            + ["--output-format", "json", "--permission-mode", "dontAsk"]
            + ["--no-session-persistence"],
            cwd=work,
            env=claude_env(stretched_server.base_url, home),
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
    why = f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert done.stdout.lstrip().startswith("{"), why
    result = json.loads(done.stdout)
    assert result["type"] == "result" and result["subtype"] == "success", why
    assert result["num_turns"] >= 1 and result["usage"]["output_tokens"] >= 1, why
    assert isinstance(result["result"], str)
    if result.get("api_error") == "max_output_tokens":
        # The model rambled past max_tokens in its answer and in Claude Code's 3 resumes
        # of it (a 135M model stretched 4x, at temperature 1): every stream was read
        # to its end (the 200s below), which is what is tested here; its exit is 1.
        assert done.returncode == 1, why
    else:
        assert done.returncode == 0 and result["is_error"] is False, why
    requests = re.findall(
        r"path=(/v1/messages\S*) status=(\d+)", stretched_server.log()[log_before:]
    )
    assert ("/v1/messages", "200") in requests
    # Each of its requests accepted as sent: a 400 would have made it fall back (drop the
    # role "system" message's beta) and succeed anyway.
    assert all(status == "200" for _, status in requests), requests

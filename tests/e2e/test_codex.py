"""Codex CLI against chatd (issue 22, "Done means"): Codex itself (npm ``@openai/codex``,
pinned in tests/npm_clients.py, installed on first use) completing ``codex exec`` turns
on the embedded model through a custom provider (``wire_api = "responses"``): a plain
turn answered with text, that session resumed and first compacted (below), and a tool
call round trip (Codex runs the model's ``exec_command`` call and sends its
``function_call_output`` back; chatd answers that).

Codex sends ``client_metadata``, ``prompt_cache_key``, ``reasoning``, ``include`` and
hosted tools on every turn; chatd accepts them (docs/acceptance.md). Its first request as
captured (tests/fixtures/codex_request.json, 9,159 tokens) is replayed whole in the fast
tier (tests/service/test_codex_fixture.py: every field acted on, over the real app); on
the real model, only its honest 400 past the 8,192-token window is checked here: serving
it needs a stretched window, whose long prefill is already proven once by
tests/e2e/test_claude_code.py (tests/e2e/test_long_context.py says why once is enough).

Compaction (docs/compaction.md, "Codex"). Codex 0.171.0 compacts remotely only with a
provider it takes for OpenAI's or Azure's: the plain turn's session is resumed with the
provider named ``azure`` and ``model_auto_compact_token_limit`` below the first turn's
tokens, so the resumed turn first compacts (a streamed ``POST /v1/responses`` whose input
ends with ``{"type": "compaction_trigger"}``, answered with one ``compaction`` item chatd
sealed), then sends that item in the turn itself, which chatd opens into the summary.

Cost. Codex's default prompt is 9,159 tokens on the embedded model's tokenizer (its
~17k-character base instructions, a skills message, nine tools with long descriptions
and the multi-agent namespace's; 6,497 without the namespace: past or near the window);
its prefill took 7 minutes on 2 cores shared with other jobs. So these turns run Codex
configured as a user with a small local model would (docs/clients.md): its base
instructions replaced by a short file (``model_instructions_file``), the tools a small
model cannot use turned off (goals, multi-agent, image viewing, web search, apps,
plugins), no environment context. That leaves ~1,560 tokens (three tools:
``exec_command``, ``write_stdin``, ``request_user_input``; a 34 s prefill on one busy
core), computed once: the later turns reuse it from the prefix cache (same key, same
prefix). The resumed turn adds the compaction (~0.5k tokens: no tools are offered while
compacting) and its summary, the one answer not capped (below).

The proxy. Every turn goes through a pass-through proxy (``Proxy``) that adds one field
to each request, ``max_output_tokens`` (Codex sends none, and a 135M model at temperature
1 may write thousands of tokens: see CAP), except to a compaction (a cut summary would be
a failed compaction; the model's default output cap, 1,024 tokens, bounds it), and, for
the round trip, changes one more on the turn's first request: Codex always sends
``tool_choice: "auto"`` and has no setting to name a tool, and the model asked plainly to
run a command answered in text (3 tries of 3), so that request's ``tool_choice`` becomes
``{"type": "function", "name": "exec_command"}`` (chatd's grammar then makes a valid
call). Nothing else is changed: Codex's follow-up with the command's output goes to chatd
as Codex wrote it (the cap aside). The answers' quality is not checked: the protocol is.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import API_KEY, MODEL, Server
from npm_clients import codex

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "codex_request.json"

DEADLINE = 1800  # seconds: a ~1,560-token prefill and a rambling answer on 2 shared cores
INSTRUCTIONS = (
    "You are a coding agent in a terminal. When the user asks you to run a shell command,"
    ' call the exec_command tool with that command in "cmd". Answer in one short sentence.'
)
# Codex's tools that a 135M model cannot use, turned off (each a feature flag).
DISABLED = ("goals", "multi_agent", "view_image", "apps", "plugins")
FORCED = {"type": "function", "name": "exec_command"}
# What the resumed session is run with: the provider taken for Azure's (remote compaction)
# and a limit below the first turn's ~1.6k tokens, so it compacts before the turn.
COMPACTING = {"model_providers.chatd.name": '"azure"', "model_auto_compact_token_limit": "500"}
TRIGGER = {"type": "compaction_trigger"}
# The max_output_tokens the proxy adds (Codex sends none): once of three runs, the model
# wrote 2,377 tokens after the command's output, at temperature 1, until chatd's
# request deadline (600 s) stopped it. A cut answer is Codex's own error ("Incomplete
# response returned, reason: max_output_tokens"), the turn failed: accepted below as
# tests/e2e/test_claude_code.py accepts Claude Code's max_output_tokens error, since
# every request was still a 200 read to its end, which is what is tested.
CAP = 128
INCOMPLETE = "Incomplete response returned, reason: max_output_tokens"


def config_toml(base_url: str) -> str:
    """A custom provider, as docs/clients.md tells a user to write it; no retries (one
    turn, one request each) and a stream deadline past a slow CPU prefill."""
    return (
        f'model = "{MODEL}"\n'
        'model_provider = "chatd"\n'
        "model_context_window = 8192\n"
        "[model_providers.chatd]\n"
        'name = "chatd"\n'
        f'base_url = "{base_url}/v1"\n'
        'env_key = "CHATD_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        f"stream_idle_timeout_ms = {DEADLINE * 1000}\n"
    )


@pytest.fixture(scope="module")
def codex_home() -> Iterator[Path]:
    """One CODEX_HOME for the module: the same skills message (it names paths inside
    it) in every turn, so the later ones reuse the first's prompt from the prefix cache;
    the sessions Codex keeps there (``sessions/``) are what a resumed turn reads."""
    with tempfile.TemporaryDirectory(prefix="chatd-codex-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "instructions.md").write_text(INSTRUCTIONS + "\n")
        (Path(tmp) / "work").mkdir()
        yield home


def run_codex(
    home: Path, base_url: str, prompt: str, resume: str | None, extra: dict[str, str]
) -> tuple[list[dict[str, Any]], str]:
    """``codex exec --json PROMPT`` against ``base_url`` (``codex exec --json resume
    THREAD ... PROMPT`` to continue a session), in the module's empty work folder beside
    ``home``, with ``extra`` settings (``-c key=value``): its JSONL events, and its output
    for messages. Exit 0 with a completed turn, or exit 1 with a turn cut at CAP;
    anything else fails the test."""
    exe = codex()
    (home / "config.toml").write_text(config_toml(base_url))
    flags = [f"--disable={name}" for name in DISABLED]
    overrides = {
        "model_instructions_file": json.dumps(str(home / "instructions.md")),
        "web_search": '"disabled"',
        "include_environment_context": "false",
        **extra,
    }
    for key, value in overrides.items():
        flags += ["-c", f"{key}={value}"]
    command = [str(exe), "exec", "--json", "--skip-git-repo-check"]
    command += [*(["resume", resume] if resume else []), *flags, prompt]
    done = subprocess.run(
        command,
        cwd=home.parent / "work",
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "CODEX_HOME": str(home),
            "CHATD_API_KEY": API_KEY,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    why = f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    if "Unknown parameter" in done.stdout + done.stderr:
        pytest.fail(f"chatd refused a field of Codex's request (docs/acceptance.md)\n{why}")
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [e.get("type") for e in events]
    if done.returncode == 0:
        assert "turn.completed" in kinds and "turn.failed" not in kinds, why
    else:
        failed = [e for e in events if e.get("type") == "turn.failed"]
        assert done.returncode == 1 and failed, why
        assert INCOMPLETE in failed[0]["error"]["message"], why
    return events, why


def items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The completed items of one type (agent_message, command_execution...)."""
    return [
        e["item"]
        for e in events
        if e.get("type") == "item.completed" and e.get("item", {}).get("type") == kind
    ]


def completed(events: list[dict[str, Any]]) -> bool:
    return any(e.get("type") == "turn.completed" for e in events)


def compacting(body: dict[str, Any]) -> bool:
    """Whether a request is Codex's compaction (its input ends with the trigger)."""
    return body.get("input", [])[-1:] == [TRIGGER]


class Proxy:
    """A pass-through proxy in a thread between Codex and chatd: each request goes on as
    it came, except that a ``/v1/responses`` request other than a compaction gets
    ``max_output_tokens`` CAP, and with ``force``, one without a ``function_call_output``
    item (a turn's first) gets ``tool_choice`` FORCED; answers stream back as chatd sends
    them. Keeps every request body it forwarded (after the change) and chatd's status."""

    def __init__(self, upstream: str, force: bool) -> None:
        self.upstream = upstream
        self.seen: list[tuple[dict[str, Any], int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                first = not any(
                    isinstance(item, dict) and item.get("type") == "function_call_output"
                    for item in body.get("input", [])
                )
                if self.path.startswith("/v1/responses"):
                    assert "max_output_tokens" not in body  # else the cap would hide it
                    if not compacting(body):
                        body["max_output_tokens"] = CAP
                    if force and first:
                        body["tool_choice"] = FORCED
                keep = ("authorization", "content-type", "accept")
                headers = {k: v for k, v in self.headers.items() if k.lower() in keep}
                with (
                    httpx.Client(timeout=DEADLINE) as http,
                    http.stream(
                        "POST", proxy.upstream + self.path, json=body, headers=headers
                    ) as r,
                ):
                    proxy.seen.append((body, r.status_code))
                    self.send_response(r.status_code)
                    self.send_header("content-type", r.headers.get("content-type", ""))
                    self.end_headers()
                    for chunk in r.iter_raw():
                        self.wfile.write(chunk)
                        self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def through_proxy(
    server: Server,
    home: Path,
    prompt: str,
    force: bool,
    resume: str | None = None,
    extra: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], int]], str]:
    """One ``codex exec`` run (``run_codex``) through a fresh ``Proxy``: its events, the
    requests the proxy forwarded (each answered 200) and the run's output."""
    proxy = Proxy(server.base_url, force)
    try:
        events, why = run_codex(home, proxy.base_url, prompt, resume, extra or {})
    finally:
        proxy.close()
    assert proxy.seen, why
    assert [status for _, status in proxy.seen] == [200] * len(proxy.seen), why
    return events, proxy.seen, why


def test_codex_completes_a_plain_turn_and_compacts_it_when_resumed(
    server: Server, codex_home: Path
) -> None:
    """``codex exec`` with chatd as its provider: one request, a 200 stream read to its
    end; the turn completes (exit 0, turn.completed with usage) with the model's text as
    Codex's answer, or (the answer past CAP) ends in Codex's error saying so.

    Its session resumed (COMPACTING): the compaction first, a 200 whose ``compaction``
    item (sealed by chatd, ``cmp1.``) Codex keeps in its session file and sends back in
    the turn that follows (a 200 too), with the new prompt after it."""
    events, seen, why = through_proxy(
        server, codex_home, "Say hello in one short sentence.", force=False
    )
    assert len(seen) == 1 and seen[0][0]["tool_choice"] == "auto", why
    assert seen[0][0]["max_output_tokens"] == CAP
    if completed(events):
        done = next(e for e in events if e.get("type") == "turn.completed")
        assert done["usage"]["input_tokens"] > 1000 and done["usage"]["output_tokens"] >= 1
        messages = items(events, "agent_message")
        assert messages and messages[-1]["text"].strip(), why
    thread = next(e["thread_id"] for e in events if e.get("type") == "thread.started")

    events, seen, why = through_proxy(
        server, codex_home, "Reply with one word: again.", False, thread, COMPACTING
    )
    bodies = [body for body, _ in seen]
    assert len(bodies) >= 2 and compacting(bodies[0]), why
    assert "max_output_tokens" not in bodies[0]  # a compaction is not capped
    sent = [i for i in bodies[1]["input"] if i.get("type") == "compaction"]
    assert len(sent) == 1 and sent[0]["encrypted_content"].startswith("cmp1."), why
    assert bodies[1]["max_output_tokens"] == CAP
    rollouts = list((codex_home / "sessions").rglob("*.jsonl"))
    assert any(sent[0]["encrypted_content"] in r.read_text() for r in rollouts), rollouts


def test_codex_runs_the_models_tool_call_and_chatd_answers_its_output(
    server: Server, codex_home: Path
) -> None:
    """The turn's first request (tool_choice forced by the proxy) is answered with an
    ``exec_command`` call; Codex runs it in its sandbox and sends the call and its
    ``function_call_output`` back, as it wrote them; chatd answers that (a 200 read to
    its end), and the turn completes (or its answer reached CAP)."""
    events, seen, why = through_proxy(
        server, codex_home, "Run the shell command: echo chatd-tool-ok", force=True
    )
    assert len(seen) >= 2, why
    first, follow_up = seen[0][0], seen[1][0]
    assert first["tool_choice"] == FORCED
    assert follow_up["tool_choice"] == "auto"  # Codex's own, passed through
    calls = [i for i in follow_up["input"] if i.get("type") == "function_call"]
    outputs = [i for i in follow_up["input"] if i.get("type") == "function_call_output"]
    assert [c["name"] for c in calls] == ["exec_command"], why
    assert [o["call_id"] for o in outputs] == [calls[0]["call_id"]], why
    json.loads(calls[0]["arguments"])  # chatd's grammar made them valid JSON
    # Codex ran it (a command_execution item), unless the model's arguments asked for
    # what its sandbox policy refuses (``sandbox_permissions: "require_escalated"``
    # with approvals off): then the output it sent back says so, and no command ran.
    commands = items(events, "command_execution")
    assert all(c["status"] in ("completed", "failed", "declined") for c in commands), why


def replay(base_url: str) -> tuple[httpx.Response, str]:
    """Codex's captured first request (FIXTURE), sent as Codex sent it."""
    fixture: dict[str, Any] = json.loads(FIXTURE.read_text())
    headers = {**fixture["headers"], "Authorization": f"Bearer {API_KEY}"}
    with (
        httpx.Client(base_url=base_url, timeout=DEADLINE) as http,
        http.stream(
            fixture["method"],
            fixture["path"],
            content=json.dumps(fixture["body"]).encode(),
            headers=headers,
        ) as r,
    ):
        text = r.read().decode()
    return r, text


def test_codex_default_first_turn_past_the_window_is_an_honest_400(server: Server) -> None:
    """Codex's default first request (9,159 tokens) on the unstretched embedded model: a
    400 ``context_length_exceeded`` on ``input``, nothing cut silently (docs/acceptance.md,
    "Codex on the embedded model"), before any prefill."""
    r, text = replay(server.base_url)
    assert r.status_code == 400, text
    error = json.loads(text)["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "input")

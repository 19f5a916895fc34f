"""Codex CLI compacting its history against chatd on the embedded model (issue 22; the
setup users need is docs/compaction.md, "Codex").

Codex 0.171.0 (npm ``@openai/codex``, pinned in tests/npm_clients.py) uses remote
compaction only with a provider it takes for OpenAI's or Azure's: a provider named
``azure`` here. Its first turn (``codex exec``) leaves more tokens than
``model_auto_compact_token_limit``, so its second (``codex exec resume --last``) first
compacts: a streamed ``POST /v1/responses`` whose input ends with
``{"type": "compaction_trigger"}``, answered with one ``compaction`` item sealed by chatd;
then the turn itself, with that item in its input, which chatd opens into the summary.

Codex sends ``client_metadata``, ``include: ["reasoning.encrypted_content"]`` and
``reasoning`` on every turn, which chatd accepts (docs/acceptance.md).

Cost: Codex's prompt is cut to ~1.5k tokens (short instructions, no permission or
environment text, no web search, multi-agent or goal tools); three requests (the
compaction's ~0.5k: no tools are offered while compacting). Codex cannot cap an
answer's length: the model's rambling is the cost, bounded by the embedded model's
default output cap (1,024 tokens; docs/models.md); hence the one-word prompts."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import API_KEY, MODEL, Server
from npm_clients import codex

DEADLINE = 1800  # seconds, per codex run: prefills and a rambling answer on 2 shared cores


@pytest.fixture(scope="module")
def codex_server() -> Iterator[Server]:
    """Its own server: its log is this test's alone, and no generation is cut at the
    default 600 s (a rambling answer decoded on a busy machine took longer)."""
    srv = Server("--api-key", API_KEY, "--request-timeout", str(DEADLINE))
    yield srv
    srv.stop()


INSTRUCTIONS = "You are a coding agent. Answer in one short sentence."


def codex_home(base_url: str, root: Path) -> Path:
    """A CODEX_HOME whose config points Codex at chatd as an ``azure`` provider (what
    turns on its remote compaction), with a small prompt and an auto-compaction limit
    the first turn passes."""
    home = root / "codex-home"
    home.mkdir()
    (home / "instructions.md").write_text(INSTRUCTIONS + "\n")
    (home / "config.toml").write_text(
        f"""model = "{MODEL}"
model_provider = "chatd"
model_context_window = 8192
model_auto_compact_token_limit = 500
model_instructions_file = "{home / "instructions.md"}"
include_permissions_instructions = false
include_environment_context = false
web_search = "disabled"

[model_providers.chatd]
name = "azure"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "CHATD_API_KEY"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {DEADLINE * 1000}

[features]
multi_agent = false
goals = false
default_mode_request_user_input = false

"""
    )
    return home


def run_codex(home: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "CHATD_API_KEY": API_KEY,
    }
    return subprocess.run(
        [str(codex()), "exec", "--skip-git-repo-check", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        stdin=subprocess.DEVNULL,
        timeout=DEADLINE * 3,
        check=False,
    )


def test_codex_compacts_through_chatd(codex_server: Server) -> None:
    server = codex_server
    log_start = len(server.log())
    with tempfile.TemporaryDirectory(prefix="chatd-codex-") as tmp:
        root = Path(tmp)
        home = codex_home(server.base_url, root)
        work = root / "work"
        work.mkdir()
        first = run_codex(home, work, "Reply with one word: hello.")
        new_log = server.log()[log_start:]
        assert first.returncode == 0, (
            f"Codex's first turn failed:\n{first.stdout}\n{first.stderr}\n{new_log[-3000:]}"
        )
        second = run_codex(home, work, "resume", "--last", "Reply with one word: again.")
        output = second.stdout + second.stderr
        assert second.returncode == 0, f"{output}\n{server.log()[log_start:][-3000:]}"
        assert "context compacted" in output, output
        # Codex keeps the item chatd sealed (its rollout, under CODEX_HOME/sessions)
        rollouts = list((home / "sessions").rglob("*.jsonl"))
        assert rollouts, list(home.rglob("*"))
        assert any("cmp1." in r.read_text() for r in rollouts)
    requests = [
        line for line in server.log()[log_start:].splitlines() if "path=/v1/responses " in line
    ]
    # the first turn, the compaction, the second turn (a tool call would add more)
    assert len(requests) >= 3, requests
    assert all("status=200" in line for line in requests), requests

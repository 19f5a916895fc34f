"""`chatd chat` driven through a pseudo-terminal (stdlib ``pty.fork``: the command gets a
real terminal, so readline, echo and Ctrl-C work as for a user) against a real `chatd
serve` on the embedded model, run with ``--log-content --log-format json`` so that the
request bodies the CLI sent can be read back from its request log; and `chatd models`
against the session's server."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import API_KEY, MODEL, Server

CHATD = str(Path(sys.executable).parent / "chatd")
KEY = "sk-chat-cli-test-key"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")
PROMPT = "you> "


class Terminal:
    """``chatd chat <args>`` on the slave side of a new pseudo-terminal; this side reads
    its output (escape codes removed, CRLF as LF) and types into it."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "TERM": "dumb", "COLUMNS": "200", "CHATD_API_KEY": KEY}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: nothing but exec (this process may have threads)
            # Ctrl-C as on a person's terminal, even if these tests run as a background
            # job (which a shell starts with SIGINT ignored, inherited across exec)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execve(CHATD, [CHATD, "chat", *args], env)
        termios.tcsetwinsize(self.fd, (50, 200))  # a wide terminal: no line wrapping
        self.raw = b""  # everything read so far, as it came
        self.seen = ""  # the same, as text without escape codes
        self.pos = 0  # where the next expect() starts looking
        self.before = ""

    def _read(self, timeout: float) -> None:
        """What the command wrote within ``timeout`` seconds, added to ``seen``."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if ready:
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            assert data, f"the chat ended; it wrote:\n{self.seen[self.pos :]}"
            self.raw += data
            self.seen += _ANSI.sub("", data.decode(errors="replace")).replace("\r\n", "\n")

    def expect(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """Read until the regex ``pattern`` matches after what earlier calls consumed,
        and consume up to its end (a generous timeout for a loaded machine: waiting,
        not a speed check). The match's ``before`` is the text ahead of it."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while (m := rx.search(self.seen, self.pos)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in:\n{self.seen[self.pos :]}"
            self._read(left)
        self.before, self.pos = self.seen[self.pos : m.start()], m.end()
        return m

    def until(self, text: str, timeout: float = 120) -> str:
        """Read until ``text``; what came before it."""
        self.expect(re.escape(text), timeout)
        return self.before

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")  # Enter, as a keyboard sends it

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def exit_status(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        raise AssertionError("chatd chat did not exit")

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.close(self.fd)
        except (ProcessLookupError, ChildProcessError, OSError):
            pass


@pytest.fixture(scope="module")
def logged() -> Iterator[Server]:
    srv = Server("--api-key", KEY, "--log-content", "--log-format", "json")
    yield srv
    srv.stop()


def chat_requests(srv: Server) -> list[dict[str, Any]]:
    """The request log lines of POST /v1/chat/completions, their bodies parsed."""
    lines = [json.loads(ln) for ln in srv.log().splitlines() if ln.startswith("{")]
    chats = [ln for ln in lines if ln.get("path") == "/v1/chat/completions"]
    for ln in chats:
        ln["request"] = json.loads(ln["request"])
    return chats


USAGE = r"\[\d+ prompt \+ (\d+) completion tokens, \d+\.\d s(, cut at max tokens)?\]\n"


def answer(term: Terminal, line: str) -> str:
    """Type ``line``, read the streamed answer up to its usage line and the next prompt."""
    term.type(line)
    term.until(line + "\n")  # the terminal echoes what was typed
    term.expect(USAGE)
    text = term.before
    term.until(PROMPT)
    return text.strip()


def test_a_conversation_on_a_terminal(logged: Server) -> None:
    term = Terminal("--url", logged.base_url, "--max-tokens", "8", "--temperature", "0")
    try:
        assert f"model: {MODEL} (the first available" in term.until(PROMPT)
        first = answer(term, "Say hello")
        assert first
        term.type("/system You answer in French")
        assert "system prompt set" in term.until(PROMPT)
        term.type("/system")
        assert "system prompt: You answer in French" in term.until(PROMPT)
        assert answer(term, "What is the sky?")
        term.type("/reset")
        assert "conversation forgotten" in term.until(PROMPT)
        assert answer(term, "Name a fruit")
        term.type("/exit")
        assert term.exit_status() == 0
        # on a terminal the usage lines are dim (stderr is a terminal here)
        assert re.search(rb"\x1b\[2m\[\d+ prompt \+ \d+ completion tokens", term.raw)
    finally:
        term.kill()
    one, two, three = (r["request"] for r in chat_requests(logged)[-3:])
    for body in (one, two, three):
        assert body["model"] == MODEL and body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["max_tokens"] == 8 and body["temperature"] == 0
    assert one["messages"] == [{"role": "user", "content": "Say hello"}]
    assert two["messages"] == [
        {"role": "system", "content": "You answer in French"},
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": two["messages"][2]["content"]},
        {"role": "user", "content": "What is the sky?"},
    ]
    # what the terminal showed is what the next request carried
    assert two["messages"][2]["content"].strip() == first
    assert three["messages"] == [
        {"role": "system", "content": "You answer in French"},
        {"role": "user", "content": "Name a fruit"},
    ]


def test_ctrl_c_stops_an_answer_and_the_prompt_returns(logged: Server) -> None:
    term = Terminal("--url", logged.base_url, "--max-tokens", "300", "--model", MODEL)

    def stop(line: str) -> None:
        """Ask for ``line``, and press Ctrl-C once the answer has started."""
        term.type(line)
        term.until(line + "\n")
        term.expect(r"\S")  # some of the answer is on the screen
        term.ctrl_c()
        assert "[stopped]" in term.until(PROMPT)

    try:
        term.until(PROMPT)
        stop("Write a very long story about a dragon and a knight.")
        stop("Tell me more.")  # the session goes on, the stopped turn in it
        # Ctrl-D at the prompt leaves. (Ctrl-C there too, tested in-process: on a
        # terminal, a SIGINT landing in the microseconds between readline printing the
        # prompt and waiting for a key is seen by CPython's readline only at the next
        # key, a race this fast typist would hit and a person cannot.)
        os.write(term.fd, b"\x04")
        assert term.exit_status() == 0
    finally:
        term.kill()
    by_last = {r["request"]["messages"][-1]["content"]: r for r in chat_requests(logged)}
    story, more = (
        by_last["Write a very long story about a dragon and a knight."],
        by_last["Tell me more."],
    )
    for cut in (story, more):
        # the server saw the client leave: a stream cut short (no [DONE]), short of its limit
        assert "[DONE]" not in cut["response"] and cut["completion_tokens"] < 300
    first, shown = more["request"]["messages"][:2]
    assert first["content"] == story["request"]["messages"][-1]["content"]
    assert shown["role"] == "assistant" and shown["content"].strip()  # the part shown


def test_models_against_the_session_server(base_url: str) -> None:
    ok = subprocess.run(
        [CHATD, "models", "--url", base_url, "--api-key", API_KEY],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    row = next(ln for ln in ok.stdout.splitlines() if ln.startswith(MODEL))
    assert row.split() == [MODEL, "yes", f"local:{MODEL}", "(loaded)"]
    bad = subprocess.run(
        [CHATD, "models", "--url", base_url, "--api-key", "sk-not-a-key-42"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert "401: Incorrect API key provided" in bad.stderr and "sk-not-a-key-42" not in bad.stderr

"""``chatd chat`` against the real app over a FakeEngine, served from a thread on a real
port (the CLI speaks HTTP with its own httpx client): the conversation each request
carries (seen in the prompts the engine received), the commands, the first available
model, API errors that keep the session, a stream that fails midway, and an answer
stopped by Ctrl-C, which the server cancels. Lines are fed to the session as ``input()``
would give them; tests/e2e/test_chat_cli.py drives the real command on a terminal."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes.engine import DEFAULT_SYSTEM, DEFAULT_TEXT, FakeEngine

from chatd.chat_cli import PROMPT, ChatOptions, ChatSession
from chatd.remote import Remote

from .harness import API_KEY, MODEL, ThreadServer, chatd_in_thread, free_port, run_cli


class Terminal:
    """Lines typed in (then EOF, as Ctrl-D), and what the session wrote back."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        self.prompts = 0
        self.out, self.err = io.StringIO(), io.StringIO()

    def read(self, prompt: str) -> str:
        assert prompt == PROMPT
        self.prompts += 1
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


def session(server: ThreadServer, term: Terminal, **options: object) -> ChatSession:
    remote = Remote(server.base_url, API_KEY)
    chat_options = ChatOptions(str(options.pop("model", MODEL)), **options)  # type: ignore[arg-type]
    return ChatSession(remote, chat_options, term.out, term.err, term.read)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadServer]:
    with chatd_in_thread(tmp_path, FakeEngine(), api_keys=[API_KEY]) as s:
        yield s


def prompts(server: ThreadServer) -> list[str]:
    """Every prompt the engine was given, as text (ChatML)."""
    return [server.engine.detokenize(p) for p, _ in server.engine.submitted]


def test_the_conversation_is_kept_and_reset(server: ThreadServer) -> None:
    term = Terminal(
        "Hello there",
        "/system You answer in French",
        "/system",
        "And again",
        "/reset",
        "Fresh start",
        "/exit",
        "never read",
    )
    assert session(server, term, temperature=0.5, max_tokens=20, seed=3).run() == 0
    assert term.lines == ["never read"]  # /exit left at once
    first, second, third = prompts(server)
    assert DEFAULT_SYSTEM in first and "user\nHello there<|im_end|>" in first
    # the system prompt replaces the model's default, the conversation goes on
    assert "system\nYou answer in French<|im_end|>" in second and DEFAULT_SYSTEM not in second
    assert "user\nHello there" in second and f"assistant\n{DEFAULT_TEXT}<|im_end|>" in second
    assert "user\nAnd again" in second
    # /reset forgets the turns, not the system prompt
    assert "You answer in French" in third and "Hello there" not in third
    assert "And again" not in third and "user\nFresh start" in third
    params = server.engine.last_params
    assert params.temperature == 0.5 and params.max_new_tokens == 20 and params.seed == 3
    assert term.out.getvalue() == f"{DEFAULT_TEXT}\n" * 3  # answers only on stdout
    err = term.err.getvalue()
    assert "system prompt: You answer in French" in err and "conversation forgotten" in err
    usage = [ln for ln in err.splitlines() if "completion tokens" in ln]
    assert len(usage) == 3 and "\x1b[" not in err  # not a terminal: no colour codes
    assert re.fullmatch(r"\[\d+ prompt \+ 7 completion tokens, \d+\.\d s\]", usage[0])


def test_an_answer_cut_at_max_tokens_says_so(server: ThreadServer) -> None:
    term = Terminal("Hi")
    session(server, term, max_tokens=3).run()
    assert term.out.getvalue() == "Hello! How can\n\n"
    assert term.err.getvalue().splitlines()[-1].endswith(" s, cut at max tokens]")


def test_blank_lines_are_not_sent_and_eof_ends_the_session(server: ThreadServer) -> None:
    term = Terminal("", "   ", "Hi")
    assert session(server, term).run() == 0
    assert term.prompts == 4 and term.out.getvalue() == f"{DEFAULT_TEXT}\n\n"
    assert len(server.engine.submitted) == 1


def test_commands_help_unknown_and_models(server: ThreadServer) -> None:
    term = Terminal("/help", "/frobnicate", "/reset now", "/model", "/model nope", "//slash")
    assert session(server, term).run() == 0
    err = term.err.getvalue()
    assert "/system TEXT" in err and "/exit" in err
    assert "unknown command /frobnicate" in err and "/reset takes no argument" in err
    assert f"model: {MODEL} (served: {MODEL})" in err
    assert f"nope is not served here (served: {MODEL})" in err
    [prompt] = prompts(server)  # only the //line was sent, as a message with one slash
    assert "user\n/slash<|im_end|>" in prompt


def test_model_switch(tmp_path: Path) -> None:
    config = (
        f'[[models]]\nid = "{MODEL}"\npath = "embedded"\n'
        '[[models]]\nid = "other"\npath = "embedded"\n'
    )
    with chatd_in_thread(tmp_path, FakeEngine(), [API_KEY], config=config) as server:
        term = Terminal("/model other", "Hi")
        session(server, term).run()
        assert "model: other" in term.err.getvalue()
        code, out, err = run_cli("models", "--url", server.base_url, "--api-key", API_KEY)
        assert code == 0, err
        rows = [ln for ln in out.splitlines()[1:] if not ln.startswith(" ")]  # no defaults line
        assert [ln.split()[0] for ln in rows] == [MODEL, "other"]
    # the answer came from "other": its usage line is there, no error
    assert "error" not in term.err.getvalue() and "completion tokens" in term.err.getvalue()


def test_an_api_error_keeps_the_session(server: ThreadServer) -> None:
    term = Terminal("Hi", "/model", "Hello")
    assert session(server, term, model="nope").run() == 0
    err = term.err.getvalue()
    assert "error: The model `nope` does not exist" in err
    assert "model: nope" in err  # still there, and still asking
    assert term.prompts == 4 and server.engine.submitted == []
    assert term.out.getvalue() == "\n"  # nothing answered; the newline of Ctrl-D


def test_a_refused_turn_is_not_kept(server: ThreadServer) -> None:
    term = Terminal("Lost words", f"/model {MODEL}", "Kept words")
    s = session(server, term)
    s.options.model = "nope"  # as if the server had served it when switched to
    s.run()
    [prompt] = prompts(server)
    assert "Kept words" in prompt and "Lost words" not in prompt
    assert s.messages == [
        {"role": "user", "content": "Kept words"},
        {"role": "assistant", "content": DEFAULT_TEXT},
    ]


def test_a_stream_failing_midway_is_reported_and_its_part_kept(server: ThreadServer) -> None:
    server.engine.fail_after = 2
    term = Terminal("Hi", "Next")
    s = session(server, term)
    s.run()
    assert "error: " in term.err.getvalue()
    part = term.out.getvalue().splitlines()[0]
    assert part and DEFAULT_TEXT.startswith(part)  # two words, then the error
    assert s.messages[:2] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": part},
    ]


class Interrupting(io.StringIO):
    """stdout that raises KeyboardInterrupt (Ctrl-C) at the ``at``-th write."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def write(self, s: str) -> int:
        self.at -= 1
        if self.at == 0:
            raise KeyboardInterrupt
        return super().write(s)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120  # a guard against a hang, never reached
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_ctrl_c_stops_the_answer_and_the_server_cancels_it(tmp_path: Path) -> None:
    long = " ".join(f"w{i}" for i in range(2000))
    engine = FakeEngine(long, step_delay=0.01)
    with chatd_in_thread(tmp_path, engine, [API_KEY]) as server:
        term = Terminal("Tell me everything", "Shorter please")
        term.out = Interrupting(at=3)  # Ctrl-C at the third word
        s = session(server, term)
        generations: list[object] = []
        original = engine.submit

        def submit(*a: object) -> object:
            generations.append(original(*a))  # type: ignore[arg-type]
            engine.script = "Fine."
            return generations[-1]

        engine.submit = submit  # type: ignore[method-assign]
        assert s.run() == 0
        first = generations[0]
        wait_for(lambda: first.cancelled, "the server did not cancel the stopped answer")  # type: ignore[attr-defined]
    assert "[stopped]" in term.err.getvalue() and term.prompts == 3
    # what was written before Ctrl-C stays in the conversation; the next turn follows it
    assert s.messages == [
        {"role": "user", "content": "Tell me everything"},
        {"role": "assistant", "content": "w0 w1"},
        {"role": "user", "content": "Shorter please"},
        {"role": "assistant", "content": "Fine."},
    ]


class CtrlC:
    """A ``read`` whose lines may be KeyboardInterrupt (Ctrl-C at the prompt)."""

    def __init__(self, term: Terminal, *lines: str | type[KeyboardInterrupt]) -> None:
        self.term, self.lines = term, list(lines)

    def __call__(self, prompt: str) -> str:
        self.term.prompts += 1
        line = self.lines.pop(0)
        if not isinstance(line, str):
            raise line
        return line


def test_ctrl_c_at_the_prompt_leaves(server: ThreadServer) -> None:
    term = Terminal()
    s = session(server, term)
    s.read = CtrlC(term, "Hi", KeyboardInterrupt, "never read")
    assert s.run() == 0
    assert term.prompts == 2 and term.out.getvalue() == f"{DEFAULT_TEXT}\n\n"


class LateCtrlC(io.StringIO):
    """stderr where Ctrl-C lands as the usage line is written: after the stream ended."""

    def write(self, s: str) -> int:
        if "completion tokens" in s and "[interrupted]" not in self.getvalue():
            raise KeyboardInterrupt
        return super().write(s)


def test_ctrl_c_just_after_an_answer_returns_to_the_prompt(server: ThreadServer) -> None:
    term = Terminal("Hi", "Again")
    term.err = LateCtrlC()
    s = session(server, term)
    assert s.run() == 0
    assert "[interrupted]" in term.err.getvalue() and term.prompts == 3
    assert len(server.engine.submitted) == 2  # the session went on
    assert "completion tokens" in term.err.getvalue()  # the second answer's usage line


def test_chat_command_picks_the_first_available_model(
    server: ThreadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n/exit\n"))
    code, out, err = run_cli("chat", "--url", server.base_url, "--api-key", API_KEY)
    assert code == 0, err
    assert f"model: {MODEL} (the first available" in err
    assert out == f"{PROMPT}{DEFAULT_TEXT}\n{PROMPT}"
    monkeypatch.setenv("CHATD_API_KEY", API_KEY)
    monkeypatch.setattr("sys.stdin", io.StringIO("/system\n"))
    code, out, err = run_cli("chat", "--url", server.base_url, "--system", "Be brief")
    assert code == 0 and "system prompt: Be brief" in err


def test_chat_command_with_a_bad_key_or_no_server(server: ThreadServer) -> None:
    code, out, err = run_cli("chat", "--url", server.base_url, "--api-key", "sk-wrong-key-1")
    assert code == 1 and out == ""
    assert "401: Incorrect API key provided" in err and "sk-wrong-key-1" not in err
    code, _, err = run_cli("chat", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach http://127.0.0.1:" in err


def test_an_unreachable_server_is_an_error_that_keeps_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n"))
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run_cli("chat", "--url", url, "--model", "m")  # nothing asked before
    assert code == 0 and f"error: cannot reach {url}: ConnectError" in err
    assert out == f"{PROMPT}{PROMPT}\n"


def test_a_key_that_may_use_no_model(server: ThreadServer) -> None:
    code, out, _ = run_cli(
        "keys",
        "create",
        "--name",
        "narrow",
        "--models",
        "absent",
        "--data-dir",
        str(server.data_dir),
    )
    key = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("key:"))
    code, out, err = run_cli("chat", "--url", server.base_url, "--api-key", key)
    assert code == 1 and f"{server.base_url} serves no model now" in err
    code, out, err = run_cli("models", "--url", server.base_url, "--api-key", key)
    assert code == 0 and "(no models for this key)" in out

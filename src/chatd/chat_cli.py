"""``chatd chat``: an interactive terminal chat against a running server.

Lines are read with ``input()`` (so readline's editing and history work on a terminal),
each answer is streamed as it arrives, and the conversation is kept client-side and sent
whole each time, as any Chat Completions client does. Lines starting with ``/`` are
commands (``/help``). Ctrl-C during an answer stops that answer: leaving the stream
closes the connection, which cancels the generation on the server; Ctrl-C or Ctrl-D at
the prompt ends the session. An API error prints the server's message and the session
goes on. The usage line after each answer goes to stderr, so stdout holds the prompts
and the answers only; it is dim when stderr is a terminal."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from chatd.remote import DEFAULT_URL, Remote, RemoteError, api_key

__all__ = [
    "COMMANDS",
    "PROMPT",
    "ChatOptions",
    "ChatSession",
    "Command",
    "CommandError",
    "add_command",
    "parse_command",
    "run",
]

PROMPT = "you> "
COMMANDS = {
    "system": "/system TEXT   set the system prompt (/system alone shows it)",
    "reset": "/reset         forget the conversation (the system prompt stays)",
    "model": "/model M       talk to model M from now on (/model alone lists them)",
    "help": "/help          this list",
    "exit": "/exit          leave (also /quit, Ctrl-D, or Ctrl-C at the prompt)",
}
_HELP = [*COMMANDS.values(), "//text         send a line that starts with /"]
_DESCRIPTION = (
    "Chat in the terminal with a running server's model; answers stream as they arrive."
    "\n\ncommands at the prompt:\n  "
    + "\n  ".join(_HELP)
    + "\n\nCtrl-C stops an answer (the server cancels it); at the prompt it leaves."
    " The usage of each answer is printed on stderr."
)
_ALIASES = {"quit": "exit"}
_TAKES_TEXT = frozenset({"system", "model"})
_DIM, _PLAIN = "\x1b[2m", "\x1b[0m"


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser(
        "chat",
        help="an interactive chat with a running server, streamed",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--url", default=DEFAULT_URL, help="the server's base URL")
    cmd.add_argument(
        "--api-key", default=None, help="a key of the server; default: env CHATD_API_KEY"
    )
    cmd.add_argument("--model", help="the model id (default: the first available one)")
    cmd.add_argument("--system", help="the system prompt to start with")
    cmd.add_argument(
        "--temperature", type=float, help="sampling temperature (the server's default)"
    )
    cmd.add_argument("--top-p", type=float, help="nucleus sampling (the server's default)")
    cmd.add_argument("--max-tokens", type=int, help="the longest answer, in tokens")
    cmd.add_argument("--seed", type=int, help="a seed, for answers that repeat")


@dataclass(frozen=True)
class Command:
    """One ``/`` line: its canonical ``name`` and the text after it (stripped)."""

    name: str
    text: str = ""


class CommandError(ValueError):
    """A ``/`` line that is not a command, or one given an argument it does not take."""


def parse_command(line: str) -> Command | None:
    """None for a message to send; a Command for ``/name [text]``. ``//text`` is the
    message ``/text`` (a way to send a line that starts with a slash)."""
    if not line.startswith("/") or line.startswith("//"):
        return None
    head, _, rest = line[1:].partition(" ")
    name = _ALIASES.get(head.lower(), head.lower())
    text = rest.strip()
    if name not in COMMANDS:
        raise CommandError(f"unknown command /{head} (/help lists them)")
    if text and name not in _TAKES_TEXT:
        raise CommandError(f"/{name} takes no argument")
    return Command(name, text)


@dataclass
class ChatOptions:
    """What every request of the session carries besides the messages."""

    model: str
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def fields(self) -> dict[str, Any]:
        given = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        return {k: v for k, v in given.items() if v is not None}


@dataclass
class ChatSession:
    """The conversation and the loop: ``read`` gives a line (``input``: EOFError at the
    end, KeyboardInterrupt on Ctrl-C), answers go to ``out``, everything else to
    ``err``."""

    remote: Remote
    options: ChatOptions
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    read: Callable[[str], str] = input
    messages: list[dict[str, str]] = field(default_factory=list)

    def run(self) -> int:
        self._note(f"chatting with {self.options.model} at {self.remote.url} (/help for commands)")
        while True:
            try:
                line = self.read(PROMPT)
            except (EOFError, KeyboardInterrupt):
                self.out.write("\n")
                return 0
            try:
                if not self.handle(line.strip()):
                    return 0
            except KeyboardInterrupt:
                # Ctrl-C meant for an answer that had just ended (between the stream and
                # the prompt): back to the prompt, not out of the session.
                self._note("[interrupted]")

    def handle(self, line: str) -> bool:
        """One line typed: a message to send, a command, or nothing; False to leave."""
        if not line:
            return True
        try:
            command = parse_command(line)
        except CommandError as e:
            self._note(str(e))
            return True
        if command is None:
            self.ask(line[1:] if line.startswith("//") else line)
            return True
        return self.obey(command)

    def obey(self, command: Command) -> bool:
        """Carry out a command; False when the session ends."""
        if command.name == "exit":
            return False
        if command.name == "help":
            self._note("\n".join(_HELP))
        elif command.name == "reset":
            self.messages.clear()
            self._note("conversation forgotten")
        elif command.name == "system":
            self._system(command.text)
        elif command.name == "model":
            self._model(command.text)
        return True

    def ask(self, text: str) -> None:
        """Send the conversation with ``text`` appended and stream the answer. The turn
        is kept when answered; a refused one is dropped (the user may retype it); a
        stopped one keeps what was written so far, so the next turn follows it."""
        self.messages.append({"role": "user", "content": text})
        answer: list[str] = []
        usage: dict[str, Any] | None = None
        finish: str | None = None
        started = time.monotonic()
        try:
            with self.remote.stream_chat(self._body()) as chunks:
                for chunk in chunks:
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        if piece:
                            with _ctrl_c_held():  # what is kept is exactly what was seen
                                self.out.write(piece)
                                self.out.flush()
                                answer.append(piece)
                        finish = choice.get("finish_reason") or finish
        except KeyboardInterrupt:
            self._end_line(answer)
            self._note("[stopped]")
            self._keep_or_drop(answer)
            return
        except RemoteError as e:
            self._end_line(answer)
            self._note(f"error: {e.message}")
            self._keep_or_drop(answer)
            return
        self._end_line(answer, always=True)
        self.messages.append({"role": "assistant", "content": "".join(answer)})
        self._usage(usage, finish, time.monotonic() - started)

    def _body(self) -> dict[str, Any]:
        system = [{"role": "system", "content": self.options.system}] if self.options.system else []
        return {
            "model": self.options.model,
            "messages": [*system, *self.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.options.fields(),
        }

    def _keep_or_drop(self, answer: list[str]) -> None:
        if answer:
            self.messages.append({"role": "assistant", "content": "".join(answer)})
        else:
            self.messages.pop()

    def _end_line(self, answer: list[str], always: bool = False) -> None:
        if always or answer:
            self.out.write("\n")
            self.out.flush()

    def _system(self, text: str) -> None:
        if text:
            self.options.system = text
            self._note("system prompt set")
        elif self.options.system:
            self._note(f"system prompt: {self.options.system}")
        else:
            self._note("no system prompt (the model's default)")

    def _model(self, model: str) -> None:
        """Switch to ``model`` if the server lists it (or cannot list anything: then the
        next request says whether it exists); alone, show the current one and the list."""
        try:
            served: list[str] | None = self.remote.models().ids()
        except RemoteError as e:
            served, failure = None, e.message
        listing = f"served: {', '.join(served) or 'none'}" if served is not None else failure
        if not model:
            self._note(f"model: {self.options.model} ({listing})")
        elif served is not None and model not in served:
            self._note(f"{model} is not served here ({listing})")
        else:
            self.options.model = model
            self._note(f"model: {model}")

    def _usage(self, usage: dict[str, Any] | None, finish: str | None, seconds: float) -> None:
        parts = []
        if usage:
            parts.append(
                f"{usage.get('prompt_tokens', '?')} prompt + "
                f"{usage.get('completion_tokens', '?')} completion tokens"
            )
        parts.append(f"{seconds:.1f} s")
        if finish == "length":
            parts.append("cut at max tokens")
        self._note(f"[{', '.join(parts)}]", dim=True)

    def _note(self, text: str, dim: bool = False) -> None:
        if dim and _is_tty(self.err):
            text = f"{_DIM}{text}{_PLAIN}"
        self.err.write(text + "\n")
        self.err.flush()


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def run(args: argparse.Namespace) -> int:
    """``chatd chat``: pick the model (asking the server when none is given), then chat."""
    with Remote(args.url, api_key(args.api_key)) as remote:
        model = args.model
        if model is None:
            try:
                listed = remote.models()
            except RemoteError as e:
                print(f"chatd: {e.message}", file=sys.stderr)
                return 1
            model = listed.first_available()
            if model is None:
                print(f"chatd: {remote.url} serves no model now", file=sys.stderr)
                return 1
            print(
                f"model: {model} (the first available; --model or /model to choose)",
                file=sys.stderr,
            )
        if sys.stdin.isatty():
            import readline  # noqa: F401  (input() then edits lines and keeps history)
        options = ChatOptions(
            model, args.system, args.temperature, args.top_p, args.max_tokens, args.seed
        )
        try:
            return ChatSession(remote, options).run()
        except KeyboardInterrupt:  # between two reads: leave as at the prompt
            return 130


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) held back while a piece is shown and kept: one landing between the
    two would show text the next turn does not carry, or drop a turn whose start was on
    the screen. A held one is delivered as the block ends (KeyboardInterrupt there)."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    block(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        block(signal.SIG_UNBLOCK, {signal.SIGINT})

"""What ``chatd chat`` reads without a server: the SSE lines of a stream (chatd/remote.py)
and the ``/`` commands typed at its prompt (chatd/chat_cli.py), and its Ctrl-C."""

from __future__ import annotations

import os
import signal

import pytest

from chatd.chat_cli import Command, CommandError, _ctrl_c_held, parse_command
from chatd.remote import RemoteError, StreamBroken, sse_chunks, sse_data


def test_sse_data_assembles_events_as_the_spec_says() -> None:
    lines = [
        ": a comment, not data",
        "event: message",
        'data: {"a":',
        "data:  1}",  # one space after the colon is dropped, the second kept
        "id: 7",
        "",
        "",  # blank lines between events are not events
        "data:[DONE]",
    ]
    assert list(sse_data(lines)) == ['{"a":\n 1}', "[DONE]"]


def test_sse_chunks_stop_at_done() -> None:
    lines = ['data: {"id": "1"}', "", 'data: {"id": "2"}', "", "data: [DONE]", "", 'data: {"x": 1}']
    assert [c["id"] for c in sse_chunks(lines)] == ["1", "2"]


def test_sse_error_event_raises_its_message() -> None:
    lines = ['data: {"id": "1"}', "", 'data: {"error": {"message": "boom", "type": "x"}}', ""]
    chunks = sse_chunks(lines)
    assert next(chunks) == {"id": "1"}
    with pytest.raises(RemoteError, match="^boom$"):
        next(chunks)


@pytest.mark.parametrize(
    "lines",
    [
        ['data: {"id": "1"}', ""],  # the connection closed before [DONE]
        ['data: {"id": "1"}'],  # and in the middle of an event's lines
        [],
    ],
)
def test_sse_without_done_is_broken(lines: list[str]) -> None:
    with pytest.raises(StreamBroken, match="no \\[DONE\\]"):
        list(sse_chunks(lines))


@pytest.mark.parametrize(
    ("data", "why"), [("data: {not json", "not JSON"), ("data: [1, 2]", "not an object")]
)
def test_sse_garbage_is_an_error(data: str, why: str) -> None:
    with pytest.raises(RemoteError, match=why):
        list(sse_chunks([data, ""]))


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", None),
        ("what is 1/2?", None),
        ("//etc/passwd is a path", None),  # a message that starts with a slash
        ("/system   You answer in French  ", Command("system", "You answer in French")),
        ("/system", Command("system", "")),
        ("/SYSTEM be brief", Command("system", "be brief")),
        ("/reset", Command("reset")),
        ("/model smollm2", Command("model", "smollm2")),
        ("/model", Command("model")),
        ("/help", Command("help")),
        ("/exit", Command("exit")),
        ("/quit", Command("exit")),
    ],
)
def test_parse_command(line: str, command: Command | None) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("/frobnicate", "unknown command /frobnicate"),
        ("/", "unknown command /"),
        ("/reset now", "/reset takes no argument"),
        ("/exit please", "/exit takes no argument"),
        ("/help me", "/help takes no argument"),
    ],
)
def test_bad_commands_are_refused(line: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(line)


def test_a_ctrl_c_while_a_piece_is_shown_lands_once_it_is_kept() -> None:
    """A SIGINT between showing a piece and keeping it is held to the block's end: the
    turn keeps exactly what the screen shows (a stopped answer is carried on)."""
    kept: list[str] = []
    # Python's own Ctrl-C handler, even when these tests run as a background job (a shell
    # starts those with SIGINT ignored)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), _ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)
            kept.append("piece")
    finally:
        signal.signal(signal.SIGINT, before)
    assert kept == ["piece"]

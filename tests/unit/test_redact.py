"""``chatd.redact``: the one sanitizer of text chatd did not write (an upstream's error
message) before a client reads it. Each kind of leak is removed; the part of a message
about the request stays readable."""

from __future__ import annotations

import re

import pytest
from fakes.upstream import LEAKY

from chatd.redact import MAX_CHARS, redact, safe_word

# What no body a client reads may hold (tests/service/test_error_leaks.py uses them too).
CLASS_NAME = re.compile(r"\b[A-Z][a-zA-Z]+(Error|Exception)\b")


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("see https://api.example.com/v1/x?key=1 now", "https://"),
        ("see http://10.0.0.5:8000/v1", "10.0.0.5"),
        ("Incorrect API key provided: sk-proj-abcd****wxyz.", "sk-proj"),
        ("Incorrect API key provided: sk-abc123.", "abc123"),
        ("header Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("bearer abcdef", "abcdef"),
        ("api_key=hunter2 was refused", "hunter2"),
        ("token: 'opaque-token-value'", "opaque-token-value"),
        ("a key 0123456789abcdef0123456789abcdef0 was refused", "0123456789abcdef"),
        ("from 192.168.1.20", "192.168.1.20"),
        ("from [2001:db8::1]:443", "2001:db8"),
        ("from fd00::1 too", "fd00::1"),
        ("host api.openai.com refused", "api.openai.com"),
        ("gpu-box.internal:8000 refused", "gpu-box.internal"),
        ("gpu-box:8000 refused", "gpu-box"),
        ("localhost refused", "localhost"),
        ('File "/srv/app/src/chatd/x.py", line 3', "/srv/app"),
        ("at C:\\models\\x.gguf", "C:\\models"),
        ("in serving_chat.py somewhere", "serving_chat.py"),
        ("openai.AuthenticationError: nope", "AuthenticationError"),
        ("KeyError('x')", "KeyError"),
        ("a ConnectionRefusedException here", "ConnectionRefusedException"),
        ("Traceback (most recent call last):\n  File x\nValueError: boom", "Traceback"),
    ],
)
def test_each_leak_is_removed(text: str, gone: str) -> None:
    assert gone not in redact(text)


def test_the_secrets_given_are_removed_verbatim() -> None:
    out = redact("no route to gpu-box for key s3cr3t-value", ["gpu-box", "s3cr3t-value", None, ""])
    assert "gpu-box" not in out and "s3cr3t" not in out and out.startswith("no route to")


def test_what_is_about_the_request_stays() -> None:
    for text in (
        "Invalid 'messages[0].content': string too long. Expected a string with maximum"
        " length 10, but got a string with length 12 instead.",
        "Invalid value for 'text.format.schema': 'item.id' is not allowed.",
        "Unrecognized request argument supplied: foo",
        "The model `meta-llama/Llama-3.1-8B-Instruct` does not support tools.",
        "llama.cpp could not load the model",
        "Error: 3 tools, at most 2",
    ):
        assert redact(text) == text


def test_the_leaky_upstream_message_is_clean() -> None:
    out = redact(LEAKY)
    for leak in ("sk-proj", "sk-live", "example.com", "10.1.2.3", "gpu-box", "fd00", "/srv/",
                 "serving_chat.py", "https://", "Bearer sk"):  # fmt: skip
        assert leak not in out, (leak, out)
    assert not CLASS_NAME.search(out), out
    assert out.startswith("Incorrect API key provided:")


def test_long_messages_are_cut() -> None:
    assert len(redact("word " * 1000)) == MAX_CHARS


def test_safe_word_keeps_identifiers_only() -> None:
    assert safe_word("invalid_request_error") == "invalid_request_error"
    assert safe_word("messages[0].content") == "messages[0].content"
    for bad in ("BadRequestError", "a b", "https://x", "sk-abc", 404, None, "x" * 200):
        assert safe_word(bad) is None

"""chatd/log_lines.py: what reaches a log is printable. Text lines escape every
non-printable character (a traceback keeps only its line breaks); JSON lines escape the
ones ``json.dumps`` leaves raw (C1, DEL, bidi, separators) and still decode to the same
value; request-log values holding any of them are quoted."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from chatd.log_lines import JsonFormatter, TextFormatter, json_text, printable
from chatd.request_log import RequestLog

HOSTILE = "a\x1b[31mb\rc\nd\te\x00f\x7fg\x85h\x9bi\u202ej\u2066k\u2028l\u00a0m\U000e0001n"


def test_printable_escapes_every_control_and_keeps_text() -> None:
    out = printable(HOSTILE)
    assert out.isprintable()
    assert out == (
        "a\\x1b[31mb\\rc\\nd\\te\\x00f\\x7fg\\x85h\\x9bi\\u202ej\\u2066k\\u2028l\\xa0m\\U000e0001n"
    )
    assert printable("naïve 中文 ok") == "naïve 中文 ok"  # printable text untouched
    assert printable("a\nb\rc", keep="\n") == "a\nb\\rc"


@pytest.mark.parametrize("value", [HOSTILE, {"path": HOSTILE, "n": 1}, ["\U000e0001", "é"]])
def test_json_text_is_printable_and_decodes_to_the_same(value: object) -> None:
    out = json_text(value)
    assert out.isprintable()
    assert json.loads(out) == value
    assert "é" in json_text("é")  # readable, not \u00e9


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad \x1b[2J value\r\nforged line")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("chatd.x", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_text_formatter_makes_one_printable_line() -> None:
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(
        record("model %s not found", "x\x1b[31m\r\nINFO forged")
    )
    assert line == "WARNING chatd.x: model x\\x1b[31m\\r\\nINFO forged not found"


def test_text_formatter_keeps_a_tracebacks_lines_only() -> None:
    rec = record("failed", exc=True)
    logging.Formatter().format(rec)  # another handler first: it caches the raw traceback
    assert "\x1b" in rec.exc_text  # type: ignore[operator]
    text = TextFormatter("%(message)s").format(rec)
    assert "\x1b" not in text and "\r" not in text
    assert text.splitlines()[0] == "failed"
    assert "Traceback (most recent call last):" in text.splitlines()[1]
    assert "bad \\x1b[2J value\\r" in text


def test_json_formatter_escapes_messages_and_request_fields() -> None:
    plain = JsonFormatter().format(record("model %s", HOSTILE, exc=True))
    rec = record("request")
    rec.request = {"path": HOSTILE}  # type: ignore[attr-defined]
    fields = JsonFormatter().format(rec)
    for out in (plain, fields):
        assert out.isprintable()
    assert json.loads(plain)["message"] == "model " + HOSTILE
    assert json.loads(fields)["path"] == HOSTILE


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("/v1/models", "/v1/models"),
        ("/v1/\x1b[31m", '"/v1/\\u001b[31m"'),
        ("trace\x85\x9b", '"trace\\u0085\\u009b"'),
        (
            "a\\u001b",
            '"a\\\\u001b"',
        ),  # a literal backslash: quoted, so it cannot pass for an escape
        ("rtl\u202e", '"rtl\\u202e"'),
        ("a b", '"a b"'),
    ],
)
def test_request_log_values_are_quoted_when_not_plain(value: str, shown: str) -> None:
    line = RequestLog("req_1", "GET", value, client_request_id=value).text()
    assert line.isprintable()
    assert f"client_request_id={shown} " in line and line.endswith(f"path={shown}")

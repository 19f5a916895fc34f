"""What reaches a log file is printable: every character a terminal or a log reader could
act on (ANSI escapes, CR, LF, the other C0 and C1 controls, DEL, Unicode's bidi and other
format characters, line and paragraph separators) is escaped, whoever logged it. Clients
control much of what is logged (URL paths, ``X-Client-Request-Id``, model names, error
messages that quote a request): without this a path could hold ``\\x1b[2J`` to clear an
operator's terminal or a CR/LF to forge a log line.

Done once, in the formatters ``chatd serve`` installs on the root handler (text and
JSON), so every logger's lines are covered, chatd's, uvicorn's and libraries' alike."""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["JsonFormatter", "TextFormatter", "json_text", "printable"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    n = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character ``str.isprintable`` refuses (but those in ``keep``)
    written as a Python escape: ``\\x1b``, ``\\r``, ``\\u202e``. Printable text, the usual
    case, is returned as is after one C-speed check."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in text)


def _json_escape(c: str) -> str:
    n = ord(c)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # a UTF-16 surrogate pair, as JSON spells a character beyond the BMP
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def json_text(value: Any, **dumps: Any) -> str:
    """``json.dumps`` with non-ASCII text kept readable, but with every non-printable
    character escaped as ``\\uXXXX``: ``json.dumps`` escapes only C0 controls, and leaves
    C1 controls, DEL and the bidi controls raw with ``ensure_ascii=False``. The result is
    still valid JSON and decodes to the same value."""
    out = json.dumps(value, ensure_ascii=False, **dumps)
    if out.isprintable():
        return out
    return "".join(c if c.isprintable() else _json_escape(c) for c in out)


class TextFormatter(logging.Formatter):
    """The text format (``--log-format text``): the line (time, level, logger, message)
    entirely printable, CR and LF included; a traceback keeps its line breaks (it is
    many lines by nature) but nothing else that is not printable. The traceback is
    formatted here each time, never taken from ``record.exc_text``, which another
    handler may have cached unescaped."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = printable(self.formatMessage(record))
        if record.exc_info:
            line += "\n" + printable(self.formatException(record.exc_info), keep="\n")
        elif record.exc_text:
            line += "\n" + printable(record.exc_text, keep="\n")
        if record.stack_info:
            line += "\n" + printable(self.formatStack(record.stack_info), keep="\n")
        return line


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object a line, a request line's fields (the
    ``request`` extra of logger ``chatd.requests``) at its top level, others as time,
    level, logger, message (and exception); printable throughout (``json_text``)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json_text(out, default=str)

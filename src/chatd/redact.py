"""Text from elsewhere made fit for a client to read: an upstream's error message (which
may name its host, its URL, a fragment of the key it was sent, the path of the file that
failed) is relayed to chatd's client only through ``redact``.

One function, used wherever a message chatd did not write reaches a client; what it
removes is replaced by a placeholder in angle brackets, so the rest of the message (the
part about the request: "Invalid 'messages[0].content': ...") still reads.

What it removes, in this order:

- the ``secrets`` it is given, verbatim (a channel's key, its host);
- URLs (``scheme://...``) and ``Bearer <token>`` credentials;
- key-like tokens: ``sk-...`` (OpenAI's, redacted with stars as OpenAI echoes them
  too), ``key=...``/``token: ...`` assignments, and any 32+ character run of letters,
  digits, ``-`` and ``_`` (opaque keys, digests);
- IPv4 and IPv6 addresses, ``host:port`` pairs, host names ending in a common
  top-level or internal domain (``api.example.com``, ``gpu.internal``), ``localhost``;
- file paths (``/a/b``, ``C:\\a``) and exception class names (``KeyError``,
  ``ConnectionRefusedException``), and tracebacks: no exception name reaches a client.

Messages are cut to ``MAX_CHARS``. Field paths such as ``text.format.schema`` or
``messages[0].content`` are left alone (their last label is no domain).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MAX_CHARS", "redact", "safe_word"]

MAX_CHARS = 1000

# Top-level (and common internal) domains a host name ends with; a field path's last part
# ("text.format", "item.id", "function.name") is none of them.
_TLDS = (
    "com|net|org|io|ai|dev|cloud|app|co|uk|de|fr|nl|eu|us|jp|cn|ru|ch|se|info|biz|xyz|me|sh"
    "|local|localdomain|internal|intranet|lan|corp|home|svc|cluster|arpa|test|example|invalid"
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Traceback \(most recent call last\):.*", re.S), "<traceback>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://\S+"), "<url>"),
    (re.compile(r"(?i)\bbearer\s+\S+"), "Bearer <key>"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-*.]*"), "sk-<key>"),
    (
        re.compile(
            r"(?i)\b(api[_-]?key|access[_-]?key|secret|token|password|passwd|authorization)"
            r"(\s*[=:]\s*)[\"']?[^\s\"',;]+"
        ),
        r"\1\2<redacted>",
    ),
    (re.compile(r"[A-Za-z0-9_\-]{32,}"), "<redacted>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"), "<host>"),
    (
        re.compile(
            r"(?i)\[?\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b\]?(?::\d{1,5})?"
            r"|\[?(?<![\w:])(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?::(?:[0-9a-f]{1,4}"
            r"(?::[0-9a-f]{1,4})*)?(?![\w:])\]?(?::\d{1,5})?"
        ),
        "<host>",
    ),
    (
        re.compile(
            rf"(?i)\b(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+(?:{_TLDS})\b(?::\d{{1,5}})?"
            r"|\blocalhost\b(?::\d{1,5})?"
        ),
        "<host>",
    ),
    (re.compile(r"\b[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?:\d{2,5}\b"), "<host>"),
    (re.compile(r"\b[A-Za-z]:\\[^\s\"']+"), "<path>"),
    (re.compile(r"(?<![\w\]\)])(?:~|\.{1,2})?(?:/[\w.\-@+]+){2,}/?"), "<path>"),
    (re.compile(r"\b[\w\-]+\.(?:py|pyc|pyx)\b"), "<path>"),
    (
        re.compile(r"\b(?:[A-Za-z_][\w]*\.)*[A-Z][A-Za-z0-9]*(?:Error|Exception|Warning)\b"),
        "error",
    ),  # fmt: skip
]
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,128}$")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without secrets, URLs, hosts, addresses, key fragments, paths or exception
    names, cut to ``MAX_CHARS``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 3] + "..."
    return text


def safe_word(value: object) -> str | None:
    """``value`` if it is a short identifier-like string (an error's ``type``, ``code`` or
    ``param``: ``invalid_request_error``, ``messages[0].content``) that names no
    exception class; else None."""
    if not isinstance(value, str) or not _SAFE_WORD.match(value):
        return None
    if redact(value) != value:
        return None
    return value

"""One request's log record, protocol-neutral: the api layer creates it (request id,
status, timings) and logs it once the response has ended, stream included; the layers
below fill in what only they know (the key's owner, the model, the route taken, the
token counts) through ``current()``, without the api layer knowing engine or upstream
internals. A contextvar carries it: a pure ASGI middleware sets it in the request's task
and every task the request starts inherits the same (mutable) record."""

from __future__ import annotations

import contextvars
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from chatd.log_lines import json_text

__all__ = ["RequestLog", "begin", "current", "end", "first_token", "new_request_id"]


def new_request_id() -> str:
    """Shaped like OpenAI's: ``req_`` and 32 hex digits."""
    return "req_" + secrets.token_hex(16)


@dataclass
class RequestLog:
    """What one line of the request log says. Never the key: ``owner`` is the key's
    owner id (api/auth.py). Prompts and outputs only with ``--log-content``."""

    id: str
    method: str
    path: str
    client_request_id: str | None = None
    started: float = field(default_factory=time.monotonic)
    owner: str | None = None
    model: str | None = None
    route: str | None = None  # "local", or "channel:<name>"
    status: int | None = None  # 499: the client left before the response started
    client_left: bool = False  # the client went away before the response ended
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None  # to the first token (engine step, upstream event)
    total_ms: float | None = None
    request_body: str | None = None  # --log-content only
    response_body: str | None = None  # --log-content only

    def usage(self, prompt: int, completion: int, cached: int | None = None) -> None:
        self.prompt_tokens, self.completion_tokens = prompt, completion
        if cached is not None:
            self.cached_tokens = cached

    def fields(self) -> dict[str, Any]:
        """The line's fields, in reading order, those unknown left out."""
        out: dict[str, Any] = {
            "request_id": self.id,
            "client_request_id": self.client_request_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "client_left": self.client_left or None,
            "owner": self.owner,
            "model": self.model,
            "route": self.route,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": self.ttft_ms,
            "total_ms": self.total_ms,
            "request": self.request_body,
            "response": self.response_body,
        }
        return {k: v for k, v in out.items() if v is not None}

    def text(self) -> str:
        """``key=value`` pairs; values with spaces, quotes, ``=``, backslashes or anything
        not printable JSON-quoted, that escaped too: a client's path, X-Client-Request-Id
        or model name cannot break the line or reach a terminal (chatd/log_lines.py)."""
        return " ".join(f"{k}={_text_value(v)}" for k, v in self.fields().items())

    def json(self) -> str:
        return json_text(self.fields(), separators=(",", ":"))


def _text_value(v: Any) -> str:
    if isinstance(v, bool):  # as in the JSON lines, not Python's True
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.1f}"
    s = str(v)
    if not s or not s.isprintable() or any(c in s for c in ' "=\\'):
        return json_text(s)
    return s


_current: contextvars.ContextVar[RequestLog | None] = contextvars.ContextVar(
    "chatd_request_log", default=None
)


def current() -> RequestLog | None:
    """This request's record (None outside a request, e.g. in a unit test)."""
    return _current.get()


def first_token() -> None:
    """The request's first token has come (the engine's first step, a channel's first
    event): its TTFT. Called once per request by the layers that see it."""
    record = _current.get()
    if record is not None and record.ttft_ms is None:
        record.ttft_ms = round((time.monotonic() - record.started) * 1000, 1)


def begin(record: RequestLog) -> contextvars.Token[RequestLog | None]:
    return _current.set(record)


def end(token: contextvars.Token[RequestLog | None]) -> None:
    _current.reset(token)

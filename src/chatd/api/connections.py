"""What a connection may hold without sending a request: a deadline for its request's
headers (``--header-timeout``) and a cap on open connections (``--max-connections``).

uvicorn has neither. A connection that sends nothing, or half its headers, holds a
socket and a file descriptor for as long as it likes, and no key is needed to open
one: a few thousand such connections (slowloris) exhaust the process's descriptors and
every client is refused. uvicorn's ``limit_concurrency`` answers over-limit *requests*
with a 503, but a connection that never completes its headers is never a request.

So chatd serves with uvicorn's own HTTP protocol (httptools, or h11 without it),
subclassed here:

- **Header deadline.** From the moment a connection opens, and from a kept-alive
  connection's first byte of its next request, its request's headers must be complete
  within ``header_timeout`` seconds, or the connection is closed. Between two requests,
  uvicorn's keep-alive timeout (5 s) closes an idle connection; a request's body and the
  response are not timed here (a stream may last as long as its generation).
- **Cap.** A connection opened while ``max_connections`` are already open is answered at
  once with a 503 (OpenAI's error, ``server_overloaded``, ``Retry-After: 1``) and
  closed without reading its request: the ones already open, streams included, are not
  touched. Its write side is closed first and what it sends is read and dropped for up
  to a second, so the client reads the 503 rather than a reset; refused connections
  lingering at once are themselves bounded by the cap (beyond it they are reset)."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from chatd.protocol.errors import Overloaded

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "fit_file_limit",
    "guarded_protocol",
]

log = logging.getLogger("chatd.api")

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
LINGER_SECONDS = 1.0  # how long a refused connection's request is read and dropped
_WARN_EVERY = 60.0  # seconds between two "connections refused" warnings
# descriptors the process needs besides its connections: the database, upstream
# connections, model files, logs
_SPARE_FILES = 256


def _refusal(max_connections: int) -> bytes:
    """The whole 503 response a connection over the cap gets (built once)."""
    error = Overloaded(
        f"The server has {max_connections} connections open, its limit: retry later.", 1
    )
    body = json.dumps(error.body()).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class _Refusals:
    """The refused connections still lingering, and when the last warning was logged
    (one per minute at most: a flood must not flood the log too)."""

    def __init__(self) -> None:
        self.lingering = 0
        self.since_warning = 0
        self.warned_at = -_WARN_EVERY

    def note(self, max_connections: int) -> None:
        self.since_warning += 1
        now = time.monotonic()
        if now - self.warned_at >= _WARN_EVERY:
            log.warning(
                "%d connection(s) refused: %d open, the limit (--max-connections)",
                self.since_warning,
                max_connections,
            )
            self.warned_at = now
            self.since_warning = 0


class _GuardedProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol with the header deadline and the connection cap; the
    limits are class attributes (``guarded_protocol`` makes the class uvicorn is given:
    it builds one protocol per connection with its own arguments)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    refusal: bytes = b""
    refusals: _Refusals = _Refusals()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._refused: asyncio.Transport | None = None

    # -- the cap

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cap = self.max_connections
        if cap and len(self.connections) >= cap:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._await_headers()

    def _refuse(self, transport: asyncio.Transport) -> None:
        self.refusals.note(self.max_connections)
        if self.refusals.lingering >= self.max_connections:
            transport.abort()  # a flood: no answer, no lingering
            return
        self._refused = transport
        self.refusals.lingering += 1
        transport.write(self.refusal)
        if transport.can_write_eof():
            transport.write_eof()
        self._deadline = self.loop.call_later(LINGER_SECONDS, transport.close)

    # -- the header deadline

    def _await_headers(self) -> None:
        if self._deadline is None and self.header_timeout:
            self._deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("closed a connection: no request headers in %gs", self.header_timeout)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return  # a refused connection's request: read and dropped
        before = self.cycle
        if before is not None and before.response_complete:
            self._await_headers()  # a kept-alive connection's next request begins
        super().data_received(data)
        if self.cycle is not before and self._deadline is not None:
            self._deadline.cancel()  # its headers are complete: it is a request now
            self._deadline = None

    def pause_writing(self) -> None:
        if self._refused is None:  # a refusal is far below the transport's high-water mark
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._refused is None:
            super().resume_writing()

    def eof_received(self) -> bool | None:
        if self._refused is not None:
            return False  # the client has read the 503 and closed: close too
        return super().eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._refused is not None:
            self.refusals.lingering -= 1
            self._refused = None
            return
        super().connection_lost(exc)


def guarded_protocol(
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (``uvicorn.Config(http=...)``): each
    connection's request headers within ``header_timeout`` seconds (0: no limit), at
    most ``max_connections`` open (0: no cap)."""
    return type(
        "GuardedHTTPProtocol",
        (_GuardedProtocol,),
        {
            "header_timeout": header_timeout,
            "max_connections": max_connections,
            "refusal": _refusal(max_connections),
            "refusals": _Refusals(),
        },
    )


def fit_file_limit(max_connections: int) -> None:
    """Raise the process's soft limit on open files so that ``max_connections`` fit with
    room to spare (up to the hard limit; systemd's default soft limit is 1024), or warn
    that the cap cannot be reached: past the limit, accepting a connection fails and no
    client gets an answer."""
    if not max_connections:
        return
    need = max_connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < need:
        log.warning(
            "the open-file limit (%d) leaves no room for --max-connections %d: lower it,"
            " or raise the limit (ulimit -n, systemd LimitNOFILE=)",
            soft,
            max_connections,
        )

"""Request ids and the request log: every response carries ``x-request-id`` (OpenAI's
SDKs read it into ``_request_id``; on the Messages API's paths ``request-id`` too, which
Anthropic's SDKs read), and every request ends in one log line (logger
``chatd.requests``) with that id, the client's ``X-Client-Request-Id``, and what the
layers below noted in its ``RequestLog`` (chatd/request_log.py): owner, model, route,
tokens, TTFT; the total time measured here.

A pure ASGI middleware, outermost so that refusals (a drain's 503) carry the id too: it
costs one header and two clock reads per request, and wraps ``send`` and ``receive``
only to add the header and see the status, the response's end and the client's
``http.disconnect``. Bodies are read only with ``--log-content``.

A client that leaves before the response has started is logged with status 499, nginx's
"client closed request" that operators know (whatever the app then sends goes to
nobody); one that leaves mid-response keeps the status it was sent, with
``client_left=true``. A disconnect is seen when the app next reads ``receive`` (the
body, or api/disconnect.py's watcher); ASGI servers also answer ``http.disconnect``
once the response is complete, which is not a client leaving."""

from __future__ import annotations

import logging
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd import request_log
from chatd.api.errors import error_response, is_messages_path
from chatd.protocol.errors import ServerError
from chatd.request_log import RequestLog, new_request_id

__all__ = ["RequestIdMiddleware"]

log = logging.getLogger("chatd.requests")

_UNEXPECTED = ServerError("The server had an error while processing your request.")
_CLIENT_ID = b"x-client-request-id"
_QUIET = frozenset({"/health", "/metrics"})
_MAX_CLIENT_ID = 512  # OpenAI's limit on X-Client-Request-Id too
_CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client gone before the response


class RequestIdMiddleware:
    """Gives each HTTP request its id, its header, and its one log line."""

    def __init__(self, app: ASGIApp, content: bool = False) -> None:
        self.app = app
        self.content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id()
        record = RequestLog(rid, scope["method"], scope["path"], _client_id(scope))
        io = _Exchange(record, receive, send, self.content, is_messages_path(scope["path"]))
        token = request_log.begin(record)
        try:
            await self.app(scope, io.receive, io.send)
        except ClientDisconnect:  # gone while its body was read: nobody to answer
            record.status = record.status or _CLIENT_CLOSED_REQUEST
        except Exception:
            if record.status is not None:  # a stream broken off: nothing more to send
                raise
            # Answered here, not by Starlette's outermost handler: its 500 would carry
            # no x-request-id.
            logging.getLogger("chatd.api").exception("unhandled error (request_id=%s)", rid)
            await error_response(_UNEXPECTED)(scope, receive, io.send)
        except BaseException:
            gone = record.client_left
            record.status = record.status or (_CLIENT_CLOSED_REQUEST if gone else 500)
            raise
        finally:
            request_log.end(token)
            record.total_ms = round((time.monotonic() - record.started) * 1000, 1)
            if self.content:
                record.request_body = _text(io.request_body)
                record.response_body = _text(io.response_body)
            # A load balancer's health checks and Prometheus's scrapes would drown the
            # rest: their lines are debug.
            level = logging.DEBUG if scope["path"] in _QUIET else logging.INFO
            if log.isEnabledFor(level):  # --log-level warning: no line to make
                log.log(level, record.text(), extra={"request": record.fields()})


class _Exchange:
    """The app's ``send`` and ``receive`` for one request: the header added, the status
    and the client's leaving noted in its record, the bodies kept with
    ``--log-content``."""

    __slots__ = ("content", "ended", "headers", "inner_receive", "inner_send", "record",
                 "request_body", "response_body")  # fmt: skip

    def __init__(
        self, record: RequestLog, receive: Receive, send: Send, content: bool, anthropic: bool
    ) -> None:
        self.record = record
        self.inner_receive = receive
        self.inner_send = send
        self.content = content
        rid = record.id.encode()
        # Anthropic's clients read the id from ``request-id`` (the SDKs' ``_request_id``)
        self.headers = [(b"x-request-id", rid)] + ([(b"request-id", rid)] if anthropic else [])
        self.ended = False  # the response's last body message has been sent
        self.request_body: list[bytes] = []
        self.response_body: list[bytes] = []

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            gone = self.record.client_left  # then nobody will read what it says
            self.record.status = _CLIENT_CLOSED_REQUEST if gone else message["status"]
            message["headers"] = [*message.get("headers", ()), *self.headers]
        elif kind == "http.response.body":
            if self.content:
                self.response_body.append(message.get("body", b""))
            self.ended = not message.get("more_body", False)
        await self.inner_send(message)

    async def receive(self) -> Message:
        message = await self.inner_receive()
        kind = message["type"]
        if kind == "http.disconnect":
            if not self.ended:  # after the end, servers answer this to every read
                self.record.client_left = True
        elif self.content and kind == "http.request":
            self.request_body.append(message.get("body", b""))
        return message


def _client_id(scope: Scope) -> str | None:
    for k, v in scope["headers"]:
        if k == _CLIENT_ID:  # ASGI servers give header names in lower case
            return v[:_MAX_CLIENT_ID].decode("latin-1")
    return None


def _text(parts: list[bytes]) -> str:
    return b"".join(parts).decode("utf-8", "replace")

"""Every error leaves as its API's error body: OpenAI's ``{"error": {...}}``, or on the
Messages API's paths (``/v1/messages``, ``/v1/messages/count_tokens``) Anthropic's
``{"type": "error", "error": {...}, "request_id": ...}``. Framework defaults
(``{"detail": ...}``) and tracebacks never reach a client.

The shape is chosen in one place, by the request's path, when the response is sent
(:class:`ErrorResponse`): so every refusal (a route's, the validation's, the auth's,
a middleware's: Host and Origin, drain, the request-id middleware's 500) answers a
Messages client in Anthropic's shape without knowing which API it refused."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from chatd import request_log
from chatd.protocol.errors import APIError, InvalidRequest, NotFound, ServerError
from chatd.protocol.messages_errors import anthropic_error_body, anthropic_status

__all__ = [
    "ErrorResponse",
    "error_response",
    "install_error_handlers",
    "is_messages_path",
]

log = logging.getLogger("chatd.api")

MESSAGES_PATH = "/v1/messages"


def is_messages_path(path: str) -> bool:
    """The paths whose errors are Anthropic's (the Messages API's)."""
    return path == MESSAGES_PATH or path.startswith(MESSAGES_PATH + "/")


class ErrorResponse(Response):
    """``error`` in the shape of the API its request's path belongs to, decided when it
    is sent (the one place that knows both shapes)."""

    def __init__(self, error: APIError) -> None:
        self.error = error
        self.status_code = error.status
        self.background = None
        self.init_headers(error.headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = self.error
        if is_messages_path(scope.get("path", "")):
            record = request_log.current()
            rid = record.id if record is not None else None
            response = JSONResponse(
                anthropic_error_body(error, rid),
                status_code=anthropic_status(error),
                headers=error.headers,
            )
        else:
            response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
        await response(scope, receive, send)


def error_response(error: APIError) -> ErrorResponse:
    return ErrorResponse(error)


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes (RFC 9110 wants them in a 405's
    ``Allow``): Starlette names only the first route's, and chatd's stored objects have
    one route per method."""
    matched = [
        r
        for r in _leaf_routes(request.app.router.routes)
        if r.matches(request.scope)[0] != Match.NONE
    ]
    # a path some route names literally (/v1/responses/compact) is that route's: a route
    # with a parameter in its place (/v1/responses/{response_id}) does not add its methods
    literal = [r for r in matched if not getattr(r, "param_convertors", None)]
    methods: set[str] = set()
    for route in literal or matched:
        methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes of ``routes`` and of the routers included in them (FastAPI wraps an
    included router in one route; chatd includes them without a prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            err: APIError = NotFound(f"Invalid URL ({request.method} {request.url.path})")
        elif exc.status_code == 405:
            err = InvalidRequest(
                f"Method {request.method} is not allowed for {request.url.path}",
                status=405,
                headers={"Allow": _allowed_methods(request)},
            )
        else:
            err = APIError(str(exc.detail), status=exc.status_code)
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return error_response(
            InvalidRequest(
                f"Invalid request: {first.get('msg', 'invalid input')}", param=loc or None
            )
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(ServerError("The server had an error while processing your request."))

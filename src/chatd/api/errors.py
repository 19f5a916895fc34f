"""Every error leaves as OpenAI's ``{"error": {...}}`` body: framework defaults
(``{"detail": ...}``) and tracebacks never reach a client."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from chatd.protocol.errors import APIError, InvalidRequest, NotFound, ServerError

log = logging.getLogger("chatd.api")


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path takes (RFC 9110 wants them in a 405's
    ``Allow``): Starlette names only the first route's, and chatd's stored objects have
    one route per method."""
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
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
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
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
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return error_response(
            InvalidRequest(
                f"Invalid request: {first.get('msg', 'invalid input')}", param=loc or None
            )
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(ServerError("The server had an error while processing your request."))

"""The browser playground: ``GET /`` answers its page, ``GET /playground/{file}`` its
stylesheet and ES modules, all shipped inside the package (``chatd/api/playground/``,
listed in pyproject's package-data) so it works offline with no build step.

Why no auth here: the files hold no data; every data call the page makes carries the
key the user typed (kept in the browser's localStorage only). Why explicit routes
rather than StaticFiles: a fixed allow-list of files read once through
``importlib.resources`` (no path from the URL ever touches the file system), each with
its content type, and the same Content-Security-Policy on all of them: the page may
load and fetch from this server only, so it can never reach an external URL.

These routes are not API routes: /openapi.json (api/openapi.py) does not list them."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from chatd.protocol.errors import NotFound

__all__ = ["ASSETS", "CSP", "router"]

router = APIRouter(include_in_schema=False)

# Everything the page loads, and only from here (tests/e2e/test_playground.py checks
# that a session with the page makes no request elsewhere).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}

# The files served under /playground/ (index.html is served at /).
ASSETS = (
    "playground.css",
    "main.js",
    "api.js",
    "models.js",
    "params.js",
    "chat.js",
    "logprobs.js",
    "tools.js",
    "stored.js",
    "dom.js",
    "complete.js",
)


@cache
def _read(name: str) -> bytes:
    """One packaged file's bytes, read once (they do not change while serving)."""
    return resources.files("chatd.api").joinpath("playground", name).read_bytes()


def _serve(name: str) -> Response:
    suffix = name[name.rfind(".") :]
    return Response(
        _read(name),
        media_type=_TYPES[suffix],
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/")
async def index() -> Response:
    """The playground's page."""
    return _serve("index.html")


@router.get("/playground/{name}")
async def asset(name: str) -> Response:
    """One of the page's files; any other name is the API's usual 404."""
    if name not in ASSETS:
        raise NotFound(f"Invalid URL (GET /playground/{name})")
    return _serve(name)

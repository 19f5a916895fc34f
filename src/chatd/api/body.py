"""Reading a JSON route's request body: declared as JSON, and never more of it than the
server accepts.

The declared type is checked first: a web page may send a ``text/plain`` or form body
to any server without the browser asking that server first (a CORS "simple request"),
so a JSON route that read such a body as JSON could be driven by any page its user
visits (docs/security.md, "Browser origins and connections"). ``application/json``
with parameters (``; charset=utf-8``) is JSON; nothing else is, and neither is no type
at all. Then the size: a declared ``Content-Length`` over the limit is refused before a
byte is read, and a chunked body is counted while it arrives and refused as soon as it
passes the limit."""

from __future__ import annotations

from fastapi import Request

from chatd.protocol.errors import UnsupportedContentType
from chatd.protocol.request_limits import RequestTooLarge

__all__ = ["is_json", "read_body"]

JSON = "application/json"


def is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` value declares JSON (its parameters aside)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == JSON


async def read_body(request: Request, limit: int) -> bytes:
    """The whole JSON body; UnsupportedContentType (415) when it is not declared as JSON,
    RequestTooLarge (413) past ``limit`` bytes (0: no limit)."""
    content_type = request.headers.get("content-type")
    if not is_json(content_type):
        raise UnsupportedContentType(content_type)
    if not limit:
        return await request.body()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)

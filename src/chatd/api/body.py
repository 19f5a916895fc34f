"""Reading a request body without reading more than the server accepts: a declared
``Content-Length`` over the limit is refused before a byte is read, and a chunked body
is counted while it arrives and refused as soon as it passes the limit."""

from __future__ import annotations

from fastapi import Request

from chatd.protocol.request_limits import RequestTooLarge

__all__ = ["read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or RequestTooLarge (413) past ``limit`` bytes (0: no limit)."""
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

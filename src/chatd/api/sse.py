"""Server-sent events as OpenAI sends them: ``data: {json}`` per chunk, ``data: [DONE]``
at the end, and an error event (and no ``[DONE]``) when a stream fails midway, so a
truncated stream never looks complete."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chatd.api.disconnect import until_disconnect
from chatd.protocol.errors import APIError, ServerError

log = logging.getLogger("chatd.api")


def encode(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def event_stream(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield encode(chunk)
    except APIError as e:
        yield encode(e.body())
        return
    except Exception:
        log.exception("stream failed")
        yield encode(ServerError("The server had an error while generating the stream.").body())
        return
    yield b"data: [DONE]\n\n"


class EventStreamResponse(Response):
    """An SSE response written straight to ASGI ``send``, with a plain asyncio watcher
    for the client's disconnect (api/disconnect.py), which cancels the stream (freeing
    the engine slot, or closing the upstream). Starlette's StreamingResponse does the
    same through an anyio task group, which cost 0.3 ms of a relayed stream's first
    chunk (measured)."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes]) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await until_disconnect(receive, self._stream(send))

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

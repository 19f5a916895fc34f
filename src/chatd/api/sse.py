"""Server-sent events as OpenAI sends them: ``data: {json}`` per chunk, ``data: [DONE]``
at the end, and an error event (and no ``[DONE]``) when a stream fails midway, so a
truncated stream never looks complete."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chatd.api.disconnect import until_disconnect
from chatd.api.drain import Drain
from chatd.api.errors import error_response
from chatd.protocol.errors import APIError, ServerError, ShuttingDown

log = logging.getLogger("chatd.api")


def encode(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


async def event_stream(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield encode(chunk)
    except APIError as e:
        yield error_event(e)
        return
    except Exception:
        log.exception("stream failed")
        yield encode(ServerError("The server had an error while generating the stream.").body())
        return
    finally:
        await aclose(chunks)
    yield b"data: [DONE]\n\n"


async def aclose(events: AsyncIterator[Any]) -> None:
    """Close a stream's generator now (its ``finally``: usage counted, upstream closed)
    rather than whenever it is collected: a stream stopped between two events (client
    gone, drain deadline) leaves its generators suspended."""
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def error_event(error: APIError) -> bytes:
    """A Chat Completions stream's last event when it fails midway (no ``[DONE]``)."""
    return encode(error.body())


class EventStreamResponse(Response):
    """An SSE response written straight to ASGI ``send``, with a plain asyncio watcher
    for the client's disconnect (api/disconnect.py), which cancels the stream (freeing
    the engine slot, or closing the upstream). Starlette's StreamingResponse does the
    same through an anyio task group, which cost 0.3 ms of a relayed stream's first
    chunk (measured).

    The server's drain deadline (``drain.cut``, api/drain.py) cancels it too, and then
    the stream ends with ``cut_event`` (the protocol's error event, never its normal
    end), or, if nothing was sent yet, the request is a 503. ``cancel`` frees the work
    however the stream ended."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        drain: Drain | None = None,
        cut_event: Callable[[APIError], bytes] = error_event,
        cancel: Callable[[], None] | None = None,
    ) -> None:
        self.events = events
        self.drain = drain
        self.cut_event = cut_event
        self.cancel = cancel
        self.status_code = 200
        self.background = None
        self._started = False
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cut = self.drain.cut if self.drain is not None else None
        try:
            await until_disconnect(receive, self._stream(send), cut)
        except ShuttingDown as e:
            if not self._started:
                await error_response(e)(scope, receive, send)
                return
            last = self.cut_event(e)
            await send({"type": "http.response.body", "body": last, "more_body": False})
        finally:
            if self.cancel is not None:
                self.cancel()

    async def _stream(self, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            self._started = True
            async for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        finally:
            await aclose(self.events)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

"""Server-sent events as OpenAI sends them: ``data: {json}`` per chunk, ``data: [DONE]``
at the end, and an error event (and no ``[DONE]``) when a stream fails midway, so a
truncated stream never looks complete."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

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

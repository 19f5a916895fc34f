"""The legacy Completions API's route: ``POST /v1/completions`` (whole, or ``data:``
chunks of ``text_completion`` objects and ``data: [DONE]``, as chat's stream)."""

from __future__ import annotations

from functools import partial

from fastapi import Request
from fastapi.responses import Response

from chatd.api.answering import admit, held, whole_answer
from chatd.api.auth import Caller
from chatd.api.body import read_body
from chatd.api.deps import Services, services_of
from chatd.api.sse import EventStreamResponse, event_stream
from chatd.protocol.completions_request import validate_completion_request
from chatd.protocol.request_limits import check_completions_body
from chatd.protocol.validation import decode_chat_body

__all__ = ["create_completion"]


async def create_completion(request: Request) -> Response:
    """A plain Starlette route, like chat's: errors go through the app's handlers."""
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_create, request, services, caller))


async def _create(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    data = decode_chat_body(body)
    check_completions_body(data, services.limits)
    req = validate_completion_request(data)
    admission = await admit(services, caller, req.model, size=len(body))
    completion = await services.completions.start(req, caller.owner, admission)
    if req.is_streaming():
        await completion.prime()
        return EventStreamResponse(
            event_stream(completion.chunks()), services.drain, cancel=completion.cancel
        )
    return await whole_answer(request, completion.result(), completion.cancel)

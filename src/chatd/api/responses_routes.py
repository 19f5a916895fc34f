"""The Responses API routes: create (streamed or whole), and a stored response's
retrieve, delete, cancel and input items."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from chatd.api.answering import admit, held, whole_answer
from chatd.api.auth import Caller
from chatd.api.body import read_body
from chatd.api.deps import CallerDep, Services, ServicesDep, services_of
from chatd.api.sse import EventStreamResponse, aclose
from chatd.protocol.errors import APIError, InvalidRequest
from chatd.protocol.request_limits import check_responses_body
from chatd.protocol.responses_items import MessageItem
from chatd.protocol.responses_request import validate_response_request
from chatd.protocol.validation import decode_chat_body
from chatd.service.responses.compaction import compact_body, compacted

__all__ = ["TOOLS_NOT_RUN", "compact_response", "create_response", "router"]

log = logging.getLogger("chatd.api")
TOOLS_NOT_RUN = "x-chatd-tools-not-run"


async def create_response(request: Request) -> Response:
    """A plain Starlette route, like chat's: errors go through the app's handlers."""
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_create, request, services, caller))


async def _create(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    data = decode_chat_body(body)
    check_responses_body(data, services.limits)
    req = validate_response_request(data)
    admission = await admit(services, caller, req.model, stores=req.stores(), size=len(body))
    answer = await services.responses.start(req, caller.owner, admission)
    if req.is_streaming():
        await answer.prime()
        events = TypedEvents(answer.events())
        response: Response = EventStreamResponse(
            events.encoded(), services.drain, events.error, answer.cancel
        )
    else:
        response = await whole_answer(request, answer.result(), answer.cancel)
    if answer.tools_not_run:
        # Hosted tools offered and never run (docs/acceptance.md): said, not hidden.
        response.headers[TOOLS_NOT_RUN] = ", ".join(answer.tools_not_run)
    return response


async def compact_response(request: Request) -> Response:
    """``POST /v1/responses/compact`` (docs/compaction.md): the conversation in its body
    summarised by the model, returned as its user messages and one sealed compaction
    item. A plain route like create's, for the same reasons."""
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_compact, request, services, caller))


async def _compact(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    data = compact_body(decode_chat_body(body))
    check_responses_body(data, services.limits)
    req = validate_response_request(data)
    admission = await admit(services, caller, req.model, stores=False, size=len(body))
    answer = await services.responses.start(req, caller.owner, admission)
    users = [i.text() for i in req.input_items() if isinstance(i, MessageItem) and i.role == "user"]

    async def result() -> dict[str, Any]:
        return compacted(await answer.result(), users)

    return await whole_answer(request, result(), answer.cancel)


def _encode(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


class TypedEvents:
    """Responses streams as OpenAI writes them: an ``event:`` line naming each event's
    type before its ``data:``, and no ``[DONE]`` (the final ``response.*`` event ends
    it). A failure the answer could not report itself (or the drain's cut) becomes an
    ``error`` event, numbered after the last event sent."""

    def __init__(self, events: AsyncIterator[dict[str, Any]]) -> None:
        self.events = events
        self.number = 0

    async def encoded(self) -> AsyncIterator[bytes]:
        try:
            async for event in self.events:
                yield _encode(event)
                # counted once sent (resumed): a cut while sending it leaves no gap
                self.number = event.get("sequence_number", self.number) + 1
        except Exception as e:
            if not isinstance(e, APIError):
                log.exception("response stream failed")
                e = APIError("The server had an error while generating the response.", status=500)
            yield self.error(e)
        finally:
            await aclose(self.events)

    def error(self, e: APIError) -> bytes:
        return _encode(
            {
                "type": "error",
                "code": e.code or "server_error",
                "message": str(e),
                "param": e.param,
                "sequence_number": self.number,
            }
        )


router = APIRouter()


@router.get("/v1/responses/{rid}")
async def get_response(
    rid: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    return await services.stored_responses.get(caller.owner, rid, request.query_params)


@router.delete("/v1/responses/{rid}")
async def delete_response(rid: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return await services.stored_responses.delete(caller.owner, rid)


@router.post("/v1/responses/{rid}/cancel")
async def cancel_response(rid: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """Only background responses can be cancelled, and chatd runs none (``background``
    is refused), so an existing response is a 400 as OpenAI's is; another a 404."""
    await services.stored_responses.get(caller.owner, rid)
    raise InvalidRequest("Only responses created with background=true can be cancelled.")


@router.get("/v1/responses/{rid}/input_items")
async def list_input_items(
    rid: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    return await services.stored_responses.input_items(caller.owner, rid, request.query_params)

"""The Chat Completions routes: create (streamed or whole), and the stored completions'
list, get, update, delete and messages."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from chatd.api.answering import admit, held, whole_answer
from chatd.api.auth import Caller
from chatd.api.body import read_body
from chatd.api.deps import CallerDep, Services, ServicesDep, services_of
from chatd.api.sse import EventStreamResponse, event_stream
from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.relayed_request import validate_relayed_request
from chatd.protocol.request_limits import check_chat_body
from chatd.protocol.stored import parse_list_query, parse_update
from chatd.protocol.validation import decode_chat_body
from chatd.service.chat import ChatRequest

__all__ = ["create_chat_completion", "stored_router"]


async def create_chat_completion(request: Request) -> Response:
    """The hot route is a plain Starlette route: FastAPI's dependency solving and
    response handling cost a measurable part of what a relay adds (docs/gateway.md);
    errors still go through the app's handlers."""
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_create, request, services, caller))


async def _create(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    data = decode_chat_body(body)
    check_chat_body(data, services.limits)
    if services.chat.relays_untouched(data.get("model")):
        req: ChatRequest = validate_relayed_request(data)
    else:
        req = validate_chat_request(data)
    stores = req.store is True
    admission = await admit(services, caller, req.model, stores=stores, size=len(body))
    completion = await services.chat.start(req, caller.owner, admission)
    if req.is_streaming():
        await completion.prime()
        return EventStreamResponse(
            event_stream(completion.chunks()), services.drain, cancel=completion.cancel
        )
    return await whole_answer(request, completion.result(), completion.cancel)


stored_router = APIRouter()


@stored_router.get("/v1/chat/completions")
async def list_completions(
    request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    query = parse_list_query(request.query_params, filters=True)
    return await services.stored.list(caller.owner, query)


@stored_router.get("/v1/chat/completions/{cid}")
async def get_completion(cid: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return await services.stored.get(caller.owner, cid)


@stored_router.post("/v1/chat/completions/{cid}")
async def update_completion(
    cid: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    body = await read_body(request, services.limits.max_body_bytes)
    return await services.stored.update(caller.owner, cid, parse_update(body))


@stored_router.delete("/v1/chat/completions/{cid}")
async def delete_completion(cid: str, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    return await services.stored.delete(caller.owner, cid)


@stored_router.get("/v1/chat/completions/{cid}/messages")
async def list_messages(
    cid: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    query = parse_list_query(request.query_params, filters=False)
    return await services.stored.messages(caller.owner, cid, query)

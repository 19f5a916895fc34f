"""Anthropic's Messages API routes: ``POST /v1/messages`` (whole, or Anthropic's named
server-sent events) and ``POST /v1/messages/count_tokens``.

Keys come as ``x-api-key`` or ``Authorization: Bearer`` (api/auth.py); the
``anthropic-version`` and ``anthropic-beta`` headers and Claude Code's ``?beta=true``
are accepted (chatd serves one version of the API). Every error on these paths is
Anthropic's shape, rendered by api/errors.py from the path."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from chatd.api.answering import admit, held, whole_answer
from chatd.api.auth import Caller
from chatd.api.body import read_body
from chatd.api.deps import Services, services_of
from chatd.api.sse import EventStreamResponse, aclose
from chatd.protocol.errors import APIError, InvalidRequest, ModelNotFound
from chatd.protocol.messages_request import (
    validate_count_tokens_request,
    validate_messages_request,
)
from chatd.protocol.request_limits import check_messages_body
from chatd.protocol.validation import too_deep
from chatd.service.messages.answer import MessageAnswer

__all__ = ["count_tokens", "create_message"]

log = logging.getLogger("chatd.api")


async def create_message(request: Request) -> Response:
    """A plain Starlette route, like chat's: errors go through the app's handlers."""
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_create, request, services, caller))


async def _create(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    data = decoded(body)
    check_messages_body(data, services.limits)
    req = validate_messages_request(data).with_betas(request.headers.get("anthropic-beta"))
    admission = await admit(services, caller, req.model, size=len(body))
    answer = await services.messages.start(req, caller.owner, admission)
    if req.is_streaming():
        await answer.prime()
        events = NamedEvents(answer)
        return EventStreamResponse(events.encoded(), services.drain, events.cut, answer.cancel)
    return await whole_answer(request, answer.result(), answer.cancel)


async def count_tokens(request: Request) -> Response:
    """The prompt's tokens, ``{"input_tokens": N}``: held among the key's requests in
    flight (it may load the model) but not counted in its rate limits (Anthropic limits
    token counting apart from messages, and it generates nothing)."""
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_count, request, services, caller))


async def _count(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    data = decoded(body)
    check_messages_body(data, services.limits)
    req = validate_count_tokens_request(data).with_betas(request.headers.get("anthropic-beta"))
    if not caller.may_use(req.model):
        raise ModelNotFound(req.model)
    tokens = await services.messages.count_tokens(req, caller.owner)
    return JSONResponse({"input_tokens": tokens})


def decoded(body: bytes) -> dict[str, Any]:
    """The body's JSON object, or a 400 in Anthropic's words."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequest("There was an issue with your request body: invalid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Input should be a valid dictionary")
    if too_deep(data):
        raise InvalidRequest("The request body is nested too deeply.")
    return data


def _encode(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


class NamedEvents:
    """A message's stream as Anthropic writes it: ``event: <type>`` then ``data:``, no
    ``[DONE]`` (``message_stop`` ends it). A failure the answer could not report itself
    (or the drain's cut) becomes an ``error`` event."""

    def __init__(self, answer: MessageAnswer) -> None:
        self.answer = answer
        self.events = answer.events()

    async def encoded(self) -> AsyncIterator[bytes]:
        try:
            async for event in self.events:
                yield _encode(event)
        except Exception as e:
            if not isinstance(e, APIError):
                log.exception("message stream failed")
                e = APIError("The server had an error while generating the message.", status=500)
            yield self.cut(e)
        finally:
            await aclose(self.events)

    def cut(self, error: APIError) -> bytes:
        return _encode(self.answer.error_event(error))

"""What every protocol's create route does around its service: the caller has a place
among its key's requests in flight, held until the answer has been sent (a stream's last
byte included) however it ends; may use the model, has room in its storage quota when
the answer is to be stored, and is within its rate limits. A whole answer is awaited
unless the client goes away (then its work is cancelled and nobody is answered) or the
server's drain deadline passes (api/drain.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from chatd.api.auth import Caller
from chatd.api.deps import Services, services_of
from chatd.api.disconnect import until_disconnect
from chatd.protocol.errors import ModelNotFound
from chatd.service.in_flight import Slot
from chatd.service.limits import Admission

__all__ = ["admit", "held", "whole_answer"]


async def held(
    services: Services, caller: Caller, work: Callable[[], Awaitable[Response]]
) -> Response:
    """``work``'s response, holding one of the caller's places in flight from now until
    the response has been sent: a 429 at once when its key has them all (before its body
    is read, so a refusal costs next to nothing); the place is given back at once if
    ``work`` raises (refused, failed or cancelled before an answer)."""
    slot = services.in_flight.acquire(caller.owner, caller.max_in_flight)
    try:
        response = await work()
    except BaseException:
        slot.release()
        raise
    return Holding(response, slot)


async def admit(
    services: Services, caller: Caller, model: str, *, stores: bool = False, size: int = 0
) -> Admission:
    """The caller's admission for ``model``: a 404 for a model its key may not use (as if
    absent); for an answer to store (``stores``), a 400 naming ``store`` when its owner's
    stored records plus this request's ``size`` bytes are over its quota; a 429 past its
    rate limits (checked last: a request refused before counts in no window)."""
    if not caller.may_use(model):
        raise ModelNotFound(model)
    if stores and services.storage_quota is not None:
        await services.storage_quota.check(caller.owner, caller.max_stored_bytes, size)
    # Counted per model, whatever public id names it (service/models.py, ``canonical``).
    canonical = services.models.canonical
    model_rpm, model_tpm = caller.limits_for(model, canonical)
    return await services.limiter.admit(
        caller.owner, caller.rpm, caller.tpm, canonical(model), model_rpm, model_tpm, shown=model
    )


class Holding(Response):
    """``response``, sent as it is; ``slot`` is given back once it has been sent (or the
    client left, or sending failed): the one place every answer's end passes through."""

    def __init__(self, response: Response, slot: Slot) -> None:
        self.response = response
        self.slot = slot
        self.status_code = response.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.response(scope, receive, send)
        finally:
            self.slot.release()


async def whole_answer(
    request: Request, result: Awaitable[dict[str, Any]], cancel: Callable[[], None]
) -> Response:
    """The answer as one JSON body; a client gone first frees its work (499, unsent); the
    drain's deadline cuts it (503 ``server_shutting_down``, raised)."""
    try:
        body = await until_disconnect(request.receive, result, services_of(request).drain.cut)
    finally:
        cancel()
    if body is None:  # client gone: nobody to answer; its slot is already freed
        return Response(status_code=499)
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        media_type="application/json",
    )

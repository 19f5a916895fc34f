"""What every protocol's create route does around its service: the caller may use the
model and is within its rate limits; a whole answer is awaited unless the client goes
away (then its work is cancelled and nobody is answered) or the server's drain deadline
passes (api/drain.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from chatd.api.auth import Caller
from chatd.api.deps import Services, services_of
from chatd.api.disconnect import until_disconnect
from chatd.protocol.errors import ModelNotFound
from chatd.service.limits import Admission

__all__ = ["admit", "whole_answer"]


async def admit(services: Services, caller: Caller, model: str) -> Admission:
    """The caller's admission for ``model``: a 404 for a model its key may not use (as if
    absent), a 429 past its limits."""
    if not caller.may_use(model):
        raise ModelNotFound(model)
    # Counted per model, whatever public id names it (service/models.py, ``canonical``).
    canonical = services.models.canonical
    model_rpm, model_tpm = caller.limits_for(model, canonical)
    return await services.limiter.admit(
        caller.owner, caller.rpm, caller.tpm, canonical(model), model_rpm, model_tpm, shown=model
    )


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

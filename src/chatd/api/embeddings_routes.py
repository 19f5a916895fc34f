"""``POST /v1/embeddings``: OpenAI's Embeddings API (protocol/embeddings.py), answered by
service/embeddings.py. Held among the key's requests in flight and counted in its rate
limits like any create route; a client gone drops the work not yet computed."""

from __future__ import annotations

from functools import partial

from fastapi import Request
from fastapi.responses import Response

from chatd.api.answering import admit, held, whole_answer
from chatd.api.auth import Caller
from chatd.api.body import read_body
from chatd.api.deps import Services, services_of
from chatd.protocol.embeddings import validate_embeddings_request
from chatd.protocol.validation import decode_chat_body
from chatd.service.embeddings import EmbeddingsService

__all__ = ["create_embedding"]


async def create_embedding(request: Request) -> Response:
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_create, request, services, caller))


async def _create(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    req = validate_embeddings_request(decode_chat_body(body))
    admission = await admit(services, caller, req.model, size=len(body))
    embeddings: EmbeddingsService = request.app.state.embeddings
    work = embeddings.answer(req, caller.owner, admission)
    return await whole_answer(request, work, lambda: None)

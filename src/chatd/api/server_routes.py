"""Routes about the server rather than one protocol: health, the model list, and the
operator's views (channels, Prometheus metrics), which other keys see as absent."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from chatd.api.deps import CallerDep, ServicesDep
from chatd.protocol.errors import ModelNotFound, NotFound, ShuttingDown
from chatd.protocol.messages_models import anthropic_model, anthropic_model_list
from chatd.service.metrics import exposition

__all__ = ["router"]

router = APIRouter()


@router.get("/health")
async def health(request: Request, services: ServicesDep) -> Any:
    """200 while serving; 503 ``draining`` from the moment the server starts to drain
    (SIGTERM, api/drain.py), so a load balancer stops sending before it goes.

    Without a valid key (where keys are required) that status is all it says: the model
    ids and engine statistics are the server's to tell. A client's key sees the local
    models it may use, loaded or not; only the operator (an --api-key, or anyone on a
    server with no key) sees every one with its engine's statistics, and the requests in
    flight when draining: the statistics count every owner's work (prefix-cache hits, KV
    cells, queue), which would tell one tenant about the others' prompts."""
    caller = await services.auth.optional(request)
    drain = services.drain
    body: dict[str, Any] = {"status": "draining" if drain.draining else "ok"}
    if caller is not None:
        if drain.draining and caller.operator:
            body["in_flight"] = drain.in_flight
        body["models"] = services.models.health(caller.may_use, stats=caller.operator)
    if drain.draining:
        return JSONResponse(
            body,
            status_code=503,
            headers={"Retry-After": str(ShuttingDown.retry_after), "Connection": "close"},
        )
    return body


@router.get("/v1/models")
async def list_models(request: Request, caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """OpenAI's list; Anthropic's when the request carries ``anthropic-version``."""
    cards = [c for c in services.models.cards() if caller.may_use(c["id"])]
    if _anthropic(request):
        return anthropic_model_list(cards)
    if "client_version" in request.query_params:  # Codex's catalogue (service/model_card.py)
        return {"object": "list", "data": cards, "models": services.models.codex_models(cards)}
    return {"object": "list", "data": cards}


@router.get("/v1/models/{model_id:path}")
async def get_model(
    model_id: str, request: Request, caller: CallerDep, services: ServicesDep
) -> dict[str, Any]:
    if not caller.may_use(model_id):
        raise ModelNotFound(model_id)
    card = services.models.get(model_id).card(model_id)
    return anthropic_model(card) if _anthropic(request) else card


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


@router.get("/chatd/models")
async def model_states(caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """chatd's own view for pickers (the playground, ``chatd models``): every model id
    this key may use, with each route's state, cooling-down ones included (``/v1/models``
    lists only what can be served now, as OpenAI's does)."""
    rows = [row for row in services.models.states() if caller.may_use(row["id"])]
    return {"object": "list", "data": rows}


@router.get("/v1/channels")
async def list_channels(caller: CallerDep, services: ServicesDep) -> dict[str, Any]:
    """Upstream channels and their health, and every public model id with whether it can
    be served now (and why not): for the operator's keys (--api-key) only."""
    if not caller.operator:
        raise NotFound("Invalid URL (GET /v1/channels)")
    models = services.models
    return {
        "object": "list",
        "data": [
            {
                **c.state(),
                "base_url": c.base_url,
                "models": sorted(c.models),
                "priority": c.priority,
                "weight": c.weight,
            }
            for c in models.channels
        ],
        "models": models.status(),
    }


@router.get("/metrics")
async def get_metrics(caller: CallerDep, services: ServicesDep) -> Response:
    """Prometheus exposition, read at scrape time: operator keys only, like channels
    (Prometheus scrapes it with a bearer token)."""
    if not caller.operator:
        raise NotFound("Invalid URL (GET /metrics)")
    body, content_type = exposition(services.metrics)
    return Response(body, media_type=content_type)

"""The HTTP surface: routes, auth, error shapes. No engine or llama.cpp knowledge here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from chatd.api.auth import Caller, KeyChecker
from chatd.api.errors import install_error_handlers
from chatd.api.sse import EventStreamResponse, event_stream
from chatd.protocol.chat_request import ChatCompletionRequest, validate_chat_request
from chatd.protocol.errors import ModelNotFound, NotFound
from chatd.protocol.relayed_request import RelayedRequest, validate_relayed_request
from chatd.protocol.stored import parse_list_query, parse_update
from chatd.protocol.validation import decode_chat_body
from chatd.service.chat import ChatService
from chatd.service.limits import LocalCounters, RateLimiter, RedisCounters
from chatd.service.metrics import exposition, metrics_registry
from chatd.service.models import ModelRegistry
from chatd.service.stored import StoredCompletions
from chatd.store.completions import CompletionStore
from chatd.store.db import Database
from chatd.store.keys import KeyStore
from chatd.store.usage import UsageBuffer, UsageStore

T = TypeVar("T")


async def _caller(request: Request) -> Caller:
    checker: KeyChecker = request.app.state.auth
    return await checker(request)


CallerDep = Annotated[Caller, Depends(_caller)]


def create_app(
    models: ModelRegistry, api_keys: list[str], db: Database, redis_url: str | None = None
) -> FastAPI:
    store = CompletionStore(db)
    limiter = RateLimiter(RedisCounters(redis_url) if redis_url else LocalCounters())
    usage = UsageBuffer(UsageStore(db))
    metrics = metrics_registry(models, usage)
    service = ChatService(models, store, usage)
    stored = StoredCompletions(store)
    auth = KeyChecker(api_keys, KeyStore(db))

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        await db.upgrade()
        models.start()
        try:
            yield
        finally:
            models.stop()
            await service.close()
            await usage.close()
            await db.close()

    app = FastAPI(title="chatd", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.state.auth = auth
    app.state.models = models

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": models.stats()}

    @app.get("/v1/models")
    async def list_models(caller: CallerDep) -> dict[str, Any]:
        cards = [c for c in models.cards() if caller.may_use(c["id"])]
        return {"object": "list", "data": cards}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, caller: CallerDep) -> dict[str, Any]:
        if not caller.may_use(model_id):
            raise ModelNotFound(model_id)
        return models.get(model_id).card(model_id)

    async def create_chat_completion(request: Request) -> Response:
        """The hot route is a plain Starlette route: FastAPI's dependency solving and
        response handling cost a measurable part of what a relay adds (docs/gateway.md);
        errors still go through the app's handlers."""
        caller = await auth(request)
        data = decode_chat_body(await request.body())
        if service.relays_untouched(data.get("model")):
            req: ChatCompletionRequest | RelayedRequest = validate_relayed_request(data)
        else:
            req = validate_chat_request(data)
        if not caller.may_use(req.model):
            raise ModelNotFound(req.model)
        model_rpm, model_tpm = caller.limits_for(req.model)
        admission = await limiter.admit(
            caller.owner, caller.rpm, caller.tpm, req.model, model_rpm, model_tpm
        )
        completion = await service.start(req, caller.owner, admission)
        if req.is_streaming():
            await completion.prime()
            return EventStreamResponse(event_stream(completion.chunks()))
        try:
            body = await _until_disconnect(request, completion.result)
        finally:
            completion.cancel()
        if body is None:  # client gone: nobody to answer; its slot is already freed
            return Response(status_code=499)
        return Response(
            json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            media_type="application/json",
        )

    app.router.add_route("/v1/chat/completions", create_chat_completion, methods=["POST"])

    @app.get("/v1/channels")
    async def list_channels(caller: CallerDep) -> dict[str, Any]:
        """Upstream channels and their health, and every public model id with whether it can
        be served now (and why not): for the operator's keys (--api-key) only."""
        if not caller.operator:
            raise NotFound("Invalid URL (GET /v1/channels)")
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

    @app.get("/metrics")
    async def get_metrics(caller: CallerDep) -> Response:
        """Prometheus exposition, read at scrape time: operator keys only, like channels
        (Prometheus scrapes it with a bearer token)."""
        if not caller.operator:
            raise NotFound("Invalid URL (GET /metrics)")
        body, content_type = exposition(metrics)
        return Response(body, media_type=content_type)

    # --- stored completions -------------------------------------------------------------
    @app.get("/v1/chat/completions")
    async def list_completions(request: Request, caller: CallerDep) -> dict[str, Any]:
        return await stored.list(caller.owner, parse_list_query(request.query_params, filters=True))

    @app.get("/v1/chat/completions/{cid}")
    async def get_completion(cid: str, caller: CallerDep) -> dict[str, Any]:
        return await stored.get(caller.owner, cid)

    @app.post("/v1/chat/completions/{cid}")
    async def update_completion(cid: str, request: Request, caller: CallerDep) -> dict[str, Any]:
        return await stored.update(caller.owner, cid, parse_update(await request.body()))

    @app.delete("/v1/chat/completions/{cid}")
    async def delete_completion(cid: str, caller: CallerDep) -> dict[str, Any]:
        return await stored.delete(caller.owner, cid)

    @app.get("/v1/chat/completions/{cid}/messages")
    async def list_messages(cid: str, request: Request, caller: CallerDep) -> dict[str, Any]:
        return await stored.messages(
            caller.owner, cid, parse_list_query(request.query_params, filters=False)
        )

    return app


async def _until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``work`` unless the client disconnects first (then cancel it, return None)."""

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    task = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        return None
    return task.result()

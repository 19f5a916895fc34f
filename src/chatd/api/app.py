"""The HTTP surface: the app, its services and its routes. No engine or llama.cpp
knowledge here; each protocol's routes live in their own module (chat_routes.py,
responses_routes.py, messages_routes.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from chatd.api import (
    chat_routes,
    completions_routes,
    embeddings_routes,
    messages_routes,
    playground_routes,
    responses_routes,
    server_routes,
    tokenize_routes,
)
from chatd.api.auth import KeyChecker
from chatd.api.deps import Services
from chatd.api.drain import Drain, DrainMiddleware
from chatd.api.errors import install_error_handlers
from chatd.api.openapi import install_openapi
from chatd.api.origins import BrowserPolicy, OriginMiddleware
from chatd.api.request_ids import RequestIdMiddleware
from chatd.protocol.request_limits import Limits
from chatd.service.cache_scope import SharedPrompts
from chatd.service.channel_health import SharedChannelHealth
from chatd.service.chat import ChatService
from chatd.service.chat.stored_completions import StoredCompletions
from chatd.service.completions.service import CompletionsService
from chatd.service.embeddings import EmbeddingsService
from chatd.service.in_flight import InFlight
from chatd.service.limits import LocalCounters, RateLimiter, RedisCounters
from chatd.service.messages.service import MessagesService
from chatd.service.metrics import metrics_registry
from chatd.service.models import ModelRegistry
from chatd.service.quotas import Quotas
from chatd.service.responses.service import ResponsesService
from chatd.service.responses.stored_responses import StoredResponses
from chatd.service.storage import Purger, StorageQuota
from chatd.store.completions import CompletionStore
from chatd.store.db import Database
from chatd.store.keys import KeyStore
from chatd.store.responses import ResponseStore
from chatd.store.retention import Retention
from chatd.store.usage import UsageBuffer, UsageStore

__all__ = ["create_app"]


def create_app(
    models: ModelRegistry,
    api_keys: list[str],
    db: Database,
    redis_url: str | None = None,
    limits: Limits | None = None,
    drain: Drain | None = None,
    log_content: bool = False,
    browsers: BrowserPolicy | None = None,
    shared_prompts: list[str] | None = None,
    quotas: Quotas | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> FastAPI:
    """The app ``chatd serve`` runs; ``drain`` is the one its SIGTERM handling drives
    (api/shutdown.py); ``log_content`` puts request and response bodies in the request
    log (``--log-content``); ``browsers``: the Host names and web origins allowed
    (api/origins.py; default: any Host, no other origin); ``shared_prompts`` are system
    prompts whose cached cells every key may reuse (``--shared-prompt``,
    service/cache_scope.py); ``quotas`` are what each key may hold (in flight, stored,
    how long); ``clock`` (nanoseconds) dates stored records and ages them."""
    limits = limits or Limits()
    quotas = quotas or Quotas()
    retention = Retention(quotas.store_retention_days, clock)
    store = CompletionStore(db, retention)
    usage = UsageBuffer(UsageStore(db))
    shared = SharedPrompts(shared_prompts or ())
    chat = ChatService(models, store, usage, limits=limits, shared=shared)
    response_store = ResponseStore(db, retention)
    purger = Purger(store, response_store, quotas.purge_interval)
    services = Services(
        models=models,
        auth=KeyChecker(api_keys, KeyStore(db)),
        limiter=RateLimiter(RedisCounters(redis_url) if redis_url else LocalCounters()),
        chat=chat,
        stored=StoredCompletions(store),
        # one pool of upstream connections for every protocol
        responses=ResponsesService(models, response_store, usage, chat.upstream, limits, shared),
        stored_responses=StoredResponses(response_store),
        metrics=metrics_registry(models, usage),
        messages=MessagesService(models, None, usage, chat.upstream, limits, shared),
        completions=CompletionsService(models, None, usage, chat.upstream, limits, shared),
        limits=limits,
        drain=drain or Drain(),
        in_flight=InFlight(quotas.max_in_flight_per_key),
        storage_quota=StorageQuota(db, retention, quotas.max_stored_bytes_per_owner),
    )
    # Replicas sharing Redis share their channels' cooldowns too (none without channels).
    health = None
    if redis_url and models.channels:
        health = SharedChannelHealth.from_url(redis_url, models.channels)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        await db.upgrade()
        await services.auth.start()  # static keys' owner ids, from the database's secret
        models.start()
        if health is not None:
            health.start()
        purger.start()  # only with a retention period
        try:
            yield
        finally:  # after the drain (api/drain.py): nothing is running any more
            await purger.close()
            if health is not None:
                await health.close()
            models.stop()
            await services.chat.close()
            await usage.close()
            await db.close()

    app = FastAPI(title="chatd", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(DrainMiddleware, drain=services.drain)
    # before the drain and every route: a refused Host or Origin reaches nothing
    app.add_middleware(OriginMiddleware, policy=browsers or BrowserPolicy())
    # outermost: a refusal (Host, Origin, drain) carries its x-request-id and log line too
    app.add_middleware(RequestIdMiddleware, content=log_content)
    app.state.services = services
    app.state.channel_health = health
    app.state.purger = purger
    app.state.embeddings = EmbeddingsService(models, usage, chat.upstream, limits)
    app.include_router(server_routes.router)
    app.router.add_route(
        "/v1/chat/completions", chat_routes.create_chat_completion, methods=["POST"]
    )
    app.include_router(chat_routes.stored_router)
    app.router.add_route("/v1/responses", responses_routes.create_response, methods=["POST"])
    app.router.add_route(
        "/v1/responses/compact", responses_routes.compact_response, methods=["POST"]
    )
    app.include_router(responses_routes.router)
    app.router.add_route("/v1/completions", completions_routes.create_completion, methods=["POST"])
    app.router.add_route("/v1/messages", messages_routes.create_message, methods=["POST"])
    app.router.add_route(
        "/v1/messages/count_tokens", messages_routes.count_tokens, methods=["POST"]
    )
    app.router.add_route("/v1/embeddings", embeddings_routes.create_embedding, methods=["POST"])
    app.router.add_route("/tokenize", tokenize_routes.tokenize, methods=["POST"])
    app.router.add_route("/detokenize", tokenize_routes.detokenize, methods=["POST"])
    app.include_router(playground_routes.router)  # the browser page: not in /openapi.json
    install_openapi(app)
    return app

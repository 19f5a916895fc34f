"""What every route needs, built once per app: the services, and the caller of a request
(checked from its bearer key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from chatd.api.auth import Caller, KeyChecker
from chatd.api.drain import Drain
from chatd.protocol.request_limits import Limits
from chatd.service.chat import ChatService
from chatd.service.chat.stored_completions import StoredCompletions
from chatd.service.completions.service import CompletionsService
from chatd.service.in_flight import InFlight
from chatd.service.limits import RateLimiter
from chatd.service.messages.service import MessagesService
from chatd.service.models import ModelRegistry
from chatd.service.responses.service import ResponsesService
from chatd.service.responses.stored_responses import StoredResponses
from chatd.service.storage import StorageQuota

__all__ = ["CallerDep", "Services", "ServicesDep", "services_of"]


@dataclass(frozen=True)
class Services:
    models: ModelRegistry
    auth: KeyChecker
    limiter: RateLimiter
    chat: ChatService
    stored: StoredCompletions
    responses: ResponsesService
    stored_responses: StoredResponses
    metrics: CollectorRegistry  # read at scrape time
    messages: MessagesService
    completions: CompletionsService  # the legacy Completions API
    limits: Limits = Limits()  # what one request may cost
    drain: Drain = field(default_factory=Drain)  # SIGTERM: refuse, finish, cut
    in_flight: InFlight = field(default_factory=InFlight)  # requests running per key
    storage_quota: StorageQuota | None = None  # bytes stored per owner (None: no database)


def services_of(request: Request) -> Services:
    return request.app.state.services


async def _caller(request: Request) -> Caller:
    return await services_of(request).auth(request)


CallerDep = Annotated[Caller, Depends(_caller)]
ServicesDep = Annotated[Services, Depends(services_of)]

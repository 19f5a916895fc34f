"""Which engine or upstream answers a public model id, and who takes over when it fails:
the same for every protocol. The caller says how to start its request on the local
engine and how to relay it to channels; the router picks the order and falls back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from chatd import request_log
from chatd.protocol.errors import APIError, InvalidRequest, ModelNotFound, ModelUnavailable
from chatd.service.models import LocalModel, ModelRegistry, Route, RoutedModel
from chatd.upstream.channels import Channel, route

__all__ = ["Router"]

T = TypeVar("T")

StartLocal = Callable[[LocalModel], Awaitable[T]]
# (the channels to try in order, what to do once none answered) -> the relayed answer
StartRelay = Callable[[list[Channel], Callable[[], Awaitable[T]] | None], T]


class Router:
    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    def relays_untouched(self, model_id: Any) -> bool:
        """Whether only upstream channels serve this id: its requests are then checked
        only as far as a relay acts on them, and the upstream judges the values of the
        fields each channel allows (upstream/relay_policy.py)."""
        if not isinstance(model_id, str):
            return False
        try:
            model = self.models.get(model_id)
        except ModelNotFound:
            return False
        return isinstance(model, RoutedModel) and all(isinstance(r, Channel) for r in model.routes)

    async def start(self, model_id: str, local: StartLocal[T], relay: StartRelay[T]) -> T:
        """Start the request on the model's first available route; raises APIError."""
        model = self.models.get(model_id)
        _note(model=model_id)
        if isinstance(model, LocalModel):
            _note(route="local")
            return await local(model)
        routes = [r for r in model.routes if not _embeds(r, model.id)]
        if not routes:  # every channel serves it as an embedding model
            raise InvalidRequest(
                f"The model `{model.id}` is an embedding model: it only serves /v1/embeddings.",
                param="model",
                code="model_not_supported",
            )
        order = route(routes)
        if not order:
            raise ModelUnavailable(
                f"The model `{model.id}` is temporarily unavailable: no channel is available"
                " (all are cooling down after failures).",
                code="model_unavailable",
            )
        return await _start_routed(order, local, relay)


async def _start_routed(order: list[Route], local: StartLocal[T], relay: StartRelay[T]) -> T:
    """Try routes in order. The local engine refuses at once (a full queue, or a request
    it cannot honour) and the next route is tried; channels fail later, before their
    first byte, and then the routes after them are the fallback."""
    head, rest = order[0], order[1:]
    if isinstance(head, LocalModel):
        _note(route="local")
        try:
            return await local(head)
        except APIError:
            if not rest:
                raise
            return await _start_routed(rest, local, relay)
    n = next((i for i, r in enumerate(order) if not isinstance(r, Channel)), len(order))
    channels = [r for r in order[:n] if isinstance(r, Channel)]
    rest = order[n:]

    async def fallback() -> T:
        return await _start_routed(rest, local, relay)

    _note(route="channel")  # the relay names the channel that answers

    return relay(channels, fallback if rest else None)


def _embeds(r: Route, public_id: str) -> bool:
    """Whether this route serves ``public_id`` as an embedding model only."""
    return isinstance(r, Channel) and public_id in r.embeddings


def _note(**fields: str) -> None:
    """Tell the request's log line (chatd/request_log.py) the model and route."""
    record = request_log.current()
    if record is not None:
        for k, v in fields.items():
            setattr(record, k, v)

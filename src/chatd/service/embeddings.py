"""One embeddings request's life: routed to a local model (its engine's embedding pass,
engine/embedding.py) or to channels that serve the id as an embedding model (a channel
model's ``api = "embeddings"``), with failover as for chat, and its usage counted.

What a local model gives: the chat model's vectors are the mean of its last hidden
states over the input's tokens, L2-normalized; a GGUF with its own pooling type (an
embedding model) is pooled its way, then normalized (docs/embeddings.md).
``dimensions`` is refused (400 naming it) for a local model unless it is the model's own
length: chatd cannot tell whether a model was trained to be truncated (Matryoshka), and a
truncated vector of a model that was not is a worse vector, silently."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from chatd import request_log
from chatd.protocol.embeddings import (
    MAX_REQUEST_TOKENS,
    EmbeddingsRequest,
    embedding_list,
    too_long,
)
from chatd.protocol.errors import (
    APIError,
    InvalidRequest,
    ModelUnavailable,
    RequestTimeout,
    ServerError,
)
from chatd.protocol.request_limits import Limits
from chatd.service.accounting import Accountant
from chatd.service.limits import Admission
from chatd.service.models import LocalModel, ModelRegistry, Route
from chatd.store.usage import UsageBuffer
from chatd.upstream.channels import Channel, route
from chatd.upstream.relay import ConnectionPool, UpstreamCall
from chatd.upstream.relay_policy import OWNER, owner_tag

__all__ = ["EmbeddingEngine", "EmbeddingsService", "EmbeddingsWire"]


class _EmbeddingRun(Protocol):
    async def vectors(self) -> list[Any]: ...

    def cancel(self) -> None: ...


class EmbeddingEngine(Protocol):
    """What the service needs of an engine for embeddings (``engine.Engine``, and the
    tests' ``FakeEngine``)."""

    n_vocab: int
    embedding_limit: int  # tokens one input may have
    embedding_dimensions: int
    embedding_pooling: str  # "mean" (pooled here), or the model's own: "cls", "last"...

    def embedding_tokens(self, text: str) -> list[int]: ...

    def embed(self, inputs: list[list[int]]) -> _EmbeddingRun: ...


class EmbeddingsService:
    def __init__(
        self,
        models: ModelRegistry,
        usage: UsageBuffer | None,
        upstream: ConnectionPool,
        limits: Limits | None = None,
    ) -> None:
        self.models = models
        self.usage = usage
        self.upstream = upstream
        self.limits = limits or Limits()

    async def answer(
        self, req: EmbeddingsRequest, owner: str, admission: Admission | None = None
    ) -> dict[str, Any]:
        """The embedding list, from the model's first route that answers; APIError for
        any refusal. Cancelled (a client gone): the engine drops the job's work."""
        model = self.models.get(req.model)
        _note(model=req.model)
        account = (
            Accountant(self.usage, owner, req.model, admission) if self.usage is not None else None
        )
        if isinstance(model, LocalModel):
            return await self._local(model, req, account)
        routes = [r for r in model.routes if _embeds(r, model.id)]
        if not routes:
            raise InvalidRequest(
                f"The model `{model.id}` does not serve embeddings.",
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
        return await self._routed(order, req, owner, account)

    async def _routed(
        self, order: list[Route], req: EmbeddingsRequest, owner: str, account: Accountant | None
    ) -> dict[str, Any]:
        """Routes in order: a local model refusing, or every channel of a group failing
        before answering, moves on to the next routes."""
        while order:
            head = order[0]
            if isinstance(head, LocalModel):
                order = order[1:]
                try:
                    return await self._local(head, req, account)
                except APIError:
                    if not order:
                        raise
                    continue
            n = next((i for i, r in enumerate(order) if not isinstance(r, Channel)), len(order))
            channels = [r for r in order[:n] if isinstance(r, Channel)]
            order = order[n:]
            try:
                return await self._relay(channels, req, owner, account)
            except ModelUnavailable:
                if not order:
                    raise
        raise ModelUnavailable(f"No route could answer for `{req.model}`.")

    async def _local(
        self, model: LocalModel, req: EmbeddingsRequest, account: Accountant | None
    ) -> dict[str, Any]:
        _note(route="local")
        lease = await model.acquire(self.limits.request_timeout)
        try:
            engine: EmbeddingEngine = lease.engine  # type: ignore[assignment]
            if engine.embedding_pooling == "rank":  # a reranker's GGUF: scores, no vectors
                raise InvalidRequest(
                    f"The model `{req.model}` is a reranking model: it makes no embeddings.",
                    param="model",
                    code="model_not_supported",
                )
            if req.dimensions is not None and req.dimensions != engine.embedding_dimensions:
                raise InvalidRequest(
                    "This model does not support specifying dimensions (its embeddings have"
                    f" {engine.embedding_dimensions}).",
                    param="dimensions",
                    code="unsupported_parameter",
                )
            inputs = await _tokens(engine, req)
            total = sum(len(t) for t in inputs)
            run = engine.embed(inputs)
            try:
                async with asyncio.timeout(self.limits.request_timeout or None):
                    vectors = await run.vectors()
            except TimeoutError:
                run.cancel()
                raise RequestTimeout(self.limits.request_timeout) from None
            except (RuntimeError, ValueError):
                raise ServerError("The server had an error while computing embeddings.") from None
        finally:
            lease.release()
        if account is not None:
            account.record(total, 0)
        return embedding_list(vectors, req.model, req.encoding_format, total)

    async def _relay(
        self,
        channels: list[Channel],
        req: EmbeddingsRequest,
        owner: str,
        account: Accountant | None,
    ) -> dict[str, Any]:
        _note(route="channel")
        wire = EmbeddingsWire(req.model, req.body or {}, owner)
        call = UpstreamCall(
            req.model, channels, {}, self.upstream.session(), wire_for=lambda _: wire
        )
        answer = await call.result()
        if account is not None:
            prompt, estimated = _relayed_tokens(wire.usage, req, self.models)
            account.record(prompt, 0, estimated=estimated)
        return answer


class EmbeddingsWire:
    """An embeddings request to a channel's ``/embeddings``: the client's input, format
    and dimensions, the channel's model id and its ``user`` setting (never the client's
    own ``user``: docs/gateway.md "Relay hygiene"); the answer passed on with the public
    model id. Embeddings are never streamed."""

    end_name = "the answer"
    extra_headers: dict[str, str] = {}
    ended = False
    failed = False

    def __init__(self, public_id: str, body: dict[str, Any], owner: str) -> None:
        self.public_id = public_id
        self.body = body
        self.owner = owner
        self.usage: dict[str, Any] | None = None

    def prepare(self, channel: Channel) -> tuple[str, bytes]:
        body = {
            k: self.body[k] for k in ("input", "encoding_format", "dimensions") if k in self.body
        }
        body["model"] = channel.models[self.public_id]
        template = channel.relay.user
        if template is not None:
            tag = owner_tag(self.owner, channel.key)
            body["user"] = template.replace(OWNER, tag)
        return channel.base_url.rstrip("/") + "/embeddings", json.dumps(body).encode()

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        usage = data.get("usage")
        self.usage = usage if isinstance(usage, dict) else None
        return {**data, "model": self.public_id}

    def read(self, payload: str) -> dict[str, Any] | None:
        raise ValueError("embeddings are not streamed")


async def _tokens(engine: EmbeddingEngine, req: EmbeddingsRequest) -> list[list[int]]:
    """The inputs as the model's tokens, each within its limits; a 400 naming ``input``
    otherwise (a token id the model does not have, an input longer than its context,
    more tokens in all than one request may have)."""
    if req.texts is not None:
        texts = req.texts
        if sum(len(t) for t in texts) > 65536:  # long tokenizations off the event loop
            inputs = await asyncio.to_thread(lambda: [engine.embedding_tokens(t) for t in texts])
        else:
            inputs = [engine.embedding_tokens(t) for t in texts]
    else:
        inputs = req.tokens or []
        for i, tokens in enumerate(inputs):
            bad = next((t for t in tokens if t >= engine.n_vocab), None)
            if bad is not None:
                where = f"input[{i}]" if len(inputs) > 1 else "input"
                raise InvalidRequest(
                    f"Invalid '{where}': token id {bad} is not in the model's vocabulary of"
                    f" {engine.n_vocab} tokens.",
                    param="input",
                    code="invalid_value",
                )
    for tokens in inputs:
        if not tokens:
            raise InvalidRequest("'$.input' is invalid: an input has no tokens.", param="input")
        if len(tokens) > engine.embedding_limit:
            raise too_long(engine.embedding_limit, len(tokens))
    total = sum(len(t) for t in inputs)
    if total > MAX_REQUEST_TOKENS:
        raise InvalidRequest(
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
            param="input",
            code="max_tokens_per_request",
        )
    return inputs


def _relayed_tokens(
    usage: dict[str, Any] | None, req: EmbeddingsRequest, models: ModelRegistry
) -> tuple[int, bool]:
    """The upstream's prompt tokens, or (estimated) a count of the inputs."""
    if usage is not None and isinstance(usage.get("prompt_tokens"), int):
        return usage["prompt_tokens"], False
    if req.tokens is not None:
        return sum(len(t) for t in req.tokens), True
    count = models.token_counter()
    if count is None:
        return 0, True
    return sum(count(t) for t in req.texts or []), True


def _embeds(r: Route, public_id: str) -> bool:
    """A local model embeds any id it serves; a channel only the ids it marks."""
    return isinstance(r, LocalModel) or public_id in r.embeddings


def _note(**fields: str) -> None:
    """Tell the request's log line (chatd/request_log.py) the model and route."""
    record = request_log.current()
    if record is not None:
        for k, v in fields.items():
            setattr(record, k, v)

"""The Chat Completions adapter: a ``ChatCompletionRequest`` becomes a core ``Job`` on the
local engine (checked, its tools planned, its schema read) or a relay to upstream
channels (of the fields each allows: upstream/relay_policy.py); the router decides which,
and falls back between them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Protocol

from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.chat_response import ChatAnswer, Envelope
from chatd.protocol.errors import ServerError
from chatd.protocol.ids import completion_id
from chatd.protocol.request_limits import Limits
from chatd.service.accounting import Accountant, Saver
from chatd.service.cache_scope import SharedPrompts
from chatd.service.chat.capabilities import check_local_support
from chatd.service.chat.completion import ChatCompletion
from chatd.service.chat.prompt import render_messages
from chatd.service.chat.response_format import SCHEMA_PARAM, json_schema_for, schema_check_for
from chatd.service.chat.sampling import sampling_fields
from chatd.service.chat.tools import plan_tools
from chatd.service.generation import Job, start_local
from chatd.service.limits import Admission
from chatd.service.models import LocalModel, ModelRegistry
from chatd.service.routing import Router
from chatd.store.completions import CompletionStore
from chatd.store.usage import UsageBuffer
from chatd.upstream.channels import Channel
from chatd.upstream.relay import ConnectionPool, UpstreamCall
from chatd.upstream.relayed_completion import RelayedCompletion

__all__ = ["ChatRequest", "ChatService"]


class ChatRequest(Protocol):
    """What the service reads of any chat request: parsed in full
    (``ChatCompletionRequest``) or only as far as a relay acts on (``RelayedRequest``)."""

    model: str
    store: bool | None
    metadata: Mapping[str, Any] | None

    @property
    def raw(self) -> Mapping[str, Any] | None: ...

    def is_streaming(self) -> bool: ...

    def prompt_text(self) -> str: ...

    def stored_request(self) -> dict[str, Any]: ...

    def stored_messages(self) -> list[dict[str, Any]]: ...


class ChatService:
    def __init__(
        self,
        models: ModelRegistry,
        store: CompletionStore | None = None,
        usage: UsageBuffer | None = None,
        limits: Limits | None = None,
        shared: SharedPrompts | None = None,
    ) -> None:
        self.models = models
        self.limits = limits or Limits()
        self.shared = shared or SharedPrompts()  # system prompts every key may reuse
        self.router = Router(models)
        self.store = store
        self.usage = usage
        self.upstream = ConnectionPool()

    def relays_untouched(self, model_id: Any) -> bool:
        """Whether only channels serve this id: its requests are then parsed only as far
        as a relay needs (``RelayedRequest``), and the upstream decides the rest."""
        return self.router.relays_untouched(model_id)

    async def start(
        self, req: ChatRequest, owner: str, admission: Admission | None = None
    ) -> ChatAnswer:
        """Validate against the model and submit; raises APIError for any refusal.
        ``owner`` (the caller's key) owns the stored completion; ``admission`` (its
        rate-limit windows) gets the tokens used."""
        local = partial(self._start_local, req, owner, admission)
        relay = partial(self._start_relay, req, owner, admission)
        return await self.router.start(req.model, local, relay)

    async def _start_local(
        self, req: ChatRequest, owner: str, admission: Admission | None, model: LocalModel
    ) -> ChatCompletion:
        if not isinstance(req, ChatCompletionRequest):  # the API parses these in full
            raise ServerError(f"`{req.model}` is served locally: its request needs the contract.")
        n_vocab = model.n_vocab  # known unloaded from the file's header, as a rule
        if n_vocab is not None:  # refused before it may load (and unload another)
            check_local_support(req, model.id, n_vocab)
        lease = await model.acquire(self.limits.request_timeout)  # loads it if need be
        with lease.until_handed_over():  # released if refused below
            engine = lease.engine
            if n_vocab is None:
                check_local_support(req, model.id, engine.n_vocab)
            plan = plan_tools(req)
            job = Job(
                render=lambda native: render_messages(req, plan, native=native),
                owner=owner,
                sampling=sampling_fields(req),
                tools=plan,
                schema=json_schema_for(req),
                schema_check=schema_check_for(req),
                prediction=req.prediction.text() if req.prediction is not None else None,
                tools_param="tools" if req.tools else "functions",
                schema_param=SCHEMA_PARAM,
            )
            saver = self._saver(req, owner)
            # nothing may refuse the request after this; the run releases the lease
            run = await start_local(engine, job, self.limits, lease.release, self.shared)
        envelope = Envelope(
            model=req.model,  # the public id asked for (an alias stays the alias)
            system_fingerprint=engine.fingerprint,
            service_tier=_service_tier(req.service_tier),
        )
        legacy = plan is not None and plan.legacy
        accountant = self._accountant(req, owner, admission)
        return ChatCompletion(req, run, envelope, legacy, saver, accountant)

    def _start_relay(
        self,
        req: ChatRequest,
        owner: str,
        admission: Admission | None,
        channels: list[Channel],
        fallback: Callable[[], Awaitable[ChatAnswer]] | None,
    ) -> RelayedCompletion:
        """The request's fields go upstream as each channel allows (its allow-list, its own
        store/metadata/user: upstream/relay_policy.py); the upstream decides the rest."""
        saver = self._saver(req, owner)
        # A stored answer is chatd's object: its id is chatd's, unique whatever the upstream.
        stored_id = completion_id() if saver is not None else None
        call = UpstreamCall(
            req.model,
            channels,
            dict(req.raw or {}),
            self.upstream.session(),
            stored_id,
            owner=owner,
        )
        accountant = self._accountant(req, owner, admission)
        counter = self.models.token_counter()
        return RelayedCompletion(
            call,
            saver.save if saver is not None else None,
            accountant.record if accountant is not None else None,
            counter,
            req.prompt_text(),
            fallback,
        )

    def _saver(self, req: ChatRequest, owner: str) -> Saver | None:
        if req.store is not True:
            return None
        request, messages = req.stored_request(), req.stored_messages()
        return Saver(self.store, owner, request, messages, dict(req.metadata or {}))

    def _accountant(
        self, req: ChatRequest, owner: str, admission: Admission | None
    ) -> Accountant | None:
        if self.usage is None:
            return None
        return Accountant(self.usage, owner, req.model, admission)

    async def close(self) -> None:
        await self.upstream.close()


def _service_tier(requested: str | None) -> str | None:
    """Every request runs on the one tier this server has; "auto" resolves to it and an
    explicit tier is echoed, as OpenAI reports the tier it used only when one was set."""
    if requested is None:
        return None
    return {"auto": "default", "fast": "priority"}.get(requested, requested)

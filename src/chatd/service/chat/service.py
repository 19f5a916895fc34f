"""The Chat Completions adapter: a ``ChatCompletionRequest`` becomes a core ``Job`` on the
local engine (checked, its tools planned, its schema read) or a relay to upstream
channels (of the fields each allows: upstream/relay_policy.py); the shared skeleton
(service/protocol_service.py) asks the router which, and falls back between them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.chat_response import ChatAnswer, Envelope
from chatd.protocol.errors import ServerError
from chatd.protocol.ids import completion_id
from chatd.service.accounting import Accountant
from chatd.service.chat.capabilities import check_local_support
from chatd.service.chat.completion import ChatCompletion
from chatd.service.chat.prompt import render_messages
from chatd.service.chat.relayed import RelayedCompletion
from chatd.service.chat.response_format import SCHEMA_PARAM, json_schema_for, schema_check_for
from chatd.service.chat.sampling import sampling_fields
from chatd.service.chat.stored_completions import CompletionSaver
from chatd.service.chat.tools import plan_tools
from chatd.service.engine_api import EngineLike
from chatd.service.generation import Job, LocalRun
from chatd.service.models import LocalModel
from chatd.service.protocol_service import Fallback, Incoming, JobBuilder, ProtocolService
from chatd.store.completions import CompletionStore
from chatd.upstream.channels import Channel
from chatd.upstream.relay import UpstreamCall

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


class ChatService(ProtocolService[ChatRequest, ChatAnswer, CompletionSaver]):
    """Chat Completions over the shared skeleton (service/protocol_service.py): its
    request as a ``Job``, the run as a ``chat.completion`` or chunks, its relay (the
    request's own body, in Chat Completions to every channel) and its stored view."""

    store: CompletionStore | None

    def local_job(self, incoming: Incoming[ChatRequest], model: LocalModel) -> JobBuilder:
        req = incoming.req
        if not isinstance(req, ChatCompletionRequest):  # the API parses these in full
            raise ServerError(f"`{req.model}` is served locally: its request needs the contract.")
        n_vocab = model.n_vocab  # known unloaded from the file's header, as a rule
        if n_vocab is not None:  # refused before it may load (and unload another)
            check_local_support(req, model.id, n_vocab)

        def build(engine: EngineLike) -> Job:
            if n_vocab is None:
                check_local_support(req, model.id, engine.n_vocab)
            plan = plan_tools(req)
            return Job(
                render=lambda native: render_messages(req, plan, native=native),
                owner=incoming.owner,
                sampling=sampling_fields(req),
                tools=plan,
                schema=json_schema_for(req),
                schema_check=schema_check_for(req),
                prediction=req.prediction.text() if req.prediction is not None else None,
                tools_param="tools" if req.tools else "functions",
                schema_param=SCHEMA_PARAM,
            )

        return build

    def local_answer(
        self,
        incoming: Incoming[ChatRequest],
        job: Job,
        run: LocalRun,
        engine: EngineLike,
        save: CompletionSaver | None,
        account: Accountant | None,
    ) -> ChatCompletion:
        req = incoming.req
        assert isinstance(req, ChatCompletionRequest)  # local_job refused any other
        envelope = Envelope(
            model=req.model,  # the public id asked for (an alias stays the alias)
            system_fingerprint=engine.fingerprint,
            service_tier=_service_tier(req.service_tier),
        )
        plan = job.tools
        legacy = plan is not None and plan.legacy
        return ChatCompletion(req, run, envelope, legacy, save, account)

    def relay_answer(
        self,
        incoming: Incoming[ChatRequest],
        channels: list[Channel],
        fallback: Fallback[ChatAnswer] | None,
        save: CompletionSaver | None,
        account: Accountant | None,
    ) -> RelayedCompletion:
        """The request's fields go upstream as each channel allows (its allow-list, its own
        store/metadata/user: upstream/relay_policy.py); the upstream decides the rest."""
        req = incoming.req
        # A stored answer is chatd's object: its id is chatd's, unique whatever the upstream.
        stored_id = completion_id() if save is not None else None
        call = UpstreamCall(
            req.model,
            channels,
            dict(req.raw or {}),
            self.upstream.session(),
            stored_id,
            owner=incoming.owner,
        )
        return RelayedCompletion(
            call,
            save.save if save is not None else None,
            account.record if account is not None else None,
            self.models.token_counter(),
            req.prompt_text(),
            fallback,
        )

    def saver(self, incoming: Incoming[ChatRequest]) -> CompletionSaver | None:
        req = incoming.req
        if req.store is not True:
            return None
        request, messages = req.stored_request(), req.stored_messages()
        return CompletionSaver(
            self.store, incoming.owner, request, messages, dict(req.metadata or {})
        )


def _service_tier(requested: str | None) -> str | None:
    """Every request runs on the one tier this server has; "auto" resolves to it and an
    explicit tier is echoed, as OpenAI reports the tier it used only when one was set."""
    if requested is None:
        return None
    return {"auto": "default", "fast": "priority"}.get(requested, requested)

"""The Responses adapter: a ``CreateResponseRequest`` with its conversation rebuilt
(``previous_response_id``'s chain and ``item_reference`` items, from the store) becomes a
core ``Job`` on the local engine, or a relay to upstream channels; the shared skeleton
(service/protocol_service.py) asks the router which and falls back between them, as for
chat. Stored responses are the next request's history."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chatd.protocol.errors import InvalidRequest, NotYetSupported, ServerError
from chatd.protocol.ids import other_item_id
from chatd.protocol.responses_chat import chat_body
from chatd.protocol.responses_fields import responses_engine_fields
from chatd.protocol.responses_items import ItemReference
from chatd.protocol.responses_request import CreateResponseRequest
from chatd.protocol.responses_response import ResponseSettings
from chatd.service.accounting import Accountant
from chatd.service.engine_api import EngineLike
from chatd.service.event_sources import LocalSource, accounted
from chatd.service.generation import Job, LocalRun, sampling_fields
from chatd.service.models import LocalModel
from chatd.service.protocol_service import Fallback, Incoming, JobBuilder, ProtocolService
from chatd.service.responses.answer import ResponseAnswer, Save, StreamedResponse
from chatd.service.responses.capabilities import check_local_support
from chatd.service.responses.compaction import (
    COMPACTION_TYPES,
    CompactionOutput,
    check_compaction_items,
    expanded_items,
    has_trigger,
    trigger_refused,
)
from chatd.service.responses.compaction_seal import CompactionSeal
from chatd.service.responses.conversation import (
    conversation_turns,
    stored_input_items,
)
from chatd.service.responses.relayed import RelayedResponse, prompt_text
from chatd.service.responses.stored_responses import CLIENT_METADATA
from chatd.service.responses.tools import (
    FORMAT_PARAM,
    SCHEMA_PARAM,
    ToolNames,
    echoed_tools,
    json_schema_for,
    plan_tools,
    schema_check_for,
    tools_not_run,
)
from chatd.service.turns import Said, render_turns
from chatd.store.owners import owner_secret
from chatd.store.responses import MissingResponse, ResponseStore
from chatd.upstream.channels import Channel
from chatd.upstream.wires import ChatWire, ResponsesWire, Wire

__all__ = ["Conversation", "ResponsesService"]

log = logging.getLogger("chatd.service")
Json = dict[str, Any]


@dataclass(frozen=True)
class Conversation:
    """A request's conversation: what ``previous_response_id`` brings (``history``) and
    its own input items as they are stored (``items``)."""

    history: list[Json]
    items: list[Json]


class ResponsesService(ProtocolService[CreateResponseRequest, ResponseAnswer, Save]):
    """The Responses API over the shared skeleton (service/protocol_service.py): the
    conversation rebuilt first (``prepare``), then its items as a ``Job``, the run as a
    response or its events, its relay in either wire API, and its stored responses."""

    store: ResponseStore | None
    _seal: CompactionSeal | None = None

    @property
    def seal(self) -> CompactionSeal:
        """What seals and opens compaction items (docs/compaction.md): keyed by the
        database's secret, read on first use; a random key without a database."""
        if self._seal is None:
            store = self.store
            self._seal = CompactionSeal(_secret_of(store) if store is not None else None)
        return self._seal

    async def prepare(self, req: CreateResponseRequest, owner: str) -> Conversation:
        """Rebuild the conversation before any route starts; refuses, before anything is
        sent, what needs a database this server lacks or a stored response it lacks,
        and a compaction item that does not open."""
        if req.stores() and self.store is None:
            raise NotYetSupported("store (this server has no database; send store: false)")
        history = await self._history(req, owner)
        convo = await self._conversation(req, owner, history)
        check_compaction_items(convo.items)
        if any(i.get("type") in COMPACTION_TYPES for i in [*convo.history, *convo.items]):
            await self.seal.load()  # the database's secret, read once
            self._model_view(req, owner, convo)  # every compaction item opens, or a 400
        return convo

    def _model_view(
        self, req: CreateResponseRequest, owner: str, convo: Conversation
    ) -> list[Json]:
        """The conversation's items as the model sees them: compaction items opened into
        their summaries, a trailing trigger made the compaction prompt."""
        model = self.models.canonical(req.model)
        return expanded_items(convo.history, convo.items, self.seal, owner, model)

    async def _history(self, req: CreateResponseRequest, owner: str) -> list[Json]:
        rid = req.previous_response_id
        if rid is None:
            return []
        if self.store is None:
            raise NotYetSupported("previous_response_id (this server has no database)")
        try:
            return await self.store.history(owner, rid)
        except MissingResponse as e:
            if e.response_id == rid:
                message = f"Previous response with id '{rid}' not found."
            else:  # an earlier link of the chain was deleted
                message = (
                    f"Previous response with id '{rid}' cannot be continued: the response"
                    f" '{e.response_id}' it continues was not found (deleted?)."
                )
            raise InvalidRequest(
                message, param="previous_response_id", code="previous_response_not_found"
            ) from None

    async def _conversation(
        self, req: CreateResponseRequest, owner: str, history: list[Json]
    ) -> Conversation:
        items = req.input_items()
        wanted = [i.id for i in items if isinstance(i, ItemReference)]
        referenced: dict[str, Json] = {}
        if wanted and self.store is not None:
            referenced = await self.store.items_by_id(owner, wanted)
        return Conversation(history, stored_input_items(items, referenced))

    def local_job(self, incoming: Incoming[CreateResponseRequest], model: LocalModel) -> JobBuilder:
        """The whole job is built before the model loads: nothing in it needs the engine,
        so a request the model will not answer loads nothing."""
        req, convo = incoming.req, incoming.prepared
        check_local_support(req, model.id)
        turns = conversation_turns(
            req.instructions, [], self._model_view(req, incoming.owner, convo)
        )
        # a compaction's answer is the summary: no tool is offered, no format imposed
        compacting = has_trigger(convo.items)
        plan = plan_tools(req)  # validated either way
        if compacting:
            plan = None
        hosted = tools_not_run(req)
        if hosted:
            log.info(
                "hosted tools offered to %s are not run (the model cannot run them): %s",
                model.id,
                ", ".join(hosted),
            )
        text = "\n".join(t.text for t in turns if isinstance(t, Said))
        sampling = sampling_fields(req, responses_engine_fields())
        if req.wants_logprobs():
            sampling["logprobs"] = True
        kept = 1 if req.instructions else 0  # instructions are never truncated

        def shorten(native: bool, k: int) -> list[Json] | None:
            if kept + k >= len(turns):
                return None
            return render_turns(turns[:kept] + turns[kept + k :], plan, native=native)

        job = Job(
            render=lambda native: render_turns(turns, plan, native=native),
            owner=incoming.owner,
            sampling=sampling,
            tools=plan,
            schema=None if compacting else json_schema_for(req, text),
            schema_check=None if compacting else schema_check_for(req),
            prompt_param="input",
            tools_param="tools",
            format_param=FORMAT_PARAM,
            schema_param=SCHEMA_PARAM,
            shorten=shorten if req.truncation == "auto" else None,
        )
        return lambda engine: job

    def local_answer(
        self,
        incoming: Incoming[CreateResponseRequest],
        job: Job,
        run: LocalRun,
        engine: EngineLike,
        save: Save | None,
        account: Accountant | None,
    ) -> StreamedResponse:
        req = incoming.req
        output = None
        if has_trigger(incoming.prepared.items):
            model = self.models.canonical(req.model)
            output = CompactionOutput(self.seal, incoming.owner, model)
        return StreamedResponse(
            LocalSource(run),
            settings(req, job.defaults, job.max_output_default),  # what the model used
            logprobs=req.wants_logprobs(),
            obfuscate=req.include_obfuscation(),
            save=save,
            account=accounted(account),
            names=ToolNames(req),
            tools_not_run=tuple(tools_not_run(req)),
            output=output,
        )

    def relay_answer(
        self,
        incoming: Incoming[CreateResponseRequest],
        channels: list[Channel],
        fallback: Fallback[ResponseAnswer] | None,
        save: Save | None,
        account: Accountant | None,
    ) -> ResponseAnswer:
        """Each channel is spoken to in its own API: the Responses API itself, with the
        whole conversation and nothing stored upstream (chatd keeps the state), or Chat
        Completions, translated both ways. A request one of them cannot carry is refused
        here, before anything is sent."""
        req, owner, convo = incoming.req, incoming.owner, incoming.prepared
        if has_trigger(convo.items):
            raise trigger_refused(len(convo.items) - 1, req.model)
        items = self._model_view(req, owner, convo)  # compaction items opened: ours only
        wires: dict[str, Callable[[], Wire]] = {
            "responses": lambda: ResponsesWire(req.model, upstream_body(req, items), owner),
            "chat": lambda: ChatWire(req.model, chat_body(req, items, req.model), owner=owner),
        }
        call = self.relay_call(req.model, channels, wires)
        return RelayedResponse(
            call,
            settings(req),
            streaming=req.is_streaming(),
            logprobs=req.wants_logprobs(),
            obfuscate=req.include_obfuscation(),
            save=save,
            account=accounted(account),
            count_tokens=self.models.token_counter(),
            prompt_text=prompt_text(items, req.instructions),
            fallback=fallback,
        )

    def saver(self, incoming: Incoming[CreateResponseRequest]) -> Save | None:
        req, owner, convo = incoming.req, incoming.owner, incoming.prepared
        store = self.store
        if not req.stores() or store is None:
            return None
        previous = req.previous_response_id
        # Every stored (and listed) item has an id: an item of a type chatd does not act on
        # may come without one; it is relayed as sent and stored with one of chatd's.
        items = [i if "id" in i else {"id": other_item_id(), **i} for i in convo.items]

        kept = dict(req.client_metadata or {})

        async def save(body: Json) -> None:
            # client_metadata is kept with the stored response, never returned (the
            # Response object has no such field; stored_responses.py leaves it out)
            stored = {**body, CLIENT_METADATA: kept} if kept else body
            try:
                await store.save(owner, stored, items, previous)
            except Exception:
                log.exception("storing response %s failed", body.get("id"))
                raise ServerError("The response could not be stored.") from None

        return save


def _secret_of(store: ResponseStore) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return (await owner_secret(store.db))[0]

    return read


def settings(
    req: CreateResponseRequest,
    defaults: Mapping[str, Any] | None = None,
    max_output_default: int | None = None,
) -> ResponseSettings:
    """The request's settings as every response object echoes them; for those not
    given, the local model's ``defaults`` and output cap when it ran with them
    (service/model_defaults.py), else OpenAI's defaults."""
    defaults = defaults or {}
    fmt = req.text.format if req.text is not None else None
    choice = req.tool_choice
    return ResponseSettings(
        model=req.model,  # the public id asked for (an alias stays the alias)
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens
        if req.max_output_tokens is not None
        else max_output_default,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        previous_response_id=req.previous_response_id,
        temperature=req.temperature
        if req.temperature is not None
        else defaults.get("temperature", 1.0),
        top_p=req.top_p if req.top_p is not None else defaults.get("top_p", 1.0),
        top_logprobs=req.top_logprobs or 0,
        text_format=fmt.model_dump(by_alias=True, exclude_none=True)
        if fmt is not None
        else {"type": "text"},
        tool_choice=choice
        if isinstance(choice, str)
        else (choice.model_dump(exclude_none=True) if choice is not None else "auto"),
        tools=echoed_tools(req),
        truncation=req.truncation or "disabled",
        metadata=dict(req.metadata or {}),
        store=req.stores(),
        user=req.user,
        prompt_cache_key=req.prompt_cache_key,
        safety_identifier=req.safety_identifier,
        service_tier=_service_tier(req.service_tier),
    )


# Items are sent without chatd's ids (an upstream knows none of them) nor states.
_CHATD_ONLY_KEYS = ("id", "status")
_CHATD_ITEMS = (
    "message",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
)
_NEVER_SENT = ("previous_response_id", "metadata", "client_metadata", "stream_options")


def upstream_body(req: CreateResponseRequest, items: list[Json]) -> Json:
    """The request for a channel speaking the Responses API: as the client sent it, but
    with the whole conversation as ``input``; each channel is then sent only the fields
    it allows, and ``store: false`` unless it says otherwise (upstream/relay_policy.py)."""
    body = req.model_dump(mode="json", by_alias=True, exclude_unset=True)
    for key in _NEVER_SENT:
        body.pop(key, None)
    body["input"] = [
        {k: v for k, v in item.items() if k not in _CHATD_ONLY_KEYS}
        if item.get("type") in _CHATD_ITEMS
        else item
        for item in items
    ]
    if req.is_streaming() and req.stream_options is not None:
        body["stream_options"] = req.stream_options.model_dump(exclude_none=True)
    return body


def _service_tier(requested: str | None) -> str:
    """Every response runs on this server's one tier, which the API reports always:
    ``auto`` (or nothing) reads ``default``, an explicit tier is echoed."""
    if requested in (None, "auto"):
        return "default"
    return {"fast": "priority"}.get(requested, requested)

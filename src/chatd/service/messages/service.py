"""The Messages adapter: a ``MessagesRequest`` becomes a core ``Job`` on the local engine,
or a relay to upstream channels (an Anthropic channel gets it as it came, one speaking
Chat Completions gets it translated); the shared skeleton (``ProtocolService``) routes it
and falls back between routes, as for the other two APIs. ``count_tokens`` renders the
same prompt without generating.

``max_tokens`` is an upper bound here, clamped to what the context window leaves (Claude
Code sends 32,000 on every request; refusing it would refuse them all) and reported as
``stop_reason: "max_tokens"`` when reached; a prompt that leaves no room is Anthropic's
own 400 ("prompt is too long: N tokens > M maximum"). docs/messages.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatd.protocol.errors import APIError, InvalidRequest
from chatd.protocol.messages_request import MessagesRequest
from chatd.protocol.messages_via_chat import chat_from_messages
from chatd.service.accounting import Accountant
from chatd.service.engine_api import EngineLike
from chatd.service.event_sources import LocalSource, accounted
from chatd.service.generation import Job, LocalRun, count_prompt
from chatd.service.messages.answer import PING_SECONDS, MessageAnswer, StreamedMessage
from chatd.service.messages.capabilities import check_local_support
from chatd.service.messages.conversation import conversation_turns
from chatd.service.messages.relayed import (
    Counted,
    RelayedMessage,
    count_relayed,
    counted,
    prompt_text,
)
from chatd.service.messages.tools import plan_tools
from chatd.service.models import LocalModel
from chatd.service.protocol_service import Fallback, Incoming, JobBuilder, ProtocolService
from chatd.service.turns import render_turns
from chatd.upstream.channels import Channel
from chatd.upstream.messages_wire import CountTokensWire, MessagesWire
from chatd.upstream.wires import ChatWire, Wire

__all__ = ["MessagesService", "prompt_too_long"]

Json = dict[str, Any]
PROMPT_PARAM = "messages"


def prompt_too_long(tokens: int, most: int) -> APIError:
    """Anthropic's own words for a prompt longer than the model takes."""
    return InvalidRequest(f"prompt is too long: {tokens} tokens > {most} maximum")


class MessagesService(ProtocolService[MessagesRequest, MessageAnswer, None]):
    """Anthropic's Messages API over the shared skeleton. Nothing is stored: the API
    has no stored messages."""

    ping_seconds = PING_SECONDS  # a stream's ping while nothing else is sent

    async def count_tokens(self, req: MessagesRequest, owner: str) -> int:
        """The prompt tokens ``req`` would be billed (the three usage input numbers'
        sum), by the model's own tokenizer and chat template; relayed, the Anthropic
        channel's own count, or chatd's estimate for a Chat Completions channel."""

        async def local(model: LocalModel) -> Counted:
            job = self._job(req, owner, model.id)
            lease = await model.acquire(self.limits.request_timeout)
            try:
                return await count_prompt(lease.engine, job)
            finally:
                lease.release()

        def relay(channels: list[Channel], fallback: Fallback[Counted] | None) -> Counted:
            # the router starts a relay without awaiting it (an answer is read later):
            # this one is a coroutine, awaited below
            anthropic = [c for c in channels if c.api == "anthropic"]
            call = None
            if anthropic:
                wire = CountTokensWire(req.model, req.raw, owner, req.betas)
                call = self.relay_call(req.model, anthropic, {"anthropic": lambda: wire})
            return count_relayed(call, fallback, self.models.token_counter(), req)

        return await counted(await self.router.start(req.model, local, relay))

    def _job(self, req: MessagesRequest, owner: str, model_id: str) -> Job:
        check_local_support(req, model_id)
        turns = conversation_turns(req)
        plan = plan_tools(req)
        return Job(
            render=lambda native: render_turns(turns, plan, native=native),
            owner=owner,
            sampling=sampling(req),
            tools=plan,
            schema=req.output_schema(),
            prompt_param=PROMPT_PARAM,
            tools_param="tools",
            format_param="output_config.format",
            schema_param="output_config.format.schema",
            clamp_max_tokens=True,
            prompt_too_long=prompt_too_long,
        )

    # ---- the skeleton's hooks ----------------------------------------------------------

    def local_job(self, incoming: Incoming[MessagesRequest], model: LocalModel) -> JobBuilder:
        job = self._job(incoming.req, incoming.owner, model.id)  # refused before loading
        return lambda engine: job

    def saver(self, incoming: Incoming[MessagesRequest]) -> None:
        return None

    def local_answer(
        self,
        incoming: Incoming[MessagesRequest],
        job: Job,
        run: LocalRun,
        engine: EngineLike,
        save: None,
        account: Accountant | None,
    ) -> StreamedMessage:
        return StreamedMessage(
            LocalSource(run),
            incoming.req.model,
            account=accounted(account),
            ping_seconds=self.ping_seconds,
        )

    def relay_answer(
        self,
        incoming: Incoming[MessagesRequest],
        channels: list[Channel],
        fallback: Fallback[MessageAnswer] | None,
        save: None,
        account: Accountant | None,
    ) -> MessageAnswer:
        """An Anthropic channel gets the request as it came (its allowed fields); a
        channel speaking Chat Completions gets it translated
        (``protocol/messages_via_chat.py``), and its answer is read back as the core's
        events and made into a message as a local answer is. What the translation
        cannot carry is refused here, before anything is sent."""
        req, owner = incoming.req, incoming.owner
        wires: dict[str, Callable[[], Wire]] = {
            "anthropic": lambda: MessagesWire(req.model, req.raw, owner, req.betas),
            "chat": lambda: ChatWire(req.model, _chat_body(req), owner=owner),
        }
        call = self.relay_call(req.model, channels, wires)
        return RelayedMessage(
            call,
            req.model,
            streaming=req.is_streaming(),
            account=accounted(account),
            count_tokens=self.models.token_counter(),
            prompt_text=prompt_text(req),
            fallback=fallback,
            ping_seconds=self.ping_seconds,
        )


def _chat_body(req: MessagesRequest) -> Json:
    body = chat_from_messages(req.raw)
    if req.is_streaming():  # usage is always asked for by the wire
        body["stream"] = True
    return body


def sampling(req: MessagesRequest) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments for the fields given (Anthropic's defaults,
    temperature 1 and no top-p/top-k cut, are the engine's own)."""
    out: dict[str, Any] = {"max_new_tokens": req.max_tokens}
    if req.temperature is not None:
        out["temperature"] = req.temperature
    if req.top_p is not None:
        out["top_p"] = req.top_p
    if req.top_k is not None and req.top_k > 0:
        out["top_k"] = req.top_k
    if req.stop_sequences:
        out["stop"] = tuple(s for s in req.stop_sequences if s)
    return out

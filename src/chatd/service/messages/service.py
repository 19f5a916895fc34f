"""The Messages adapter: a ``MessagesRequest`` becomes a core ``Job`` on the local
engine (or, once wired, a relay to upstream channels); the router decides which, as
for the other two APIs. ``count_tokens`` renders the same prompt without generating.

``max_tokens`` is an upper bound here, clamped to what the context window leaves (Claude
Code sends 32,000 on every request; refusing it would refuse them all) and reported as
``stop_reason: "max_tokens"`` when reached; a prompt that leaves no room is Anthropic's
own 400 ("prompt is too long: N tokens > M maximum"). docs/messages.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from chatd.protocol.errors import APIError, InvalidRequest, NotYetSupported
from chatd.protocol.messages_request import MessagesRequest
from chatd.protocol.request_limits import Limits
from chatd.service.accounting import Accountant
from chatd.service.cache_scope import SharedPrompts
from chatd.service.generation import Job, LocalRun, count_prompt, start_local
from chatd.service.limits import Admission
from chatd.service.messages.answer import (
    PING_SECONDS,
    MessageAnswer,
    MessageUsage,
    StreamedMessage,
)
from chatd.service.messages.capabilities import check_local_support
from chatd.service.messages.conversation import conversation_turns
from chatd.service.messages.tools import plan_tools
from chatd.service.models import LocalModel, ModelRegistry
from chatd.service.routing import Router
from chatd.service.turns import render_turns
from chatd.store.usage import UsageBuffer
from chatd.upstream.channels import Channel

__all__ = ["MessagesService", "prompt_too_long"]

Json = dict[str, Any]
PROMPT_PARAM = "messages"


def prompt_too_long(tokens: int, most: int) -> APIError:
    """Anthropic's own words for a prompt longer than the model takes."""
    return InvalidRequest(f"prompt is too long: {tokens} tokens > {most} maximum")


class MessagesService:
    def __init__(
        self,
        models: ModelRegistry,
        usage: UsageBuffer | None = None,
        limits: Limits | None = None,
        shared: SharedPrompts | None = None,
    ) -> None:
        self.models = models
        self.usage = usage
        self.limits = limits or Limits()
        self.shared = shared or SharedPrompts()  # system prompts every key may reuse
        self.router = Router(models)
        self.ping_seconds = PING_SECONDS  # a stream's ping while nothing else is sent

    async def start(
        self, req: MessagesRequest, owner: str, admission: Admission | None = None
    ) -> MessageAnswer:
        """Start the message on the model's first route; raises APIError for any
        refusal, before anything is sent."""
        local = partial(self._start_local, req, owner, admission)
        relay = partial(self._start_relay, req, owner, admission)
        return await self.router.start(req.model, local, relay)

    async def count_tokens(self, req: MessagesRequest, owner: str) -> int:
        """The prompt tokens ``req`` would be billed (the three usage input numbers'
        sum), by the model's own tokenizer and chat template."""

        async def local(model: LocalModel) -> int:
            job = self._job(req, owner, model.id)
            lease = await model.acquire(self.limits.request_timeout)
            try:
                return await count_prompt(lease.engine, job)
            finally:
                lease.release()

        return await self.router.start(req.model, local, self._count_relay)

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

    async def _start_local(
        self, req: MessagesRequest, owner: str, admission: Admission | None, model: LocalModel
    ) -> StreamedMessage:
        job = self._job(req, owner, model.id)
        # The model is loaded (if need be) only for a request it will answer; the run
        # holds the lease until its generation ends.
        lease = await model.acquire(self.limits.request_timeout)
        run = await start_local(lease.engine, job, self.limits, lease.release, self.shared)
        # nothing may refuse the request after this
        return StreamedMessage(
            _LocalSource(run), req.model, account=self._account(req, owner, admission)
        )

    # TODO(merge, issue 21): the relay path. Relaying Messages requests to upstream
    # channels (OpenAI-compatible ones translated through Chat Completions; ``api =
    # "anthropic"`` ones as they came) is built on another branch; the lead wires it
    # here. Until then a model served by channels is refused with a 400.
    def _start_relay(
        self,
        req: MessagesRequest,
        owner: str,
        admission: Admission | None,
        channels: list[Channel],
        fallback: Callable[[], Awaitable[MessageAnswer]] | None,
    ) -> MessageAnswer:
        raise _relay_not_yet(req.model)

    def _count_relay(
        self, channels: list[Channel], fallback: Callable[[], Awaitable[int]] | None
    ) -> int:
        raise _relay_not_yet("count_tokens")

    def _account(
        self, req: MessagesRequest, owner: str, admission: Admission | None
    ) -> Callable[[MessageUsage], None] | None:
        if self.usage is None:
            return None
        accountant = Accountant(self.usage, owner, req.model, admission)
        return lambda u: accountant.record(u.prompt_tokens, u.output_tokens, False, u.cached_tokens)


def _relay_not_yet(what: str) -> APIError:
    error = NotYetSupported("model")
    error.message = (
        f"model: `{what}` is served by upstream channels, and relaying the Messages API to"
        " them is not supported yet by this server."
    )
    return error


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


class _LocalSource:
    """The local engine's run, as a message's event source (its one choice)."""

    def __init__(self, run: LocalRun) -> None:
        self.run = run

    async def events(self) -> Any:
        async for _, event in self.run.events():
            yield event

    def usage(self) -> MessageUsage:
        u = self.run.usage()
        return MessageUsage(u.prompt_tokens, u.completion_tokens, u.cached_tokens)

    def cancel(self) -> None:
        self.run.cancel()

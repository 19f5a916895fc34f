"""One chat completion's life: check it against the model, render and measure the
prompt, submit it to the engine, and turn the engine's deltas into OpenAI objects.

Everything that can refuse a request happens in ``start``, before the API layer sends a
byte, so a streamed request is refused with a proper status code, never mid-stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from chatd.engine.engine import Engine, Generation
from chatd.engine.grammar import Grammar, GrammarError
from chatd.engine.params import Delta, SamplingParams
from chatd.engine.scheduler import EngineFailure, QueueFull
from chatd.engine.template import TemplateRenderError
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.errors import (
    APIError,
    InvalidRequest,
    ModelNotFound,
    ModelUnavailable,
    NotYetSupported,
    Overloaded,
    ServerError,
)
from chatd.protocol.relayed_request import RelayedRequest
from chatd.protocol.responses import Envelope, Usage, completion_id
from chatd.service.capabilities import check_local_support
from chatd.service.choice import Choice
from chatd.service.limits import Admission
from chatd.service.models import LocalModel, ModelRegistry, Route, RoutedModel
from chatd.service.structured import SCHEMA_PARAM, json_schema_for
from chatd.service.tools import ToolPlan, plan_tools, render_messages, template_tools
from chatd.service.tools import grammar as tool_grammar
from chatd.store.completions import CompletionStore
from chatd.store.usage import UsageBuffer
from chatd.upstream.channels import Channel, route
from chatd.upstream.relay import UpstreamCall

log = logging.getLogger("chatd.service")

Request = ChatCompletionRequest | RelayedRequest  # in full, or only what a relay acts on


class ChatService:
    def __init__(
        self,
        models: ModelRegistry,
        store: CompletionStore | None = None,
        usage: UsageBuffer | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.usage = usage
        self._session: aiohttp.ClientSession | None = None

    def relays_untouched(self, model_id: Any) -> bool:
        """Whether only upstream channels serve this id: its requests then pass through
        as sent (``RelayedRequest``), and the upstream decides what it supports."""
        if not isinstance(model_id, str):
            return False
        try:
            model = self.models.get(model_id)
        except ModelNotFound:
            return False
        return isinstance(model, RoutedModel) and all(isinstance(r, Channel) for r in model.routes)

    async def start(
        self, req: Request, owner: str, admission: Admission | None = None
    ) -> Completion:
        """Validate against the model and submit; raises APIError for any refusal.
        ``owner`` (the caller's key) owns the stored completion if ``store`` is set;
        ``admission`` (its rate-limit windows) gets the tokens used."""
        model = self.models.get(req.model)
        if isinstance(model, LocalModel):
            return await self._start_local(req, model, owner, admission)
        order = route(model.routes)
        if not order:
            raise ModelUnavailable(
                f"The model `{model.id}` is temporarily unavailable: no channel is available"
                " (all are cooling down after failures).",
                code="model_unavailable",
            )
        return await self._start_routed(req, order, owner, admission)

    async def _start_routed(
        self,
        req: Request,
        order: list[Route],
        owner: str,
        admission: Admission | None,
    ) -> Completion:
        """Try routes in order. The local engine refuses at once (a full queue, or a
        request it cannot honour) and the next route is tried; channels fail later, before
        their first byte, and then the routes after them are the fallback."""
        head, rest = order[0], order[1:]
        if isinstance(head, LocalModel):
            try:
                return await self._start_local(req, head, owner, admission)
            except APIError:
                if not rest:
                    raise
                return await self._start_routed(req, rest, owner, admission)
        n = next((i for i, r in enumerate(order) if not isinstance(r, Channel)), len(order))
        channels = [r for r in order[:n] if isinstance(r, Channel)]
        rest = order[n:]

        async def fallback() -> Completion:
            return await self._start_routed(req, rest, owner, admission)

        return self._start_upstream(req, channels, owner, admission, fallback if rest else None)

    async def _start_local(
        self,
        req: Request,
        model: LocalModel,
        owner: str,
        admission: Admission | None,
    ) -> ChatCompletion:
        if not isinstance(req, ChatCompletionRequest):  # the API parses these in full
            raise ServerError(f"`{req.model}` is served locally: its request needs the contract.")
        engine = model.engine
        check_local_support(req, model.id, engine.n_vocab)
        plan = plan_tools(req)
        grammar = await _grammar(engine, req, plan)
        prompt = _render(engine, req, plan)
        params = _sampling_params(req, len(prompt), engine.context_window, grammar)
        if req.prediction is not None:
            predicted = engine.tokenize_text(req.prediction.text())
            params = dataclasses.replace(params, prediction=tuple(predicted))
        saver = _Saver(self.store, owner, req) if req.store is True else None
        # Nothing may refuse the request after this point: it is running.
        try:
            generation = engine.submit(prompt, params)
        except QueueFull:
            raise Overloaded(
                "The server is overloaded: too many requests are waiting. Retry shortly.",
                retry_after=1,
            ) from None
        except EngineFailure as e:
            raise InvalidRequest(str(e), param="n") from None
        envelope = Envelope(
            model=req.model,  # the public id asked for (an alias stays the alias)
            system_fingerprint=engine.fingerprint,
            service_tier=_service_tier(req.service_tier),
        )
        completion = ChatCompletion(req, model, generation, envelope, len(prompt), plan, saver)
        if self.usage is not None:
            completion.accountant = _Accountant(self.usage, owner, req.model, admission)
        return completion

    def _start_upstream(
        self,
        req: Request,
        channels: list[Channel],
        owner: str,
        admission: Admission | None,
        fallback: Callable[[], Awaitable[Completion]] | None = None,
    ) -> RelayedCompletion:
        """Fields pass through untouched: the upstream decides what it supports."""
        body = dict(req.raw)
        saver = _Saver(self.store, owner, req) if req.store is True else None
        # A stored answer is chatd's object: its id is chatd's, unique whatever the upstream.
        stored_id = completion_id() if saver is not None else None
        call = UpstreamCall(req.model, channels, body, self._http(), stored_id)
        accountant = _Accountant(self.usage, owner, req.model, admission) if self.usage else None
        local = self.models.local()
        counter = local[0].engine.count_tokens if local else None
        return RelayedCompletion(call, saver, accountant, counter, req.prompt_text(), fallback)

    def _http(self) -> aiohttp.ClientSession:
        """One pool of upstream connections, kept alive between requests; no cap on
        their number (the requests chatd accepts already bound it)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class RelayedCompletion:
    """An upstream's answer, relayed; stored and accounted like a local one. When no
    channel answers before its first byte, the ``fallback`` routes (if any) take over."""

    def __init__(
        self,
        call: UpstreamCall,
        saver: _Saver | None,
        accountant: _Accountant | None,
        count_tokens: Callable[[str], int] | None = None,
        prompt_text: str = "",
        fallback: Callable[[], Awaitable[Completion]] | None = None,
    ) -> None:
        self.call = call
        self.saver = saver
        self.accountant = accountant
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text
        self.fallback = fallback
        self._delegate: Completion | None = None
        self._stream: AsyncIterator[dict[str, Any]] | None = None
        self._first: dict[str, Any] | None = None

    def cancel(self) -> None:
        """Closing the relay (the client left) closes the upstream stream."""
        if self._delegate is not None:
            self._delegate.cancel()

    def _account(self, output: str) -> None:
        """The upstream's usage; without one, chatd's own count of the prompt and of
        everything generated (text and tool arguments), marked as estimated."""
        if self.accountant is None:
            return
        u = self.call.usage
        if u and "prompt_tokens" in u:
            usage = Usage(int(u["prompt_tokens"]), int(u.get("completion_tokens", 0)))
            self.accountant.record(usage)
        elif self.count_tokens is not None:
            usage = Usage(self.count_tokens(self.prompt_text), self.count_tokens(output))
            self.accountant.record(usage, estimated=True)
        else:
            self.accountant.record(Usage(0, 0), estimated=True)
        self.accountant = None

    async def _fall_back(self, error: ModelUnavailable) -> Completion:
        """Hand the request to the next routes; they account and store it themselves."""
        if self.fallback is None:
            self._account("")
            raise error
        self.accountant = None
        self._delegate = await self.fallback()
        return self._delegate

    async def result(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        try:
            body = await self.call.result()
        except ModelUnavailable as e:
            return await (await self._fall_back(e)).result()
        finally:
            self._account(_generated_text(body.get("choices", [])))
        if self.saver is not None:
            await self.saver.save(body)
        return body

    async def prime(self) -> None:
        """Open the upstream stream up to its first chunk, so that a request no channel
        can answer is refused with a real status code before any byte is sent."""
        self._stream = self.call.chunks()
        try:
            self._first = await anext(self._stream)
        except StopAsyncIteration:
            self._first = None
        except ModelUnavailable as e:
            await (await self._fall_back(e)).prime()
        except BaseException:
            self._account("")
            raise

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        if self._delegate is not None:
            async for chunk in self._delegate.chunks():
                yield chunk
            return
        assembled = _Assembler()
        try:
            if self._first is not None:
                assembled.add(self._first)
                yield self._first
            async for chunk in self._stream:
                assembled.add(chunk)
                yield chunk
        finally:
            self._account(_generated_text(assembled.completion(None)["choices"]))
        if self.saver is not None:
            await self.saver.save(assembled.completion(self.call.usage))


def _generated_text(choices: list[dict[str, Any]]) -> str:
    parts = []
    for c in choices:
        message = c.get("message") or {}
        parts.append(message.get("content") or "")
        for call in message.get("tool_calls") or []:
            parts.append((call.get("function") or {}).get("arguments") or "")
    return "".join(parts)


class _Assembler:
    """Rebuilds the whole completion from relayed chunks (for ``store``)."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        if not self.head:
            self.head = {k: chunk[k] for k in ("id", "created", "model") if k in chunk}
            self.head["system_fingerprint"] = chunk.get("system_fingerprint")
        for ch in chunk.get("choices", []):
            c = self.choices.setdefault(
                ch["index"],
                {"index": ch["index"], "content": None, "finish_reason": None, "calls": {}},
            )
            delta = ch.get("delta") or {}
            if delta.get("content") is not None:
                c["content"] = (c["content"] or "") + delta["content"]
            for tc in delta.get("tool_calls") or []:
                call = c["calls"].setdefault(
                    tc["index"],
                    {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
                )
                call["id"] = tc.get("id") or call["id"]
                fn = tc.get("function") or {}
                call["function"]["name"] = fn.get("name") or call["function"]["name"]
                call["function"]["arguments"] += fn.get("arguments") or ""
            if ch.get("finish_reason"):
                c["finish_reason"] = ch["finish_reason"]

    def completion(self, usage: dict[str, Any] | None) -> dict[str, Any]:
        choices = []
        for i in sorted(self.choices):
            c = self.choices[i]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": c["content"],
                "refusal": None,
                "annotations": [],
            }
            if c["calls"]:
                message["tool_calls"] = [c["calls"][k] for k in sorted(c["calls"])]
            choices.append(
                {
                    "index": i,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": c["finish_reason"] or "stop",
                }
            )
        return {**self.head, "object": "chat.completion", "choices": choices, "usage": usage or {}}


class ChatCompletion:
    """A submitted completion, consumed either whole (``result``) or as chunks."""

    def __init__(
        self,
        req: ChatCompletionRequest,
        model: LocalModel,
        generation: Generation,
        envelope: Envelope,
        prompt_tokens: int,
        plan: ToolPlan | None = None,
        saver: _Saver | None = None,
    ) -> None:
        self.req = req
        self.model = model
        self.generation = generation
        self.envelope = envelope
        self.prompt_tokens = prompt_tokens
        self.n = req.effective_n()
        self.choices = [Choice(i, plan, req.wants_logprobs()) for i in range(self.n)]
        self.saver = saver
        self.accountant: _Accountant | None = None

    def cancel(self) -> None:
        self.generation.cancel()

    async def prime(self) -> None:
        """Nothing to open: the engine accepted the request already."""

    async def _deltas(self) -> AsyncIterator[tuple[Choice, Delta]]:
        try:
            async for deltas in self.generation:
                for d in deltas:
                    yield self.choices[d.index], d
        except EngineFailure as e:
            raise ServerError(f"The engine failed while generating: {e}") from None

    def _usage(self) -> Usage:
        accepted, rejected = self.generation.prediction_tokens()
        return Usage(
            self.prompt_tokens,
            sum(c.tokens for c in self.choices),
            self.generation.cached_tokens,
            accepted,
            rejected,
        )

    def _completion(self) -> dict[str, Any]:
        return self.envelope.completion([c.message() for c in self.choices], self._usage())

    async def result(self) -> dict[str, Any]:
        """The whole completion; stored (committed) before it is returned if asked."""
        try:
            async for choice, d in self._deltas():
                choice.on_delta(d)
        finally:
            self._account()
        body = self._completion()
        if self.saver is not None:
            await self.saver.save(body)
        return body

    def _account(self) -> None:
        """Usage is counted for every request, finished, failed or abandoned."""
        if self.accountant is not None:
            self.accountant.record(self._usage())
            self.accountant = None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Chunks in OpenAI's order: per choice a role delta first, content (or tool
        call) deltas, an empty delta carrying finish_reason; then the usage chunk if
        asked for."""
        env = self.envelope
        include_usage = self.req.include_usage()
        obfuscate = self.req.include_obfuscation()

        def chunk(choice: dict[str, Any]) -> dict[str, Any]:
            return env.chunk([choice], include_usage=include_usage, obfuscate=obfuscate)

        for c in self.choices:
            for opening in c.open_early():
                yield chunk(opening)
        try:
            async for choice, d in self._deltas():
                for out in choice.on_delta(d):
                    yield chunk(out)
        finally:
            self._account()
        if include_usage:
            yield env.chunk([], usage=self._usage(), include_usage=True, obfuscate=obfuscate)
        if self.saver is not None:  # committed before the caller writes [DONE]
            await self.saver.save(self._completion())


Completion = ChatCompletion | RelayedCompletion


class _Accountant:
    """Counts one request's usage: rate-limit tokens, and the usage table (buffered)."""

    def __init__(
        self, usage: UsageBuffer, owner: str, model: str, admission: Admission | None = None
    ) -> None:
        self.usage = usage
        self.owner = owner
        self.model = model
        self.admission = admission

    def record(self, usage: Usage, estimated: bool = False) -> None:
        self.usage.add(
            self.owner, self.model, usage.prompt_tokens, usage.completion_tokens, estimated
        )
        if self.admission is not None and self.admission.counts_tokens:
            total = usage.prompt_tokens + usage.completion_tokens
            task = asyncio.get_running_loop().create_task(self.admission.add_tokens(total))
            _background.add(task)
            task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


class _Saver:
    """Persists one completion for its owner; a failure is an error, never swallowed."""

    def __init__(self, store: CompletionStore | None, owner: str, req: Request):
        if store is None:
            raise NotYetSupported("store (this server has no database)")
        self.store = store
        self.owner = owner
        self.req = req

    async def save(self, body: dict[str, Any]) -> None:
        req = self.req
        request, messages = req.stored_request(), req.stored_messages()
        try:
            await self.store.save(self.owner, body, request, messages, dict(req.metadata or {}))
        except Exception as e:
            log.exception("storing completion %s failed", body.get("id"))
            raise ServerError(f"The completion could not be stored: {type(e).__name__}.") from None


def _render(engine: Engine, req: ChatCompletionRequest, plan: ToolPlan | None) -> list[int]:
    native = plan is not None and plan.may_call and engine.template.supports_tools
    messages = render_messages(req, plan, native=native)
    tools = template_tools(plan) if native and plan is not None else None
    try:
        return engine.render_chat(messages, tools)
    except TemplateRenderError as e:
        raise InvalidRequest(
            f"The model's chat template rejected these messages: {e}", param="messages"
        ) from None


async def _grammar(
    engine: Engine, req: ChatCompletionRequest, plan: ToolPlan | None
) -> Grammar | None:
    """The grammar the output must follow: tool calls, a JSON schema, or none."""
    schema = json_schema_for(req)
    lark = tool_grammar(plan) if plan is not None else None
    if lark is not None and schema is not None:
        raise NotYetSupported("response_format (together with tools that may be called)")
    try:
        # Compiling can take long for big schemas (and builds the tokenizer once).
        if lark is not None:
            return await asyncio.to_thread(engine.grammars.lark, lark)
        if schema is not None:
            return await asyncio.to_thread(engine.grammars.json_schema, schema)
    except GrammarError as e:
        if lark is not None:
            raise InvalidRequest(
                f"Invalid or unsupported function parameters schema: {e}",
                param="tools" if req.tools else "functions",
                code="invalid_function_parameters",
            ) from None
        raise InvalidRequest(
            f"Invalid or unsupported JSON schema: {e}",
            param=SCHEMA_PARAM,
            code="invalid_json_schema",
        ) from None
    return None


def _sampling_params(
    req: ChatCompletionRequest, prompt_tokens: int, window: int, grammar: Grammar | None
) -> SamplingParams:
    requested = req.effective_max_tokens()
    if requested is None:
        if prompt_tokens >= window:
            raise APIError(
                f"This model's maximum context length is {window} tokens. However, your"
                f" messages resulted in {prompt_tokens} tokens. Please reduce the length of"
                " the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        max_new = window - prompt_tokens
    else:
        if prompt_tokens + requested > window:
            raise APIError(
                f"This model's maximum context length is {window} tokens. However, you"
                f" requested {prompt_tokens + requested} tokens ({prompt_tokens} in the"
                f" messages, {requested} in the completion). Please reduce the length of the"
                " messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        max_new = requested
    return SamplingParams(
        temperature=req.effective_temperature(),
        top_p=req.effective_top_p(),
        presence_penalty=req.effective_presence_penalty(),
        frequency_penalty=req.effective_frequency_penalty(),
        logit_bias={k: float(v) for k, v in req.logit_bias_map().items()},
        seed=req.seed,
        stop=tuple(req.stop_list()),
        max_new_tokens=max_new,
        n=req.effective_n(),
        logprobs=req.wants_logprobs(),
        top_logprobs=req.effective_top_logprobs(),
        grammar=grammar,
    )


def _service_tier(requested: str | None) -> str | None:
    """Every request runs on the one tier this server has; "auto" resolves to it and an
    explicit tier is echoed, as OpenAI reports the tier it used only when one was set."""
    if requested is None:
        return None
    return {"auto": "default", "fast": "priority"}.get(requested, requested)

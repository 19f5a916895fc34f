"""One chat completion's life: check it against the model, render and measure the
prompt, submit it to the engine, and turn the engine's deltas into OpenAI objects.

Everything that can refuse a request happens in ``start``, before the API layer sends a
byte, so a streamed request is refused with a proper status code, never mid-stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from chatd.engine.engine import Engine, Generation
from chatd.engine.grammar import Grammar, GrammarError
from chatd.engine.params import SamplingParams, TokenLogprob
from chatd.engine.scheduler import EngineFailure, QueueFull
from chatd.engine.template import TemplateRenderError
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.errors import APIError, InvalidRequest, Overloaded, ServerError
from chatd.protocol.responses import (
    Envelope,
    LogprobEntry,
    Usage,
    delta_choice,
    message_choice,
)
from chatd.service.capabilities import check_local_support
from chatd.service.models import LocalModel, ModelRegistry
from chatd.service.structured import SCHEMA_PARAM, json_schema_for

log = logging.getLogger("chatd.service")


class ChatService:
    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    async def start(self, req: ChatCompletionRequest) -> ChatCompletion:
        """Validate against the model and submit; raises APIError for any refusal."""
        model = self.models.get(req.model)
        engine = model.engine
        check_local_support(req, model.id, engine.n_vocab)
        grammar = await _grammar(engine, req)
        prompt = _render(engine, req)
        params = _sampling_params(req, len(prompt), engine.context_window, grammar)
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
            model=model.id,
            system_fingerprint=engine.fingerprint,
            service_tier=_service_tier(req.service_tier),
        )
        return ChatCompletion(req, model, generation, envelope, len(prompt))


class ChatCompletion:
    """A submitted completion, consumed either whole (``result``) or as chunks."""

    def __init__(
        self,
        req: ChatCompletionRequest,
        model: LocalModel,
        generation: Generation,
        envelope: Envelope,
        prompt_tokens: int,
    ) -> None:
        self.req = req
        self.model = model
        self.generation = generation
        self.envelope = envelope
        self.prompt_tokens = prompt_tokens
        self.n = req.effective_n()
        self.logprobs = req.wants_logprobs()

    def cancel(self) -> None:
        self.generation.cancel()

    async def result(self) -> dict[str, Any]:
        texts = [""] * self.n
        logprobs: list[list[LogprobEntry]] = [[] for _ in range(self.n)]
        finish: list[str] = ["stop"] * self.n
        tokens = [0] * self.n
        try:
            async for deltas in self.generation:
                for d in deltas:
                    texts[d.index] += d.text
                    logprobs[d.index].extend(_entries(d.logprobs))
                    tokens[d.index] = d.completion_tokens
                    if d.finish_reason is not None:
                        finish[d.index] = d.finish_reason
        except EngineFailure as e:
            raise ServerError(f"The engine failed while generating: {e}") from None
        choices = [
            message_choice(i, texts[i], finish[i], logprobs[i] if self.logprobs else None)
            for i in range(self.n)
        ]
        return self.envelope.completion(choices, Usage(self.prompt_tokens, sum(tokens)))

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Chunks in OpenAI's order: per choice a role delta first, content deltas, an
        empty delta carrying finish_reason; then the usage chunk if asked for."""
        env = self.envelope
        include_usage = self.req.include_usage()
        obfuscate = self.req.include_obfuscation()

        def chunk(choice: dict[str, Any]) -> dict[str, Any]:
            return env.chunk([choice], include_usage=include_usage, obfuscate=obfuscate)

        for i in range(self.n):
            yield chunk(delta_choice(i, {"role": "assistant", "content": "", "refusal": None}))
        tokens = [0] * self.n
        try:
            async for deltas in self.generation:
                for d in deltas:
                    tokens[d.index] = d.completion_tokens
                    if d.text or d.logprobs:
                        lp = _entries(d.logprobs) if self.logprobs else None
                        yield chunk(delta_choice(d.index, {"content": d.text}, logprobs=lp))
                    if d.finish_reason is not None:
                        yield chunk(delta_choice(d.index, {}, finish_reason=d.finish_reason))
        except EngineFailure as e:
            raise ServerError(f"The engine failed while generating: {e}") from None
        if include_usage:
            usage = Usage(self.prompt_tokens, sum(tokens))
            yield env.chunk([], usage=usage, include_usage=True, obfuscate=obfuscate)


def _render(engine: Engine, req: ChatCompletionRequest) -> list[int]:
    messages = [{"role": m.role, "content": m.text()} for m in req.messages]
    for m, source in zip(messages, req.messages, strict=True):
        name = getattr(source, "name", None)
        if name:
            m["name"] = name
    try:
        return engine.render_chat(messages)
    except TemplateRenderError as e:
        raise InvalidRequest(
            f"The model's chat template rejected these messages: {e}", param="messages"
        ) from None


async def _grammar(engine: Engine, req: ChatCompletionRequest) -> Grammar | None:
    schema = json_schema_for(req)
    if schema is None:
        return None
    try:
        # Compiling can take long for big schemas (and builds the tokenizer once).
        return await asyncio.to_thread(engine.grammars.json_schema, schema)
    except GrammarError as e:
        raise InvalidRequest(
            f"Invalid or unsupported JSON schema: {e}",
            param=SCHEMA_PARAM,
            code="invalid_json_schema",
        ) from None


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


def _entries(logprobs: tuple[TokenLogprob, ...]) -> list[LogprobEntry]:
    return [
        LogprobEntry(
            token=lp.token,
            logprob=lp.logprob,
            bytes=lp.bytes,
            top_logprobs=[
                {"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in lp.top
            ],
        )
        for lp in logprobs
    ]

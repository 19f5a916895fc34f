"""The life of one local generation, for any protocol: compile the grammar the output
must follow, render and measure the prompt, fit the answer in the context window, submit,
then read the engine's deltas back as protocol-neutral events and count usage.

A protocol's adapter describes its request as a ``Job`` (its conversation, the sampling
fields it was given in the engine's names, its tools and schema) and turns the events
into its own objects. Everything that can refuse happens in ``start_local``, before the
adapter sends a byte, so a streamed request is refused with a proper status code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from chatd import request_log
from chatd.engine.errors import EngineFailure, QueueFull
from chatd.engine.grammar import Grammar, GrammarError
from chatd.engine.params import Delta, SamplingParams
from chatd.engine.template import TemplateRenderError
from chatd.protocol.chat_fields import FieldPolicy
from chatd.protocol.errors import (
    APIError,
    InvalidRequest,
    Overloaded,
    RequestTimeout,
    ServerError,
    Unsupported,
)
from chatd.protocol.request_limits import Limits
from chatd.service.cache_scope import SharedPrompts, cache_scope
from chatd.service.engine_api import EngineLike, GenerationLike
from chatd.service.events import ChoiceReader, Event
from chatd.service.tool_calls import ToolPlan, template_tools
from chatd.service.tool_calls import grammar as tool_grammar

__all__ = [
    "Job",
    "LocalRun",
    "count_prompt",
    "prompt_tokens",
    "Usage",
    "engine_params",
    "fit_kv_cache",
    "sampling_fields",
    "start_local",
]

log = logging.getLogger("chatd.service")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


@dataclass
class Job:
    """One request in the core's terms.

    ``render(native)`` gives the conversation as chat-template messages; ``native`` says
    the template renders tools itself (else the adapter writes them as text). ``sampling``
    holds only the ``SamplingParams`` fields the request gave, so an absent field is the
    model's default (``defaults``), else the engine's; without ``max_new_tokens`` the
    answer may fill the context window, up to the model's ``max_output_default``.
    The ``*_param`` names say which request field an error points at. ``shorten(native,
    k)``, when given, renders the conversation without its ``k`` oldest turns (None when
    nothing is left to drop): a prompt too long for the window is then shortened until
    it fits, rather than refused (the Responses API's ``truncation: "auto"``).
    ``owner`` is the caller: its prompt's cached cells are reused only by its own
    requests, and the engine's queue is fair across owners (service/cache_scope.py).
    """

    render: Callable[[bool], list[dict[str, Any]]]
    owner: str
    sampling: dict[str, Any] = field(default_factory=dict)
    tools: ToolPlan | None = None
    schema: dict[str, Any] | None = None  # JSON schema the output must match
    # the schema's own checks (meta-schema validation: seconds on a big hostile schema),
    # run in the compile thread, under the compile timeout, never on the event loop
    schema_check: Callable[[], None] | None = None
    prediction: str | None = None  # text the output is expected to largely repeat
    prompt_param: str = "messages"
    tools_param: str = "tools"
    format_param: str = "response_format"
    schema_param: str = "response_format"
    shorten: Callable[[bool, int], list[dict[str, Any]] | None] | None = None
    # ``max_new_tokens`` is an upper bound, clamped to what the window leaves rather
    # than refused when larger (the Messages API: Claude Code asks 32,000 always);
    # ``prompt_too_long(prompt_tokens, most)`` is then the refusal of a prompt that
    # leaves no room at all (``most``: the longest prompt that leaves a token)
    clamp_max_tokens: bool = False
    prompt_too_long: Callable[[int, int], APIError] | None = None
    # the prompt as token ids, as given (the Completions API): no chat template, no
    # tools shown; ``render`` is then unused
    prompt_tokens: list[int] | None = None
    # The model's defaults (service/model_defaults.py), set by the skeleton: sampling
    # fields the request left out (engine names), and the output cap of a request that
    # gives none (None: the rest of the window). ``sampling``'s own values always win.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    max_output_default: int | None = None


_NO_LIMITS = Limits(grammar_timeout=0, request_timeout=0)
_NOTHING_SHARED = SharedPrompts()


async def start_local(
    engine: EngineLike,
    job: Job,
    limits: Limits = _NO_LIMITS,
    release: Callable[[], None] | None = None,
    shared: SharedPrompts = _NOTHING_SHARED,
) -> LocalRun:
    """Submit ``job``; raises APIError for any refusal, and nothing after submission.
    ``release`` (the engine's lease, service/model_pool.py) is called once the
    generation has ended, or at once if it is refused (or cancelled) before it starts.
    ``shared``: the operator's shared system prompts, whose cells any owner may reuse."""
    try:
        run = await _start(engine, job, limits, shared)
    except BaseException:
        if release is not None:
            release()
        raise
    run.release = release
    return run


async def _start(engine: EngineLike, job: Job, limits: Limits, shared: SharedPrompts) -> LocalRun:
    if getattr(engine, "embedding_only", False):  # a GGUF with its own pooling type
        raise InvalidRequest(
            "This model is an embedding model: it only serves /v1/embeddings.",
            param="model",
            code="model_not_supported",
        )
    if job.defaults:  # the model's sampling defaults under the request's own fields
        job = dataclasses.replace(job, sampling={**job.defaults, **job.sampling})
    grammar = await _grammar(engine, job, limits.grammar_timeout)
    native, tools = _tools_shown(engine, job)
    messages = job.render(native)
    prompt = _prompt(engine, job, messages, tools)
    if job.shorten is not None:
        room = engine.context_window - job.sampling.get("max_new_tokens", 1)
        dropped = 0
        while len(prompt) > room:
            dropped += 1
            shorter = job.shorten(native, dropped)
            if shorter is None:
                break  # nothing left to drop: the window check below refuses it
            messages, prompt = shorter, _prompt(engine, job, shorter, tools)
    sampling = _clamped(job, len(prompt), engine.context_window)
    params = engine_params(
        sampling,
        len(prompt),
        engine.context_window,
        grammar,
        job.prompt_param,
        job.max_output_default,
    )
    asked = "max_new_tokens" in job.sampling and not job.clamp_max_tokens
    params = fit_kv_cache(params, len(prompt), engine.kv_capacity, asked)
    if job.prediction is not None:
        predicted = engine.tokenize_text(job.prediction)
        params = dataclasses.replace(params, prediction=tuple(predicted))
    scope = cache_scope(job.owner, shared, engine, messages, prompt)
    try:
        generation = engine.submit(prompt, params, scope)
    except QueueFull:
        raise Overloaded(
            "The server is overloaded: too many requests are waiting. Retry shortly.",
            retry_after=1,
        ) from None
    except EngineFailure as e:
        raise InvalidRequest(str(e), param="n") from None
    return LocalRun(generation, params.n, len(prompt), job.tools, limits.request_timeout)


def _clamped(job: Job, prompt_tokens: int, window: int) -> dict[str, Any]:
    """The sampling fields with ``max_new_tokens`` clamped to the window, for a job that
    asks for it (``clamp_max_tokens``); raises its ``prompt_too_long`` when the prompt
    leaves no room."""
    if not job.clamp_max_tokens:
        return job.sampling
    room = window - prompt_tokens
    if room < 1 and job.prompt_too_long is not None:
        raise job.prompt_too_long(prompt_tokens, window - 1)
    asked = job.sampling.get("max_new_tokens")
    if asked is None or asked <= room or room < 1:
        return job.sampling
    return {**job.sampling, "max_new_tokens": room}


async def count_prompt(engine: EngineLike, job: Job) -> int:
    """The prompt tokens ``job`` would be billed, rendered exactly as ``start_local``
    renders it (the same template, tools shown the same way), without generating."""
    return len(prompt_tokens(engine, job))


def prompt_tokens(engine: EngineLike, job: Job) -> list[int]:
    """The prompt ``start_local`` would submit for ``job`` (``/tokenize``'s chat form)."""
    native, tools = _tools_shown(engine, job)
    return _prompt(engine, job, job.render(native), tools)


def _tools_shown(engine: EngineLike, job: Job) -> tuple[bool, list[dict[str, Any]] | None]:
    """Whether the chat template shows the job's tools itself (``native``), and the tools
    it is given; otherwise the adapter writes them into the conversation as text."""
    plan = job.tools
    native = plan is not None and plan.may_call and engine.template.supports_tools
    return native, template_tools(plan) if native and plan is not None else None


def _prompt(
    engine: EngineLike,
    job: Job,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
) -> list[int]:
    if job.prompt_tokens is not None:
        return list(job.prompt_tokens)
    try:
        return engine.render_chat(messages, tools)
    except TemplateRenderError as e:
        raise InvalidRequest(
            f"The model's chat template rejected these messages: {e}", param=job.prompt_param
        ) from None


def sampling_fields(req: Any, engine_fields: Mapping[str, FieldPolicy]) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments for the fields ``req`` gave, by a protocol's
    ``ENGINE`` policies (in table order: the first given field wins a parameter). A
    field not given is not passed, so the defaults are ``SamplingParams``'s own."""
    given: dict[str, Any] = {}
    for name, policy in engine_fields.items():
        value = getattr(req, name)
        if value is None or policy.engine is None or policy.engine in given:
            continue
        given[policy.engine] = policy.to_engine(value)
    return given


class LocalRun:
    """A submitted generation: its events per choice, its usage, its cancellation."""

    def __init__(
        self,
        generation: GenerationLike,
        n: int,
        prompt_tokens: int,
        plan: ToolPlan | None,
        timeout: float = 0.0,
    ) -> None:
        self.generation = generation
        self.prompt_tokens = prompt_tokens
        self.choices = [ChoiceReader(i, plan) for i in range(n)]
        self.timeout = timeout
        # The wall clock starts at submission: time waiting in the queue counts.
        self.deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        # Called once when the generation has ended (read to its end, failed, timed out
        # or cancelled): the engine's lease, so an idle model may be unloaded.
        self.release: Callable[[], None] | None = None

    def _ended(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()

    def cancel(self) -> None:
        self.generation.cancel()
        self._ended()

    async def events(self) -> AsyncIterator[tuple[ChoiceReader, Event]]:
        first = True
        try:
            async for deltas in self._deltas():
                if first:  # the request log's TTFT (chatd/request_log.py)
                    request_log.first_token()
                    first = False
                for d in deltas:
                    reader = self.choices[d.index]
                    for event in reader.read(d):
                        yield reader, event
        except EngineFailure as e:
            # the engine's words are the operator's (they may name a library's error or a
            # path): logged, and the client gets chatd's own
            log.warning("the engine failed while generating: %s", e)
            raise ServerError("The engine failed while generating.") from None
        finally:
            self._ended()

    async def _deltas(self) -> AsyncIterator[list[Delta]]:
        """The generation's steps, each awaited under the request's deadline. The
        timeout wraps only the wait for the engine (never a ``yield``): a deadline that
        passes while the consumer is busy elsewhere (a slow client) cannot cancel the
        consumer's own await, it is seen at the next step. Past it, the generation is
        cancelled, which frees its engine slot."""
        steps = aiter(self.generation)
        if self.deadline is None:
            async for deltas in steps:
                yield deltas
            return
        while True:
            try:
                async with asyncio.timeout_at(self.deadline):
                    deltas = await anext(steps)
            except StopAsyncIteration:
                return
            except TimeoutError:
                self.generation.cancel()
                raise RequestTimeout(self.timeout) from None
            yield deltas

    def usage(self) -> Usage:
        accepted, rejected = self.generation.prediction_tokens()
        return Usage(
            self.prompt_tokens,
            sum(c.tokens for c in self.choices),
            self.generation.cached_tokens,
            accepted,
            rejected,
        )


async def _grammar(engine: EngineLike, job: Job, timeout: float = 0.0) -> Grammar | None:
    """The grammar the output must follow: tool calls, a JSON schema, or none.

    Checking the schema and compiling run in a thread, under ``timeout`` seconds: past
    it the request is refused (400 naming the field). Python cannot stop the thread; the
    schema-bytes limit (protocol/request_limits.py) and llguidance's own parser limits
    (engine/grammar.py) bound how long it can go on."""
    lark = tool_grammar(job.tools) if job.tools is not None else None
    if lark is not None and job.schema is not None:
        raise Unsupported(
            job.format_param,
            "together with tools that may be called is not supported yet by this server.",
        )
    if (lark is not None or job.schema is not None) and not engine.grammars.ready:
        # The compiler's one-time setup (the model's vocabulary, ~0.4 s, begun as the
        # engine started) is not this request's fault: it is not timed.
        await asyncio.to_thread(engine.grammars.warm)
    try:
        # Compiling can take long for big schemas, so it leaves the event loop.
        if lark is not None:
            assert job.tools is not None
            lark_compiler = partial(engine.grammars.lark, json_after=job.tools.json_after)
            return await _compile(lark_compiler, lark, timeout)
        if job.schema is not None:
            check = job.schema_check
            compiler = engine.grammars.json_schema
            if check is not None:
                compiler = partial(_checked_compile, check, compiler)
            return await _compile(compiler, job.schema, timeout)
    except TimeoutError:
        param = job.tools_param if lark is not None else job.schema_param
        raise InvalidRequest(
            f"The {'tool definitions' if lark is not None else 'JSON schema'} in '{param}'"
            f" took longer than this server's limit of {timeout:g} seconds to check and"
            " compile. Simplify it (fewer alternatives, shorter patterns, smaller bounds).",
            param=param,
            code="grammar_too_complex",
        ) from None
    except GrammarError as e:
        if lark is not None:
            raise InvalidRequest(
                f"Invalid or unsupported function parameters schema: {e}",
                param=job.tools_param,
                code="invalid_function_parameters",
            ) from None
        raise InvalidRequest(
            f"Invalid or unsupported JSON schema: {e}",
            param=job.schema_param,
            code="invalid_json_schema",
        ) from None
    return None


def _checked_compile(
    check: Callable[[], None], compiler: Callable[[Any], Grammar], source: Any
) -> Grammar:
    check()
    return compiler(source)


# Grammar work has its own threads: a thread whose compile timed out runs on (Python
# cannot stop it), and hostile schemas must not fill the loop's default executor, which
# others need (DNS lookups of upstreams). A compile still queued when its request's
# timeout passes is cancelled and never runs.
_COMPILERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chatd-grammar")


async def _compile(compiler: Callable[[Any], Grammar], source: Any, timeout: float) -> Grammar:
    work = asyncio.get_running_loop().run_in_executor(_COMPILERS, compiler, source)
    return await (asyncio.wait_for(work, timeout) if timeout else work)


def fit_kv_cache(
    params: SamplingParams, prompt_tokens: int, cells: int, asked: bool
) -> SamplingParams:
    """The request checked against the whole KV cache, before it is admitted: its ``n``
    choices share the prompt's cells and each may write ``max_new_tokens``. A completion
    budget the client did not ask for is shrunk to fit (as it is to the window); one it
    asked for that cannot fit is refused here, rather than failing in the engine once
    every other request has been preempted for it."""
    room = cells - prompt_tokens
    need = prompt_tokens + params.n * params.max_new_tokens
    if need <= cells:
        return params
    if not asked and room // params.n >= 1:
        return dataclasses.replace(params, max_new_tokens=room // params.n)
    raise InvalidRequest(
        f"This request may need {need} KV cache cells ({prompt_tokens} prompt tokens +"
        f" n={params.n} choices x {params.max_new_tokens} completion tokens), more than"
        f" this server's KV cache holds ({cells}). Lower n or the maximum completion"
        " tokens.",
        param="n",
        code="invalid_value",
    )


def engine_params(
    sampling: dict[str, Any],
    prompt_tokens: int,
    window: int,
    grammar: Grammar | None = None,
    prompt_param: str = "messages",
    cap: int | None = None,
) -> SamplingParams:
    """``SamplingParams`` from the fields given, with the completion budget fitted to the
    context window: what was asked (``max_new_tokens``) if the window has room for it, or
    the rest of the window (at most the model's default ``cap``, when it has one).
    Raises ``context_length_exceeded`` otherwise."""
    requested = sampling.get("max_new_tokens")
    budget = _budget(requested, prompt_tokens, window, prompt_param)
    if requested is None and cap is not None:
        budget = min(budget, cap)
    return SamplingParams(**{**sampling, "max_new_tokens": budget, "grammar": grammar})


def _budget(requested: int | None, prompt_tokens: int, window: int, param: str) -> int:
    if param == "input" and prompt_tokens >= window:  # the Responses API's own words
        raise APIError(
            "Your input exceeds the context window of this model. Please adjust your input"
            f" and try again. (The input is {prompt_tokens} tokens; the model's context"
            f" window is {window} tokens.)",
            param=param,
            code="context_length_exceeded",
        )
    if requested is None:
        if prompt_tokens >= window:
            raise APIError(
                f"This model's maximum context length is {window} tokens. However, your"
                f" messages resulted in {prompt_tokens} tokens. Please reduce the length of"
                " the messages.",
                param=param,
                code="context_length_exceeded",
            )
        return window - prompt_tokens
    if prompt_tokens + requested > window:
        raise APIError(
            f"This model's maximum context length is {window} tokens. However, you"
            f" requested {prompt_tokens + requested} tokens ({prompt_tokens} in the"
            f" messages, {requested} in the completion). Please reduce the length of the"
            " messages or completion.",
            param=param,
            code="context_length_exceeded",
        )
    return requested

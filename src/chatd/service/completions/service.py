"""The legacy Completions adapter (``POST /v1/completions``): a ``CompletionRequest``
becomes one core ``Job`` per prompt on the local engine (raw token ids, no chat
template: service/completions/prompts.py), or a relay to channels in the Completions
API itself; the shared skeleton (``ProtocolService``) routes it and falls back between
routes, as for the other APIs.

Unlike the others, one request may hold several prompts, each its own generation: the
skeleton's local start is widened here to submit them all under one lease on the model
(released when the last one ends). Nothing is stored: the API has no stored view.
docs/completions.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chatd.protocol.completions_request import CompletionRequest
from chatd.protocol.completions_response import TextEnvelope
from chatd.protocol.errors import InvalidRequest
from chatd.service.accounting import Accountant
from chatd.service.completions.answer import CompletionAnswer, LocalCompletion, PromptRun
from chatd.service.completions.prompts import (
    EncodedPrompt,
    check_before_load,
    encode_prompts,
    too_long,
)
from chatd.service.completions.relayed import RelayedTextCompletion
from chatd.service.engine_api import EngineLike
from chatd.service.generation import Job, LocalRun, start_local
from chatd.service.limits import Admission
from chatd.service.models import LocalModel
from chatd.service.protocol_service import Fallback, Incoming, JobBuilder, ProtocolService
from chatd.upstream.channels import Channel
from chatd.upstream.completions_wire import CompletionsWire

__all__ = ["CompletionsService", "sampling"]

PROMPT_PARAM = "prompt"


def sampling(req: CompletionRequest) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments: the fields given, in the engine's names (an
    absent one is the engine's default, OpenAI's own), and always the budget and the
    candidates (``best_of`` ranks by logprobs: the engine computes them then)."""
    out: dict[str, Any] = {"max_new_tokens": req.budget(), "n": req.candidates_per_prompt()}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "min_p"):
        value = getattr(req, name)
        if value is not None:
            out[name] = float(value)
    if req.repetition_penalty is not None:
        out["repetition_penalty"] = float(req.repetition_penalty)
    for name in ("seed", "top_k", "min_tokens"):
        value = getattr(req, name)
        if value is not None:
            out[name] = value
    if req.stop is not None:
        out["stop"] = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop)
    if req.logit_bias:
        out["logit_bias"] = {t: float(b) for t, b in req.logit_bias_map().items()}
    ranked = req.candidates_per_prompt() > req.choices_per_prompt()
    if req.logprobs is not None or ranked:
        out["logprobs"] = True
        out["top_logprobs"] = req.logprobs or 0
    if req.echo and req.logprobs is not None:
        out["prompt_logprobs"] = True
    if req.budget() == 0:  # run only for the prompt's logprobs: one token, not returned
        out.update(max_new_tokens=1, n=1)
    return out


def _recorder(account: Accountant | None) -> Callable[[int, int, int], None] | None:
    """The answer's usage callable: (prompt, completion, cached prompt tokens)."""
    if account is None:
        return None

    def record(prompt: int, completion: int, cached: int) -> None:
        account.record(prompt, completion, cached_tokens=cached)

    return record


class _Countdown:
    """The lease's release, called once every prompt's run has ended."""

    def __init__(self, release: Callable[[], None], runs: int) -> None:
        self.release, self.left = release, runs

    def __call__(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.release()


class CompletionsService(ProtocolService[CompletionRequest, CompletionAnswer, None]):
    """The legacy Completions API over the shared skeleton."""

    def local_job(self, incoming: Incoming[CompletionRequest], model: LocalModel) -> JobBuilder:
        """The first prompt's job (the skeleton's one-job view; ``_start_local`` below
        submits every prompt's), after the refusals that need no loaded model."""
        check_before_load(incoming.req, model.n_vocab)
        return lambda engine: self._jobs(incoming, encode_prompts(incoming.req, engine))[0]

    def _jobs(
        self,
        incoming: Incoming[CompletionRequest],
        prompts: list[EncodedPrompt],
        defaults: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """One job a prompt; ``defaults``: the model's sampling defaults for what the
        request leaves out (its output cap is not used: this API's default is 16)."""
        params = sampling(incoming.req)
        return [
            Job(
                render=lambda native: [],
                owner=incoming.owner,
                sampling=params,
                prompt_param=PROMPT_PARAM,
                prompt_tokens=p.tokens,
                defaults=defaults or {},
            )
            for p in prompts
        ]

    async def _start_local(
        self, incoming: Incoming[CompletionRequest], admission: Admission | None, model: LocalModel
    ) -> CompletionAnswer:
        """The skeleton's local start, for several prompts: each one submitted, under one
        lease; a refusal of any (a full queue) cancels those already submitted."""
        req = incoming.req
        check_before_load(req, model.n_vocab)  # refused before it may load
        lease = await model.acquire(self.limits.request_timeout)
        with lease.until_handed_over():  # released if refused below
            engine = lease.engine
            prompts = encode_prompts(req, engine)
            budget = req.budget()
            for p in prompts:  # every prompt checked before any is submitted
                if len(p.tokens) + max(budget, 1) > engine.context_window:
                    raise too_long(len(p.tokens), budget, engine.context_window)
            defaults = model.defaults.sampling()
            runs = await self._submit(incoming, engine, prompts, lease.release, defaults)
        account = self.accountant(incoming, admission)
        envelope = TextEnvelope(req.model, engine.fingerprint)
        return LocalCompletion(req, runs, envelope, _recorder(account))

    async def _submit(
        self,
        incoming: Incoming[CompletionRequest],
        engine: EngineLike,
        prompts: list[EncodedPrompt],
        release: Callable[[], None],
        defaults: Mapping[str, Any],
    ) -> list[PromptRun]:
        req = incoming.req
        generated = req.budget() > 0
        if not generated and not (req.echo and req.logprobs is not None):
            release()  # nothing needs the model: the lease is not kept
            return [PromptRun(p.text, len(p.tokens), None, p.span, p.first) for p in prompts]
        countdown = _Countdown(release, len(prompts))
        started: list[LocalRun] = []
        try:
            for job in self._jobs(incoming, prompts, defaults):
                started.append(await start_local(engine, job, self.limits, countdown, self.shared))
        except BaseException:
            for run in started:
                run.cancel()
            raise
        return [
            PromptRun(p.text, len(p.tokens), r, p.span, p.first, generated)
            for p, r in zip(prompts, started, strict=True)
        ]

    def saver(self, incoming: Incoming[CompletionRequest]) -> None:
        return None

    def local_answer(
        self,
        incoming: Incoming[CompletionRequest],
        job: Job,
        run: LocalRun,
        engine: EngineLike,
        save: None,
        account: Accountant | None,
    ) -> CompletionAnswer:
        """One prompt's run (``_start_local`` makes the answer of several itself)."""
        envelope = TextEnvelope(incoming.req.model, engine.fingerprint)
        prompt = PromptRun("", run.prompt_tokens, run)
        return LocalCompletion(incoming.req, [prompt], envelope, _recorder(account))

    def relay_answer(
        self,
        incoming: Incoming[CompletionRequest],
        channels: list[Channel],
        fallback: Fallback[CompletionAnswer] | None,
        save: None,
        account: Accountant | None,
    ) -> CompletionAnswer:
        """Channels speaking an OpenAI API get the request in the Completions API itself;
        an Anthropic channel has no such API (and no raw prompt to translate to), so it
        is skipped (the routes after it take over), and a model served only by such
        channels is refused."""
        req, owner = incoming.req, incoming.owner
        openai = [c for c in channels if c.api != "anthropic"]
        if not openai and fallback is None:
            raise InvalidRequest(
                f"The model `{req.model}` is served by an Anthropic channel, which has no"
                " Completions API: use /v1/chat/completions or /v1/messages.",
                param="model",
                code="unsupported_model",
            )
        call = self.relay_call(
            req.model, openai, {"chat": lambda: CompletionsWire(req.model, dict(req.raw), owner)}
        )
        return RelayedTextCompletion(
            call,
            account.record if account is not None else None,
            self.models.token_counter(),
            req.prompt_text(),
            fallback,
        )

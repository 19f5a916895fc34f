"""A Completions request answered by the local engine: one run per prompt, each with its
``best_of`` (or ``n``) choices, as a ``text_completion`` or as streamed chunks.

Choices are numbered as the live API numbers them: prompt ``i``'s ``j``-th choice is
``i * n + j``. With ``best_of`` the candidates are ranked by their mean logprob per token
("the highest log probability per token") and the ``n`` best kept, best first. A prompt
run with ``max_tokens: 0`` generates nothing (its choice is its echo, or empty, ended by
``length``). Streams read the prompts' runs one after the other: every run is submitted
at once and generates meanwhile, its steps queued until read."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from chatd.engine.params import FinishReason, TokenLogprob
from chatd.protocol.completions_request import CompletionRequest
from chatd.protocol.completions_response import (
    TextEnvelope,
    logprobs_object,
    text_choice,
    text_usage,
)
from chatd.service.events import ChoiceReader, Finished, TextDelta
from chatd.service.generation import LocalRun

__all__ = ["CompletionAnswer", "LocalCompletion", "PromptRun", "finish_reason"]

Json = dict[str, Any]
# (prompt tokens, completion tokens, cached prompt tokens): the request's usage, once
Account = Callable[[int, int, int], None]

_FINISH = {
    FinishReason.END_OF_GENERATION: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.GRAMMAR_END: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.CONTENT_FILTER: "content_filter",
}


def finish_reason(reason: FinishReason | None) -> str:
    return _FINISH[reason] if reason is not None else "stop"


class CompletionAnswer:
    """What the routes consume of any completions answer, local or relayed."""

    def cancel(self) -> None: ...

    async def prime(self) -> None: ...

    async def result(self) -> Json:
        raise NotImplementedError

    def chunks(self) -> AsyncIterator[Json]:
        raise NotImplementedError


@dataclass
class PromptRun:
    """One prompt's generation (None when ``max_tokens`` is 0) and what ``echo`` gives."""

    echo: str
    prompt_tokens: int
    run: LocalRun | None


@dataclass
class _Offsets:
    """Character offsets of tokens in a choice's text, from their bytes (a character
    split across tokens starts at the token that completes it)."""

    chars: int = 0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def take(self, lp: TokenLogprob) -> int:
        at = self.chars
        raw = bytes(lp.bytes) if lp.bytes is not None else lp.token.encode()
        self.chars += len(self.decoder.decode(raw))
        return at


class _Choice:
    """One returned choice: its reader (local) and what the client asked to see."""

    def __init__(self, index: int, reader: ChoiceReader | None, echo: str, top: int | None):
        self.index = index
        self.reader = reader
        self.echo = echo
        self.top = top  # logprobs asked: how many top tokens (None: no logprobs)
        self.offsets = _Offsets(len(echo))

    def logprobs(self, lps: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> Json | None:
        if self.top is None:
            return None
        tops: list[dict[str, float] | None] = []
        for lp in lps:
            top = {t.token: t.logprob for t in lp.top[: self.top]}
            top.setdefault(lp.token, lp.logprob)  # the sampled token is always there
            tops.append(top)
        return logprobs_object(
            [lp.token for lp in lps],
            [lp.logprob for lp in lps],
            tops,
            [self.offsets.take(lp) for lp in lps],
        )

    def whole(self) -> Json:
        r = self.reader
        if r is None:  # nothing generated (max_tokens 0)
            lp = self.logprobs([])
            return text_choice(self.index, self.echo, lp, "length")
        return text_choice(
            self.index, self.echo + r.text, self.logprobs(r.logprobs), finish_reason(r.finish)
        )


def _score(reader: ChoiceReader) -> float:
    """A candidate's mean logprob per token (``best_of``'s ranking)."""
    lps = reader.logprobs
    return sum(lp.logprob for lp in lps) / len(lps) if lps else float("-inf")


class LocalCompletion(CompletionAnswer):
    def __init__(
        self,
        req: CompletionRequest,
        prompts: list[PromptRun],
        envelope: TextEnvelope,
        account: Account | None,
    ) -> None:
        self.req = req
        self.prompts = prompts
        self.envelope = envelope
        self.account = account
        self.n = req.choices_per_prompt()
        self.top = req.logprobs

    def cancel(self) -> None:
        for p in self.prompts:
            if p.run is not None:
                p.run.cancel()

    async def prime(self) -> None:
        """Nothing to open: the engine accepted every prompt already."""

    def _usage(self) -> Json:
        prompt = sum(p.prompt_tokens for p in self.prompts)
        completion = cached = 0
        for p in self.prompts:
            if p.run is not None:
                u = p.run.usage()
                completion += u.completion_tokens
                cached += u.cached_tokens
        return text_usage(prompt, completion, cached)

    def _account(self) -> None:
        """Counted once, for every request: finished, failed or abandoned."""
        if self.account is not None:
            u = self._usage()
            self.account(
                u["prompt_tokens"],
                u["completion_tokens"],
                u["prompt_tokens_details"]["cached_tokens"],
            )
            self.account = None

    def _chosen(self, i: int, p: PromptRun) -> list[_Choice]:
        """Prompt ``i``'s returned choices: all of them, or the ``n`` best candidates."""
        echo = p.echo if self.req.echo else ""
        if p.run is None:
            return [_Choice(i * self.n + j, None, echo, self.top) for j in range(self.n)]
        readers = p.run.choices
        if len(readers) > self.n:
            readers = sorted(readers, key=_score, reverse=True)[: self.n]
        return [_Choice(i * self.n + j, r, echo, self.top) for j, r in enumerate(readers)]

    async def result(self) -> Json:
        try:
            for p in self.prompts:
                if p.run is not None:
                    async for _ in p.run.events():
                        pass
        finally:
            self._account()
        choices = [c.whole() for i, p in enumerate(self.prompts) for c in self._chosen(i, p)]
        return self.envelope.completion(choices, self._usage())

    async def chunks(self) -> AsyncIterator[Json]:
        """Per choice: its echo first (if asked), text deltas with their logprobs, then
        an empty text carrying ``finish_reason``; the usage chunk last if asked. (A
        stream has no ``best_of``: every generated choice is returned.)"""
        include_usage = self.req.include_usage()

        def chunk(choice: Json) -> Json:
            return self.envelope.completion([choice], with_usage=False)

        try:
            for i, p in enumerate(self.prompts):
                choices = self._chosen(i, p)
                for c in choices:
                    if c.echo:
                        yield chunk(text_choice(c.index, c.echo, None, None))
                if p.run is None:
                    for c in choices:
                        yield chunk(text_choice(c.index, "", c.logprobs([]), "length"))
                    continue
                async for reader, event in p.run.events():
                    c = choices[reader.index]
                    if isinstance(event, TextDelta):
                        yield chunk(
                            text_choice(c.index, event.text, c.logprobs(event.logprobs), None)
                        )
                    elif isinstance(event, Finished):
                        reason = finish_reason(event.reason)
                        yield chunk(text_choice(c.index, "", None, reason))
        finally:
            self._account()
        if include_usage:
            yield self.envelope.completion([], self._usage())

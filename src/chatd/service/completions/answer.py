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
from collections.abc import AsyncIterator, Callable, Sequence
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
    """One prompt's generation (None when ``max_tokens`` is 0 and nothing needs the
    model) and what ``echo`` gives: its text and, with logprobs, the logprobs of the
    client's prompt tokens (positions ``span`` of the engine's prompt; ``first`` names
    the first when nothing came before it). ``generated`` False: the run was only for the
    prompt's logprobs (``max_tokens`` 0), its answer is not the client's."""

    echo: str
    prompt_tokens: int
    run: LocalRun | None
    span: tuple[int, int] = (0, 0)
    first: str = ""
    generated: bool = True

    def prompt_entries(self) -> list[TokenLogprob | str]:
        """The prompt tokens' logprobs (a name alone where there is none), once the run
        has given its first step."""
        lps = self.run.generation.prompt_logprobs if self.run is not None else None
        if not lps:
            return []
        a, b = self.span
        return [lps[i] or (self.first if i == 0 else "") for i in range(a, min(b, len(lps)))]


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

    def __init__(
        self, index: int, reader: ChoiceReader | None, echo: str, top: int | None, prompt: PromptRun
    ):
        self.index = index
        self.reader = reader
        self.echo = echo
        self.top = top  # logprobs asked: how many top tokens (None: no logprobs)
        self.prompt = prompt
        self.offsets = _Offsets(len(echo))

    def _top(self, lp: TokenLogprob) -> dict[str, float]:
        top = {t.token: t.logprob for t in lp.top[: self.top]}
        top.setdefault(lp.token, lp.logprob)  # the sampled token is always there
        return top

    def logprobs(self, lps: Sequence[TokenLogprob], echoed: bool = False) -> Json | None:
        """The ``logprobs`` of these tokens; ``echoed``: the echoed prompt's first (its
        first token's logprob null when nothing came before it, as the live API's)."""
        if self.top is None:
            return None
        tokens: list[str] = []
        values: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        offsets: list[int] = []
        if echoed and self.echo:
            at = _Offsets(0)
            for entry in self.prompt.prompt_entries():
                if isinstance(entry, str):
                    tokens.append(entry)
                    values.append(None)
                    tops.append(None)
                    offsets.append(at.chars)
                    at.chars += len(entry)
                else:
                    tokens.append(entry.token)
                    values.append(entry.logprob)
                    tops.append(self._top(entry))
                    offsets.append(at.take(entry))
        for lp in lps:
            tokens.append(lp.token)
            values.append(lp.logprob)
            tops.append(self._top(lp))
            offsets.append(self.offsets.take(lp))
        return logprobs_object(tokens, values, tops, offsets)

    def whole(self) -> Json:
        r = self.reader
        if r is None or not self.prompt.generated:  # nothing generated (max_tokens 0)
            return text_choice(self.index, self.echo, self.logprobs([], echoed=True), "length")
        lp = self.logprobs(r.logprobs, echoed=True)
        return text_choice(self.index, self.echo + r.text, lp, finish_reason(r.finish))


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
            if p.run is not None and p.generated:
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
        if p.run is None or not p.generated:
            return [_Choice(i * self.n + j, None, echo, self.top, p) for j in range(self.n)]
        readers = p.run.choices
        if len(readers) > self.n:
            readers = sorted(readers, key=_score, reverse=True)[: self.n]
        return [_Choice(i * self.n + j, r, echo, self.top, p) for j, r in enumerate(readers)]

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
        """Per choice: its echo first (if asked; with logprobs, once the prompt's are
        known: after the run's first step), text deltas with their logprobs, then an
        empty text carrying ``finish_reason``; the usage chunk last if asked. (A stream
        has no ``best_of``: every generated choice is returned.)"""
        try:
            for i, p in enumerate(self.prompts):
                async for out in self._prompt_chunks(self._chosen(i, p), p):
                    yield self.envelope.completion([out], with_usage=False)
        finally:
            self._account()
        if self.req.include_usage():
            yield self.envelope.completion([], self._usage())

    async def _prompt_chunks(self, choices: list[_Choice], p: PromptRun) -> AsyncIterator[Json]:
        """One prompt's choices, streamed."""

        def echoes() -> list[Json]:
            return [
                text_choice(c.index, c.echo, c.logprobs([], echoed=True), None)
                for c in choices
                if c.echo
            ]

        waits = bool(self.req.echo) and self.top is not None and p.run is not None
        out = [] if waits else echoes()
        for o in out:
            yield o
        if p.run is not None:
            async for reader, event in p.run.events():
                if waits:
                    waits = False
                    for o in echoes():
                        yield o
                if p.generated:
                    for o in _on_event(choices[reader.index], event):
                        yield o
            if waits:
                for o in echoes():
                    yield o
        if p.run is None or not p.generated:
            for c in choices:
                yield text_choice(c.index, "", None, "length")


def _on_event(c: _Choice, event: object) -> list[Json]:
    if isinstance(event, TextDelta):
        return [text_choice(c.index, event.text, c.logprobs(event.logprobs), None)]
    if isinstance(event, Finished):
        return [text_choice(c.index, "", None, finish_reason(event.reason))]
    return []

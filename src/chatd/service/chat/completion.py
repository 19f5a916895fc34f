"""A chat completion answered by the local engine: the core's run, as a
``chat.completion`` or as ``chat.completion.chunk`` events, accounted and stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.chat_response import Envelope, usage_dict
from chatd.service.accounting import Accountant
from chatd.service.chat.choice import Choice
from chatd.service.chat.stored_completions import CompletionSaver
from chatd.service.generation import LocalRun

__all__ = ["ChatCompletion"]


class ChatCompletion:
    """A submitted completion, consumed either whole (``result``) or as chunks."""

    def __init__(
        self,
        req: ChatCompletionRequest,
        run: LocalRun,
        envelope: Envelope,
        legacy_calls: bool = False,
        saver: CompletionSaver | None = None,
        accountant: Accountant | None = None,
    ) -> None:
        self.req = req
        self.run = run
        self.envelope = envelope
        logprobs = req.wants_logprobs()
        self.choices = [Choice(r, legacy_calls, logprobs) for r in run.choices]
        self.saver = saver
        self.accountant = accountant

    def cancel(self) -> None:
        self.run.cancel()

    async def prime(self) -> None:
        """Nothing to open: the engine accepted the request already."""

    def _usage(self) -> dict[str, Any]:
        u = self.run.usage()
        return usage_dict(
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_tokens,
            u.accepted_prediction_tokens,
            u.rejected_prediction_tokens,
        )

    def _completion(self) -> dict[str, Any]:
        return self.envelope.completion([c.message() for c in self.choices], self._usage())

    def _account(self) -> None:
        """Usage is counted for every request, finished, failed or abandoned."""
        if self.accountant is not None:
            u = self.run.usage()
            self.accountant.record(
                u.prompt_tokens, u.completion_tokens, cached_tokens=u.cached_tokens
            )
            self.accountant = None

    async def result(self) -> dict[str, Any]:
        """The whole completion; stored (committed) before it is returned if asked."""
        try:
            async for _ in self.run.events():
                pass
        finally:
            self._account()
        body = self._completion()
        if self.saver is not None:
            await self.saver.save(body)
        return body

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
            async for reader, event in self.run.events():
                for out in self.choices[reader.index].on_event(event):
                    yield chunk(out)
        finally:
            self._account()
        if include_usage:
            yield env.chunk([], usage=self._usage(), include_usage=True, obfuscate=obfuscate)
        if self.saver is not None:  # committed before the caller writes [DONE]
            await self.saver.save(self._completion())

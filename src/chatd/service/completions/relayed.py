"""A Completions request answered by upstream channels (in the legacy Completions API
itself: ``upstream/completions_wire.py``), relayed whole or chunk by chunk, accounted
like a local answer, and handed to the fallback routes when no channel answers before
its first byte (the core's ``Relayed``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chatd.protocol.errors import ModelUnavailable
from chatd.service.completions.answer import CompletionAnswer
from chatd.service.relayed import Relayed
from chatd.upstream.relay import UpstreamCall

__all__ = ["RelayedTextCompletion"]

# (prompt tokens, completion tokens, estimated by chatd, cached prompt tokens)
Account = Callable[[int, int, bool, int | None], None]


class RelayedTextCompletion(Relayed[CompletionAnswer], CompletionAnswer):
    def __init__(
        self,
        call: UpstreamCall,
        account: Account | None,
        count_tokens: Callable[[str], int] | None,
        prompt_text: str,
        fallback: Callable[[], Awaitable[CompletionAnswer]] | None,
    ) -> None:
        super().__init__(call, fallback)
        self.account = account
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text

    def _settle(self, output: str) -> None:
        """The upstream's usage; without one, chatd's own count, marked as estimated."""
        if self.account is None:
            return
        u = self.call.usage
        if u and "prompt_tokens" in u:
            cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
            self.account(
                int(u["prompt_tokens"]),
                int(u.get("completion_tokens", 0)),
                False,
                cached if isinstance(cached, int) else None,
            )
        elif self.count_tokens is not None:
            self.account(self.count_tokens(self.prompt_text), self.count_tokens(output), True, None)
        else:
            self.account(0, 0, True, None)
        self.account = None

    async def result(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        try:
            body = await self.call.result()
        except ModelUnavailable as e:
            return await (await self._fall_back(e)).result()
        finally:
            self._settle(_text(body))
        return body

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        if self._delegate is not None:
            async for chunk in self._delegate.chunks():
                yield chunk
            return
        parts: list[str] = []
        try:
            if self._first is not None:
                parts.append(_text(self._first))
                yield self._first
            if self._stream is not None:
                async for chunk in self._stream:
                    parts.append(_text(chunk))
                    yield chunk
        finally:
            self._settle("".join(parts))


def _text(body: dict[str, Any]) -> str:
    choices = body.get("choices")
    if not isinstance(choices, list):
        return ""
    return "".join(c.get("text") or "" for c in choices if isinstance(c, dict))

"""A Completions request answered by upstream channels (in the legacy Completions API
itself: ``upstream/completions_wire.py``), relayed whole or chunk by chunk, accounted
like a local answer, and handed to the fallback routes when no channel answers before
its first byte (the core's ``Relayed``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatd.protocol.errors import ModelUnavailable
from chatd.service.completions.answer import CompletionAnswer
from chatd.service.relayed import RelayedWithUsage

__all__ = ["RelayedTextCompletion"]


class RelayedTextCompletion(RelayedWithUsage[CompletionAnswer], CompletionAnswer):
    """An upstream's text completion, relayed and accounted like a local one."""

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

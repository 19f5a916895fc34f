"""A chat completion answered by upstream channels, as the API layer consumes a local
one (``ChatAnswer``): relayed whole or chunk by chunk, accounted, stored if asked, and
handed to the fallback routes when no channel answers before its first byte.

Chat's relay answer, part of the Chat Completions adapter (it was ``upstream/
relayed_completion.py``: upstream/ is transport only). What every relayed answer shares
(the fallback, the first chunk read ahead) is the core's ``service/relayed.py``;
accounting and storage are callables the service hands it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chatd.protocol.chat_response import ChatAnswer
from chatd.protocol.errors import ModelUnavailable
from chatd.service.relayed import Account, RelayedWithUsage
from chatd.upstream.relay import UpstreamCall

__all__ = ["Assembler", "RelayedCompletion"]


class RelayedCompletion(RelayedWithUsage[ChatAnswer]):
    """An upstream's answer, relayed; stored and accounted like a local one. When no
    channel answers before its first byte, the ``fallback`` routes (if any) take over.
    Without the upstream's usage, chatd counts everything generated (text and tool
    arguments)."""

    def __init__(
        self,
        call: UpstreamCall,
        save: Callable[[dict[str, Any]], Awaitable[None]] | None,
        account: Account | None,
        count_tokens: Callable[[str], int] | None = None,
        prompt_text: str = "",
        fallback: Callable[[], Awaitable[ChatAnswer]] | None = None,
    ) -> None:
        super().__init__(call, account, count_tokens, prompt_text, fallback)
        self.save = save

    async def result(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        try:
            body = await self.call.result()
        except ModelUnavailable as e:
            return await (await self._fall_back(e)).result()
        finally:
            self._settle(_generated_text(body.get("choices", [])))
        if self.save is not None:
            await self.save(body)
        return body

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        if self._delegate is not None:
            async for chunk in self._delegate.chunks():
                yield chunk
            return
        assembled = Assembler()
        try:
            if self._first is not None:
                assembled.add(self._first)
                yield self._first
            async for chunk in self._stream:
                assembled.add(chunk)
                yield chunk
        finally:
            self._settle(_generated_text(assembled.completion(None)["choices"]))
        if self.save is not None:
            await self.save(assembled.completion(self.call.usage))


def _generated_text(choices: list[dict[str, Any]]) -> str:
    parts = []
    for c in choices:
        message = c.get("message") or {}
        parts.append(message.get("content") or "")
        for call in message.get("tool_calls") or []:
            parts.append((call.get("function") or {}).get("arguments") or "")
    return "".join(parts)


class Assembler:
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

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
from chatd.service.relayed import Relayed
from chatd.upstream.relay import UpstreamCall

__all__ = ["Assembler", "RelayedCompletion"]

# (prompt tokens, completion tokens, estimated by chatd rather than told by the upstream)
# (prompt tokens, completion tokens, estimated, cached prompt tokens)
Account = Callable[[int, int, bool, int | None], None]


class RelayedCompletion(Relayed[ChatAnswer]):
    """An upstream's answer, relayed; stored and accounted like a local one. When no
    channel answers before its first byte, the ``fallback`` routes (if any) take over."""

    def __init__(
        self,
        call: UpstreamCall,
        save: Callable[[dict[str, Any]], Awaitable[None]] | None,
        account: Account | None,
        count_tokens: Callable[[str], int] | None = None,
        prompt_text: str = "",
        fallback: Callable[[], Awaitable[ChatAnswer]] | None = None,
    ) -> None:
        super().__init__(call, fallback)
        self.save = save
        self.account = account
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text

    def _settle(self, output: str) -> None:
        """The upstream's usage; without one, chatd's own count of the prompt and of
        everything generated (text and tool arguments), marked as estimated."""
        if self.account is None:
            return
        u = self.call.usage
        if u and "prompt_tokens" in u:
            cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
            self.account(
                int(u["prompt_tokens"]),
                int(u.get("completion_tokens", 0)),
                False,
                int(cached) if isinstance(cached, int) else None,
            )
        elif self.count_tokens is not None:
            prompt, output_tokens = self.count_tokens(self.prompt_text), self.count_tokens(output)
            self.account(prompt, output_tokens, True, None)
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

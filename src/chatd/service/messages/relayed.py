"""A message answered by upstream channels, consumed as a local one is (``MessageAnswer``):
whole or as Anthropic's stream events, accounted, and handed to the fallback routes when
no channel answers before its first byte.

Which wire answered decides how the answer is read. A channel speaking the Messages API
(``api = "anthropic"``) is relayed as it answered, its own events in its own order
(pings included), with the public model id written in. A Chat Completions channel's
answer is read back into the core's events and made into a message exactly as a local
one (``answer.StreamedMessage``: its pings, its stop reasons), so the Messages API works
on every channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chatd.protocol.errors import APIError, ModelUnavailable, ServerError
from chatd.protocol.messages_errors import anthropic_error
from chatd.protocol.messages_request import MessagesRequest
from chatd.service.event_sources import (
    ChatChunkSource,
    ChatCompletionSource,
    EventSource,
    SourceUsage,
    chain,
)
from chatd.service.messages.answer import PING_SECONDS, Account, MessageAnswer, StreamedMessage
from chatd.service.protocol_service import Fallback
from chatd.service.relayed import Relayed
from chatd.upstream.relay import UpstreamCall
from chatd.upstream.wires import ChatWire

__all__ = ["Counted", "RelayedMessage", "count_relayed", "counted", "prompt_text"]

Json = dict[str, Any]
CountTokens = Callable[[str], int]


class RelayedMessage(Relayed[MessageAnswer]):
    """An upstream's answer to one Messages request (``MessageAnswer``)."""

    def __init__(
        self,
        call: UpstreamCall,
        model: str,
        *,
        streaming: bool,
        account: Account | None,
        count_tokens: CountTokens | None,
        prompt_text: str,
        fallback: Fallback[MessageAnswer] | None,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        super().__init__(call, fallback)
        self.model = model
        self.streaming = streaming
        self.account = account
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text
        self.ping_seconds = ping_seconds

    async def result(self) -> Json:
        try:
            body = await self.call.result()
        except ModelUnavailable as e:
            return await (await self._fall_back(e)).result()
        except BaseException:
            self._settle("")
            raise
        if isinstance(self.call.wire, ChatWire):
            return await self._made(ChatCompletionSource(body, self._estimate)).result()
        self._account_upstream()
        return body

    async def events(self) -> AsyncIterator[Json]:
        if self._delegate is not None:
            async for event in self._delegate.events():
                yield event
            return
        if self._stream is None:
            raise ServerError("The message stream was not opened.")
        if isinstance(self.call.wire, ChatWire):
            source = ChatChunkSource(self._first, self._stream, self.call, self._estimate)
            async for event in self._made(source).events():
                yield event
            return
        async for event in self._passed_on():
            yield event

    def error_event(self, error: APIError) -> Json:
        return {"type": "error", "error": anthropic_error(error)}

    def _made(self, source: EventSource) -> StreamedMessage:
        """A Chat Completions answer, made into a message as the local engine's is."""
        account, self.account = self.account, None
        return StreamedMessage(source, self.model, account=account, ping_seconds=self.ping_seconds)

    async def _passed_on(self) -> AsyncIterator[Json]:
        """An Anthropic channel's events as it sent them; usage is the upstream's own
        (``message_start``'s, updated by ``message_delta``'s), counted once at the end."""
        assert self._stream is not None
        output = ""
        try:
            pending = [self._first] if self._first is not None else []
            async for event in chain(pending, self._stream):
                delta = event.get("delta")
                if event.get("type") == "content_block_delta" and isinstance(delta, dict):
                    output += str(delta.get("text") or delta.get("partial_json") or "")
                yield event
            self._account_upstream()
        finally:
            self._settle(output)

    def _account_upstream(self) -> None:
        """The Anthropic channel's usage, in the core's words: the prompt is its three
        input counts together, the cached part those read from its cache."""
        usage = self.call.usage
        if self.account is None or not isinstance(usage, dict) or "input_tokens" not in usage:
            return
        account, self.account = self.account, None
        cached = int(usage.get("cache_read_input_tokens") or 0)
        created = int(usage.get("cache_creation_input_tokens") or 0)
        prompt = int(usage["input_tokens"]) + cached + created
        account(SourceUsage(prompt, int(usage.get("output_tokens") or 0), cached))

    def _estimate(self, output: str) -> SourceUsage:
        """chatd's own count of the prompt and the output, when the upstream told none."""
        if self.count_tokens is None:
            return SourceUsage(0, 0, estimated=True)
        return SourceUsage(
            self.count_tokens(self.prompt_text), self.count_tokens(output), estimated=True
        )

    def _settle(self, output: str) -> None:
        """chatd's own estimate, unless the upstream's usage was recorded already."""
        if self.account is not None:
            account, self.account = self.account, None
            account(self._estimate(output))


# A token count as the router's routes give it: the local one at once, a relayed one
# as a coroutine (the router does not await a relay).
Counted = int | Awaitable[Any]


async def counted(value: Counted) -> int:
    """The count, awaited if a route gave a coroutine (a fallback may give either)."""
    while not isinstance(value, int):
        value = await value
    return value


async def count_relayed(
    call: UpstreamCall | None,
    fallback: Fallback[Counted] | None,
    count: CountTokens | None,
    req: MessagesRequest,
) -> int:
    """``count_tokens`` for a model served by channels: the Anthropic channels' own count
    (``call``, over them alone); without one (Chat Completions has no such endpoint)
    chatd counts the prompt's text with a local tokenizer, an estimate, as for usage an
    upstream does not report."""
    if call is None:
        return count(prompt_text(req)) if count is not None else 0
    try:
        answer = await call.result()
    except ModelUnavailable:
        if fallback is None:
            raise
        return await counted(await fallback())
    tokens = answer.get("input_tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        return tokens
    raise ServerError("The upstream's token count could not be read.")


def prompt_text(req: MessagesRequest) -> str:
    """The conversation's text, for estimating its tokens when an upstream tells none."""
    raw = req.raw
    texts: list[str] = [_text(raw.get("system"))]
    for message in raw.get("messages") or ():
        if isinstance(message, dict):
            texts.append(_text(message.get("content")))
    return "\n".join(t for t in texts if t)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        for key in ("text", "content"):
            value = block.get(key)
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, list):
                parts.append(_text(value))
        if isinstance(block.get("input"), dict):
            parts.append(str(block["input"]))
    return "\n".join(parts)

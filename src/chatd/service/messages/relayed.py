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
from chatd.service.event_sources import EventSource, SourceUsage, chain
from chatd.service.messages.answer import PING_SECONDS, Account, MessageAnswer, StreamedMessage
from chatd.service.protocol_service import Fallback
from chatd.service.relayed import RelayedEvents
from chatd.upstream.relay import UpstreamCall

__all__ = ["Counted", "RelayedMessage", "count_relayed", "counted", "prompt_text"]

Json = dict[str, Any]
CountTokens = Callable[[str], int]


class RelayedMessage(RelayedEvents[MessageAnswer]):
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
        super().__init__(call, fallback, account, count_tokens, prompt_text)
        self.model = model
        self.streaming = streaming
        self.ping_seconds = ping_seconds

    def error_event(self, error: APIError) -> Json:
        return {"type": "error", "error": anthropic_error(error)}

    def _made(self, source: EventSource) -> StreamedMessage:
        account = self._taken_account()
        return StreamedMessage(source, self.model, account=account, ping_seconds=self.ping_seconds)

    async def _passed_whole(self, body: Json) -> Json:
        self._account_upstream()
        return body

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
        if not isinstance(usage, dict) or "input_tokens" not in usage:
            return
        cached = int(usage.get("cache_read_input_tokens") or 0)
        created = int(usage.get("cache_creation_input_tokens") or 0)
        prompt = int(usage["input_tokens"]) + cached + created
        self._record(SourceUsage(prompt, int(usage.get("output_tokens") or 0), cached))


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

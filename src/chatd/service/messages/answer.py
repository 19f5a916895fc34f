"""A Messages answer as the API layer consumes it: the whole ``message`` object, or its
stream events in Anthropic's order.

The generator is seen as the core's events for its one choice (service/events.py);
:class:`MessageOutput` turns them into content blocks (``text``, ``tool_use``) and their
stream events, from one state, so the streamed deltas always add up to the whole
message. Around them :class:`StreamedMessage` writes what every stream has:
``message_start`` (with the prompt's ``usage``: Claude Code reads ``input_tokens``
there), a ``ping``, ``message_delta`` (``stop_reason``, ``stop_sequence``, final usage),
``message_stop``; a ``ping`` every :data:`PING_SECONDS` while nothing else is sent (a
long prompt being prefilled); an ``error`` event for a failure after the start.

Usage is Anthropic's: ``input_tokens`` are the prompt tokens not read from the cache,
``cache_read_input_tokens`` those chatd's prefix cache reused, and
``cache_creation_input_tokens`` is 0 (chatd's cache is automatic and costs nothing to
write); the three add up to the prompt (``count_tokens``'s number).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from chatd.engine.params import FinishReason
from chatd.protocol.errors import APIError
from chatd.protocol.ids import anthropic_message_id, tool_use_id
from chatd.protocol.messages_errors import anthropic_error
from chatd.service.event_sources import EventSource, SourceUsage
from chatd.service.events import CallArguments, CallStarted, Event, Finished, TextDelta

__all__ = [
    "PING_SECONDS",
    "MessageAnswer",
    "Account",
    "MessageOutput",
    "StreamedMessage",
    "usage_body",
]

Json = dict[str, Any]

PING_SECONDS = 5.0  # a ping while nothing else was sent for this long


def usage_body(usage: SourceUsage) -> Json:
    """A source's usage in Anthropic's words: ``input_tokens`` are the prompt tokens not
    read from the cache, so the three input counts add up to the prompt."""
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.output_tokens,
    }


class MessageAnswer(Protocol):
    """What the routes consume: a message whole, or its stream events (each a JSON
    object whose ``type`` is the SSE event's name)."""

    def cancel(self) -> None: ...

    async def prime(self) -> None: ...

    async def result(self) -> Json: ...

    def events(self) -> AsyncIterator[Json]: ...

    def error_event(self, error: APIError) -> Json: ...


def stop_reason(finish: Finished | None) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for how the choice ended."""
    if finish is None:
        return "end_turn", None
    if finish.reason is FinishReason.LENGTH:
        return "max_tokens", None
    if finish.called:
        return "tool_use", None
    if finish.reason is FinishReason.STOP_SEQUENCE:
        return "stop_sequence", finish.stop_sequence
    if finish.reason is FinishReason.CONTENT_FILTER:
        return "refusal", None
    return "end_turn", None


class _Block:
    """An open content block: its index and what it holds so far."""

    def __init__(self, index: int, kind: str, call: int = -1, name: str = "") -> None:
        self.index = index
        self.kind = kind  # "text" or "tool_use"
        self.call = call  # the core's call index (tool_use)
        self.id = tool_use_id() if kind == "tool_use" else ""
        self.name = name
        self.text = ""  # the text, or the input's JSON

    def start(self) -> Json:
        if self.kind == "text":
            return {"type": "text", "text": ""}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": {}}

    def whole(self) -> Json:
        if self.kind == "text":
            return {"type": "text", "text": self.text}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": _input(self.text)}


def _input(text: str) -> Any:
    """A call's input: the grammar makes it parse; a call cut by ``max_tokens`` (the
    only way it cannot) shows what parsed of it: nothing."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class MessageOutput:
    """One choice's events as content-block stream events, and the final blocks."""

    def __init__(self) -> None:
        self.content: list[Json] = []
        self.finish: Finished | None = None
        self._open: _Block | None = None

    def on_event(self, event: Event) -> list[Json]:
        if isinstance(event, TextDelta):
            if not event.text:
                return []
            out = [] if self._is_open("text") else self._start(_Block(len(self.content), "text"))
            assert self._open is not None
            self._open.text += event.text
            delta = {"type": "text_delta", "text": event.text}
            return [*out, _delta(self._open.index, delta)]
        if isinstance(event, CallStarted):
            return self._start(_Block(len(self.content), "tool_use", event.call, event.name))
        if isinstance(event, CallArguments):
            block = self._open
            if block is None or block.kind != "tool_use" or block.call != event.call:
                return []
            if not event.text:
                return []
            block.text += event.text
            delta = {"type": "input_json_delta", "partial_json": event.text}
            return [_delta(block.index, delta)]
        self.finish = event
        return self._close()

    def _is_open(self, kind: str) -> bool:
        return self._open is not None and self._open.kind == kind

    def _start(self, block: _Block) -> list[Json]:
        out = self._close()
        block.index = len(self.content)
        self._open = block
        self.content.append(block.start())  # replaced by the whole block when closed
        out.append(
            {"type": "content_block_start", "index": block.index, "content_block": block.start()}
        )
        return out

    def _close(self) -> list[Json]:
        block, self._open = self._open, None
        if block is None:
            return []
        self.content[block.index] = block.whole()
        return [{"type": "content_block_stop", "index": block.index}]


def _delta(index: int, delta: Json) -> Json:
    return {"type": "content_block_delta", "index": index, "delta": delta}


Account = Callable[[SourceUsage], None]


class StreamedMessage:
    """A message made from one choice's core events (``MessageAnswer``)."""

    def __init__(
        self,
        source: EventSource,
        model: str,
        *,
        account: Account | None = None,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        self.source = source
        self.model = model
        self.id = anthropic_message_id()
        self.output = MessageOutput()
        self.account = account
        self.ping_seconds = ping_seconds

    def cancel(self) -> None:
        self.source.cancel()

    async def prime(self) -> None:
        """Nothing must succeed before the first byte of a local answer."""

    async def result(self) -> Json:
        try:
            async for event in self.source.events():
                self.output.on_event(event)
        finally:
            self._account()
        return self._message(self.output.content, self.output.finish, self.source.usage())

    async def events(self) -> AsyncIterator[Json]:
        """The stream's events; a failure after the start is an ``error`` event (never a
        stream that merely stops)."""
        start = self._message([], None, self.source.usage(), final=False)
        yield {"type": "message_start", "message": start}
        yield {"type": "ping"}
        try:
            async for event in _with_pings(self.source.events(), self.ping_seconds):
                if event is None:
                    yield {"type": "ping"}
                    continue
                for out in self.output.on_event(event):
                    yield out
        except APIError as e:
            self._account()
            yield self.error_event(e)
            return
        finally:
            self._account()
        reason, sequence = stop_reason(self.output.finish)
        yield {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage_body(self.source.usage()),
        }
        yield {"type": "message_stop"}

    def error_event(self, error: APIError) -> Json:
        return {"type": "error", "error": anthropic_error(error)}

    def _message(
        self, content: list[Json], finish: Finished | None, usage: SourceUsage, final: bool = True
    ) -> Json:
        reason, sequence = stop_reason(finish) if final else (None, None)
        body = usage_body(usage)
        if not final:  # message_start: nothing written yet
            body["output_tokens"] = 0
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": body,
        }

    def _account(self) -> None:
        """Usage is counted once for every message: finished, failed or abandoned."""
        if self.account is not None:
            account, self.account = self.account, None
            account(self.source.usage())


async def _with_pings(events: AsyncIterator[Event], seconds: float) -> AsyncIterator[Event | None]:
    """``events``, with None whenever ``seconds`` pass without one (a ping is due). The
    wait for the next event is never cancelled by a ping: it goes on in its task."""
    it = aiter(events)
    pending: asyncio.Future[Event] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(it))
            done, _ = await asyncio.wait({pending}, timeout=seconds)
            if not done:
                yield None
                continue
            task, pending = pending, None
            try:
                event = task.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        close = getattr(it, "aclose", None)
        if close is not None:
            await close()

"""One choice's answer as the core's events, whoever generates it: the local engine's run,
or a Chat Completions channel's chunks or whole completion (read back by
``chat_events.py``).

An adapter whose objects are made from the core's events (the Responses API's
``StreamedResponse``; Anthropic's Messages next) makes them from an ``EventSource``, so a
local answer and a relayed Chat Completions answer become the protocol's objects through
the same code, and only a channel speaking the protocol itself is passed through. The
usage a source reports is in input/output words (``SourceUsage``), marked ``estimated``
when chatd counted it because the generator told none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from chatd.protocol.errors import ServerError
from chatd.service.accounting import Accountant
from chatd.service.chat_events import ChatStreamReader, completion_events
from chatd.service.events import Event
from chatd.service.generation import LocalRun
from chatd.upstream.relay import UpstreamCall

__all__ = [
    "ChatChunkSource",
    "ChatCompletionSource",
    "EventSource",
    "LocalSource",
    "SourceUsage",
    "accounted",
    "chain",
    "chat_usage",
]

Json = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class SourceUsage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    estimated: bool = False  # counted by chatd: the generator told none


class EventSource(Protocol):
    """One choice's core events and, once they ended, its usage."""

    def events(self) -> AsyncIterator[Event]: ...

    def usage(self) -> SourceUsage: ...

    def cancel(self) -> None: ...


# chatd's own count of the prompt and of an output text, when an upstream told none
Estimate = Callable[[str], SourceUsage]


class LocalSource:
    """The local engine's run, as an event source (its one choice)."""

    def __init__(self, run: LocalRun) -> None:
        self.run = run

    async def events(self) -> AsyncIterator[Event]:
        async for _, event in self.run.events():
            yield event

    def usage(self) -> SourceUsage:
        u = self.run.usage()
        return SourceUsage(u.prompt_tokens, u.completion_tokens, u.cached_tokens)

    def cancel(self) -> None:
        self.run.cancel()


class ChatChunkSource:
    """A Chat Completions stream as the core's events (one choice): ``first`` is the chunk
    read ahead (``service/relayed.py``), ``rest`` the stream after it."""

    def __init__(
        self, first: Json | None, rest: AsyncIterator[Json], call: UpstreamCall, estimate: Estimate
    ) -> None:
        self.first = first
        self.rest = rest
        self.call = call
        self.estimate = estimate
        self.reader = ChatStreamReader()
        self.output = ""

    async def events(self) -> AsyncIterator[Event]:
        pending = [self.first] if self.first is not None else []
        async for chunk in chain(pending, self.rest):
            for event in self.reader.read(chunk):
                self.output += getattr(event, "text", "")
                yield event
        if self.reader.finish is None:
            raise ServerError("The upstream's answer ended without a finish reason.")

    def usage(self) -> SourceUsage:
        return chat_usage(self.call.usage) or self.estimate(self.output)

    def cancel(self) -> None:
        """The stream closes when its reader stops (the route's task is cancelled)."""


class ChatCompletionSource:
    """A whole ``chat.completion`` as the core's events."""

    def __init__(self, completion: Json, estimate: Estimate) -> None:
        self.completion = completion
        self.estimate = estimate
        self.output = ""

    async def events(self) -> AsyncIterator[Event]:
        for event in completion_events(self.completion):
            self.output += getattr(event, "text", "")
            yield event

    def usage(self) -> SourceUsage:
        return chat_usage(self.completion.get("usage")) or self.estimate(self.output)

    def cancel(self) -> None:
        """Nothing is open: the answer came whole."""


def chat_usage(usage: Json | None) -> SourceUsage | None:
    """Chat's ``usage`` as a source's (None when the upstream sent none)."""
    if not isinstance(usage, dict) or "prompt_tokens" not in usage:
        return None
    details = usage.get("prompt_tokens_details") or {}
    return SourceUsage(
        int(usage["prompt_tokens"]),
        int(usage.get("completion_tokens", 0)),
        int(details.get("cached_tokens") or 0),
    )


async def chain(first: list[T], rest: AsyncIterator[T]) -> AsyncIterator[T]:
    """``first`` (items read ahead), then the rest of the stream."""
    for item in first:
        yield item
    async for item in rest:
        yield item


def accounted(accountant: Accountant | None) -> Callable[[SourceUsage], None] | None:
    """The request's accountant, as an answer made from a source tells it its usage."""
    if accountant is None:
        return None
    return lambda u: accountant.record(
        u.input_tokens, u.output_tokens, u.estimated, u.cached_tokens
    )

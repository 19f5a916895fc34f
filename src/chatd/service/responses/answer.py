"""A response as the API layer consumes it, whoever generates it: the whole ``response``
object, or its stream events in the spec's order, each numbered.

The generator (the local engine, or a channel through Chat Completions) is seen as the
core's events for its one choice; :class:`ResponseOutput` turns them into items and item
events. Around them this module writes what every response has: ``response.created`` and
``response.in_progress`` first, a final ``response.completed`` / ``.incomplete`` /
``.failed``, usage, accounting, and storage: a stored response is committed before the
client gets it whole or sees its final event.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from chatd.protocol.errors import APIError
from chatd.protocol.responses_response import (
    ResponseSettings,
    ResponseStream,
    response_event,
    response_usage,
)
from chatd.service.event_sources import EventSource, SourceUsage
from chatd.service.responses.output import ResponseOutput, response_status
from chatd.service.responses.tools import ToolNames

__all__ = ["Account", "ResponseAnswer", "Save", "StreamedResponse"]

Json = dict[str, Any]


class ResponseAnswer(Protocol):
    """What the routes consume: a response whole, or its stream events; and the hosted
    tools it was offered that nothing ran (the ``x-chatd-tools-not-run`` header)."""

    tools_not_run: tuple[str, ...]

    def cancel(self) -> None: ...

    async def prime(self) -> None: ...

    async def result(self) -> Json: ...

    def events(self) -> AsyncIterator[Json]: ...


Save = Callable[[Json], Awaitable[None]]
Account = Callable[[SourceUsage], None]


class StreamedResponse:
    """A response made from one choice's core events (``ResponseAnswer``)."""

    def __init__(
        self,
        source: EventSource,
        settings: ResponseSettings,
        *,
        logprobs: bool = False,
        obfuscate: bool = False,
        save: Save | None = None,
        account: Account | None = None,
        prime: Callable[[], Awaitable[None]] | None = None,
        names: ToolNames | None = None,
        tools_not_run: tuple[str, ...] = (),
        output: ResponseOutput | None = None,
    ) -> None:
        """``output``: what makes the items (a compaction's: ``compaction.py``)."""
        self.source = source
        self.tools_not_run = tools_not_run
        self.settings = settings
        self.output = output if output is not None else ResponseOutput(logprobs, names)
        self.obfuscate = obfuscate
        self.save = save
        self.account = account
        self._prime = prime

    def cancel(self) -> None:
        self.source.cancel()

    async def prime(self) -> None:
        """Whatever must succeed before the first byte (a relay's first answer)."""
        if self._prime is not None:
            await self._prime()

    async def result(self) -> Json:
        """The whole response; stored (committed) before it is returned when asked."""
        try:
            async for event in self.source.events():
                self.output.on_event(event)
        finally:
            self._account()
        body = self._final()
        if self.save is not None:
            await self.save(body)
        return body

    async def events(self) -> AsyncIterator[Json]:
        """The stream events, numbered. A failure after the start is a ``response.failed``
        event (its ``error`` says why), never a stream that merely stops."""
        stream = ResponseStream()
        opening = self.settings.response("in_progress", [])
        yield stream.emit(response_event(opening, "created"))
        yield stream.emit(response_event(self.settings.response("in_progress", [])))
        try:
            async for event in self.source.events():
                for out in self.output.on_event(event):
                    yield stream.emit(self._padded(out))
            body = self._final()
            if self.save is not None:  # committed before the client sees the end
                await self.save(body)
        except APIError as e:
            self._account()
            yield stream.emit(response_event(self._failed(e)))
            return
        finally:
            self._account()
        yield stream.emit(response_event(body))

    def _final(self) -> Json:
        status, reason = response_status(self.output.finish)
        return self.settings.response(
            status, self.output.output, self._usage(), incomplete_reason=reason
        )

    def _failed(self, error: APIError) -> Json:
        """The spec's error codes name OpenAI's own failures; chatd's (an engine or an
        upstream failing, a store that cannot commit) are all ``server_error``."""
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        return self.settings.response(
            "failed",
            self.output.output,
            self._usage(),
            error={"code": code, "message": str(error)},
        )

    def _usage(self) -> Json:
        u = self.source.usage()
        return response_usage(u.input_tokens, u.output_tokens, u.cached_tokens)

    def _account(self) -> None:
        """Usage is counted once for every response: finished, failed or abandoned."""
        if self.account is not None:
            account, self.account = self.account, None
            account(self.source.usage())

    def _padded(self, event: Json) -> Json:
        """OpenAI's ``obfuscation`` on delta events (on by default; the spec does not list
        the field, the live API sends it): random characters blurring each event's size."""
        if self.obfuscate and event["type"].endswith(".delta"):
            n = max(1, 16 + secrets.randbelow(16) - len(event.get("delta", "")))
            event["obfuscation"] = secrets.token_urlsafe(n)[:n]
        return event

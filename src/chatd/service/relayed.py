"""What every relayed answer shares, whatever its protocol: the upstream call, the routes
that take over when no channel answers before its first byte, and the first streamed item
read ahead (so that a request no channel can answer is refused with a real status code
before any byte is sent).

Part of the core (it was ``upstream/fallback.py``): falling back to the next routes is the
router's business, not the transport's. Each protocol's relayed answer subclasses
``Relayed`` (``service/chat/relayed.py``, ``service/responses/relayed.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from chatd.protocol.errors import ModelUnavailable, ServerError
from chatd.service.event_sources import (
    ChatChunkSource,
    ChatCompletionSource,
    EventSource,
    SourceUsage,
)
from chatd.upstream.relay import UpstreamCall
from chatd.upstream.wires import ChatWire

__all__ = ["Account", "Answer", "Made", "Relayed", "RelayedEvents", "RelayedWithUsage"]


class Answer(Protocol):
    """Any answer the routes consume (a chat completion, a response)."""

    def cancel(self) -> None: ...

    async def prime(self) -> None: ...


A = TypeVar("A", bound=Answer)


class Relayed(Generic[A]):
    """The base of a relayed answer. ``account`` is the subclass's accounting callable:
    ``_settle(output)`` records usage once (the upstream's, or chatd's estimate from the
    ``output`` text); handing over to the fallback drops it, as the routes taking over
    account for themselves."""

    account: Any

    def __init__(self, call: UpstreamCall, fallback: Callable[[], Awaitable[A]] | None) -> None:
        self.call = call
        self.fallback = fallback
        self._delegate: A | None = None
        self._stream: AsyncIterator[dict[str, Any]] | None = None
        self._first: dict[str, Any] | None = None

    def cancel(self) -> None:
        """A relay's upstream connection closes with its stream; a fallback cancels its own."""
        if self._delegate is not None:
            self._delegate.cancel()

    def _settle(self, output: str) -> None:
        raise NotImplementedError

    async def _fall_back(self, error: ModelUnavailable) -> A:
        """Hand the request to the next routes; they account and store it themselves."""
        if self.fallback is None:
            self._settle("")
            raise error
        self.account = None
        self._delegate = await self.fallback()
        return self._delegate

    async def prime(self) -> None:
        """Open the upstream stream up to its first item, or fall back."""
        self._stream = self.call.chunks()
        try:
            self._first = await anext(self._stream)
        except StopAsyncIteration:
            self._first = None
        except ModelUnavailable as e:
            await (await self._fall_back(e)).prime()
        except BaseException:
            self._settle("")
            raise


# (prompt tokens, completion tokens, estimated by chatd, cached prompt tokens)
Account = Callable[[int, int, bool, int | None], None]


class RelayedWithUsage(Relayed[A]):
    """A relayed answer whose upstream reports OpenAI's ``usage`` (``prompt_tokens``,
    ``completion_tokens``, ``prompt_tokens_details.cached_tokens``): Chat Completions and
    the legacy Completions API. Without it, chatd counts the prompt text and the
    ``output`` text itself (``count_tokens``), marked as estimated."""

    def __init__(
        self,
        call: UpstreamCall,
        account: Account | None,
        count_tokens: Callable[[str], int] | None,
        prompt_text: str,
        fallback: Callable[[], Awaitable[A]] | None,
    ) -> None:
        super().__init__(call, fallback)
        self.account = account
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text

    def _settle(self, output: str) -> None:
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


class Made(Answer, Protocol):
    """An answer made from a source of core events (a response, a message)."""

    async def result(self) -> dict[str, Any]: ...

    def events(self) -> AsyncIterator[dict[str, Any]]: ...


M = TypeVar("M", bound=Made)


class RelayedEvents(Relayed[M]):
    """A relayed answer of a protocol whose objects are made from the core's events (the
    Responses API, Anthropic's Messages): a Chat Completions channel's answer is read back
    as events (``ChatCompletionSource``, ``ChatChunkSource``) and made into the protocol's
    objects by ``_made``, as a local answer is; a channel speaking the protocol itself is
    passed through by ``_passed_whole`` / ``_passed_on``. Usage is the upstream's when it
    tells it, else chatd's estimate (``count_tokens`` over ``prompt_text`` and the
    output), recorded once through ``account``."""

    def __init__(
        self,
        call: UpstreamCall,
        fallback: Callable[[], Awaitable[M]] | None,
        account: Callable[[SourceUsage], None] | None,
        count_tokens: Callable[[str], int] | None,
        prompt_text: str,
    ) -> None:
        super().__init__(call, fallback)
        self.account = account
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text

    async def result(self) -> dict[str, Any]:
        try:
            body = await self.call.result()
        except ModelUnavailable as e:
            return await (await self._fall_back(e)).result()
        except BaseException:
            self._settle("")
            raise
        if isinstance(self.call.wire, ChatWire):
            return await self._made(ChatCompletionSource(body, self._estimate)).result()
        return await self._passed_whole(body)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        if self._delegate is not None:
            async for event in self._delegate.events():
                yield event
            return
        if self._stream is None:
            raise ServerError("The upstream stream was not opened.")
        if isinstance(self.call.wire, ChatWire):
            source = ChatChunkSource(self._first, self._stream, self.call, self._estimate)
            async for event in self._made(source).events():
                yield event
            return
        async for event in self._passed_on():
            yield event

    def _taken_account(self) -> Callable[[SourceUsage], None] | None:
        """The accounting callable, handed over (to the answer made from events) once."""
        account, self.account = self.account, None
        return account

    def _made(self, source: EventSource) -> M:
        """A Chat Completions channel's answer as the protocol's, made as a local one."""
        raise NotImplementedError

    async def _passed_whole(self, body: dict[str, Any]) -> dict[str, Any]:
        """A whole answer from a channel speaking the protocol itself."""
        raise NotImplementedError

    def _passed_on(self) -> AsyncIterator[dict[str, Any]]:
        """The events of a channel speaking the protocol itself."""
        raise NotImplementedError

    def _estimate(self, output: str) -> SourceUsage:
        """chatd's own count of the prompt and the output, when the upstream told none."""
        if self.count_tokens is None:
            return SourceUsage(0, 0, estimated=True)
        return SourceUsage(
            self.count_tokens(self.prompt_text), self.count_tokens(output), estimated=True
        )

    def _settle(self, output: str) -> None:
        """chatd's own estimate, unless the upstream's usage was recorded already."""
        account = self._taken_account()
        if account is not None:
            account(self._estimate(output))

    def _record(self, usage: SourceUsage) -> None:
        """The upstream's own usage, recorded (once)."""
        account = self._taken_account()
        if account is not None:
            account(usage)

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

from chatd.protocol.errors import ModelUnavailable
from chatd.upstream.relay import UpstreamCall

__all__ = ["Answer", "Relayed"]


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

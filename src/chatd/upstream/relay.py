"""Relaying one request to upstream channels (Chat Completions, the Responses API or
Anthropic's Messages API: ``wires.py``, ``messages_wire.py``).

Before the first byte reaches the client, any failure of the channel (connect error,
timeout, 429, 5xx, no first byte within the channel's first_token_timeout, and the
channel refusing chatd itself: 401, 403, a 404 for its model) moves on to the next
channel; the client sees one clean answer. Errors that are the client's fault (400, 413,
422...) are passed back, made fit to read (``upstream_errors.py``). Once bytes have been
sent, a failing upstream ends the stream with an error (no ``[DONE]``, no terminal
event): a truncated stream never looks complete, and counts as a failure of its channel.
No message the client sees holds an exception's name or an upstream's address.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from chatd import request_log
from chatd.protocol.errors import APIError, ModelUnavailable, ServerError
from chatd.tasks import spawn
from chatd.upstream.channels import Channel
from chatd.upstream.upstream_errors import channel_failure, judge
from chatd.upstream.wires import ChatWire, Wire

__all__ = ["ConnectionPool", "UpstreamCall"]

log = logging.getLogger("chatd.upstream")


class ConnectionPool:
    """One pool of upstream connections, kept alive between requests, made on first use;
    no cap on their number (the requests chatd accepts already bound it)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class UpstreamCall:
    """One request to try on channels, in the given (routed) order: the one failover
    loop, whatever wire protocol each channel speaks.

    By default every channel is spoken to in Chat Completions (``ChatWire`` over
    ``body``). ``wire_for`` gives each channel its own wire instead, e.g. the Responses
    API itself for a channel with ``api = "responses"`` and a translation into Chat
    Completions for the others; ``body``, ``completion_id`` and ``owner`` (the caller's
    key owner, whose pseudonym a channel may send) are then unused. Once a
    channel has answered, ``channel`` and ``wire`` say which one and how it was spoken
    to (so a caller knows what kind of objects it is reading).
    """

    def __init__(
        self,
        public_id: str,
        order: list[Channel],
        body: dict[str, Any],
        session: aiohttp.ClientSession,
        completion_id: str | None = None,
        *,
        wire_for: Callable[[Channel], Wire] | None = None,
        owner: str = "anonymous",
    ) -> None:
        self.public_id = public_id
        self.order = order
        self.session = session
        if wire_for is None:
            chat = ChatWire(public_id, body, completion_id, owner)
            wire_for = lambda _: chat  # noqa: E731
        self.wire_for = wire_for
        self.wire: Wire | None = None  # the wire of the channel tried last (then: answered)
        self.channel: Channel | None = None  # the channel that answered

    @property
    def usage(self) -> dict[str, Any] | None:
        """The answering upstream's usage, once seen (in its wire's shape)."""
        return self.wire.usage if self.wire is not None else None

    def _send(self, channel: Channel) -> Any:
        """The POST to one channel (an awaitable aiohttp response)."""
        self.wire = self.wire_for(channel)
        url, data = self.wire.prepare(channel)
        headers = channel.headers
        if self.wire.extra_headers:
            headers = {**headers, **self.wire.extra_headers}
        return self.session.post(url, data=data, headers=headers, timeout=channel.timeouts)

    async def result(self) -> dict[str, Any]:
        """The non-streamed answer of the first channel that gives one, as its wire
        passes it on; an upstream's client-fault error is raised, made fit to read
        (``upstream_errors.judge``)."""
        last: ModelUnavailable | None = None
        for channel in self.order:
            try:
                # A non-streamed answer shows no first token: only the read timeout
                # (no byte for read_timeout seconds) tells a hung upstream.
                async with self._send(channel) as response:
                    status = response.status
                    raw = await response.read()
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                channel.failed()
                last = channel_failure(channel, self.public_id, _what_failed(e))
                continue
            data = _json(raw)
            error = judge(status, data, channel, self.public_id)
            if error is None and not isinstance(data, dict):
                error = channel_failure(channel, self.public_id, f"HTTP {status}, not JSON")
            if isinstance(error, ModelUnavailable):
                channel.failed()
                last = error
                continue
            channel.succeeded()
            if error is not None:
                raise error
            self.channel = channel
            _answered_by(channel)
            assert self.wire is not None
            return self.wire.answer(data)
        raise last or _no_channel(self.public_id)

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The streamed answer's objects as the answering channel's wire reads them
        (chat chunks, or Responses stream events), once a channel has sent its first
        event; ``ServerError`` if that stream breaks off before its end."""
        last: ModelUnavailable | None = None
        for channel in self.order:
            response: aiohttp.ClientResponse | None = None
            try:  # nothing sent yet: failures here move on to the next channel
                async with asyncio.timeout(channel.first_token_timeout):
                    response = await self._send(channel)
                    if response.status >= 400:
                        data = _json(await response.read())
                        response.release()
                        error = judge(response.status, data, channel, self.public_id)
                        if isinstance(error, ModelUnavailable):
                            raise _Refused(error)
                        channel.succeeded()
                        assert error is not None
                        raise error
                    events = _events(response)
                    first = await anext(events)
                    request_log.first_token()  # the request log's TTFT
            except (
                aiohttp.ClientError, StopAsyncIteration, TimeoutError, ValueError, _Refused
            ) as e:  # fmt: skip
                if response is not None:
                    response.close()
                channel.failed()
                if isinstance(e, _Refused):
                    last = e.error
                else:
                    what = "no first event: " + _what_failed(e)
                    last = channel_failure(channel, self.public_id, what)
                continue
            self.channel = channel  # its health is told at the stream's end (_relay)
            _answered_by(channel)
            assert self.wire is not None
            async for chunk in _relay(self.wire, channel, first, events, response):
                yield chunk
            return
        raise last or _no_channel(self.public_id)


async def _relay(
    wire: Wire,
    channel: Channel,
    first: str,
    events: AsyncIterator[str],
    response: aiohttp.ClientResponse,
) -> AsyncIterator[dict[str, Any]]:
    """One channel's stream, from its first event to its end (as its wire knows it). A
    stream that ends counts as a success of its channel, one that breaks off (or ends
    with the upstream's failure event) as a failure: a channel whose streams always
    break cools down, however well they start. A client gone counts as neither."""
    read = wire.read
    try:
        event = first
        while True:
            obj = read(event)
            if wire.ended and wire.failed:  # told before the last object is passed on
                channel.failed()
            elif wire.ended:
                channel.succeeded()
            if obj is not None:
                yield obj
            if wire.ended:
                break
            event = await anext(events)
    except StopAsyncIteration:
        channel.failed()
        raise ServerError(f"The upstream stream ended without {wire.end_name}.") from None
    except (aiohttp.ClientError, ValueError, TimeoutError) as e:
        channel.failed()
        raise ServerError(
            f"The upstream stream broke off before it ended ({_what_failed(e)})."
        ) from None
    except APIError:  # the upstream's own error event, made fit to read by the wire
        channel.failed()
        raise
    finally:
        if wire.ended:
            _finish_in_background(events, response)
        else:
            response.close()


class _Refused(Exception):
    """An upstream status that sends the request on to the next channel."""

    def __init__(self, error: ModelUnavailable) -> None:
        super().__init__(error.message)
        self.error = error


def _what_failed(e: BaseException) -> str:
    """chatd's words for a transport failure (never the exception's name or text, which
    may hold the upstream's address)."""
    if isinstance(e, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(e, aiohttp.ClientConnectorError | ConnectionError):
        return "connection failed"
    if isinstance(e, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(e, StopAsyncIteration):
        return "the stream ended"
    if isinstance(e, ValueError):
        return "not valid JSON"
    if isinstance(e, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return "the connection broke"
    return "transport error"


def _no_channel(public_id: str) -> ModelUnavailable:
    return ModelUnavailable(f"No channel could answer for `{public_id}` (no channel).")


def _finish_in_background(events: AsyncIterator[str], response: aiohttp.ClientResponse) -> None:
    """Read the body's end after [DONE] so the connection goes back to the pool (closing a
    response early closes its connection, and a new one per request costs a TCP connect),
    without making the client wait for it."""

    async def finish() -> None:
        try:
            async with asyncio.timeout(5):
                async for _ in events:
                    pass
            response.release()
        except (aiohttp.ClientError, TimeoutError):
            response.close()

    spawn(finish())


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The ``data:`` payloads of an SSE body, read as the bytes arrive (every event of a
    read at once, not a line per wake-up)."""
    pending = b""
    async for data in response.content.iter_any():
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip().decode()
    if pending.startswith(b"data:"):
        yield pending[5:].strip().decode()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _answered_by(channel: Channel) -> None:
    """The request's log line (chatd/request_log.py) names the channel that answered."""
    record = request_log.current()
    if record is not None:
        record.route = f"channel:{channel.name}"

"""Relaying one chat completion to upstream channels.

Before the first byte reaches the client, any failure (connect error, timeout, 429,
5xx, no first byte within the channel's first_token_timeout) moves on to the next
channel; the client sees one clean answer. Errors that are the client's fault (other
4xx) are passed back as they are. Once bytes have been sent, a failing upstream ends
the stream with an error event and no ``[DONE]``: a truncated stream never looks
complete.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from chatd.protocol.errors import APIError, ModelUnavailable, ServerError
from chatd.upstream.channels import Channel

log = logging.getLogger("chatd.upstream")


class UpstreamCall:
    """One request to try on channels, in the given (routed) order."""

    def __init__(
        self,
        public_id: str,
        order: list[Channel],
        body: dict[str, Any],
        client: httpx.AsyncClient,
    ) -> None:
        self.public_id = public_id
        self.order = order
        self.body = body
        self.client = client
        self.streaming = body.get("stream") is True
        opts = body.get("stream_options") or {}
        self.client_wants_usage = self.streaming and opts.get("include_usage") is True
        self.usage: dict[str, Any] | None = None

    def _request(self, channel: Channel) -> httpx.Request:
        body = dict(self.body)
        body["model"] = channel.models[self.public_id]
        if self.streaming:  # always ask for usage, for accounting; dropped if not wanted
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = {"content-type": "application/json"}
        if channel.api_key:
            headers["authorization"] = f"Bearer {channel.api_key}"
        return self.client.build_request(
            "POST",
            channel.base_url.rstrip("/") + "/chat/completions",
            content=json.dumps(body).encode(),
            headers=headers,
            timeout=httpx.Timeout(
                connect=channel.connect_timeout,
                read=channel.read_timeout,
                write=channel.connect_timeout,
                pool=channel.connect_timeout,
            ),
        )

    async def result(self) -> dict[str, Any]:
        last: str = "no channel"
        for channel in self.order:
            try:
                # A non-streamed answer shows no first token: only the read timeout
                # (no byte for read_timeout seconds) tells a hung upstream.
                response = await self.client.send(self._request(channel))
            except (httpx.HTTPError, TimeoutError) as e:
                channel.failed()
                last = f"{channel.name}: {type(e).__name__}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                channel.failed()
                last = f"{channel.name}: HTTP {response.status_code}"
                continue
            channel.succeeded()
            data = response.json()
            if response.status_code >= 400:
                raise _passed_back(response.status_code, data)
            data["model"] = self.public_id
            self.usage = data.get("usage")
            return data
        raise ModelUnavailable(f"No channel could answer for `{self.public_id}` ({last}).")

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        last = "no channel"
        for channel in self.order:
            deadline = time.monotonic() + channel.first_token_timeout
            try:
                response = await asyncio.wait_for(
                    self.client.send(self._request(channel), stream=True),
                    channel.first_token_timeout,
                )
            except (httpx.HTTPError, TimeoutError) as e:
                channel.failed()
                last = f"{channel.name}: {type(e).__name__}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                await response.aclose()
                channel.failed()
                last = f"{channel.name}: HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                data = json.loads(await response.aread())
                await response.aclose()
                channel.succeeded()
                raise _passed_back(response.status_code, data)
            events = _events(response)
            try:  # nothing sent yet: failures here move on to the next channel
                first = await asyncio.wait_for(anext(events), deadline - time.monotonic())
            except (httpx.HTTPError, StopAsyncIteration, TimeoutError) as e:
                await response.aclose()
                channel.failed()
                last = f"{channel.name}: no first event ({type(e).__name__})"
                continue
            channel.succeeded()
            async for chunk in self._relay(first, events, response):
                yield chunk
            return
        raise ModelUnavailable(f"No channel could answer for `{self.public_id}` ({last}).")

    async def _relay(
        self, first: str, events: AsyncIterator[str], response: httpx.Response
    ) -> AsyncIterator[dict[str, Any]]:
        done = False
        try:
            event = first
            while True:
                if event == "[DONE]":
                    done = True
                    break
                chunk = json.loads(event)
                if "error" in chunk:
                    raise ServerError(f"The upstream failed mid-stream: {chunk['error']}")
                chunk["model"] = self.public_id
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                if not chunk.get("choices") and chunk.get("usage") and not self.client_wants_usage:
                    pass  # the usage chunk we asked for ourselves
                else:
                    if not self.client_wants_usage:
                        chunk.pop("usage", None)
                    yield chunk
                event = await anext(events)
        except (httpx.HTTPError, StopAsyncIteration, ValueError) as e:
            raise ServerError(
                f"The upstream stream broke off before it ended ({type(e).__name__})."
            ) from None
        finally:
            if done:
                _finish_in_background(events, response)
            else:
                await response.aclose()
        if not done:
            raise ServerError("The upstream stream ended without [DONE].")


_draining: set[asyncio.Task[None]] = set()


def _finish_in_background(events: AsyncIterator[str], response: httpx.Response) -> None:
    """Read the body's end after [DONE] so the connection goes back to the pool (closing a
    response early closes its connection, and a new one per request costs a TCP connect),
    without making the client wait for it."""

    async def finish() -> None:
        try:
            async with asyncio.timeout(5):
                async for _ in events:
                    pass
        except (httpx.HTTPError, TimeoutError):
            pass
        finally:
            await response.aclose()

    task = asyncio.get_running_loop().create_task(finish())
    _draining.add(task)
    task.add_done_callback(_draining.discard)


async def _events(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield line[5:].strip()


def _passed_back(status: int, data: Any) -> APIError:
    err = data.get("error", {}) if isinstance(data, dict) else {}
    return APIError(
        str(err.get("message") or f"Upstream error {status}"),
        status=status,
        type=str(err.get("type") or "invalid_request_error"),
        param=err.get("param"),
        code=err.get("code"),
    )

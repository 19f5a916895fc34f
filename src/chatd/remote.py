"""A running server as the command line sees it over HTTP (``chatd chat``, ``chatd
models``): its model list and streamed Chat Completions, read with httpx alone (the
``openai`` SDK is a test dependency, not a runtime one), and its errors as OpenAI words
them. The server may be chatd or any OpenAI-compatible one: what only chatd has
(``GET /chatd/models``) falls back to the standard ``GET /v1/models``."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "DEFAULT_URL",
    "ModelList",
    "Remote",
    "RemoteError",
    "StreamBroken",
    "api_key",
    "error_message",
    "sse_chunks",
    "sse_data",
]

DEFAULT_URL = "http://127.0.0.1:8000"
# Connecting is quick or never; a stream may wait long for its first token (a full
# queue, a model loading), so reads get minutes, and Ctrl-C is there to give up sooner.
_TIMEOUT = httpx.Timeout(10.0, read=600.0)


class RemoteError(Exception):
    """The server refused (``status`` and OpenAI's ``message``) or could not be reached
    (``status`` None): a message for the user, never a traceback."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class StreamBroken(RemoteError):
    """A stream that ended without ``data: [DONE]``: the answer is incomplete."""


def api_key(given: str | None) -> str | None:
    """``--api-key``, else env ``CHATD_API_KEY`` (kept out of shell history and ``ps``)."""
    return given or os.environ.get("CHATD_API_KEY") or None


def error_message(response: httpx.Response) -> str:
    """OpenAI's ``{"error": {"message": ...}}``, else the start of whatever came back."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or f"HTTP {response.status_code}"


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event, as the SSE spec assembles it: a blank
    line ends an event, several ``data:`` lines join with newlines, one space after the
    colon is dropped, comments (``:``) and other fields (``event:``, ``id:``) are not
    data. An event cut off by the stream's end is still given (the caller decides
    whether the stream was complete)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def sse_chunks(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The chunks of a Chat Completions stream, until ``[DONE]``. An error event (a
    failure midway, which OpenAI and chatd send instead of ``[DONE]``) raises
    RemoteError with its message; a stream that stops without ``[DONE]`` raises
    StreamBroken, so a truncated answer never passes for a whole one."""
    for data in sse_data(lines):
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise RemoteError(f"the server sent an event that is not JSON: {data[:80]!r}") from None
        if not isinstance(chunk, dict):
            raise RemoteError(f"the server sent an event that is not an object: {data[:80]!r}")
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else None
            raise RemoteError(str(message or error))
        yield chunk
    raise StreamBroken("the stream ended before the answer was complete (no [DONE])")


@dataclass
class ModelList:
    """What a server serves: ``rows`` in ``GET /chatd/models``' shape (id, available,
    reason, routes), and ``body``, the JSON as it came from ``source``. From
    ``/v1/models`` every row is available (it lists only what can be served now) and
    its routes are unknown (empty)."""

    source: str
    body: dict[str, Any]
    rows: list[dict[str, Any]]

    def first_available(self) -> str | None:
        return next((r["id"] for r in self.rows if r.get("available")), None)

    def ids(self) -> list[str]:
        return [r["id"] for r in self.rows]


class Remote:
    """One server at ``url`` with one key: a small synchronous httpx client (a terminal
    chat does one thing at a time, and Ctrl-C interrupts a blocking read cleanly)."""

    def __init__(self, url: str, key: str | None, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):  # the SDKs' base_url, as users often copy it
            self.url = self.url[: -len("/v1")]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=_TIMEOUT, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def models(self) -> ModelList:
        """``GET /chatd/models``; on 404 (an older chatd, another server) ``/v1/models``."""
        response = self._get("/chatd/models")
        if response.status_code == 404:
            response = self._get("/v1/models")
            body = self._json(response)
            rows = [
                {"id": m["id"], "available": True, "reason": None, "routes": []}
                for m in body.get("data", [])
                if isinstance(m, dict) and isinstance(m.get("id"), str)
            ]
            return ModelList("/v1/models", body, rows)
        body = self._json(response)
        rows = [r for r in body.get("data", []) if isinstance(r, dict) and "id" in r]
        return ModelList("/chatd/models", body, rows)

    @contextlib.contextmanager
    def stream_chat(self, body: dict[str, Any]) -> Iterator[Iterator[dict[str, Any]]]:
        """POST /v1/chat/completions with ``stream: true``: the chunks as they arrive.
        Leaving the ``with`` block early (Ctrl-C) closes the connection, which cancels
        the generation on the server (chatd frees its engine slot at the next step)."""
        try:
            with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise RemoteError(error_message(response), response.status_code)
                yield sse_chunks(response.iter_lines())
        except httpx.HTTPError as e:
            raise RemoteError(self._unreachable(e)) from None

    def _get(self, path: str) -> httpx.Response:
        try:
            return self.http.get(path)
        except httpx.HTTPError as e:
            raise RemoteError(self._unreachable(e)) from None

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        url = f"{self.url}{response.request.url.path}"
        if response.status_code != 200:
            raise RemoteError(
                f"{url} answered {response.status_code}: {error_message(response)}",
                response.status_code,
            )
        try:
            body = response.json()
        except ValueError:
            raise RemoteError(f"{url} did not answer JSON") from None
        if not isinstance(body, dict):
            raise RemoteError(f"{url} did not answer a JSON object")
        return body

    def _unreachable(self, e: httpx.HTTPError) -> str:
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
            return f"cannot reach {self.url}: {type(e).__name__}: {e}"
        return f"the connection to {self.url} failed: {type(e).__name__}: {e}"

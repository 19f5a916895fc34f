"""Clients that leave, in the request log (api/request_ids.py): one gone before the
response started is logged with status 499 (nginx's "client closed request"), whatever
the app then sends to nobody; one gone mid-response keeps its status (200) with
``client_left``; one that stays is logged without it, although the server answers
``http.disconnect`` to every read once the response is complete.

The app is driven as an ASGI server drives one connection (``Connection`` below), so
the moment the client leaves is the test's choice; the last test does it over a real
socket with uvicorn, as ``chatd serve`` runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fakes.engine import FakeEngine
from starlette.types import ASGIApp, Message

from .checks import HI, URL
from .harness import API_KEY, MODEL, LogRecorder, chatd_in_thread, running_chatd

LONG = " ".join(f"word{i}" for i in range(200))  # 200 tokens of the FakeEngine


class Connection:
    """One client connection as uvicorn presents it to the app: ``body`` in one message,
    then reads wait until the client leaves (``leave``) or the response
    is complete, and answer ``http.disconnect``; nothing sent after the client left
    reaches it."""

    def __init__(
        self, body: dict[str, Any] | None = None, *, partial: bytes = b"", path: str = URL
    ) -> None:
        """``partial``: the client sends only this much of a body it says has more."""
        self.path = path
        self.parts = [partial] if partial else [json.dumps(body).encode()]
        self.partial = bool(partial)
        self.received: list[Message] = []
        self.gone = False
        self._wake = asyncio.Event()

    def leave(self) -> None:
        self.gone = True
        self._wake.set()

    async def receive(self) -> Message:
        if self.parts:
            part = self.parts.pop(0)
            return {"type": "http.request", "body": part, "more_body": self.partial}
        await self._wake.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.gone:
            return
        self.received.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self._wake.set()  # complete: reads now answer http.disconnect

    @property
    def status(self) -> int | None:
        starts = [m for m in self.received if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    def text(self) -> str:
        return b"".join(m.get("body", b"") for m in self.received[1:]).decode()

    def request_id(self) -> str:
        start = next(m for m in self.received if m["type"] == "http.response.start")
        return dict(start["headers"])[b"x-request-id"].decode()

    def run(self, app: ASGIApp) -> asyncio.Task[None]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"chatd"),
                (b"authorization", f"Bearer {API_KEY}".encode()),
                (b"content-type", b"application/json"),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("chatd", 80),
        }
        return asyncio.ensure_future(app(scope, self.receive, self.send))


def lines(log: LogRecorder) -> list[dict[str, Any]]:
    return [r.request for r in log.records if r.name == "chatd.requests"]  # type: ignore[attr-defined]


def only_line(log: LogRecorder) -> dict[str, Any]:
    found = lines(log)
    assert len(found) == 1, found
    return found[0]


async def until(condition: Any) -> None:
    """Wait (yielding to the app) until ``condition()``; a hang fails, not a slow run."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": HI, "max_tokens": 200, **fields}


async def test_left_before_a_whole_answer_is_499(tmp_path: Path) -> None:
    """Gone while the answer is generated: 499, its work cancelled, nothing sent."""
    engine = FakeEngine(LONG, step_delay=0.01)
    async with running_chatd(tmp_path, engine) as chatd:
        conn = Connection(chat())
        task = conn.run(chatd.app)
        await until(lambda: engine.submitted)
        conn.leave()
        await task
        line = only_line(chatd.log)
        assert line["status"] == 499 and line["client_left"] is True
        assert line["model"] == MODEL and line["route"] == "local"
        assert conn.received == [] and not engine.in_flight
        assert "status=499 client_left=true" in chatd.log.text()


async def test_left_mid_stream_keeps_200(tmp_path: Path) -> None:
    """Gone after some chunks: the 200 it was sent, and ``client_left``."""
    engine = FakeEngine(LONG, step_delay=0.01)
    async with running_chatd(tmp_path, engine) as chatd:
        conn = Connection(chat(stream=True))
        task = conn.run(chatd.app)
        await until(lambda: "word3" in conn.text())
        conn.leave()
        await task
        line = only_line(chatd.log)
        assert line["request_id"] == conn.request_id() and conn.status == 200
        assert line["status"] == 200 and line["client_left"] is True
        assert "[DONE]" not in conn.text() and not engine.in_flight


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (URL, chat(stream=True)),
        ("/v1/responses", {"model": MODEL, "input": "hi", "stream": True}),
    ],
)
async def test_left_before_a_stream_started_is_499(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    """Sent its request and left at once: by the time the stream would start (prompt
    rendered, generation submitted), nobody is there; the stream is never written.
    Chat Completions and Responses alike."""
    async with running_chatd(tmp_path, FakeEngine(LONG, step_delay=0.01)) as chatd:
        conn = Connection(body, path=path)
        conn.leave()
        await conn.run(chatd.app)
        line = only_line(chatd.log)
        assert line["status"] == 499 and line["client_left"] is True
        assert conn.received == [] and not chatd.engine.in_flight


async def test_left_while_sending_its_body_is_499(tmp_path: Path) -> None:
    """Gone before its body was whole: 499, and no "unhandled error" traceback."""
    async with running_chatd(tmp_path) as chatd:
        conn = Connection(partial=b'{"model": "smol')
        task = conn.run(chatd.app)
        conn.leave()
        await task
        line = only_line(chatd.log)
        assert line["status"] == 499 and line["client_left"] is True
        assert "unhandled error" not in chatd.log.text() and not chatd.engine.submitted


async def test_clients_that_stay_have_no_client_left(tmp_path: Path) -> None:
    """Whole and streamed answers read to their end: 200, no ``client_left``, though
    every read after the end answers ``http.disconnect``."""
    async with running_chatd(tmp_path, FakeEngine("a short answer")) as chatd:
        for body in (chat(), chat(stream=True)):
            conn = Connection(body)
            await conn.run(chatd.app)
            assert conn.status == 200 and "answer" in conn.text()
        assert [(x["status"], "client_left" in x) for x in lines(chatd.log)] == [
            (200, False),
            (200, False),
        ]


@contextlib.contextmanager
def request_lines() -> Iterator[LogRecorder]:
    """The ``chatd.requests`` lines a server in a thread of this process writes."""
    recorder = LogRecorder()
    logger = logging.getLogger("chatd.requests")
    level = logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.INFO)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)


def wait_for_lines(log: LogRecorder, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while len(lines(log)) < count:
        assert time.monotonic() < deadline, lines(log)
        time.sleep(0.01)
    return lines(log)


def test_over_a_real_socket(tmp_path: Path) -> None:
    """uvicorn, as ``chatd serve`` runs it: a stream closed after its first event is
    200 with ``client_left``; a whole answer whose connection closes while it is
    generated is 499."""
    engine = FakeEngine(LONG, step_delay=0.02)
    with request_lines() as log, chatd_in_thread(tmp_path, engine) as srv:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with (
            httpx.Client(base_url=srv.base_url, headers=headers, timeout=120) as http,
            http.stream("POST", URL, json=chat(stream=True)) as r,
        ):
            assert r.status_code == 200
            streamed = r.headers["x-request-id"]
            next(r.iter_lines())
        url = urlsplit(srv.base_url)
        body = json.dumps(chat()).encode()
        with socket.create_connection((url.hostname, url.port)) as s:
            s.sendall(
                b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: chatd\r\n"
                + f"Authorization: Bearer {API_KEY}\r\n".encode()
                + b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )  # fmt: skip
            deadline = time.monotonic() + 120
            while len(engine.submitted) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        first, second = wait_for_lines(log, 2)
        assert first["request_id"] == streamed
        assert first["status"] == 200 and first["client_left"] is True
        assert second["status"] == 499 and second["client_left"] is True
        while engine.in_flight:  # both cancelled, at the fake's next step
            assert time.monotonic() < deadline
            time.sleep(0.01)

"""Connections that hold the server without sending a request (api/connections.py): the
header deadline cuts them, and the connection cap refuses new ones at once without
touching the open ones. The real app over a FakeEngine, served by uvicorn in a thread
with chatd's protocol, attacked with raw sockets.

No test measures speed: a close is waited for with a generous deadline, never asserted
to come within N seconds."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fakes.engine import FakeEngine
from raw_sockets import until_closed

from chatd.api.connections import guarded_protocol

from .checks import body
from .harness import API_KEY, ThreadServer, chatd_in_thread

HEADER_TIMEOUT = 1.0
DEADLINE = 60.0  # the longest any wait here may take (a loaded machine), never expected
CAP = 3
LONG = " ".join(f"w{i}" for i in range(100))
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def connect(server: ThreadServer) -> socket.socket:
    url = urlsplit(server.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=DEADLINE)
    return sock


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {API_KEY}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_one(sock: socket.socket) -> tuple[int, str, bytes]:
    """One response with a Content-Length, the connection left open."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, "closed before the answer"
        received += chunk
    status, head, rest = split(received)
    length = int(head.split("content-length: ", 1)[1].split("\r\n", 1)[0])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the answer"
        rest += chunk
    return status, head, rest


def split(response: bytes) -> tuple[int, str, bytes]:
    head, _, rest = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.decode("latin-1").lower(), rest


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """A server whose connections have HEADER_TIMEOUT for their headers; kept-alive
    connections are not closed by uvicorn's own idle timeout within a test."""
    engine = FakeEngine(LONG, step_delay=0.02)
    with chatd_in_thread(
        tmp_path_factory.mktemp("timed"),
        engine,
        http=guarded_protocol(HEADER_TIMEOUT, 0),
        timeout_keep_alive=600,
    ) as server:
        yield server


def test_a_connection_that_sends_nothing_is_closed(timed: ThreadServer) -> None:
    with connect(timed) as sock:
        assert until_closed(sock) == b""
    assert httpx.get(timed.base_url + "/health").status_code == 200


def test_a_connection_that_sends_half_its_headers_is_closed(timed: ThreadServer) -> None:
    with connect(timed) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        assert until_closed(sock) == b""  # no request: no answer


def test_headers_trickled_in_are_closed_all_the_same(timed: ThreadServer) -> None:
    """Slowloris: a header line now and then keeps the connection busy but never
    completes the request; the deadline runs from the connection's opening."""
    with connect(timed) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(0.2)
        deadline = time.monotonic() + DEADLINE
        while True:
            assert time.monotonic() < deadline, "still open"
            try:
                if sock.recv(1024) == b"":
                    break
            except TimeoutError:
                pass
            except ConnectionResetError:
                break
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:  # closed by the server
                break


def test_a_kept_alive_connections_next_request_has_the_same_deadline(
    timed: ThreadServer,
) -> None:
    with connect(timed) as sock:
        sock.sendall(request("GET", "/v1/models"))
        assert read_one(sock)[0] == 200
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half of the next
        assert until_closed(sock) == b""


def test_a_request_is_not_timed_once_its_headers_are_in(timed: ThreadServer) -> None:
    """The deadline is for headers only: a stream lasting longer than it (100 tokens,
    20 ms apart) ends normally, and so does a request whose body comes later."""
    with httpx.Client(base_url=timed.base_url, headers=AUTH, timeout=DEADLINE) as http:
        with http.stream(
            "POST", "/v1/chat/completions", json=body(stream=True, max_tokens=200)
        ) as r:
            assert r.status_code == 200
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert len(events) > 100
    payload = json.dumps(body()).encode()
    with connect(timed) as sock:
        sock.sendall(request("POST", "/v1/chat/completions", payload, Connection="close")[:-5])
        time.sleep(HEADER_TIMEOUT * 2)  # the rest of the body after the header deadline
        sock.sendall(payload[-5:])
        status, _, rest = split(until_closed(sock))
        assert status == 200, rest
        assert json.loads(rest)["object"] == "chat.completion"


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[ThreadServer]:
    """At most CAP connections; no header deadline (so only the cap is at work)."""
    with chatd_in_thread(
        tmp_path,
        FakeEngine(LONG, step_delay=0.02),
        http=guarded_protocol(0, CAP),
        timeout_keep_alive=600,
    ) as server:
        yield server


def test_past_the_cap_new_connections_get_503_and_open_ones_go_on(capped: ThreadServer) -> None:
    kept = httpx.Client(base_url=capped.base_url, headers=AUTH, timeout=DEADLINE)
    streaming = httpx.Client(base_url=capped.base_url, headers=AUTH, timeout=DEADLINE)
    with kept, streaming, connect(capped) as pending:
        # 1: a kept-alive client's connection
        assert kept.get("/v1/models").status_code == 200
        # 2: a request whose body has not all arrived
        payload = json.dumps(body()).encode()
        whole = request("POST", "/v1/chat/completions", payload, Connection="close")
        pending.sendall(whole[:-5])
        # 3: a stream (accepted after the others: connections are accepted in order)
        with streaming.stream(
            "POST", "/v1/chat/completions", json=body(stream=True, max_tokens=200)
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")

            # the cap is reached: each new connection is answered 503 and closed,
            # whether it sends a request or nothing
            for sends in (request("GET", "/v1/models"), b"", request("GET", "/health")):
                with connect(capped) as extra:
                    if sends:
                        extra.sendall(sends)
                    status, head, rest = split(until_closed(extra))
                    assert status == 503
                    assert "retry-after: 1" in head and "connection: close" in head
                    error = json.loads(rest)["error"]
                    assert error["code"] == "server_overloaded"
                    assert error["type"] == "server_error"
                    assert "retry later" in error["message"]

            # the open connections are served as before
            assert kept.get("/v1/models").status_code == 200
            pending.sendall(whole[-5:])
            status, _, rest = split(until_closed(pending))
            assert status == 200 and json.loads(rest)["object"] == "chat.completion"
            events = [line for line in lines if line.startswith("data: ")]
            assert events[-1] == "data: [DONE]"
    # all closed: new connections are taken again
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if httpx.get(capped.base_url + "/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "connections still refused"
        time.sleep(0.05)

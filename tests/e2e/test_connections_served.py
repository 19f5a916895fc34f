"""``chatd serve --header-timeout --max-connections`` over real sockets (the in-process
tests, tests/service/test_connections.py, attack the protocol in detail): a connection
that sends nothing is closed, and past the cap a new connection gets 503 at once while
the open ones are answered. Waits have generous deadlines; no speed is asserted."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import MODEL, Server
from raw_sockets import until_closed

DEADLINE = 120.0
CAP = 2


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # 2 s for headers: the cap's connections send theirs at once and must keep them
    srv = Server("--header-timeout", "2", "--max-connections", str(CAP), "--n-ctx", "2048")
    yield srv
    srv.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)


def healthy(server: Server) -> bool:
    try:
        return httpx.get(server.base_url + "/health").status_code == 200
    except httpx.HTTPError:
        return False


def test_a_silent_connection_is_closed(server: Server) -> None:
    with connect(server) as sock:
        assert until_closed(sock) == b""
    assert httpx.get(server.base_url + "/health").status_code == 200


def test_past_the_cap_a_new_connection_gets_503(server: Server) -> None:
    payload = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    ).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    pending = [connect(server) for _ in range(CAP)]
    try:
        for sock in pending:  # requests whose bodies have not all arrived: not idle
            sock.sendall(head + payload[:-1])
        with connect(server) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "server_overloaded"
        for sock in pending:
            sock.sendall(payload[-1:])
            reply = until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 200"), reply
    finally:
        for sock in pending:
            sock.close()
    deadline = time.monotonic() + DEADLINE
    while not healthy(server):  # the closed connections are let go
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "connection(s) refused" in server.log()

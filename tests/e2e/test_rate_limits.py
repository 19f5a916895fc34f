"""Per-key rate limits: 429 with OpenAI's body and Retry-After; shared by replicas
through Redis."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, Server
from openapi_schemas import assert_valid

CHATD = str(Path(sys.executable).parent / "chatd")


def make_key(data_dir: Path, *limits: str) -> str:
    out = subprocess.run(
        [CHATD, "keys", "create", "--name", "limited", *limits, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]


def fresh_window() -> None:
    """Limits count per clock minute: do not start a test in its last seconds."""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.5)


def ask(srv: Server, key: str) -> httpx.Response:
    return httpx.post(
        srv.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        timeout=60,
    )


def assert_limited(r: httpx.Response, kind: str) -> None:
    assert r.status_code == 429, r.text
    assert_valid("ErrorResponse", r.json())
    error = r.json()["error"]
    assert (error["type"], error["code"]) == (kind, "rate_limit_exceeded")
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_requests_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--rpm", "2")
    srv = Server("--data-dir", str(tmp_path))
    try:
        fresh_window()
        assert ask(srv, key).status_code == 200
        assert ask(srv, key).status_code == 200
        assert_limited(ask(srv, key), "requests")
    finally:
        srv.stop()


def test_tokens_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--tpm", "10")
    srv = Server("--data-dir", str(tmp_path))
    try:
        fresh_window()
        assert ask(srv, key).status_code == 200  # ~33 tokens: over the limit afterwards
        deadline = time.monotonic() + 5
        r = ask(srv, key)
        while r.status_code == 200 and time.monotonic() < deadline:  # tokens land async
            time.sleep(0.2)
            r = ask(srv, key)
        assert_limited(r, "tokens")
    finally:
        srv.stop()


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def test_replicas_share_one_limit_through_redis(tmp_path: Path) -> None:
    if not _redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    key = make_key(tmp_path, "--rpm", "3")
    shared = ("--data-dir", str(tmp_path), "--redis-url", "redis://127.0.0.1:6379/0")
    a, b = Server(*shared), Server(*shared)
    try:
        fresh_window()
        assert [ask(s, key).status_code for s in (a, b, a)] == [200, 200, 200]
        assert_limited(ask(b, key), "requests")
        assert_limited(ask(a, key), "requests")
    finally:
        a.stop()
        b.stop()

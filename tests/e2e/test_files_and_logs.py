"""Files and logs of a real `chatd serve --log-level debug` (text format) with two
static keys, started with the usual umask (022) on a data dir it creates: the dir is
0700 and every file in it 0600; the log (chatd's, uvicorn's, SQLAlchemy's and llama.cpp's
lines) holds no prompt, key or key digest, and nothing a terminal would act on, whatever
control characters a client put in its path or X-Client-Request-Id; the two keys' owner
ids are distinct, not digest prefixes, and the same after a restart."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import stat
from pathlib import Path

import httpx
from conftest import MODEL, Server

PROMPT = "my locker combination is " + secrets.token_hex(6)
HOSTILE_PATH = "/v1/%1b[31m%0d%0aINFO%20chatd.requests:%20forged%e2%80%ae%c2%9b2J"
HOSTILE_HEADER = b"trace\x85\x9b2J-7"
NOT_PRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw(base_url: str, data: bytes) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def start(*args: str) -> Server:
    old = os.umask(0o022)  # chatd serve inherits it
    try:
        return Server(*args)
    finally:
        os.umask(old)


def owners(log: str) -> list[str]:
    return re.findall(r"chatd\.requests: .* owner=(\S+)", log)


def test_files_are_private_and_debug_logs_are_clean(tmp_path: Path) -> None:
    keys = ["sk-files-a-" + secrets.token_hex(12), "sk-files-b-" + secrets.token_hex(12)]
    data = tmp_path / "new-data-dir"
    args = ("--api-key", keys[0], "--api-key", keys[1], "--data-dir", str(data))
    srv = start(*args, "--log-level", "debug")
    try:
        for key in keys:
            h = {"Authorization": f"Bearer {key}"}
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 4,
                "store": True,
            }
            r = httpx.post(srv.base_url + "/v1/chat/completions", json=body, headers=h, timeout=120)
            assert r.status_code == 200, r.text
            r = httpx.post(
                srv.base_url + "/v1/responses",
                json={"model": MODEL, "input": PROMPT, "max_output_tokens": 16},
                headers=h,
                timeout=120,
            )
            assert r.status_code == 200, r.text
        hostile = raw(
            srv.base_url,
            f"GET {HOSTILE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
        )
        assert hostile.startswith(b"HTTP/1.1 404")
        header = raw(
            srv.base_url,
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Client-Request-Id: "
            + HOSTILE_HEADER
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert header.startswith(b"HTTP/1.1 200")
        refused = raw(
            srv.base_url,
            b"GET /v1/\x1b[2Jx\r HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        assert refused.startswith(b"HTTP/1.1 400")  # uvicorn refuses raw controls
        assert mode(data) == 0o700
        files = {p.name: mode(p) for p in data.iterdir()}
        assert {"chatd.db", "chatd.db-wal", "chatd.db-shm"} <= set(files)
        assert files == dict.fromkeys(files, 0o600)
    finally:
        srv.stop()
    log = srv.log()
    assert "DEBUG" in log and "INFO uvicorn.error: " in log  # uvicorn's lines: chatd's format
    assert PROMPT not in log and "locker combination" not in log
    for key in keys:
        digest = hashlib.sha256(key.encode()).hexdigest()
        assert key not in log and digest[:16] not in log
    assert not NOT_PRINTABLE.findall(log), NOT_PRINTABLE.findall(log)
    forged = [line for line in log.splitlines() if "forged" in line]
    assert len(forged) == 1 and 'path="/v1/\\u001b[31m\\r\\nINFO chatd.requests:' in forged[0]
    assert 'client_request_id="trace\\u0085\\u009b2J-7"' in log
    first = owners(log)
    assert len(set(first)) == 2
    for key in keys:
        assert "key_" + hashlib.sha256(key.encode()).hexdigest()[:24] not in first

    # restarted on the same data dir: the same owner ids, the records still theirs
    again = start(*args)
    try:
        for key in keys:
            h = {"Authorization": f"Bearer {key}"}
            listed = httpx.get(again.base_url + "/v1/chat/completions", headers=h, timeout=60)
            assert listed.status_code == 200 and len(listed.json()["data"]) == 1
    finally:
        again.stop()
    assert owners(again.log()) == [first[0], first[-1]]
    assert {p.name: mode(p) for p in data.iterdir()} == dict.fromkeys(
        (p.name for p in data.iterdir()), 0o600
    )

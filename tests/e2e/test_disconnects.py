"""Slow and vanishing clients cost nothing: on the real server and model, 100 clients that
go away at random points of their requests (streamed and whole, chat and responses, n > 1,
during prefill and during grammar compilation) leave 0 running sequences and 0 KV cells
behind, and the next request is answered normally; connections that trickle their headers
(slowloris) hold no engine slot and do not stop others being served."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import MODEL, Server, bearer

KEY = "sk-disconnects-0123456789"
LONG_PROMPT = "Tell me everything about the sea. " * 150  # a prefill of ~1,500 tokens
WIDE_SCHEMA = {
    "type": "object",
    "properties": {f"field_{i}": {"type": "string", "maxLength": 12} for i in range(40)},
    "required": [f"field_{i}" for i in range(40)],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # No prefix cache: at rest every KV cell must then be free, so a leak shows as cells.
    srv = Server("--api-key", KEY, "--prefix-cache-entries", "0", "--max-sequences", "8")
    yield srv
    srv.stop()


def chat(content: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}
    return "/v1/chat/completions", body


def kinds(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One request of a random kind, long enough to be left midway."""
    schema = {"type": "json_schema", "json_schema": {"name": "wide", "schema": WIDE_SCHEMA}}
    choices = [
        chat("Write a long story.", max_tokens=200, stream=True),
        chat("Write a long story.", max_tokens=200),
        chat("Write two stories.", max_tokens=120, n=2, stream=True),
        chat(LONG_PROMPT, max_tokens=50),  # gone during prefill
        chat("Fill the form.", max_tokens=150, response_format=schema),  # during compile
        (
            "/v1/responses",
            {"model": MODEL, "input": "A long story.", "max_output_tokens": 200, "stream": True},
        ),  # fmt: skip
        ("/v1/responses", {"model": MODEL, "input": LONG_PROMPT, "max_output_tokens": 60}),
    ]
    return rng.choice(choices)


async def vanish(http: httpx.AsyncClient, rng: random.Random) -> str:
    """Send one request and go away after a random time (0 to 1.5 s) or a random number
    of stream lines; returns how it ended, for the record."""
    path, body = kinds(rng)
    patience = rng.uniform(0.0, 1.5)
    try:
        async with asyncio.timeout(patience):
            if body.get("stream"):
                async with http.stream("POST", path, json=body) as r:
                    lines = rng.randint(0, 12)
                    async for _ in r.aiter_lines():
                        lines -= 1
                        if lines <= 0:
                            return "left mid-stream"
                    return "stream ended"
            await http.post(path, json=body)
            return "answered"
    except TimeoutError:
        return "left"


def engine_at_rest(srv: Server) -> dict[str, int]:
    health = httpx.get(srv.base_url + "/health", headers=bearer(KEY), timeout=10)  # stats: a key's
    stats = health.json()["models"][MODEL]
    return stats


async def test_a_hundred_vanishing_clients_leave_nothing_behind(server: Server) -> None:
    rng = random.Random(12)
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=200)
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=headers, timeout=60, limits=limits
    ) as http:
        for _ in range(4):  # 4 waves of 25 concurrent clients
            ended = await asyncio.gather(*[vanish(http, rng) for _ in range(25)])
            for how in ended:
                outcomes[how] = outcomes.get(how, 0) + 1
    assert sum(outcomes.values()) == 100
    assert outcomes.get("left", 0) + outcomes.get("left mid-stream", 0) >= 50, outcomes
    deadline = time.monotonic() + 120
    stats = engine_at_rest(server)
    while time.monotonic() < deadline and (
        stats["running_requests"] or stats["waiting_requests"] or stats["kv_cells_used"]
    ):
        await asyncio.sleep(0.2)
        stats = engine_at_rest(server)
    assert stats["running_requests"] == 0, stats
    assert stats["running_sequences"] == 0, stats
    assert stats["waiting_requests"] == 0, stats
    assert stats["kv_cells_used"] == 0, stats
    ok = httpx.post(
        server.base_url + "/v1/chat/completions",
        headers=headers,
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
        timeout=60,
    )
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]


def test_slowloris_holds_no_engine_slot(server: Server) -> None:
    """Fifty connections that send their request line and then one header byte at a time
    never reach the engine; a normal request is served meanwhile."""
    host, port = "127.0.0.1", server.port
    trickling = []
    try:
        for _ in range(50):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            trickling.append(s)
        for s in trickling:
            s.sendall(b"a")
        stats = engine_at_rest(server)
        assert stats["running_requests"] == 0 and stats["waiting_requests"] == 0, stats
        ok = httpx.post(
            server.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            timeout=60,
        )
        assert ok.status_code == 200
    finally:
        for s in trickling:
            s.close()

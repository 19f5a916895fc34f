"""`chatd serve` options, each on its own short-lived server (the open server shared by
two tests), and what only a real process shows about an open server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, REQUEST_TIMEOUT, Server
from openapi_schemas import assert_valid

from chatd.config import embedded_model_path
from chatd.engine.model_runner import _fingerprint


@pytest.fixture(scope="module")
def open_server() -> Iterator[Server]:
    """Started without a key (none in the environment either): open. It serves the
    embedded model's file named by path, under its own id. Shared by two tests: one
    ``chatd serve`` start fewer (each costs a process and a model load)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CHATD_API_KEYS", raising=False)
        srv = Server("--model", str(embedded_model_path()), "--model-id", "my-model")
    yield srv
    srv.stop()


def test_serve_another_gguf_under_its_own_id(open_server: Server) -> None:
    srv = open_server
    models = httpx.get(srv.base_url + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["my-model"]
    ok = httpx.post(
        srv.base_url + "/v1/chat/completions",
        json={
            "model": "my-model",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
        },
        timeout=REQUEST_TIMEOUT,
    )
    assert ok.status_code == 200 and ok.json()["model"] == "my-model"
    other = httpx.post(
        srv.base_url + "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert other.status_code == 404  # never silently served by another model
    assert other.json()["error"]["code"] == "model_not_found"


def test_open_server(open_server: Server) -> None:
    """What only a real ``chatd serve`` shows about refusals: a server started without
    keys is open (any key, or none, is served), and says so in its log. Every other
    error test runs in-process (tests/service/test_contract.py, test_capabilities.py,
    test_refusals.py)."""
    srv = open_server
    body = {"model": "my-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    r = httpx.post(srv.base_url + "/v1/chat/completions", json=body, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "chat.completion" and data["model"] == "my-model"
    assert isinstance(data["choices"][0]["message"]["content"], str)
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    assert_valid("CreateChatCompletionResponse", data)
    resp = httpx.get(srv.base_url + "/v1/models", headers={"Authorization": "Bearer any"})
    assert resp.status_code == 200, resp.text
    assert "open" in srv.log().lower(), srv.log()


def test_api_keys_from_environment() -> None:
    srv = Server(env={"CHATD_API_KEYS": "key-one, key-two"})
    try:
        for key, status in (("key-two", 200), ("key-one", 200), ("key-three", 401)):
            r = httpx.get(srv.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == status, key
        assert "key-one" not in srv.log() and "key-two" not in srv.log()
    finally:
        srv.stop()


def test_missing_model_file_fails_clearly(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "chatd"
    r = subprocess.run(
        [str(exe), "serve", "--model", str(tmp_path / "absent.gguf")],
        capture_output=True,
        text=True,
        timeout=REQUEST_TIMEOUT,
    )
    assert r.returncode == 1
    assert "absent.gguf" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("change", ["first", "last", "size"])
def test_fingerprint_follows_the_model_file(tmp_path: Path, change: str) -> None:
    data = bytearray(b"x" * (3 << 20))
    a = tmp_path / "a.gguf"
    a.write_bytes(data)
    if change == "first":
        data[0] = ord("y")
    elif change == "last":
        data[-1] = ord("y")
    else:
        data += b"x"
    b = tmp_path / "b.gguf"
    b.write_bytes(data)
    assert _fingerprint(a) == _fingerprint(a)
    assert _fingerprint(a) != _fingerprint(b)


def test_small_kv_cache_preempts_and_completes_everything() -> None:
    """Four requests that cannot all fit in a 512-cell cache: some are preempted and
    recomputed, and every one still ends with exactly its requested tokens."""
    import asyncio

    srv = Server("--n-ctx", "512", "--context-window", "256")

    async def one(c: httpx.AsyncClient, i: int) -> dict:
        r = await c.post(
            "/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Tell me a story number {i}."}],
                "max_tokens": 150,
                "logit_bias": {"0": -100, "2": -100, "4": -100},
            },
        )
        assert r.status_code == 200, r.text
        return r.json()

    async def run() -> list[dict]:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=REQUEST_TIMEOUT) as c:
            return await asyncio.gather(*[one(c, i) for i in range(4)])

    try:
        for data in asyncio.run(run()):
            assert data["choices"][0]["finish_reason"] == "length"
            assert data["usage"]["completion_tokens"] == 150
            assert data["choices"][0]["message"]["content"]
    finally:
        srv.stop()

"""`chatd serve` options, each on its own short-lived server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, Server

from chatd.config import embedded_model_path
from chatd.engine.model_runner import _fingerprint


def test_serve_another_gguf_under_its_own_id() -> None:
    srv = Server("--model", str(embedded_model_path()), "--model-id", "my-model")
    try:
        models = httpx.get(srv.base_url + "/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["my-model"]
        ok = httpx.post(
            srv.base_url + "/v1/chat/completions",
            json={
                "model": "my-model",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 2,
            },
            timeout=60,
        )
        assert ok.status_code == 200 and ok.json()["model"] == "my-model"
        other = httpx.post(
            srv.base_url + "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert other.status_code == 404  # never silently served by another model
        assert other.json()["error"]["code"] == "model_not_found"
    finally:
        srv.stop()


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
        timeout=60,
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
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as c:
            return await asyncio.gather(*[one(c, i) for i in range(4)])

    try:
        for data in asyncio.run(run()):
            assert data["choices"][0]["finish_reason"] == "length"
            assert data["usage"]["completion_tokens"] == 150
            assert data["choices"][0]["message"]["content"]
    finally:
        srv.stop()

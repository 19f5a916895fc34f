"""Killing the server (SIGKILL) while stored requests are in flight leaves only complete
records: every stored completion has its body, usage and input messages."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, PG_URL, Server, postgres_reachable


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_leaves_only_complete_records(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql" and not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    key = "sk-" + secrets.token_hex(12)
    db_args = (
        ("--database-url", PG_URL) if backend == "postgresql" else ("--data-dir", str(tmp_path))
    )
    srv = Server("--api-key", key, *db_args)
    headers = {"Authorization": f"Bearer {key}"}
    tag = secrets.token_hex(4)
    answered: list[str] = []

    async def one(c: httpx.AsyncClient, i: int) -> None:
        body = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Count to {i}."},
            ],
            "max_tokens": 4 + 8 * i,  # ~1000 tokens in all: still running at the kill
            "store": True,
            "metadata": {"tag": tag},
            "stream": i % 2 == 0,
        }
        try:
            r = await c.post("/v1/chat/completions", json=body)
            if r.status_code == 200 and (not body["stream"] or "[DONE]" in r.text):
                answered.append(r.text)
        except httpx.HTTPError:
            pass  # the server died under us: that is the point

    async def load_then_kill() -> None:
        async with httpx.AsyncClient(base_url=srv.base_url, headers=headers, timeout=60) as c:
            tasks = [asyncio.create_task(one(c, i)) for i in range(16)]
            # Kill once something is acknowledged (whatever this machine's speed): the
            # shortest requests are done, the longest still generating.
            for _ in range(600):
                if answered:
                    break
                await asyncio.sleep(0.05)
            srv.proc.kill()  # SIGKILL: no shutdown, no cleanup
            await asyncio.gather(*tasks)

    try:
        asyncio.run(load_then_kill())
    finally:
        srv.stop()
    srv2 = Server("--api-key", key, *db_args)
    try:
        with httpx.Client(base_url=srv2.base_url, headers=headers, timeout=60) as c:
            listed = c.get(
                "/v1/chat/completions", params={"metadata[tag]": tag, "limit": 100}
            ).json()
            stored = listed["data"]
            assert len(stored) >= len(answered)  # everything acknowledged was kept
            assert len(answered) < 16, "the kill came after everything was done"
            assert len(stored) > 0, "the kill came before anything was stored"
            for item in stored:
                assert item["choices"] and all(
                    isinstance(ch["message"]["content"], str) for ch in item["choices"]
                )
                u = item["usage"]
                assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] > 0
                msgs = c.get(f"/v1/chat/completions/{item['id']}/messages").json()["data"]
                assert [m["role"] for m in msgs] == ["system", "user"]
    finally:
        srv2.stop()

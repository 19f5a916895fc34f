"""Killing the server (SIGKILL) while stored requests are in flight leaves only complete
records: every stored completion has its body, usage and input messages; every stored
response (``/v1/responses``) has all its input and output items."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from conftest import MODEL, PG_URL, Server, postgres_reachable
from openapi_schemas import assert_valid
from waiting import until


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
            await until(lambda: answered, "a first answer acknowledged", interval=0.05)
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


# --------------------------------------------------------------------------------------------
# Stored responses (/v1/responses)
# --------------------------------------------------------------------------------------------

Stored = dict[str, Any]  # id -> {"prev", "body", "items": [(output, position, item_id)]}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def stored_rows(backend: str, tmp_path: Path, owner: str) -> dict[str, Stored]:
    """This owner's stored_responses rows with their stored_response_items rows, read
    from the database itself; items with no response row land under their response id
    with ``body`` None (an orphan)."""
    q_resp = "SELECT id, previous_response_id, body FROM stored_responses WHERE owner = $1"
    q_items = (
        "SELECT response_id, output, position, item_id FROM stored_response_items WHERE owner = $1"
    )
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "chatd.db") as conn:
            resp = conn.execute(q_resp.replace("$1", "?"), (owner,)).fetchall()
            items = conn.execute(q_items.replace("$1", "?"), (owner,)).fetchall()
    else:

        async def read() -> tuple[list[Any], list[Any]]:
            conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
            try:
                return await conn.fetch(q_resp, owner), await conn.fetch(q_items, owner)
            finally:
                await conn.close()

        resp, items = asyncio.run(read())
    out: dict[str, Stored] = {
        rid: {"prev": prev, "body": _json(body), "items": []} for rid, prev, body in resp
    }
    for rid, output, position, item_id in items:
        entry = out.setdefault(rid, {"prev": None, "body": None, "items": []})
        entry["items"].append((bool(output), position, item_id))
    return out


async def respond(c: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any] | None:
    """The final response if the client got a complete answer (a 200 body, or a stream
    that reached response.completed/incomplete), else None."""
    if not body.get("stream"):
        r = await c.post("/v1/responses", json=body)
        return r.json() if r.status_code == 200 else None
    final = None
    async with c.stream("POST", "/v1/responses", json=body) as r:
        if r.status_code != 200:
            return None
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                if event["type"] in ("response.completed", "response.incomplete"):
                    final = event["response"]
    return final


class Conversations:
    """``n`` clients at once, each a stored response and, for every other one, a stored
    follow-up by previous_response_id; some streamed, some whole."""

    FOLLOW = [
        {"role": "user", "content": "Now count backwards."},
        {"role": "user", "content": "Slowly."},
    ]

    def __init__(self, n: int) -> None:
        self.n = n
        # id -> (the final response the client got, the number of input items it sent)
        self.answered: dict[str, tuple[dict[str, Any], int]] = {}
        self.followed = 0  # follow-ups answered

    async def one(self, c: httpx.AsyncClient, i: int) -> None:
        base = {"model": MODEL, "temperature": 0, "store": True}
        tokens = 16 + 6 * i  # the longest still running at the kill
        first = {**base, "instructions": "Be brief.", "input": f"Count to {i + 3}."}
        try:
            got = await respond(c, {**first, "max_output_tokens": tokens, "stream": i % 3 == 0})
            if got is None:
                return
            self.answered[got["id"]] = (got, 1)
            if i % 2:
                return
            then = {**base, "previous_response_id": got["id"], "input": self.FOLLOW}
            got = await respond(c, {**then, "max_output_tokens": tokens, "stream": i % 4 == 0})
            if got is not None:
                self.answered[got["id"]] = (got, len(self.FOLLOW))
                self.followed += 1
        except httpx.HTTPError:
            pass  # the server died under us: that is the point

    async def run_then_kill(self, srv: Server, headers: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=srv.base_url, headers=headers, timeout=60) as c:
            tasks = [asyncio.create_task(self.one(c, i)) for i in range(self.n)]
            # kill once a chain is acknowledged: the longest requests still generating
            await until(lambda: self.followed, "a first chain acknowledged", interval=0.05)
            srv.proc.kill()  # SIGKILL: no shutdown, no cleanup
            await asyncio.gather(*tasks)


def check_whole_records(rows: dict[str, Stored]) -> None:
    """Every stored response has all its output items (as many as its body's output) and
    its input items, positions without a gap; no item is without its response."""
    for rid, row in rows.items():
        assert row["body"] is not None, f"orphan items of {rid}: {row['items']}"
        body = row["body"]
        assert body["id"] == rid and body["status"] in ("completed", "incomplete")
        outputs = sorted(p for out, p, _ in row["items"] if out)
        inputs = sorted(p for out, p, _ in row["items"] if not out)
        assert outputs == list(range(len(body["output"]))), rid
        assert inputs and inputs == list(range(len(inputs))), rid
        assert row["prev"] == body["previous_response_id"]
        if row["prev"] is not None:  # a chain's link was committed before its follower
            assert row["prev"] in rows


def check_retrievable(c: httpx.Client, conv: Conversations, rows: dict[str, Stored]) -> None:
    for rid, (got, n_inputs) in conv.answered.items():
        r = c.get(f"/v1/responses/{rid}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert_valid("Response", body)
        assert body["output"] == got["output"] and body["status"] == got["status"]
        assert body["usage"] == got["usage"]
        items = c.get(f"/v1/responses/{rid}/input_items", params={"limit": 100}).json()
        assert len(items["data"]) == n_inputs == len(rows[rid]["items"]) - len(body["output"])
        assert all(i["type"] == "message" for i in items["data"])
    # the longest stored chain can still be continued
    tip = max(rows, key=lambda rid: rows[rid]["prev"] is not None)
    more = c.post(
        "/v1/responses",
        json={
            "model": MODEL,
            "previous_response_id": tip,
            "input": "Thanks.",
            "max_output_tokens": 16,
            "temperature": 0,
            "store": False,
        },
    )
    assert more.status_code == 200, more.text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_leaves_only_complete_stored_responses(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql" and not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    key = "sk-" + secrets.token_hex(12)  # a fresh owner: the PostgreSQL database is shared
    db_args = (
        ("--database-url", PG_URL) if backend == "postgresql" else ("--data-dir", str(tmp_path))
    )
    headers = {"Authorization": f"Bearer {key}"}
    conv = Conversations(12)
    srv = Server("--api-key", key, *db_args)
    owner = srv.owner_id()  # a static key's owner
    try:
        asyncio.run(conv.run_then_kill(srv, headers))
    finally:
        srv.stop()
    assert conv.followed, "the kill came before a chain was answered"
    assert len(conv.answered) < conv.n + conv.n // 2, "the kill came after everything was done"

    # In the database, as the kill left it: whole records only.
    rows = stored_rows(backend, tmp_path, owner)
    assert set(conv.answered) <= set(rows)  # everything acknowledged was kept
    check_whole_records(rows)

    # Through the API, restarted on the same database.
    srv2 = Server("--api-key", key, *db_args)
    try:
        with httpx.Client(base_url=srv2.base_url, headers=headers, timeout=60) as c:
            check_retrievable(c, conv, rows)
    finally:
        srv2.stop()

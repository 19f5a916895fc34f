"""API keys kept in the database (made with `chatd keys`, run in-process), and usage
accounting (`chatd usage`), on SQLite and on PostgreSQL, in-process over the real app."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from openapi_schemas import assert_valid

from .harness import MODEL, PG_URL, Chatd, postgres_reachable, run_cli, running_chatd


class Keys:
    def __init__(self, db_args: tuple[str, ...]) -> None:
        self.db_args = db_args

    def cli(self, *args: str) -> str:
        code, out, err = run_cli(*args, *self.db_args)
        assert code == 0, err
        return out

    async def acli(self, *args: str) -> str:
        return await asyncio.to_thread(self.cli, *args)

    def create(self, name: str, *extra: str) -> tuple[str, str]:
        out = self.cli("keys", "create", "--name", name, *extra)
        key_id = re.search(r"id:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        key = re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        return key_id, key


Setup = tuple[Keys, dict[str, tuple[str, str]], Chatd]


async def usage_row(keys: Keys, key_id: str, requests: int) -> list[str]:
    """The key's row of `chatd usage`, once it counts ``requests`` (usage is written
    by a buffer, a moment after the answers)."""
    deadline = time.monotonic() + 120  # a guard against a hang, never reached
    while True:
        out = await keys.acli("usage", "--key", key_id)
        row = [ln.split() for ln in out.splitlines() if key_id in ln]
        if row and int(row[0][3]) == requests or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert row, out
    return row[0]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Setup]:
    tmp = tmp_path_factory.mktemp("keys")
    url = None
    if request.param == "postgresql":
        if not postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
        url = PG_URL
        db_args: tuple[str, ...] = ("--database-url", PG_URL)
    else:
        db_args = ("--data-dir", str(tmp))
    keys = Keys(db_args)
    made = {
        "limited": keys.create("limited", "--models", MODEL),
        "elsewhere": keys.create("elsewhere", "--models", "some-other-model"),
        "expired": keys.create("expired", "--expires", "2020-01-01"),
        "revoked": keys.create("revoked"),
        "free": keys.create("free"),
    }
    keys.cli("keys", "revoke", made["revoked"][0])
    async with running_chatd(tmp, api_keys=[], database_url=url) as chatd:
        yield keys, made, chatd


async def call(
    chatd: Chatd, key: str | None, path: str = "/v1/chat/completions", **body: object
) -> httpx.Response:
    http = chatd.http(key)
    if path.endswith("completions") and not body.get("_get"):
        payload = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            **body,
        }
        return await http.post(path, json=payload)
    return await http.get(path)


async def test_keys_are_required_and_checked(setup: Setup) -> None:
    _, made, chatd = setup
    assert (await call(chatd, made["free"][1])).status_code == 200
    missing = await call(chatd, None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] is None
    wrong = await call(chatd, "sk-chatd-not-a-key")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    for name, word in (("expired", "expired"), ("revoked", "revoked")):
        r = await call(chatd, made[name][1])
        assert r.status_code == 401, name
        assert_valid("ErrorResponse", r.json())
        assert (
            r.json()["error"]["code"] == "invalid_api_key" and word in r.json()["error"]["message"]
        )


async def test_model_limits(setup: Setup) -> None:
    _, made, chatd = setup
    assert (await call(chatd, made["limited"][1])).status_code == 200
    models = (await call(chatd, made["limited"][1], "/v1/models")).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    r = await call(chatd, made["elsewhere"][1])
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert (await call(chatd, made["elsewhere"][1], "/v1/models")).json()["data"] == []
    assert (await call(chatd, made["elsewhere"][1], f"/v1/models/{MODEL}")).status_code == 404
    states = (await call(chatd, made["limited"][1], "/chatd/models")).json()["data"]
    assert [m["id"] for m in states] == [MODEL]
    assert (await call(chatd, made["elsewhere"][1], "/chatd/models")).json()["data"] == []
    assert (await call(chatd, None, "/chatd/models")).status_code == 401


async def test_owners_are_keys(setup: Setup) -> None:
    _, made, chatd = setup
    stored = (await call(chatd, made["limited"][1], store=True)).json()
    mine = await call(chatd, made["limited"][1], f"/v1/chat/completions/{stored['id']}")
    assert mine.status_code == 200
    theirs = await call(chatd, made["free"][1], f"/v1/chat/completions/{stored['id']}")
    assert theirs.status_code == 404


async def test_usage_is_counted_per_key(setup: Setup) -> None:
    keys, made, chatd = setup
    key_id, key = await asyncio.to_thread(keys.create, "counted")
    totals = [0, 0]
    for _ in range(3):
        usage = (await call(chatd, key, max_tokens=3)).json()["usage"]
        totals[0] += usage["prompt_tokens"]
        totals[1] += usage["completion_tokens"]
    stream = await chatd.http(key).post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    last = [ln for ln in stream.text.splitlines() if ln.startswith("data: {")][-1]
    u = json.loads(last[6:])["usage"]
    totals[0] += u["prompt_tokens"]
    totals[1] += u["completion_tokens"]
    _day, owner, model, requests, prompt, completion, estimated = await usage_row(keys, key_id, 4)
    assert (owner, model, int(requests)) == (key_id, MODEL, 4)
    assert [int(prompt), int(completion)] == totals
    assert estimated == "0"  # chatd's own answers carry exact usage


async def test_keys_are_never_stored_or_logged_in_clear(setup: Setup) -> None:
    keys, made, chatd = setup
    listing = await keys.acli("keys", "list")
    for key_id, key in made.values():
        assert key_id in listing and key not in listing
        assert key not in chatd.log.text()
    states = {ln.split()[0]: ln.split()[1] for ln in listing.splitlines()[1:]}
    assert states[made["expired"][0]] == "expired"
    assert states[made["revoked"][0]] == "revoked"
    assert states[made["free"][0]] == "active"
    if "--data-dir" in keys.db_args:
        db = Path(keys.db_args[1]) / "chatd.db"
        raw = db.read_bytes() + (
            db.with_suffix(".db-wal").read_bytes() if db.with_suffix(".db-wal").exists() else b""
        )
        for _, key in made.values():
            assert key.encode() not in raw


async def test_responses_are_counted_and_owned(setup: Setup) -> None:
    """``/v1/responses`` counts usage per key like chat, and a stored response (and the
    chains continuing it) belongs to the key that made it."""
    keys, made, chatd = setup
    key_id, key = await asyncio.to_thread(keys.create, "responses")
    http = chatd.http(key)
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 16}
    first = (await http.post("/v1/responses", json=body)).json()
    streamed = await http.post("/v1/responses", json={**body, "stream": True})
    last = [ln for ln in streamed.text.splitlines() if ln.startswith("data: {")][-1]
    second = json.loads(last[6:])["response"]
    prompt = first["usage"]["input_tokens"] + second["usage"]["input_tokens"]
    row = await usage_row(keys, key_id, 2)
    assert (int(row[3]), int(row[4])) == (2, prompt)
    other = chatd.http(made["limited"][1])
    assert (await other.get(f"/v1/responses/{first['id']}")).status_code == 404
    assert (await other.get(f"/v1/responses/{first['id']}/input_items")).status_code == 404
    assert (await other.delete(f"/v1/responses/{first['id']}")).status_code == 404
    chained = await other.post("/v1/responses", json={**body, "previous_response_id": first["id"]})
    assert chained.status_code == 400
    assert chained.json()["error"]["code"] == "previous_response_not_found"
    assert (await http.get(f"/v1/responses/{first['id']}")).status_code == 200

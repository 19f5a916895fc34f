"""API keys kept in the database (`chatd keys`), and usage accounting (`chatd usage`),
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, Server
from openapi_schemas import assert_valid
from test_stored import PG_URL, _postgres_reachable

CHATD = str(Path(sys.executable).parent / "chatd")


class Keys:
    def __init__(self, db_args: tuple[str, ...]) -> None:
        self.db_args = db_args

    def cli(self, *args: str) -> str:
        r = subprocess.run(
            [CHATD, *args, *self.db_args], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    def create(self, name: str, *extra: str) -> tuple[str, str]:
        out = self.cli("keys", "create", "--name", name, *extra)
        key_id = re.search(r"id:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        key = re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        return key_id, key


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    if request.param == "postgresql":
        if not _postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
        db_args: tuple[str, ...] = ("--database-url", PG_URL)
    else:
        db_args = ("--data-dir", str(tmp_path_factory.mktemp("keys")))
    keys = Keys(db_args)
    made = {
        "limited": keys.create("limited", "--models", MODEL),
        "elsewhere": keys.create("elsewhere", "--models", "some-other-model"),
        "expired": keys.create("expired", "--expires", "2020-01-01"),
        "revoked": keys.create("revoked"),
        "free": keys.create("free"),
    }
    keys.cli("keys", "revoke", made["revoked"][0])
    server = Server(*db_args)
    yield keys, made, server
    server.stop()


def call(
    server: Server, key: str | None, path: str = "/v1/chat/completions", **body: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if path.endswith("completions") and not body.get("_get"):
        payload = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            **body,
        }
        return httpx.post(server.base_url + path, json=payload, headers=headers, timeout=60)
    return httpx.get(server.base_url + path, headers=headers, timeout=60)


def test_keys_are_required_and_checked(setup) -> None:  # type: ignore[no-untyped-def]
    _, made, server = setup
    assert call(server, made["free"][1]).status_code == 200
    missing = call(server, None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] is None
    wrong = call(server, "sk-chatd-not-a-key")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    for name, word in (("expired", "expired"), ("revoked", "revoked")):
        r = call(server, made[name][1])
        assert r.status_code == 401, name
        assert_valid("ErrorResponse", r.json())
        assert (
            r.json()["error"]["code"] == "invalid_api_key" and word in r.json()["error"]["message"]
        )


def test_model_limits(setup) -> None:  # type: ignore[no-untyped-def]
    _, made, server = setup
    assert call(server, made["limited"][1]).status_code == 200
    models = call(server, made["limited"][1], "/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    r = call(server, made["elsewhere"][1])
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert call(server, made["elsewhere"][1], "/v1/models").json()["data"] == []
    assert call(server, made["elsewhere"][1], f"/v1/models/{MODEL}").status_code == 404


def test_owners_are_keys(setup) -> None:  # type: ignore[no-untyped-def]
    _, made, server = setup
    stored = call(server, made["limited"][1], store=True).json()
    mine = call(server, made["limited"][1], f"/v1/chat/completions/{stored['id']}")
    assert mine.status_code == 200
    theirs = call(server, made["free"][1], f"/v1/chat/completions/{stored['id']}")
    assert theirs.status_code == 404


def test_usage_is_counted_per_key(setup) -> None:  # type: ignore[no-untyped-def]
    keys, made, server = setup
    key_id, key = keys.create("counted")
    totals = [0, 0]
    for _ in range(3):
        usage = call(server, key, max_tokens=3).json()["usage"]
        totals[0] += usage["prompt_tokens"]
        totals[1] += usage["completion_tokens"]
    stream = httpx.post(
        server.base_url + "/v1/chat/completions",
        timeout=60,
        headers={"Authorization": f"Bearer {key}"},
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
    deadline = time.monotonic() + 10
    while True:
        out = keys.cli("usage", "--key", key_id)
        row = [ln.split() for ln in out.splitlines() if key_id in ln]
        if row and int(row[0][3]) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row, out
    _day, owner, model, requests, prompt, completion, estimated = row[0]
    assert (owner, model, int(requests)) == (key_id, MODEL, 4)
    assert [int(prompt), int(completion)] == totals
    assert estimated == "0"  # chatd's own answers carry exact usage


def test_keys_are_never_stored_or_logged_in_clear(setup) -> None:  # type: ignore[no-untyped-def]
    keys, made, server = setup
    listing = keys.cli("keys", "list")
    for key_id, key in made.values():
        assert key_id in listing and key not in listing
        assert key not in server.log()
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

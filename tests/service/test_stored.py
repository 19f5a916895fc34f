"""Stored completions through the openai SDK and raw HTTP, on SQLite and on PostgreSQL,
in-process over the real app (the FakeEngine writes the answers)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openapi_schemas import assert_valid
from sse import astream

from .harness import MODEL, PG_URL, Chatd, postgres_reachable, running_chatd


class Backend:
    def __init__(self, name: str, chatd: Chatd, key: str, other_key: str) -> None:
        self.name = name
        self.chatd = chatd
        self.key = key
        self.http = chatd.http(key)
        self.client = chatd.sdk(key)
        self.other = chatd.sdk(other_key)

    async def create(self, tag: str, **kw: Any) -> dict[str, Any]:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Say {tag}"}],
            "max_tokens": 2,
            "store": True,
            "metadata": {"tag": tag},
            **kw,
        }
        r = await self.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    url = None
    if request.param == "postgresql":
        if not postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
        url = PG_URL
    # Fresh keys per run: owners are fresh, so a shared PostgreSQL holds no rows of
    # ours from earlier runs.
    key, other = "sk-" + secrets.token_hex(12), "sk-" + secrets.token_hex(12)
    tmp = tmp_path_factory.mktemp("stored")
    async with running_chatd(tmp, api_keys=[key, other], database_url=url) as chatd:
        yield Backend(request.param, chatd, key, other)


async def test_store_retrieve_messages(backend: Backend) -> None:
    made = await backend.create("alpha")
    got = (await backend.http.get(f"/v1/chat/completions/{made['id']}")).json()
    assert got == {**made, "metadata": {"tag": "alpha"}}
    assert_valid("CreateChatCompletionResponse", got)
    sdk = await backend.client.chat.completions.retrieve(made["id"])
    assert (
        sdk.id == made["id"]
        and sdk.choices[0].message.content == made["choices"][0]["message"]["content"]
    )
    msgs = await backend.client.chat.completions.messages.list(made["id"])
    assert [(m.id, m.role, m.content) for m in msgs.data] == [
        (f"{made['id']}-0", "user", "Say alpha")
    ]


async def test_streamed_store_is_the_assembled_completion(backend: Backend) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 6,
        "store": True,
        "n": 2,
    }
    s = await astream(backend.http, body)
    assert s.done
    cid = s.chunks[0]["id"]
    got = (await backend.http.get(f"/v1/chat/completions/{cid}")).json()
    assert [c["message"]["content"] for c in got["choices"]] == [s.content(0), s.content(1)]
    assert got["usage"]["completion_tokens"] > 0


async def test_not_stored_by_default(backend: Backend) -> None:
    r = await backend.http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
    )
    cid = r.json()["id"]
    assert (await backend.http.get(f"/v1/chat/completions/{cid}")).status_code == 404


async def test_list_filters_and_pagination(backend: Backend) -> None:
    tag = "page-" + secrets.token_hex(4)
    ids = [(await backend.create(tag))["id"] for _ in range(5)]

    async def page(**params: Any) -> dict[str, Any]:
        r = await backend.http.get("/v1/chat/completions", params={"metadata[tag]": tag, **params})
        assert r.status_code == 200, r.text
        data = r.json()
        assert_valid("ChatCompletionList", data)
        return data

    first = await page(limit=2)
    assert [d["id"] for d in first["data"]] == ids[:2] and first["has_more"]
    assert (first["first_id"], first["last_id"]) == (ids[0], ids[1])
    second = await page(limit=2, after=first["last_id"])
    assert [d["id"] for d in second["data"]] == ids[2:4] and second["has_more"]
    third = await page(limit=2, after=second["last_id"])
    assert [d["id"] for d in third["data"]] == ids[4:] and not third["has_more"]
    exact = await page(limit=5)
    assert len(exact["data"]) == 5 and not exact["has_more"]
    empty = await page(after=ids[-1])
    assert empty["data"] == [] and not empty["has_more"]
    desc = await page(order="desc")
    assert [d["id"] for d in desc["data"]] == ids[::-1]
    assert (await page(model="another-model"))["data"] == []
    assert len((await page(model=MODEL))["data"]) == 5
    sdk = backend.client.chat.completions.list(metadata={"tag": tag}, limit=2)
    assert [c.id async for c in sdk] == ids  # the SDK follows the cursor across pages


async def test_update_and_delete(backend: Backend) -> None:
    cid = (await backend.create("upd"))["id"]
    updated = await backend.client.chat.completions.update(cid, metadata={"a": "1", "b": "2"})
    assert updated.metadata == {"a": "1", "b": "2"}
    got = (await backend.http.get(f"/v1/chat/completions/{cid}")).json()
    assert got["metadata"] == {"a": "1", "b": "2"}
    listed = (await backend.http.get("/v1/chat/completions", params={"metadata[a]": "1"})).json()
    assert cid in [d["id"] for d in listed["data"]]
    assert not (
        await backend.http.get("/v1/chat/completions", params={"metadata[tag]": "upd"})
    ).json()["data"] or all(
        d["id"] != cid
        for d in (
            await backend.http.get("/v1/chat/completions", params={"metadata[tag]": "upd"})
        ).json()["data"]
    )
    deleted = (await backend.http.delete(f"/v1/chat/completions/{cid}")).json()
    assert deleted == {"object": "chat.completion.deleted", "id": cid, "deleted": True}
    assert_valid("ChatCompletionDeleted", deleted)
    for method in ("get", "delete"):
        r = await backend.http.request(method, f"/v1/chat/completions/{cid}")
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert (await backend.http.get(f"/v1/chat/completions/{cid}/messages")).status_code == 404


async def test_owner_isolation(backend: Backend) -> None:
    cid = (await backend.create("mine"))["id"]
    with pytest.raises(openai.NotFoundError):
        await backend.other.chat.completions.retrieve(cid)
    with pytest.raises(openai.NotFoundError):
        await backend.other.chat.completions.update(cid, metadata={"x": "y"})
    with pytest.raises(openai.NotFoundError):
        await backend.other.chat.completions.delete(cid)
    with pytest.raises(openai.NotFoundError):
        await backend.other.chat.completions.messages.list(cid)
    assert cid not in [c.id async for c in backend.other.chat.completions.list()]
    assert (await backend.client.chat.completions.retrieve(cid)).id == cid  # untouched


@pytest.mark.parametrize(
    ("path", "params", "param", "code"),
    [
        ("/v1/chat/completions", {"limit": 0}, "limit", "integer_below_min_value"),
        ("/v1/chat/completions", {"limit": 101}, "limit", "integer_above_max_value"),
        ("/v1/chat/completions", {"limit": "many"}, "limit", "invalid_type"),
        ("/v1/chat/completions", {"order": "up"}, "order", "invalid_value"),
        ("/v1/chat/completions", {"colour": "red"}, "colour", None),
    ],
)
async def test_bad_list_parameters(
    backend: Backend, path: str, params: dict, param: str, code: str | None
) -> None:
    r = await backend.http.get(path, params=params)
    assert r.status_code == 400, r.text
    assert_valid("ErrorResponse", r.json())
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, code)


async def test_bad_ids_and_update_bodies(backend: Backend) -> None:
    assert (await backend.http.get("/v1/chat/completions/chatcmpl-nope")).status_code == 404
    assert (
        await backend.http.get("/v1/chat/completions", params={"after": "nope"})
    ).status_code == 404
    cid = (await backend.create("bad"))["id"]
    for payload, param in (
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65),
        ({"metadata": {"k": 5}}, "metadata.k"),
        ({"colour": "red"}, None),
        ({}, "metadata"),
    ):
        r = await backend.http.post(f"/v1/chat/completions/{cid}", json=payload)
        assert r.status_code == 400, (payload, r.text)
        assert r.json()["error"]["param"] == param, payload
    r = await backend.http.post(
        f"/v1/chat/completions/{cid}",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400


async def test_concurrent_stores(backend: Backend) -> None:
    tag = "conc-" + secrets.token_hex(4)
    async with backend.chatd.http(backend.key) as c:
        bodies = [
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"n {i}"}],
                "max_tokens": 2,
                "store": True,
                "metadata": {"tag": tag},
            }
            for i in range(8)
        ]
        results = await asyncio.gather(*[c.post("/v1/chat/completions", json=b) for b in bodies])
    assert all(r.status_code == 200 for r in results)
    listed = (
        await backend.http.get("/v1/chat/completions", params={"metadata[tag]": tag, "limit": 100})
    ).json()
    assert sorted(d["id"] for d in listed["data"]) == sorted(r.json()["id"] for r in results)


async def test_a_failure_to_store_is_reported(tmp_path: Path) -> None:
    """A stored completion that cannot be written is an error, streamed or not; a stream
    ends with an error event and no [DONE]."""
    key = "sk-" + secrets.token_hex(12)
    async with running_chatd(tmp_path, api_keys=[key]) as chatd:
        with sqlite3.connect(tmp_path / "chatd.db") as conn:  # sabotage the schema
            conn.execute("DROP TABLE stored_messages")
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2,
            "store": True,
        }
        c = chatd.http(key)
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "server_error"
        assert "could not be stored" in r.json()["error"]["message"]
        s = await c.post("/v1/chat/completions", json={**body, "stream": True})
        events = [ln for ln in s.text.splitlines() if ln.startswith("data: ")]
        assert events[-1] != "data: [DONE]"
        assert "could not be stored" in events[-1]
        assert (await c.get("/v1/chat/completions")).json()["data"] == []  # nothing half-kept
        plain = await c.post("/v1/chat/completions", json={**body, "store": False})
        assert plain.status_code == 200  # not storing still works

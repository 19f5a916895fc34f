"""Stored completions through the openai SDK and raw HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import MODEL, Server
from openapi_schemas import assert_valid
from sse import stream

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


class Backend:
    def __init__(self, name: str, *args: str) -> None:
        # Fresh keys per run: owners are fresh, so a shared PostgreSQL holds no rows of
        # ours from earlier runs.
        self.key = "sk-" + secrets.token_hex(12)
        self.other_key = "sk-" + secrets.token_hex(12)
        self.name = name
        self.server = Server("--api-key", self.key, "--api-key", self.other_key, *args)
        self.client = self.sdk(self.key)
        self.other = self.sdk(self.other_key)
        self.http = httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=120,
        )

    def sdk(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.server.base_url + "/v1", api_key=key, max_retries=0)

    def create(self, tag: str, **kw: Any) -> dict[str, Any]:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Say {tag}"}],
            "max_tokens": 2,
            "store": True,
            "metadata": {"tag": tag},
            **kw,
        }
        r = self.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def close(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "postgresql":
        if not _postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
        b = Backend("postgresql", "--database-url", PG_URL)
    else:
        b = Backend("sqlite")
    yield b
    b.close()


def test_store_retrieve_messages(backend: Backend) -> None:
    made = backend.create("alpha")
    got = backend.http.get(f"/v1/chat/completions/{made['id']}").json()
    assert got == {**made, "metadata": {"tag": "alpha"}}
    assert_valid("CreateChatCompletionResponse", got)
    sdk = backend.client.chat.completions.retrieve(made["id"])
    assert (
        sdk.id == made["id"]
        and sdk.choices[0].message.content == made["choices"][0]["message"]["content"]
    )
    msgs = backend.client.chat.completions.messages.list(made["id"])
    assert [(m.id, m.role, m.content) for m in msgs.data] == [
        (f"{made['id']}-0", "user", "Say alpha")
    ]


def test_streamed_store_is_the_assembled_completion(backend: Backend) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 6,
        "store": True,
        "n": 2,
    }
    s = stream(backend.http, body)
    assert s.done
    cid = s.chunks[0]["id"]
    got = backend.http.get(f"/v1/chat/completions/{cid}").json()
    assert [c["message"]["content"] for c in got["choices"]] == [s.content(0), s.content(1)]
    assert got["usage"]["completion_tokens"] > 0


def test_not_stored_by_default(backend: Backend) -> None:
    r = backend.http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
    )
    cid = r.json()["id"]
    assert backend.http.get(f"/v1/chat/completions/{cid}").status_code == 404


def test_list_filters_and_pagination(backend: Backend) -> None:
    tag = "page-" + secrets.token_hex(4)
    ids = [backend.create(tag)["id"] for _ in range(5)]

    def page(**params: Any) -> dict[str, Any]:
        r = backend.http.get("/v1/chat/completions", params={"metadata[tag]": tag, **params})
        assert r.status_code == 200, r.text
        data = r.json()
        assert_valid("ChatCompletionList", data)
        return data

    first = page(limit=2)
    assert [d["id"] for d in first["data"]] == ids[:2] and first["has_more"]
    assert (first["first_id"], first["last_id"]) == (ids[0], ids[1])
    second = page(limit=2, after=first["last_id"])
    assert [d["id"] for d in second["data"]] == ids[2:4] and second["has_more"]
    third = page(limit=2, after=second["last_id"])
    assert [d["id"] for d in third["data"]] == ids[4:] and not third["has_more"]
    exact = page(limit=5)
    assert len(exact["data"]) == 5 and not exact["has_more"]
    empty = page(after=ids[-1])
    assert empty["data"] == [] and not empty["has_more"]
    desc = page(order="desc")
    assert [d["id"] for d in desc["data"]] == ids[::-1]
    assert page(model="another-model")["data"] == []
    assert len(page(model=MODEL)["data"]) == 5
    sdk = backend.client.chat.completions.list(metadata={"tag": tag}, limit=2)
    assert [c.id for c in sdk] == ids  # the SDK follows the cursor across pages


def test_update_and_delete(backend: Backend) -> None:
    cid = backend.create("upd")["id"]
    updated = backend.client.chat.completions.update(cid, metadata={"a": "1", "b": "2"})
    assert updated.metadata == {"a": "1", "b": "2"}
    got = backend.http.get(f"/v1/chat/completions/{cid}").json()
    assert got["metadata"] == {"a": "1", "b": "2"}
    listed = backend.http.get("/v1/chat/completions", params={"metadata[a]": "1"}).json()
    assert cid in [d["id"] for d in listed["data"]]
    assert not backend.http.get("/v1/chat/completions", params={"metadata[tag]": "upd"}).json()[
        "data"
    ] or all(
        d["id"] != cid
        for d in backend.http.get("/v1/chat/completions", params={"metadata[tag]": "upd"}).json()[
            "data"
        ]
    )
    deleted = backend.http.delete(f"/v1/chat/completions/{cid}").json()
    assert deleted == {"object": "chat.completion.deleted", "id": cid, "deleted": True}
    assert_valid("ChatCompletionDeleted", deleted)
    for method in ("get", "delete"):
        r = backend.http.request(method, f"/v1/chat/completions/{cid}")
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    assert backend.http.get(f"/v1/chat/completions/{cid}/messages").status_code == 404


def test_owner_isolation(backend: Backend) -> None:
    cid = backend.create("mine")["id"]
    with pytest.raises(openai.NotFoundError):
        backend.other.chat.completions.retrieve(cid)
    with pytest.raises(openai.NotFoundError):
        backend.other.chat.completions.update(cid, metadata={"x": "y"})
    with pytest.raises(openai.NotFoundError):
        backend.other.chat.completions.delete(cid)
    with pytest.raises(openai.NotFoundError):
        backend.other.chat.completions.messages.list(cid)
    assert cid not in [c.id for c in backend.other.chat.completions.list()]
    assert backend.client.chat.completions.retrieve(cid).id == cid  # untouched


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
def test_bad_list_parameters(
    backend: Backend, path: str, params: dict, param: str, code: str | None
) -> None:
    r = backend.http.get(path, params=params)
    assert r.status_code == 400, r.text
    assert_valid("ErrorResponse", r.json())
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, code)


def test_bad_ids_and_update_bodies(backend: Backend) -> None:
    assert backend.http.get("/v1/chat/completions/chatcmpl-nope").status_code == 404
    assert backend.http.get("/v1/chat/completions", params={"after": "nope"}).status_code == 404
    cid = backend.create("bad")["id"]
    for payload, param in (
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65),
        ({"metadata": {"k": 5}}, "metadata.k"),
        ({"colour": "red"}, None),
        ({}, "metadata"),
    ):
        r = backend.http.post(f"/v1/chat/completions/{cid}", json=payload)
        assert r.status_code == 400, (payload, r.text)
        assert r.json()["error"]["param"] == param, payload
    r = backend.http.post(f"/v1/chat/completions/{cid}", content=b"{nope")
    assert r.status_code == 400


async def test_concurrent_stores(backend: Backend) -> None:
    tag = "conc-" + secrets.token_hex(4)
    async with httpx.AsyncClient(
        base_url=backend.server.base_url,
        timeout=120,
        headers={"Authorization": f"Bearer {backend.key}"},
    ) as c:
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
    listed = backend.http.get(
        "/v1/chat/completions", params={"metadata[tag]": tag, "limit": 100}
    ).json()
    assert sorted(d["id"] for d in listed["data"]) == sorted(r.json()["id"] for r in results)

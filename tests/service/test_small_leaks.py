"""Small leaks and 500s (docs/security.md), each attacked over HTTP with the operator's key
and with clients' keys, on SQLite and on PostgreSQL (a fresh database per run), in-process
over the real app:

- JSON nested too deeply is a 400 naming the field on every route that reads a JSON body
  (chat create, stored completion update, responses create), never a RecursionError 500;
- a list query holds at most 16 metadata filters (each within a metadata pair's bounds),
  and no ``after`` or ``model`` longer than the columns they are compared with;
- ids a Responses request carries are capped at their columns' widths, and an item that
  came without one is stored with one;
- metadata keys (64) and values (512) fit their columns, and longer ones are 400s;
- ``/health`` says only ``ok`` without a valid key, a key's own models with one;
- a per-model rate limit holds whatever id names the model, and a key limited to some ids
  reaches no other through an alias."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from openapi_schemas import assert_valid

from chatd.protocol.validation import MAX_DEPTH

from .harness import (
    MODEL,
    Chatd,
    Upstream,
    fake_upstream,
    own_pg_database,
    postgres_reachable,
    running_chatd,
)
from .test_drain import drain_of
from .test_rate_limits import assert_limited

ALIAS = "gpt-4o-mini"  # a second public id of MODEL
OTHER = "other-model"  # a second local model
RELAYED = "via-responses"  # served only by a channel speaking the Responses API
OPERATOR = "sk-operator-" + secrets.token_hex(8)
HI = [{"role": "user", "content": "Hi"}]


def config(upstream: str) -> str:
    return (
        f'[[models]]\nid = "{MODEL}"\naliases = ["{ALIAS}"]\n'
        f'[[models]]\nid = "{OTHER}"\n'
        f'[[channels]]\nname = "native"\nbase_url = "{upstream}"\napi = "responses"\n'
        f'models = [{{id = "{RELAYED}", upstream = "ok"}}]\n'
    )


def nested(depth: int) -> Any:
    """A JSON value ``depth`` levels deep (objects of one key, then arrays)."""
    value: Any = []
    for i in range(depth - 1):
        value = {"a": value} if i % 2 else [value]
    return value


def deep_text(depth: int) -> str:
    """Like ``nested`` but as text: json.dumps itself cannot write 5,000 levels."""
    return "[" * depth + "]" * depth


@dataclass
class Backend:
    name: str
    chatd: Chatd
    keys: dict[str, str]  # who -> key: operator, client (any model), mine (MODEL), alias

    def http(self, who: str | None) -> httpx.AsyncClient:
        return self.chatd.http(None if who is None else self.keys[who])

    def key(self, *flags: str) -> str:
        """A new client key (``chatd keys create`` on this backend's database)."""
        code, out, err = self.chatd.cli("keys", "create", "--name", "k", *flags)
        assert code == 0, err
        return out.split("key:")[1].split()[0]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with fake_upstream() as fake:
        yield fake


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstream: Upstream
) -> AsyncIterator[Backend]:
    tmp = tmp_path_factory.mktemp("leaks")
    toml = config(upstream.url + "/v1")
    if request.param == "sqlite":
        async with running_chatd(tmp, api_keys=[OPERATOR], config=toml) as chatd:
            yield with_keys("sqlite", chatd)
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    # A database of its own: the shared one may be at another branch's migration.
    async with (
        own_pg_database("chatd_leaks_") as url,
        running_chatd(tmp, api_keys=[OPERATOR], config=toml, database_url=url) as c,
    ):
        yield with_keys("postgresql", c)


def with_keys(name: str, chatd: Chatd) -> Backend:
    backend = Backend(name, chatd, {"operator": OPERATOR})
    backend.keys["client"] = backend.key()
    backend.keys["mine"] = backend.key("--models", MODEL)
    backend.keys["alias"] = backend.key("--models", ALIAS)
    return backend


def assert_refused(r: httpx.Response, param: str | None, code: str | None = None) -> None:
    assert r.status_code == 400, r.text
    assert_valid("ErrorResponse", r.json())
    error = r.json()["error"]
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error


# --------------------------------------------------------------------------------------------
# JSON nested too deeply
# --------------------------------------------------------------------------------------------


async def post_text(http: httpx.AsyncClient, path: str, body: str) -> httpx.Response:
    return await http.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("who", ["operator", "client"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 5_000])
async def test_a_deep_body_is_a_400_on_every_json_route(
    backend: Backend, who: str, depth: int
) -> None:
    http = backend.http(who)
    made = await http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": HI, "store": True}
    )
    assert made.status_code == 200, made.text
    deep = deep_text(depth - 1)  # a field's value: the body is level 1
    cases = [
        ("/v1/chat/completions", f'{{"model": "{MODEL}", "messages": {deep}}}', "messages"),
        ("/v1/chat/completions", f'{{"model": "{MODEL}", "messages": [], "tools": {deep}}}',
         "tools"),
        ("/v1/chat/completions", f'{{"model": "{RELAYED}", "messages": {deep}}}', "messages"),
        (f"/v1/chat/completions/{made.json()['id']}", f'{{"metadata": {deep}}}', "metadata"),
        ("/v1/responses", f'{{"model": "{MODEL}", "input": {deep}}}', "input"),
        ("/v1/responses", f'{{"model": "{RELAYED}", "text": {deep}}}', "text"),
    ]  # fmt: skip
    for path, body, param in cases:
        assert_refused(await post_text(http, path, body), param, "invalid_value")


async def test_json_as_deep_as_allowed_is_served(backend: Backend) -> None:
    """A JSON schema nested as deep as a body may be goes through jsonschema's check and
    the grammar without meeting the recursion limit; so do deep tool-call arguments,
    which are JSON in a string (kept as the string when too deep to be walked)."""
    http = backend.http("client")
    schema: dict[str, Any] = {"type": "string"}
    for _ in range((MAX_DEPTH - 5) // 2):  # body, response_format, json_schema, schema
        schema = {"type": "object", "properties": {"a": schema}}
    body = {
        "model": MODEL,
        "messages": HI,
        "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": schema}},
    }
    r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    for arguments in (deep_text(5_000), deep_text(MAX_DEPTH + 1), deep_text(MAX_DEPTH - 1)):
        call["function"]["arguments"] = arguments
        messages = [
            *HI,
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ]
        r = await http.post("/v1/chat/completions", json={"model": MODEL, "messages": messages})
        assert r.status_code == 200, r.text


# --------------------------------------------------------------------------------------------
# List queries
# --------------------------------------------------------------------------------------------


def filters(n: int, prefix: str = "k") -> str:
    return "&".join(f"metadata[{prefix}{i}]=v{i}" for i in range(n))


@pytest.mark.parametrize("who", ["operator", "client"])
async def test_sixteen_metadata_filters_and_no_more(backend: Backend, who: str) -> None:
    http = backend.http(who)
    tag = secrets.token_hex(4)
    metadata = {f"{tag}{i}": f"v{i}" for i in range(16)}
    made = await http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": HI, "store": True, "metadata": metadata},
    )
    assert made.status_code == 200, made.text
    found = await http.get(f"/v1/chat/completions?{filters(16, tag)}")
    assert found.status_code == 200, found.text
    assert [c["id"] for c in found.json()["data"]] == [made.json()["id"]]
    assert_refused(
        await http.get(f"/v1/chat/completions?{filters(17, tag)}"),
        "metadata",
        "object_above_max_properties",
    )
    status, body = await raw_get(backend, who, "/v1/chat/completions", filters(5_000, tag))
    assert status == 400, body
    assert body["error"]["param"] == "metadata", body


async def raw_get(backend: Backend, who: str, path: str, query: str) -> tuple[int, Any]:
    """A GET straight to the ASGI app: httpx refuses to build a URL this long (a server
    may well take one: uvicorn with httptools reads any)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"authorization", f"Bearer {backend.keys[who]}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("chatd", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await backend.chatd.app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [
        (f"metadata[{'k' * 65}]=v", "metadata", "property_name_above_max_length"),
        (f"metadata[k]={'v' * 513}", "metadata[k]", "string_above_max_length"),
        (f"after={'x' * 257}", "after", "string_above_max_length"),
        (f"model={'m' * 257}", "model", "string_above_max_length"),
        ("metadata[k]=a&metadata[k]=b", "metadata[k]", None),
    ],
    ids=["key", "value", "after", "model", "duplicate"],
)
async def test_list_query_strings_within_their_columns(
    backend: Backend, query: str, param: str, code: str | None
) -> None:
    r = await backend.http("client").get(f"/v1/chat/completions?{query}")
    assert_refused(r, param, code)


async def test_list_query_strings_as_long_as_allowed(backend: Backend) -> None:
    """At the bounds, compared with the columns (PostgreSQL included): no match, no 500."""
    http = backend.http("client")
    r = await http.get(f"/v1/chat/completions?metadata[{'k' * 64}]={'v' * 512}&model={'m' * 256}")
    assert r.status_code == 200 and r.json()["data"] == [], r.text
    r = await http.get(f"/v1/chat/completions?after={'x' * 256}")
    assert r.status_code == 404 and r.json()["error"]["param"] == "after", r.text


async def test_input_items_after_within_its_column(backend: Backend) -> None:
    http = backend.http("client")
    made = await http.post("/v1/responses", json={"model": MODEL, "input": "Hi"})
    assert made.status_code == 200, made.text
    items = f"/v1/responses/{made.json()['id']}/input_items"
    assert_refused(await http.get(f"{items}?after={'x' * 257}"), "after")
    r = await http.get(f"{items}?after={'x' * 256}")  # names no item: nothing after it
    assert r.status_code == 200 and r.json()["data"] == [], r.text


async def test_overlong_ids_in_paths_are_404s(backend: Backend) -> None:
    """Ids in a path are only compared with their columns: any length is a plain 404."""
    http = backend.http("client")
    long = "x" * 5_000
    for method, path in [
        ("GET", f"/v1/chat/completions/{long}"),
        ("DELETE", f"/v1/chat/completions/{long}"),
        ("GET", f"/v1/chat/completions/{long}/messages"),
        ("GET", f"/v1/responses/{long}"),
        ("DELETE", f"/v1/responses/{long}"),
        ("GET", f"/v1/responses/{long}/input_items"),
    ]:
        r = await http.request(method, path)
        assert r.status_code == 404, (method, r.text)
    r = await http.post(f"/v1/chat/completions/{long}", json={"metadata": {}})
    assert r.status_code == 404, r.text


# --------------------------------------------------------------------------------------------
# Ids and metadata within their columns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"role": "user", "content": "Hi", "id": "m" * 257}, "input[0].id"),
        ({"type": "item_reference", "id": "i" * 257}, "input[0].id"),
        ({"id": "i" * 257}, "input[0].id"),
        (
            {"type": "function_call", "call_id": "c" * 65, "name": "f", "arguments": "{}"},
            "input[0].call_id",
        ),
        (
            {
                "type": "function_call",
                "call_id": "c",
                "name": "f",
                "arguments": "{}",
                "id": "f" * 257,
            },
            "input[0].id",
        ),
        ({"type": "function_call_output", "call_id": "c" * 65, "output": "x"}, "input[0].call_id"),
        ({"type": "reasoning", "summary": [], "id": "r" * 257}, "input[0].id"),
        ({"type": "reasoning", "summary": [], "id": 7}, "input[0].id"),
    ],  # fmt: skip
    ids=[
        "message",
        "reference",
        "bare-reference",
        "call",
        "call-id",
        "output",
        "other",
        "other-not-a-string",
    ],  # fmt: skip
)
@pytest.mark.parametrize("model", [MODEL, RELAYED])
async def test_overlong_item_ids_are_400s(
    backend: Backend, item: dict[str, Any], param: str, model: str
) -> None:
    r = await backend.http("client").post("/v1/responses", json={"model": model, "input": [item]})
    assert_refused(r, param)


async def test_overlong_previous_response_id_is_a_400(backend: Backend) -> None:
    body = {"model": MODEL, "input": "Hi", "previous_response_id": "resp_" + "0" * 60}
    r = await backend.http("client").post("/v1/responses", json=body)
    assert_refused(r, "previous_response_id", "string_above_max_length")


@pytest.mark.parametrize("model", [MODEL, RELAYED])
async def test_ids_as_long_as_allowed_are_stored(backend: Backend, model: str) -> None:
    """The longest ids the contract accepts fit the columns they are stored in; an item
    of a type chatd does not act on, sent without an id, is stored with one (it was a
    KeyError 500 on a relayed request)."""
    http = backend.http("client")
    items: list[dict[str, Any]] = [
        {"role": "user", "content": "Hi", "id": "m" * 256},
        {"type": "function_call", "call_id": "c" * 64, "name": "f", "arguments": "{}",
         "id": "f" * 256},
        {"type": "function_call_output", "call_id": "c" * 64, "output": "x", "id": "o" * 256},
    ]  # fmt: skip
    if model == RELAYED:
        items.insert(0, {"type": "reasoning", "summary": []})
    r = await http.post("/v1/responses", json={"model": model, "input": items})
    assert r.status_code == 200, r.text
    listed = await http.get(f"/v1/responses/{r.json()['id']}/input_items?order=asc")
    assert listed.status_code == 200, listed.text
    ids = [i["id"] for i in listed.json()["data"]]
    assert ids[-3:] == ["m" * 256, "f" * 256, "o" * 256]
    if model == RELAYED:
        assert ids[0].startswith("item_")
    again = await http.post(
        "/v1/responses",
        json={"model": model, "input": [{"type": "item_reference", "id": "m" * 256}]},
    )
    assert again.status_code == 200, again.text


@pytest.mark.parametrize("path", ["create", "update"])
async def test_metadata_fits_its_columns(backend: Backend, path: str) -> None:
    http = backend.http("client")
    made = await http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": HI, "store": True}
    )
    longest = {"k" * 64: "v" * 512}

    async def send(metadata: dict[str, str]) -> httpx.Response:
        if path == "create":
            body = {"model": MODEL, "messages": HI, "store": True, "metadata": metadata}
            return await http.post("/v1/chat/completions", json=body)
        url = f"/v1/chat/completions/{made.json()['id']}"
        return await http.post(url, json={"metadata": metadata})

    r = await send(longest)
    assert r.status_code == 200, r.text
    stored = await http.get(f"/v1/chat/completions/{r.json()['id']}")
    assert stored.json()["metadata"] == longest
    found = await http.get(f"/v1/chat/completions?metadata[{'k' * 64}]={quote('v' * 512)}")
    assert r.json()["id"] in [c["id"] for c in found.json()["data"]]
    assert_refused(await send({"k" * 65: "v"}), f"metadata.{'k' * 65}")
    assert_refused(await send({"k": "v" * 513}), "metadata.k", "string_above_max_length")
    too_many = {f"k{i}": "v" for i in range(17)}
    assert_refused(await send(too_many), "metadata", "object_above_max_properties")


# --------------------------------------------------------------------------------------------
# /health
# --------------------------------------------------------------------------------------------


async def test_health_without_a_valid_key_says_only_ok(backend: Backend) -> None:
    for key in (None, "sk-wrong-" + secrets.token_hex(8)):
        r = await backend.chatd.http(key).get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text


@pytest.mark.parametrize(
    ("who", "models"),
    [
        ("operator", {MODEL, OTHER}),
        ("client", {MODEL, OTHER}),
        ("mine", {MODEL}),
        ("alias", set()),  # the alias is no local model's id: no row names what it stands for
    ],
)
async def test_health_shows_a_key_its_own_models(
    backend: Backend, who: str, models: set[str]
) -> None:
    r = await backend.http(who).get("/health")
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"status", "models"} and r.json()["status"] == "ok"
    assert set(r.json()["models"]) == models
    for row in r.json()["models"].values():
        # engine statistics count every owner's work: the operator's alone
        assert row["loaded"] is True and ("running_requests" in row) == (who == "operator")


async def test_health_while_draining(tmp_path: Path) -> None:
    """503 ``draining`` for everyone (load balancers send no key); the requests in flight
    only to the operator, models only to keys."""
    async with running_chatd(tmp_path, api_keys=[OPERATOR]) as chatd:
        client = Backend("sqlite", chatd, {}).key("--models", MODEL)
        drain_of(chatd).begin()
        bodies = {}
        for who, key in (("none", None), ("client", client), ("operator", OPERATOR)):
            r = await chatd.http(key).get("/health")
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            bodies[who] = r.json()
        assert bodies["none"] == {"status": "draining"}
        assert set(bodies["client"]) == {"status", "models"}
        assert set(bodies["client"]["models"]) == {MODEL}
        assert bodies["operator"]["in_flight"] == 0 and set(bodies["operator"]["models"]) == {MODEL}


async def test_health_does_not_fail_with_the_key_store(tmp_path: Path) -> None:
    """/health with no key never touched the database, and a key store that fails (the
    database down) still leaves it a liveness answer, not a 500."""
    async with running_chatd(tmp_path, api_keys=[]) as chatd:  # database keys only
        store = chatd.app.state.services.auth._store

        async def down(*args: object) -> object:
            raise ConnectionError("database down")

        store.any = store.find = down
        for key in (None, "sk-any-" + secrets.token_hex(8)):
            r = await chatd.http(key).get("/health")
            assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text


# --------------------------------------------------------------------------------------------
# Rate limits and aliases
# --------------------------------------------------------------------------------------------


async def ask(backend: Backend, key: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": HI, "max_tokens": 2}
    return await backend.chatd.http(key).post("/v1/chat/completions", json=body)


@pytest.mark.parametrize("limited", [MODEL, ALIAS])
@pytest.mark.parametrize("first", [MODEL, ALIAS])
@pytest.mark.usefixtures("still_minute")
async def test_an_alias_is_no_way_around_a_models_limit(
    backend: Backend, limited: str, first: str
) -> None:
    key = backend.key("--rpm", "10", "--model-limit", f"{limited}:rpm=1")
    assert (await ask(backend, key, first)).status_code == 200
    for model in (MODEL, ALIAS):
        r = await ask(backend, key, model)
        assert_limited(r, "requests")
        assert r.json()["error"]["message"].startswith(
            f"Rate limit reached for {model} on requests per min (RPM): Limit 1, Used 1."
        )
    # another model has its own window, and the refusals counted in none
    assert (await ask(backend, key, OTHER)).status_code == 200


@pytest.mark.usefixtures("still_minute")
async def test_the_strictest_limit_given_under_any_id_holds(backend: Backend) -> None:
    key = backend.key("--model-limit", f"{MODEL}:rpm=5", "--model-limit", f"{ALIAS}:rpm=2")
    assert [(await ask(backend, key, m)).status_code for m in (ALIAS, MODEL)] == [200, 200]
    assert_limited(await ask(backend, key, MODEL), "requests")


@pytest.mark.parametrize(
    ("who", "allowed", "refused"),
    [("mine", MODEL, ALIAS), ("alias", ALIAS, MODEL)],
)
async def test_a_key_reaches_only_the_ids_it_is_given(
    backend: Backend, who: str, allowed: str, refused: str
) -> None:
    """A key given one id of a model is not given its aliases (nor the model's own id):
    an id is what the operator grants, and a routed id may reach channels too."""
    http = backend.http(who)
    listed = await http.get("/v1/models")
    assert [m["id"] for m in listed.json()["data"]] == [allowed]
    assert (await ask(backend, backend.keys[who], allowed)).status_code == 200
    for model in (refused, OTHER, RELAYED):
        r = await ask(backend, backend.keys[who], model)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
        r = await http.post("/v1/responses", json={"model": model, "input": "Hi"})
        assert r.status_code == 404, r.text

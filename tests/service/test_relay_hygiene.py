"""What a relayed request carries upstream, under the operator's key (docs/gateway.md
"Relay hygiene"), attacked over HTTP with two database keys: in-process, the real app in
front of the fake upstream (tests/fakes/upstream.py, which records every body it got).

Only the fields OpenAI's API defines and the channel allows reach the upstream: the
client's ``store``, ``metadata``, ``user`` and ``safety_identifier`` never do (a channel
may send the operator's own values, ``{owner}`` a per-caller pseudonym); unknown fields
(a 3 MB junk field, ``client_metadata``) are dropped; a router's ``models``/``route``/
``provider`` never go, so a key limited to one model cannot pick another with them; and
chatd's request limits apply before anything is relayed. Chat Completions and the
Responses API (a channel speaking it, and one spoken to in Chat Completions), whole and
streamed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from chatd.protocol.request_limits import Limits

from .harness import API_KEY, MODEL, Chatd, Upstream, fake_upstream, running_chatd

# The fields the client sends that no default channel is sent.
NEVER = {"store", "metadata", "user", "safety_identifier", "service_tier", "models", "route",
         "provider", "client_metadata", "top_k", "junk"}  # fmt: skip
HOSTILE: dict[str, Any] = {
    "store": True,
    "metadata": {"conversation": "private"},
    "user": "alice@example.com",
    "safety_identifier": "alice",
    "service_tier": "priority",
    "models": ["mother"],  # OpenRouter's fallback list: another model under our key
    "route": "fallback",
    "provider": {"order": ["cheap"]},
    "client_metadata": {"codex": 1},  # what real clients send beyond the spec
    "top_k": 5,  # chatd's own extension: not OpenAI's, not allowed by default
    "junk": "x" * (3 * 1024 * 1024),  # 3 MB under the 4 MiB body limit
}
ALLOWED = {"temperature": 0.3, "n": 2, "seed": 7, "max_tokens": 5, "stop": ["\n"]}
LIMITS = Limits(max_messages=4, max_chars=2000, max_tools=3, max_schema_bytes=4000)
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def fake() -> Iterator[Upstream]:
    with fake_upstream() as upstream:
        yield upstream


def channel(name: str, models: str, extra: str = "", api: str = "chat", priority: int = 0) -> str:
    return (
        f'[[channels]]\nname = "{name}"\nbase_url = "URL"\nmodels = [{models}]\napi = "{api}"\n'
        f"priority = {priority}\n{extra}\n"
    )


MAPPED = (
    "store = true\nmetadata = { team = 'gw' }\nuser = 'gw-{owner}'\n"
    "safety_identifier = '{owner}'\nchat_fields = ['default', 'top_k']\n"
    "responses_fields = ['default', 'service_tier']\n"
)


@pytest.fixture(scope="module")
async def gateway(fake: Upstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    toml = "".join(
        [
            f'[[models]]\nid = "{MODEL}"\npath = "embedded"\naliases = ["mboth"]\npriority = 1\n',
            channel(
                "plain",
                '{ id = "mplain", upstream = "ok" }, { id = "mother", upstream = '
                '"nousage" }, { id = "mboth", upstream = "ok" }',
            ),  # fmt: skip
            channel("mapped", '{ id = "mmapped", upstream = "ok" }', MAPPED),
            channel("native", '{ id = "rnative", upstream = "ok" }', api="responses"),
            channel("rmapped", '{ id = "rmapped", upstream = "ok" }', MAPPED, api="responses"),
        ]
    ).replace("URL", fake.url + "/v1")
    async with running_chatd(tmp_path_factory.mktemp("hyg"), config=toml, limits=LIMITS) as chatd:
        yield chatd


@pytest.fixture(scope="module")
def keys(gateway: Chatd) -> dict[str, tuple[str, str]]:
    """Two database keys: one limited to `mplain`, one free: (id, key)."""
    made = {}
    for name, extra in (("limited", ("--models", "mplain")), ("free", ())):
        code, out, err = gateway.cli("keys", "create", "--name", name, *extra)
        assert code == 0, err
        key_id = re.search(r"id:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        made[name] = (key_id, re.search(r"key:\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return made


def client(gateway: Chatd, keys: dict[str, tuple[str, str]], who: str) -> httpx.AsyncClient:
    return gateway.http(API_KEY if who == "operator" else keys[who][1])


def chat(model: str, stream: bool = False, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": stream,
            **kw}  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("who", ["limited", "free"])
async def test_chat_relay_sends_only_the_fields_allowed(
    gateway: Chatd, keys: dict[str, tuple[str, str]], fake: Upstream, who: str, stream: bool
) -> None:
    c = client(gateway, keys, who)
    calls = fake.calls.get("nousage", 0)
    r = await c.post("/v1/chat/completions", json=chat("mplain", stream, **ALLOWED, **HOSTILE))
    assert r.status_code == 200, r.text[:300]
    got = fake.last["ok"]
    assert got["model"] == "ok" and got["messages"] == [{"role": "user", "content": "Hi"}]
    assert {k: got[k] for k in ALLOWED} == ALLOWED  # what OpenAI's API defines, as sent
    assert not NEVER & set(got), sorted(NEVER & set(got))
    if stream:
        assert got["stream_options"] == {"include_usage": True}
    # `models` picked nothing: the model the key may not use was never asked
    assert fake.calls.get("nousage", 0) == calls
    assert (await c.post("/v1/chat/completions", json=chat("mother"))).status_code == (
        404 if who == "limited" else 200
    )
    if not stream:  # store: true was chatd's to keep, for this key only
        cid = r.json()["id"]
        assert (await c.get(f"/v1/chat/completions/{cid}")).status_code == 200
        other = client(gateway, keys, "free" if who == "limited" else "limited")
        assert (await other.get(f"/v1/chat/completions/{cid}")).status_code == 404


async def test_an_id_with_a_local_route_is_filtered_too(gateway: Chatd, fake: Upstream) -> None:
    """`mboth`: a channel first, the local model after: chatd's whole contract applies
    (unknown fields are a 400), and what it allows is filtered as for any relay."""
    c = gateway.http()
    mapped = ("store", "metadata", "user", "safety_identifier", "service_tier")
    sent = {k: v for k, v in HOSTILE.items() if k in mapped}
    r = await c.post("/v1/chat/completions", json=chat("mboth", **sent, temperature=0.2))
    assert r.status_code == 200, r.text
    got = fake.last["ok"]
    assert got["temperature"] == 0.2 and not set(sent) & set(got)
    r = await c.post("/v1/chat/completions", json=chat("mboth", models=["x"]))
    assert r.status_code == 400 and "models" in r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_channel_sends_the_operators_values_per_caller(
    gateway: Chatd, keys: dict[str, tuple[str, str]], fake: Upstream, stream: bool
) -> None:
    seen: dict[str, list[dict[str, Any]]] = {}
    for who in ("free", "operator", "free"):
        c = client(gateway, keys, who)
        r = await c.post("/v1/chat/completions", json=chat("mmapped", stream, **HOSTILE))
        assert r.status_code == 200, r.text[:300]
        seen.setdefault(who, []).append(dict(fake.last["ok"]))
    first, again = seen["free"]
    [operator] = seen["operator"]
    for got in (first, operator):
        assert got["store"] is True and got["metadata"] == {"team": "gw"}
        assert got["top_k"] == 5  # allowed by this channel
        assert not {"models", "route", "provider", "junk", "service_tier"} & set(got)
        tag = got["safety_identifier"]
        assert HEX32.match(tag) and got["user"] == "gw-" + tag
        assert keys["free"][0] not in str(got)  # the owner id itself never leaves chatd
    assert first["user"] == again["user"]  # the same caller, the same pseudonym
    assert first["user"] != operator["user"]  # another caller, another


@pytest.mark.parametrize(
    ("path", "model", "last"),
    [("/v1/chat/completions", "mplain", "ok"), ("/v1/responses", "rnative", "responses:ok")],
)
async def test_a_cache_key_stays_within_its_caller(
    gateway: Chatd,
    keys: dict[str, tuple[str, str]],
    fake: Upstream,
    path: str,
    model: str,
    last: str,
) -> None:
    """Two callers sending the same ``prompt_cache_key`` reach the upstream with
    different ones (no caller can aim at the cache another's key routes to); one
    caller's stays the same from request to request, so it still groups its prompts."""
    sent: dict[str, list[str]] = {}
    for who in ("free", "operator", "free"):
        body: dict[str, Any] = (
            chat(model, prompt_cache_key="shared")
            if path.endswith("completions")
            else {"model": model, "input": "Hi", "prompt_cache_key": "shared"}
        )
        r = await client(gateway, keys, who).post(path, json=body)
        assert r.status_code == 200, r.text[:300]
        sent.setdefault(who, []).append(fake.last[last]["prompt_cache_key"])
    (a, again), (b,) = sent["free"], sent["operator"]
    assert a == again and a != b and HEX32.match(a) and HEX32.match(b)
    assert "shared" not in (a, b)


@pytest.mark.parametrize(
    ("fields", "param", "status"),
    [
        ({"n": 129}, "n", 400),
        ({"n": 0}, "n", 400),
        ({"n": "2"}, "n", 400),
        ({"messages": [{"role": "user", "content": "Hi"}] * 5}, "messages", 400),
        ({"messages": [{"role": "user", "content": "x" * 2001}]}, "messages", 400),
        (
            {"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(4)]},
            "tools",
            400,
        ),  # fmt: skip
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"description": "x" * 5000}},
                }
            },
            "response_format",
            400,
        ),  # fmt: skip
        ({"junk": "x" * (5 * 1024 * 1024)}, None, 413),
    ],
)
async def test_chatds_limits_apply_before_relaying(
    gateway: Chatd, fake: Upstream, fields: dict[str, Any], param: str | None, status: int
) -> None:
    calls = dict(fake.calls)
    for stream in (False, True):
        r = await gateway.http().post("/v1/chat/completions", json={**chat("mplain", stream),
                                                                    **fields})  # fmt: skip
        assert r.status_code == status, r.text[:300]
        assert r.json()["error"]["param"] == param
    assert fake.calls == calls  # nothing reached the upstream


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "last"), [("rnative", "responses:ok"), ("mplain", "ok")])
async def test_responses_relay_sends_only_the_fields_allowed(
    gateway: Chatd, fake: Upstream, model: str, last: str, stream: bool
) -> None:
    """Both wires: a channel speaking the Responses API, and a chat channel the request
    is translated for."""
    body = {
        "model": model,
        "input": "Hi",
        "stream": stream,
        "temperature": 0.4,
        "prompt_cache_key": "k1",
        **{
            k: HOSTILE[k]
            for k in ("store", "metadata", "user", "safety_identifier", "service_tier")
        },  # fmt: skip
    }
    r = await gateway.http().post("/v1/responses", json=body)
    assert r.status_code == 200, r.text[:300]
    got = fake.last[last]
    # the cache key within the caller's own space (docs/acceptance.md): never the client's
    assert got["temperature"] == 0.4 and HEX32.match(got["prompt_cache_key"])
    assert not {"metadata", "user", "safety_identifier", "service_tier"} & set(got)
    assert got.get("store", False) is False  # never stored upstream: chatd keeps the state
    limited = await gateway.http().post("/v1/responses", json={**body, "input": ["Hi"] * 5})
    assert limited.status_code == 400 and limited.json()["error"]["param"] == "input"


async def test_a_responses_channel_sends_the_operators_values(
    gateway: Chatd, keys: dict[str, tuple[str, str]], fake: Upstream
) -> None:
    body = {"model": "rmapped", "input": "Hi", "user": "alice", "metadata": {"a": "b"},
            "service_tier": "flex", "store": False}  # fmt: skip
    users = []
    for who in ("limited", "free"):
        if who == "limited":  # this key may use mplain only: rmapped looks absent
            r = await client(gateway, keys, who).post("/v1/responses", json=body)
            assert r.status_code == 404
            continue
        r = await client(gateway, keys, who).post("/v1/responses", json=body)
        assert r.status_code == 200, r.text
        got = fake.last["responses:ok"]
        assert got["store"] is True and got["metadata"] == {"team": "gw"}
        assert got["service_tier"] == "flex"  # allowed by this channel
        assert got["user"].startswith("gw-") and HEX32.match(got["safety_identifier"])
        users.append(got["user"])
    r = await gateway.http().post("/v1/responses", json=body)
    assert fake.last["responses:ok"]["user"] not in users  # the operator is another caller


async def test_codex_fields_reach_a_responses_channel_as_sent(
    gateway: Chatd, fake: Upstream
) -> None:
    """A channel speaking the Responses API may serve a model that reasons and runs hosted
    tools: ``reasoning``, ``include`` and every tool go as sent (docs/acceptance.md);
    ``client_metadata`` stays here, and no header says a tool was not run (the upstream
    decides)."""
    tools = [
        {"type": "web_search", "external_web_access": False},
        {
            "type": "namespace",
            "name": "multi_agent_v1",
            "description": "Sub-agents.",
            "tools": [{"type": "function", "name": "spawn_agent", "parameters": {}}],
        },
        {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
    ]
    body = {
        "model": "rnative",
        "input": "Hi",
        "tools": tools,
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "client_metadata": {"thread_id": "t-1"},
    }
    r = await gateway.http().post("/v1/responses", json=body)
    assert r.status_code == 200, r.text[:300]
    assert "x-chatd-tools-not-run" not in r.headers
    got = fake.last["responses:ok"]
    assert got["reasoning"] == body["reasoning"] and got["include"] == body["include"]
    assert got["tools"] == tools
    assert "client_metadata" not in got

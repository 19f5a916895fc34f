"""Every error path a client can reach, walked over HTTP, and every body read for what
must never be in one (docs/security.md "Errors", "Relay"): an exception's class name, a
traceback, a file path, an upstream's address or a key fragment.

The paths: a channel with a bad URL (an impossible port, no URL at all), a refused
connection, an upstream that hangs (first-event and read timeouts), answers a 5xx, a 401,
a 200 that is not JSON, a stream that is cut or turns to garbage or to an error event;
the local engine failing (before and during a stream, with a failure text naming an
exception and a path) and the store failing (an OSError with a path), through Chat
Completions and the Responses API, whole and streamed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakes.engine
import httpx
import pytest
from fakes.upstream import UPSTREAM_KEY

from chatd.engine.errors import EngineFailure

from .harness import API_KEY, BASE_URL, MODEL, Chatd, Upstream, fake_upstream, running_chatd

FORBIDDEN = [
    re.compile(r"\b[A-Z][a-zA-Z]+(Error|Exception)\b"),  # an exception's class name
    re.compile(r"Traceback"),
    re.compile(r"(?<![\w\]])(/[\w.\-]+){2,}"),  # a file path (/srv/x, /src/chatd/...)
    re.compile(r"/src/|\.py\b"),
    re.compile(r"sk-(?!<key>)[\w*]+|Bearer \w"),  # a key fragment (sk-<key> is redacted)
    re.compile(r"127\.0\.0\.1|localhost|example\.com|10\.1\.2\.3|secret-internal"),
]
INTERNAL = 'Traceback: File "/srv/chatd/src/chatd/x.py", line 1: KeyError: secret-internal'
FAST = "first_token_timeout = 1\nread_timeout = 1\nconnect_timeout = 1\n"


def assert_clean(r: httpx.Response) -> None:
    text = r.text
    for pattern in FORBIDDEN:
        found = pattern.search(text)
        assert found is None, f"{found.group(0)!r} in {r.status_code} {text[:500]!r}"


@pytest.fixture(scope="module")
def fake() -> Iterator[Upstream]:
    with fake_upstream() as upstream:
        yield upstream


PATHS = {
    # public id: (base URL, upstream model, extra settings)
    "badport": ("http://127.0.0.1:99999/v1", "ok", ""),
    "nourl": ("not a url", "ok", ""),
    "refused": ("http://127.0.0.1:1/v1", "ok", ""),
    "hang": ("FAKE", "hang", FAST),
    "e500": ("FAKE", "500", ""),
    "e401": ("FAKE", "401", ""),
    "html": ("FAKE", "html", ""),
    "cut": ("FAKE", "cut", ""),
    "garbage": ("FAKE", "garbage", ""),
    "midfail": ("FAKE", "midfail", ""),
    "failed": ("FAKE", "failed", ""),
    "leak400": ("FAKE", "leak400", ""),
    "ok": ("FAKE", "ok", ""),  # answers: the store fails after it
}


@pytest.fixture(scope="module")
async def gateway(fake: Upstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    monkey = pytest.MonkeyPatch()
    monkey.setenv("CHATD_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    toml = "".join(
        f'[[channels]]\nname = "{prefix}{name}"\nbase_url = "{url}"\napi = "{api}"\n'
        f'models = [{{ id = "{prefix}{name}", upstream = "{mode}" }}]\n'
        f'api_key_env = "CHATD_TEST_UPSTREAM_KEY"\nfailures_before_cooldown = 1000\n{extra}\n'
        for name, (url, mode, extra) in PATHS.items()
        for prefix, api in (("", "chat"), ("r", "responses"))
    ).replace("FAKE", fake.url + "/v1")
    try:
        async with running_chatd(tmp_path_factory.mktemp("leaks"), config=toml) as chatd:
            yield chatd
    finally:
        monkey.undo()


def client(chatd: Chatd) -> httpx.AsyncClient:
    """Gets a 500 as a real client would (Starlette sends it, then re-raises)."""
    transport = httpx.ASGITransport(app=chatd.app, raise_app_exceptions=False)
    c = httpx.AsyncClient(
        transport=transport,
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    chatd.clients.append(c)
    return c


async def ask(
    c: httpx.AsyncClient, model: str, api: str, stream: bool, **kw: Any
) -> httpx.Response:
    if api == "chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
        return await c.post("/v1/chat/completions", json={**body, "stream": stream, **kw})
    body = {"model": model, "input": "Hi", "stream": stream, **kw}
    return await c.post("/v1/responses", json=body)


WIRES = [("chat", ""), ("responses", "r"), ("responses", "")]
WIRE_IDS = ["chat", "responses-native", "responses-via-chat"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("api", "prefix"), WIRES, ids=WIRE_IDS)
@pytest.mark.parametrize("name", list(PATHS))
async def test_no_upstream_failure_leaks(
    gateway: Chatd, name: str, api: str, prefix: str, stream: bool
) -> None:
    r = await ask(client(gateway), prefix + name, api, stream)
    assert r.status_code != 500 or "server_error" in r.text, r.text[:300]
    assert_clean(r)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("api", ["chat", "responses"])
@pytest.mark.parametrize("when", ["start", "midway"])
async def test_no_engine_failure_leaks(
    gateway: Chatd, monkeypatch: pytest.MonkeyPatch, api: str, stream: bool, when: str
) -> None:
    """The engine's failure text names an exception and a path (as ``repr(e)`` would)."""
    monkeypatch.setattr(fakes.engine, "EngineFailure", lambda _: EngineFailure(INTERNAL))
    monkeypatch.setattr(gateway.engine, "fail_after", 0 if when == "start" else 1)
    r = await ask(client(gateway), MODEL, api, stream, **{"max_tokens" if api == "chat"
                                                         else "max_output_tokens": 16})  # fmt: skip
    assert r.status_code in (200, 500), r.text
    assert "server_error" in r.text
    assert_clean(r)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("api", "model"),
    [("chat", MODEL), ("chat", "ok"), ("responses", MODEL), ("responses", "rok"),
     ("responses", "ok")],
)  # fmt: skip
async def test_no_store_failure_leaks(
    gateway: Chatd, monkeypatch: pytest.MonkeyPatch, api: str, model: str, stream: bool
) -> None:
    """The local engine's answer and relayed ones, stored into a store that fails."""

    async def broken(*_: Any, **__: Any) -> Any:
        raise OSError(28, "No space left on device", "/var/lib/chatd/chatd.db-wal secret-internal")

    services = gateway.app.state.services
    store = services.chat.store if api == "chat" else services.responses.store
    monkeypatch.setattr(store, "save", broken)
    r = await ask(client(gateway), model, api, stream, store=True)
    assert "could not be stored" in r.text, r.text[-300:]
    assert_clean(r)


async def test_a_wrong_key_and_bad_bodies_leak_nothing(gateway: Chatd) -> None:
    c = client(gateway)
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/completions"):
        for content in (b"{not json", b"[1, 2]", b'{"model": 3}', b"\xff\xfe"):
            r = await c.post(path, content=content, headers={"content-type": "application/json"})
            assert r.status_code == 400, r.text
            assert_clean(r)

"""Security over HTTP, in-process: the operator's endpoints (/v1/channels, /metrics) need
an operator key and look absent to others; an internal failure (the engine, the store,
a stream midway) answers OpenAI's generic 500 body or error event with no traceback,
exception or file path in it; and no key, right or wrong, is ever logged, whatever the
request (Chat Completions, Responses, streamed or not) or its failure."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.engine import Call, FakeEngine, FakeGeneration
from openapi_schemas import assert_valid

from chatd.engine.template import ChatTemplate

from .harness import API_KEY, BASE_URL, MODEL, Chatd, running_chatd

# What an internal failure says: a traceback, a file path, the exception and its text.
INTERNAL = f'Traceback (most recent call last):\n  File "{__file__}", line 1: secret-internal'
LEAKS = ("Traceback", ".py", "/tests/", "/src/", "secret-internal", "RuntimeError", 'File "')
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
RESPONSE = {"model": MODEL, "input": "Hi", "max_output_tokens": 16}


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in {text[:300]!r}"


def assert_generic_500(r: Any) -> None:
    assert r.status_code == 500, r.text
    assert_valid("ErrorResponse", r.json())
    assert r.json()["error"]["type"] == "server_error"
    assert_no_leak(r.text)


class AllLogs(logging.Handler):
    """Every record of every logger (chatd's, uvicorn's, SQLAlchemy's...), formatted
    with its traceback, as a log file would have it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def all_logs() -> Iterator[AllLogs]:
    handler, root = AllLogs(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def failing(call: Call) -> str:
    raise RuntimeError(INTERNAL)


@pytest.fixture
async def chatd(tmp_path: Path) -> AsyncIterator[Chatd]:
    async with running_chatd(tmp_path) as c:
        yield c


def http(chatd: Chatd, key: str | None = API_KEY) -> httpx.AsyncClient:
    """A client that gets the 500 response as a real client would: Starlette sends it,
    then re-raises to the server (which logs it), which httpx's transport would raise."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    transport = httpx.ASGITransport(app=chatd.app, raise_app_exceptions=False)
    c = httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers, timeout=30)
    chatd.clients.append(c)
    return c


def db_key(chatd: Chatd, name: str) -> tuple[str, str]:
    code, out, err = chatd.cli("keys", "create", "--name", name)
    assert code == 0, err
    key_id = re.search(r"id:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    return key_id, re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]


# --- the operator's endpoints ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/channels", "/metrics"])
async def test_operator_endpoints_need_the_operator_key(chatd: Chatd, path: str) -> None:
    _, key = db_key(chatd, "not-an-operator")
    assert (await http(chatd).get(path)).status_code == 200
    missing = await http(chatd, None).get(path)
    assert missing.status_code == 401
    wrong = await http(chatd, "sk-" + "0" * 40).get(path)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    other = await http(chatd, key).get(path)  # a valid key, not the operator's: absent
    assert other.status_code == 404
    assert other.json()["error"]["message"] == f"Invalid URL (GET {path})"
    assert (await http(chatd, key).post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_an_open_server_closes_as_soon_as_a_key_exists(tmp_path: Path) -> None:
    # No static key: open while no key exists anywhere; an unknown key presented right
    # after the first key is created is refused, not let in as the operator.
    async with running_chatd(tmp_path, api_keys=[]) as chatd:
        assert (await http(chatd, None).get("/v1/channels")).status_code == 200  # open
        _, key = db_key(chatd, "first")
        for path in ("/v1/channels", "/metrics"):
            assert (await http(chatd, "sk-" + "1" * 40).get(path)).status_code == 401
            assert (await http(chatd, key).get(path)).status_code == 404


# --- internal errors ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_an_engine_failure_is_a_generic_500(
    chatd: Chatd, stream: bool, all_logs: AllLogs
) -> None:
    chatd.engine.script = failing
    c = http(chatd)
    assert_generic_500(await c.post("/v1/chat/completions", json={**CHAT, "stream": stream}))
    assert_generic_500(await c.post("/v1/responses", json={**RESPONSE, "stream": stream}))
    assert "secret-internal" in all_logs.text()  # the operator's log has it all


async def test_a_failure_midway_is_a_generic_error_event(
    chatd: Chatd, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = FakeGeneration._step

    def fail_on_second(self: FakeGeneration) -> list[Any]:
        if getattr(self, "stepped", False):
            raise RuntimeError(INTERNAL)
        self.stepped = True  # type: ignore[attr-defined]
        return step(self)

    monkeypatch.setattr(FakeGeneration, "_step", fail_on_second)
    c = http(chatd)
    chat = await c.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert chat.status_code == 200 and "[DONE]" not in chat.text
    last = json.loads(chat.text.strip().splitlines()[-1].removeprefix("data: "))
    assert last["error"]["type"] == "server_error"
    assert_no_leak(chat.text)
    resp = await c.post("/v1/responses", json={**RESPONSE, "stream": True})
    assert resp.status_code == 200 and "event: error" in resp.text
    assert_no_leak(resp.text)


async def test_a_store_failure_is_a_generic_500(
    chatd: Chatd, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> Any:
        raise OSError(28, "No space left on device", "/var/lib/chatd/chatd.db-wal secret-internal")

    services = chatd.app.state.services
    monkeypatch.setattr(services.stored, "list", broken)
    monkeypatch.setattr(services.stored_responses, "get", broken)
    c = http(chatd)
    assert_generic_500(await c.get("/v1/chat/completions"))
    assert_generic_500(await c.get("/v1/responses/resp_0123456789abcdef"))


# --- a hostile chat template ------------------------------------------------------------


class TemplateEngine(FakeEngine):
    """A FakeEngine whose prompts go through a real ChatTemplate (the bounded sandbox)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.chat_template = ChatTemplate(source)

    def render_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        return self.tokenize_text(self.chat_template.render(messages, tools=tools))


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
            "too many steps",
        ),
        ("{{ messages[0]['content'] * 10 ** 10 }}", "repeated a value too many times"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "chat template error"),
    ],
)
async def test_a_hostile_template_is_a_400_per_request(
    tmp_path: Path, source: str, reason: str
) -> None:
    async with running_chatd(tmp_path, TemplateEngine(source)) as chatd:
        c = http(chatd)
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSE)):
            r = await c.post(path, json=body)
            assert r.status_code == 400, r.text
            assert reason in r.json()["error"]["message"]
            assert_no_leak(r.text)
        assert (await c.get("/health")).status_code == 200  # the server carries on


# --- keys in logs ------------------------------------------------------------------------


async def test_no_key_is_ever_logged(
    chatd: Chatd, all_logs: AllLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, key = db_key(chatd, "logged")
    revoked_id, revoked = db_key(chatd, "revoked")
    assert chatd.cli("keys", "revoke", revoked_id)[0] == 0
    wrong = "sk-chatd-" + "9" * 40
    bodies = []
    for k in (API_KEY, key, revoked, wrong, "short"):
        c = http(chatd, k)
        for stream in (False, True):
            bodies.append(await c.post("/v1/chat/completions", json={**CHAT, "stream": stream}))
            bodies.append(await c.post("/v1/responses", json={**RESPONSE, "stream": stream}))
        bodies.append(await c.post("/v1/chat/completions", json={**CHAT, "n": 0}))  # a 400
        bodies.append(await c.get("/v1/channels"))
        bodies.append(await c.get("/v1/chat/completions/chatcmpl-absent"))
    chatd.engine.script = failing  # and through internal failures
    for k in (API_KEY, key):
        bodies.append(await http(chatd, k).post("/v1/chat/completions", json=CHAT))
        bodies.append(await http(chatd, k).post("/v1/responses", json=RESPONSE))
    assert {r.status_code for r in bodies} >= {200, 400, 401, 404, 500}
    logged = all_logs.text() + chatd.log.text()
    assert "unhandled error" in logged  # the failures were logged...
    for k in (API_KEY, key, revoked, wrong):
        assert k not in logged  # ...and no key, nor any key's tail
        assert k[-12:] not in logged
    for r in bodies:  # a 401 shows a wrong key redacted (as OpenAI does), never whole
        assert wrong not in r.text and key not in r.text and API_KEY not in r.text

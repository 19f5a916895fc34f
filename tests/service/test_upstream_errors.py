"""An upstream's errors over HTTP (docs/gateway.md "Upstream errors"): in-process, the
real app in front of the fake upstream, whose error messages hold everything a client
must not read (its host, URL and address, key fragments, the channel's own key echoed,
a file path, exception names: ``fakes.upstream.LEAKY``).

- 401/403 (the operator's key), 404 for the channel's model, and other statuses a client
  cannot cause are a 502 ``upstream_error`` naming the channel, never the upstream's
  message; they count as channel failures (``/v1/channels`` shows them, and the channel
  cools down), and the next route answers when there is one.
- 400/413/422 and a 404 about an item are the client's: passed back, the message
  redacted, not counted against the channel.
- 429 is the operator's quota: failover, then 503, counted.
- a stream broken by an upstream error event ends with a redacted error and counts.

Chat Completions and the Responses API (a channel speaking it, and one spoken to in
Chat Completions), whole and streamed."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fakes.upstream import UPSTREAM_KEY
from openapi_schemas import assert_valid

from .harness import Chatd, Upstream, fake_upstream, running_chatd

CLASS_NAME = re.compile(r"\b[A-Z][a-zA-Z]+(Error|Exception)\b")
LEAKS = ("Traceback", "sk-proj", "sk-live", UPSTREAM_KEY, "example.com", "10.1.2.3", "gpu-box",
         "fd00", "/srv/", ".py", "127.0.0.1", "https://", "http://")  # fmt: skip
MANY = "failures_before_cooldown = 1000\n"


def assert_clean(text: str) -> None:
    """No body a client reads holds an exception's name or an upstream's secrets."""
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in {text[:400]!r}"
    assert not CLASS_NAME.search(text), text[:400]


@pytest.fixture(scope="module")
def fake() -> Iterator[Upstream]:
    with fake_upstream() as upstream:
        yield upstream


def channel(name: str, model: str, mode: str, extra: str = MANY, priority: int = 0) -> str:
    """A chat channel serving ``model`` and a Responses one serving ``r`` + ``model``,
    both answered by the fake's ``mode``."""
    return "".join(
        f'[[channels]]\nname = "{prefix}{name}"\nbase_url = "URL"\napi = "{api}"\n'
        f'models = [{{ id = "{prefix}{model}", upstream = "{mode}" }}]\n'
        f'priority = {priority}\napi_key_env = "CHATD_TEST_UPSTREAM_KEY"\n{extra}\n'
        for prefix, api in (("", "chat"), ("r", "responses"))
    )


@pytest.fixture(scope="module")
async def gateway(fake: Upstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    monkey = pytest.MonkeyPatch()
    monkey.setenv("CHATD_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    toml = "".join(
        [
            channel("auth", "mauth", "401"),
            channel("backup", "mauth", "ok", priority=1),
            channel("authonly", "mauthonly", "401", "failures_before_cooldown = 4\n"),
            channel("forbidden", "mforbidden", "403"),
            channel("payment", "mpayment", "402"),
            channel("nomodel", "mnomodel", "404"),
            channel("noitem", "mnoitem", "404item"),
            channel("toobig", "mtoobig", "413"),
            channel("unproc", "munproc", "422"),
            channel("leaky", "mleaky", "leak400"),
            channel("quota", "mquota", "429"),
            channel("midfail", "mmidfail", "midfail"),
            channel("garbage", "mgarbage", "garbage"),
        ]
    ).replace("URL", fake.url + "/v1")
    try:
        async with running_chatd(tmp_path_factory.mktemp("uperr"), config=toml) as chatd:
            yield chatd
    finally:
        monkey.undo()


async def ask(c: httpx.AsyncClient, model: str, api: str, stream: bool) -> httpx.Response:
    if api == "chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
        return await c.post("/v1/chat/completions", json={**body, "stream": stream})
    return await c.post("/v1/responses", json={"model": model, "input": "Hi", "stream": stream})


# (api, model prefix): chat; Responses on a Responses channel; Responses on a chat channel.
WIRES = [("chat", ""), ("responses", "r"), ("responses", "")]
WIRE_IDS = ["chat", "responses-native", "responses-via-chat"]


async def channels(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return {ch["name"]: ch for ch in (await c.get("/v1/channels")).json()["data"]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("api", "prefix"), WIRES, ids=WIRE_IDS)
@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("mforbidden", "channel_auth_failed"),
        ("mpayment", "channel_refused"),
        ("mnomodel", "channel_model_not_found"),
    ],
)
async def test_the_channels_own_failure_is_a_502_naming_it(
    gateway: Chatd, api: str, prefix: str, stream: bool, model: str, code: str
) -> None:
    c = gateway.http()
    before = (await channels(c))[prefix + model[1:]]["failures"]
    r = await ask(c, prefix + model, api, stream)
    assert r.status_code == 502, r.text  # before any byte, even streamed
    assert_valid("ErrorResponse", r.json())
    error = r.json()["error"]
    assert error["type"] == "upstream_error" and error["code"] == code
    assert f"`{prefix}{model[1:]}`" in error["message"]  # the channel, by its name
    assert "Incorrect API key" not in r.text and "does not exist" not in r.text
    assert_clean(r.text)
    assert (await channels(c))[prefix + model[1:]]["failures"] == before + 1


@pytest.mark.parametrize(("api", "prefix"), WIRES, ids=WIRE_IDS)
async def test_four_401s_cool_the_channel_down(gateway: Chatd, api: str, prefix: str) -> None:
    """The hostile review's case: four upstream 401s used to read as the client's own 401
    and leave the channel `failures: 0, healthy: true`."""
    c = gateway.http()
    name = prefix + "authonly"
    if api == "responses" and prefix == "":  # the chat channel cooled in the chat case
        pytest.skip("the chat channel is the chat case's")
    for i in range(4):
        r = await ask(c, prefix + "mauthonly", api, stream=i % 2 == 1)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "channel_auth_failed"
        assert r.status_code != 401 and "invalid_api_key" not in r.text
        assert_clean(r.text)
    state = (await channels(c))[name]
    assert state["failures"] == 4 and not state["healthy"] and state["cooling_seconds_left"] > 0
    r = await ask(c, prefix + "mauthonly", api, stream=False)
    assert r.status_code == 503 and "no channel is available" in r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("api", "prefix"), WIRES, ids=WIRE_IDS)
async def test_the_next_route_answers_after_a_401(
    gateway: Chatd, api: str, prefix: str, stream: bool
) -> None:
    c = gateway.http()
    failures = (await channels(c))[prefix + "auth"]["failures"]
    r = await ask(c, prefix + "mauth", api, stream)
    assert r.status_code == 200, r.text
    assert "Hel" in r.text
    assert (await channels(c))[prefix + "auth"]["failures"] == failures + 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("api", "prefix"), WIRES, ids=WIRE_IDS)
@pytest.mark.parametrize(
    ("model", "status", "param", "code"),
    [
        ("mleaky", 400, "messages[0].content", "bad"),
        ("mtoobig", 413, "messages", None),
        ("munproc", 400, "messages", None),
        ("mnoitem", 404, "input", None),
    ],
)
async def test_the_clients_fault_is_passed_back_redacted(
    gateway: Chatd,
    api: str,
    prefix: str,
    stream: bool,
    model: str,
    status: int,
    param: str,
    code: str | None,
) -> None:
    c = gateway.http()
    r = await ask(c, prefix + model, api, stream)
    assert r.status_code == status, r.text
    assert_valid("ErrorResponse", r.json())
    error = r.json()["error"]
    assert error["param"] == param and error["code"] == code
    assert error["type"] == "invalid_request_error"  # not the upstream's "BadRequestError"
    assert_clean(r.text)
    if model == "mleaky":
        assert error["message"].startswith("Incorrect API key provided: sk-<key>")
    assert (await channels(c))[prefix + model[1:]]["failures"] == 0  # not the channel's fault


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("api", "prefix"), WIRES, ids=WIRE_IDS)
async def test_an_upstream_429_is_the_operators_quota(
    gateway: Chatd, api: str, prefix: str, stream: bool
) -> None:
    c = gateway.http()
    failures = (await channels(c))[prefix + "quota"]["failures"]
    r = await ask(c, prefix + "mquota", api, stream)
    assert r.status_code == 503, r.text  # not the client's 429: retry later
    assert r.json()["error"]["type"] == "server_error"
    assert "slow down" not in r.text
    assert_clean(r.text)
    assert (await channels(c))[prefix + "quota"]["failures"] == failures + 1


@pytest.mark.parametrize(("api", "prefix"), WIRES, ids=WIRE_IDS)
@pytest.mark.parametrize("model", ["mmidfail", "mgarbage"])
async def test_a_stream_broken_midway_is_redacted_and_counted(
    gateway: Chatd, api: str, prefix: str, model: str
) -> None:
    c = gateway.http()
    name = prefix + model[1:]
    failures = (await channels(c))[name]["failures"]
    r = await ask(c, prefix + model, api, stream=True)
    assert r.status_code == 200
    assert "[DONE]" not in r.text and "response.completed" not in r.text
    last = [ln for ln in r.text.splitlines() if ln.startswith("data: ")][-1]
    event = json.loads(last[6:])
    assert "error" in event or event.get("type") in ("error", "response.failed"), event
    assert_clean(r.text)
    assert (await channels(c))[name]["failures"] == failures + 1

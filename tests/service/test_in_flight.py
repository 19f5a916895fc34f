"""Per-key limits on requests in flight (service/in_flight.py, api/answering.py): a key at
its limit gets 429 (OpenAI's ``rate_limit_exceeded`` body, Retry-After) while another key
is served; every way a request can end gives its place back; a database key's own limit
overrides the server's. Over real sockets (the app in a thread, as ``chatd serve`` runs
it), so that streams stay open and clients can leave; requests are held in flight by the
FakeEngine's gates, never by timing."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.engine import FakeEngine

from chatd.service.quotas import Quotas

from .checks import URL, check_error
from .harness import (
    API_KEY,
    MODEL,
    ThreadServer,
    chatd_in_thread,
    fake_upstream,
    run_cli,
    running_chatd,
)

RESPONSES = "/v1/responses"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with fake_upstream() as up:
        yield up.url + "/v1"


@pytest.fixture(scope="module")
def server(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """Every key may have one request in flight (the server's default here), local or
    relayed to the fake upstream (``mok`` answers, ``mslow`` streams for 30 s, ``m500``
    fails)."""
    models = ", ".join(f'{{ id = "m{m}", upstream = "{m}" }}' for m in ("ok", "slow", "500"))
    toml = f'[[channels]]\nname = "up"\nbase_url = "{upstream}"\nmodels = [{models}]\n'
    tmp = tmp_path_factory.mktemp("inflight")
    quotas = Quotas(max_in_flight_per_key=1)
    with chatd_in_thread(tmp, FakeEngine(), api_keys=[], config=toml, quotas=quotas) as srv:
        yield srv


def new_key(data_dir: Path, *options: str) -> tuple[str, str]:
    """(id, key) of a database key made with ``chatd keys create``."""
    code, out, err = run_cli("keys", "create", "--name", "t", *options, "--data-dir", str(data_dir))
    assert code == 0, err
    found = re.search(r"id:\s+(\S+)\nkey:\s+(\S+)", out)
    assert found, out
    return found.group(1), found.group(2)


def in_flight(srv: ThreadServer, owner: str) -> int:
    assert srv.app is not None
    return srv.app.state.services.in_flight.count(owner)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` with a generous deadline: a hang fails, a slow run does not."""
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def client(srv: ThreadServer, key: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=srv.base_url, headers=headers, timeout=60) as c:
        yield c


def chat(text: str, model: str = MODEL, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


def response(text: str, model: str = MODEL, **fields: Any) -> dict[str, Any]:
    return {"model": model, "input": text, "store": False, **fields}


def assert_in_flight_429(r: httpx.Response, limit: int) -> None:
    check_error(
        r,
        429,
        param=None,
        code="rate_limit_exceeded",
        type="requests",
        contains=("requests in flight", f"Limit {limit}"),
    )
    assert r.headers["retry-after"] == "1"


async def test_a_key_at_its_limit_gets_429_while_another_key_is_served(
    server: ThreadServer,
) -> None:
    a_id, a = new_key(server.data_dir)
    b_id, b = new_key(server.data_dir)
    gate = server.engine.hold("held-by-a")
    async with client(server, a) as ca, client(server, b) as cb:
        async with ca.stream("POST", URL, json=chat("held-by-a", stream=True)) as held:
            assert held.status_code == 200
            await until(lambda: in_flight(server, a_id) == 1)
            # A's next request is refused, whatever the API, local or relayed, streamed or
            # not, before its body is read
            assert_in_flight_429(await ca.post(URL, content=b"not even JSON"), 1)
            for path, body in (
                (URL, chat("more")),
                (URL, chat("more", stream=True)),
                (URL, chat("more", model="mok")),
                (RESPONSES, response("more")),
                (RESPONSES, response("more", stream=True)),
            ):
                assert_in_flight_429(await ca.post(path, json=body), 1)
            # B is served meanwhile, in both APIs, local and relayed
            for path, body in (
                (URL, chat("b")),
                (RESPONSES, response("b")),
                (URL, chat("b", model="mok")),
            ):
                r = await cb.post(path, json=body)
                assert r.status_code == 200, r.text
            assert in_flight(server, b_id) == 0
            gate.set()
            text = (await held.aread()).decode()
            assert text.endswith("data: [DONE]\n\n")
        await until(lambda: in_flight(server, a_id) == 0)
        assert (await ca.post(URL, json=chat("again"))).status_code == 200


async def _finished_stream(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    async with c.stream("POST", URL, json=chat(tag, stream=True)) as r:
        assert r.status_code == 200
        assert (await r.aread()).endswith(b"data: [DONE]\n\n")


async def _finished_response(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    r = await c.post(RESPONSES, json=response(tag))
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text


async def _relayed_stream(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    async with c.stream("POST", URL, json=chat(tag, model="mok", stream=True)) as r:
        assert r.status_code == 200
        assert (await r.aread()).endswith(b"data: [DONE]\n\n")


async def _relay_failed(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    r = await c.post(URL, json=chat(tag, model="m500"))
    assert r.status_code >= 500 and "error" in r.json(), r.text


async def _invalid_body(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    body = b'{"model": "' + tag.encode() + b'", "messages": ['
    r = await c.post(URL, content=body, headers={"Content-Type": "application/json"})
    check_error(r, 400, param=None, code=None, contains=("JSON",))


async def _unknown_model(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    r = await c.post(URL, json=chat(tag, model="no-such-model"))
    check_error(r, 404, param=None, code="model_not_found")


async def _refused_by_the_engine(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    srv.engine.queue_full = True
    try:
        check_error(
            await c.post(URL, json=chat(tag)), 503, param=None, code="server_overloaded",
            type="server_error",
        )  # fmt: skip
    finally:
        srv.engine.queue_full = False


async def _engine_failed_mid_stream(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    srv.engine.fail_after = 1
    try:
        async with c.stream("POST", URL, json=chat(tag, stream=True)) as r:
            text = (await r.aread()).decode()
        assert r.status_code == 200 and '"error"' in text and "[DONE]" not in text
    finally:
        srv.engine.fail_after = None


async def _left_a_held_stream(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    srv.engine.hold(tag)  # never set: only the client's leaving ends it
    async with c.stream("POST", URL, json=chat(tag, stream=True)) as r:
        assert r.status_code == 200
        await until(lambda: any(not g.done for g in srv.engine.in_flight))
    # the connection is closed here


async def _left_a_held_response_stream(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    srv.engine.hold(tag)
    async with c.stream("POST", RESPONSES, json=response(tag, stream=True)) as r:
        assert r.status_code == 200
        await until(lambda: any(not g.done for g in srv.engine.in_flight))


async def _left_a_held_whole_answer(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    srv.engine.hold(tag)
    task = asyncio.ensure_future(c.post(URL, json=chat(tag)))
    await until(lambda: any(not g.done for g in srv.engine.in_flight))
    task.cancel()  # httpx closes the connection
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _left_a_relayed_stream(srv: ThreadServer, c: httpx.AsyncClient, tag: str) -> None:
    async with c.stream("POST", URL, json=chat(tag, model="mslow", stream=True)) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break  # one chunk of a 30 s stream, then the client goes away


ENDS: dict[str, Callable[[ThreadServer, httpx.AsyncClient, str], Awaitable[None]]] = {
    "chat stream finished": _finished_stream,
    "responses answer finished": _finished_response,
    "relayed stream finished": _relayed_stream,
    "relay failed": _relay_failed,
    "body refused (400)": _invalid_body,
    "unknown model (404)": _unknown_model,
    "engine queue full (refused after admission)": _refused_by_the_engine,
    "engine failed mid-stream": _engine_failed_mid_stream,
    "client left a held chat stream": _left_a_held_stream,
    "client left a held responses stream": _left_a_held_response_stream,
    "client left a held whole answer": _left_a_held_whole_answer,
    "client left a relayed stream": _left_a_relayed_stream,
}


@pytest.mark.parametrize("end", list(ENDS))
async def test_every_end_frees_the_place(server: ThreadServer, end: str) -> None:
    """With one place per key: however a request ends, the key's next one is admitted."""
    owner, key = new_key(server.data_dir)
    async with client(server, key) as c:
        await ENDS[end](server, c, f"end-{len(end)}-{owner}")
        await until(lambda: in_flight(server, owner) == 0)
        r = await c.post(URL, json=chat("next"))
        assert r.status_code == 200, r.text
    assert in_flight(server, owner) == 0


@pytest.mark.usefixtures("still_minute")  # both requests in one minute
async def test_a_rate_limit_refusal_frees_the_place(server: ThreadServer) -> None:
    """Refused by its rpm after its place was taken: the place is given back."""
    owner, key = new_key(server.data_dir, "--rpm", "1")
    async with client(server, key) as c:
        statuses = [(await c.post(URL, json=chat("x"))).status_code for _ in range(2)]
        assert statuses == [200, 429]
    assert in_flight(server, owner) == 0


async def test_a_key_limit_from_the_database_overrides_the_server_default(
    server: ThreadServer,
) -> None:
    """The server allows one; a key created with --max-in-flight 3 has three, one with 0
    has no limit; ``chatd keys list`` shows them."""
    three_id, three = new_key(server.data_dir, "--max-in-flight", "3")
    free_id, free = new_key(server.data_dir, "--max-in-flight", "0")
    gate = server.engine.hold("override-held")
    async with contextlib.AsyncExitStack() as stack:
        c3 = await stack.enter_async_context(client(server, three))
        cf = await stack.enter_async_context(client(server, free))
        for c, n in ((c3, 3), (cf, 5)):
            for _ in range(n):
                r = await stack.enter_async_context(
                    c.stream("POST", URL, json=chat("override-held", stream=True))
                )
                assert r.status_code == 200
        await until(lambda: in_flight(server, three_id) == 3 and in_flight(server, free_id) == 5)
        assert_in_flight_429(await c3.post(URL, json=chat("x")), 3)
        gate.set()
    await until(lambda: in_flight(server, three_id) == 0 and in_flight(server, free_id) == 0)
    code, out, _ = run_cli("keys", "list", "--data-dir", str(server.data_dir))
    assert code == 0
    assert re.search(rf"{three_id}\s.*in_flight=3", out) and re.search(
        rf"{free_id}\s.*in_flight=0", out
    )


async def test_a_static_key_has_the_default_limit(tmp_path: Path) -> None:
    """An operator's static key is a key like any other."""
    engine = FakeEngine()
    gate = engine.hold("static-held")
    quotas = Quotas(max_in_flight_per_key=2)
    async with running_chatd(tmp_path, engine, api_keys=[API_KEY], quotas=quotas) as srv:
        http = srv.http(API_KEY)
        held = [asyncio.ensure_future(http.post(URL, json=chat("static-held"))) for _ in range(2)]
        counts = srv.app.state.services.in_flight
        owner = srv.app.state.services.auth._owners[0]
        await until(lambda: counts.count(owner) == 2)
        assert_in_flight_429(await http.post(URL, json=chat("more")), 2)
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert counts.count(owner) == 0


async def test_the_open_server_is_not_held_to_the_per_key_limit(tmp_path: Path) -> None:
    """With no key at all there is no key to share the server between: every caller is
    "anonymous", and its requests queue in the engine as they did before the limit."""
    engine = FakeEngine()
    gate = engine.hold("open-held")
    quotas = Quotas(max_in_flight_per_key=2)
    async with running_chatd(tmp_path, engine, api_keys=[], quotas=quotas) as srv:
        http = srv.http(None)
        held = [asyncio.ensure_future(http.post(URL, json=chat("open-held"))) for _ in range(3)]
        counts = srv.app.state.services.in_flight
        await until(lambda: counts.count("anonymous") == 3)
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200, 200]
        assert counts.count("anonymous") == 0


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "--name", "x", "--max-in-flight", "-1"),
        ("keys", "create", "--name", "x", "--max-in-flight", "two"),
        ("serve", "--max-in-flight-per-key", "-5"),
        ("serve", "--max-in-flight-per-key", "1.5"),
    ],
)
def test_bad_limits_are_refused_by_the_command_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, _, err = run_cli(*args, "--data-dir", str(tmp_path))
    assert code == 2 and "whole number" in err, err

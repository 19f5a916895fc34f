"""The graceful drain (api/drain.py) in-process, driven by hand as SIGTERM drives it in
``chatd serve`` (api/shutdown.py; the real signal and process: tests/e2e/test_drain.py):
/health 503 at once, new requests refused with 503 ``server_shutting_down`` and
``Retry-After``, running requests finish, or are cut at the deadline with an error
(never a complete-looking end), and their usage is counted."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.engine import FakeEngine
from sse import astream, response_events
from waiting import until

from chatd.api.drain import Drain

from .checks import HI, URL, check_error
from .harness import API_KEY, BASE_URL, MODEL, Chatd, fake_upstream, run_cli, running_chatd

ENDLESS = " word" * 100_000  # a script no test waits for: only a cut ends it
RETRY_AFTER = "5"


def drain_of(chatd: Chatd) -> Drain:
    return chatd.app.state.services.drain


async def in_flight(chatd: Chatd, n: int, tokens: int = 0) -> None:
    """Until ``n`` generations are running in the engine (the requests are in flight),
    each past its ``tokens``-th step (its first tokens already handed on)."""

    def running() -> list[Any]:
        return [g for g in chatd.engine.in_flight if not g.done]

    def there() -> bool:
        gens = running()
        return len(gens) >= n and all(c.sent >= tokens for g in gens for c in g._choices)

    await until(there, f"{n} generations running, {tokens} tokens each")


class Sent:
    """The app, noting every body chunk it sends (what its clients have been given), so
    a test can wait for a stream's first words instead of giving it time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def noting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                self.bodies.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, noting)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self),
            base_url=BASE_URL,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=120,
        )


def check_shutting_down(r: httpx.Response) -> None:
    check_error(r, 503, param=None, code="server_shutting_down", type="server_error")
    assert r.headers["retry-after"] == RETRY_AFTER
    assert r.headers["connection"] == "close"


async def test_draining_turns_health_503_and_refuses_new_requests(tmp_path: Path) -> None:
    async with running_chatd(tmp_path) as chatd:
        http = chatd.http()
        assert (await http.get("/health")).status_code == 200
        drain_of(chatd).begin()
        health = await http.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "draining"
        assert health.headers["retry-after"] == RETRY_AFTER
        for method, path, payload in [
            ("POST", URL, {"model": MODEL, "messages": HI}),
            ("POST", URL, {"model": MODEL, "messages": HI, "stream": True}),
            ("POST", "/v1/responses", {"model": MODEL, "input": "hi", "stream": True}),
            ("GET", "/v1/models", None),
            ("GET", "/v1/chat/completions", None),
            ("POST", URL, None),  # not even read: refused before its body
        ]:
            check_shutting_down(await http.request(method, path, json=payload))
        assert chatd.engine.submitted == []


async def test_running_requests_finish_within_the_deadline(tmp_path: Path) -> None:
    engine = FakeEngine(" one two three four five six", step_delay=0.02)
    async with running_chatd(tmp_path, engine) as chatd:
        http = chatd.http()
        drain = drain_of(chatd)
        chat = {"model": MODEL, "messages": HI}
        stream = asyncio.create_task(astream(http, chat))
        whole = asyncio.create_task(http.post(URL, json=chat))
        responses = asyncio.create_task(
            http.post("/v1/responses", json={"model": MODEL, "input": "hi", "stream": True})
        )
        await in_flight(chatd, 3)
        elapsed = await drain.run()  # the deadline (30 s) is far: nothing is cut
        assert not drain.cut.done()
        s = await stream
        assert s.status == 200 and s.done and s.content() == " one two three four five six"
        w = await whole
        assert w.status_code == 200 and w.json()["choices"][0]["finish_reason"] == "stop"
        r = await responses
        assert response_events(r.text)[-1]["type"] == "response.completed"
        assert elapsed >= 0
        assert drain.in_flight == 0


async def test_the_deadline_cuts_running_requests_with_an_error(tmp_path: Path) -> None:
    engine = FakeEngine(ENDLESS, step_delay=0.01)
    async with running_chatd(tmp_path, engine) as chatd:
        http = chatd.http()
        drain = drain_of(chatd)
        drain.seconds = 0.05
        chat: dict[str, Any] = {"model": MODEL, "messages": HI, "max_tokens": 5_000}
        stream = asyncio.create_task(astream(http, chat))
        whole = asyncio.create_task(http.post(URL, json=chat))
        rsp = {"model": MODEL, "input": "hi", "max_output_tokens": 5_000}
        responses = asyncio.create_task(http.post("/v1/responses", json={**rsp, "stream": True}))
        responses_whole = asyncio.create_task(http.post("/v1/responses", json=rsp))
        # each has generated (the stream shows words before the cut, whatever the speed)
        await in_flight(chatd, 4, tokens=3)
        await drain.run()
        assert drain.cut.done() and drain.in_flight == 0
        s = await stream
        assert s.status == 200 and not s.done  # never a [DONE] after a cut
        assert s.content().startswith(" word")  # what was generated before the cut
        assert s.chunks[-1]["error"]["code"] == "server_shutting_down"
        check_shutting_down(await whole)
        events = response_events((await responses).text)
        assert events[-1]["type"] == "error"
        assert events[-1]["code"] == "server_shutting_down"
        assert not any(e["type"] == "response.completed" for e in events)
        check_shutting_down(await responses_whole)
        assert not [g for g in chatd.engine.in_flight if not g.done]  # engine slots freed
    # the lifespan flushed the usage of every request, cut or not
    code, out, _ = run_cli("usage", "--data-dir", str(tmp_path))
    assert code == 0
    row = next(line.split() for line in out.splitlines() if MODEL in line)
    assert int(row[3]) == 4  # requests
    assert int(row[5]) > 0  # completion tokens generated before the cut


async def test_a_second_signal_cuts_at_once(tmp_path: Path) -> None:
    """``cut_now`` (a second SIGTERM) ends the wait for the deadline."""
    engine = FakeEngine(ENDLESS, step_delay=0.01)
    async with running_chatd(tmp_path, engine) as chatd:
        http = chatd.http()
        drain = drain_of(chatd)
        drain.seconds = 3600.0
        stream = asyncio.create_task(astream(http, {"model": MODEL, "messages": HI}))
        await in_flight(chatd, 1)
        running = asyncio.create_task(drain.run())
        await asyncio.sleep(0)
        drain.cut_now()
        await running
        s = await stream
        assert not s.done and s.chunks[-1]["error"]["code"] == "server_shutting_down"


async def test_a_request_arriving_after_the_cut_is_refused_whole(tmp_path: Path) -> None:
    """A request already admitted but not yet answering when the cut comes (it could not
    see it) is a 503 before any byte, not a 200 stream that ends at once."""
    async with running_chatd(tmp_path) as chatd:
        drain = drain_of(chatd)
        drain.cut_now()
        drain.draining = False  # as if it had passed the middleware just before
        http = chatd.http()
        check_shutting_down(await http.post(URL, json={"model": MODEL, "messages": HI}))
        stream = await http.post(URL, json={"model": MODEL, "messages": HI, "stream": True})
        check_shutting_down(stream)


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf"])
def test_drain_seconds_must_be_a_number_of_seconds(value: str) -> None:
    code, _, err = run_cli("serve", "--drain-seconds", value)
    assert code == 2
    assert "--drain-seconds" in err and "is not a number of seconds" in err


async def test_relayed_streams_are_cut_and_their_upstreams_closed(tmp_path: Path) -> None:
    """A relay (either wire API) cut by the deadline closes its upstream connection."""
    with fake_upstream() as fake:
        config = "".join(
            f'[[channels]]\nname = "{api}"\nbase_url = "{fake.url}/v1"\napi = "{api}"\n'
            f'models = [{{ id = "slow-{api}", upstream = "slow" }}]\n'
            for api in ("chat", "responses")
        )
        async with running_chatd(tmp_path, config=config) as chatd:
            sent = Sent(chatd.app)
            http = sent.client()
            drain = drain_of(chatd)
            drain.seconds = 0.05
            stream = asyncio.create_task(astream(http, {"model": "slow-chat", "messages": HI}))
            responses = asyncio.create_task(
                http.post(
                    "/v1/responses", json={"model": "slow-responses", "input": "hi", "stream": True}
                )
            )

            def relaying(kind: bytes) -> bool:
                return any(b'"."' in b and kind in b for b in sent.bodies)

            # both have relayed "Hello" and a first "." (the cut comes after words, always)
            await until(
                lambda: relaying(b"chat.completion.chunk") and relaying(b"response.output"),
                "both streams relaying",
            )
            await drain.run()
            s = await stream
            assert s.status == 200 and not s.done and s.content().startswith("Hello")
            assert s.chunks[-1]["error"]["code"] == "server_shutting_down"
            events = response_events((await responses).text)
            assert events[-1]["type"] == "error"
            assert events[-1]["code"] == "server_shutting_down"
            await until(lambda: fake.calls.get("slow_closed", 0) >= 2, "the upstream saw both go")
            await http.aclose()

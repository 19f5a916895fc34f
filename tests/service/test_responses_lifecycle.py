"""A response's life beyond the happy path, over the real app and a scripted FakeEngine:
an engine failing midway (a ``response.failed`` event, or a 500, and nothing stored), a
client that goes away (its engine slot freed, nothing stored), a full queue (503 before
any byte), and the per-key rate limits, which count Responses requests as chat's."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fakes.engine import FakeEngine
from openapi_schemas import assert_valid
from waiting import DEADLINE, until

from .checks import check_error
from .harness import API_KEY, MODEL, chatd_in_thread, running_chatd
from .test_rate_limits import assert_limited, make_key, server

URL = "/v1/responses"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
LONG = " ".join(f"w{i}" for i in range(200))


async def test_engine_failure_midway(tmp_path: Path) -> None:
    engine = FakeEngine(LONG)
    engine.fail_after = 3
    async with running_chatd(tmp_path, engine) as c:
        http = c.http()
        resp = await http.post(URL, json={"model": MODEL, "input": "hi", "stream": True})
        events = [
            json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")
        ]
        for e in events:
            assert_valid("ResponseStreamEvent", e)
        failed = events[-1]
        assert failed["type"] == "response.failed"
        assert failed["response"]["status"] == "failed"
        assert failed["response"]["error"]["code"] == "server_error"
        assert "engine failed" in failed["response"]["error"]["message"]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        whole = await http.post(URL, json={"model": MODEL, "input": "hi"})
        check_error(whole, 500, param=None, code=None, type="server_error")
        rid = failed["response"]["id"]
        assert (await http.get(f"{URL}/{rid}")).status_code == 404  # nothing half-stored


async def test_client_gone_frees_the_slot(tmp_path: Path) -> None:
    engine = FakeEngine(" ".join(["word"] * 3000), step_delay=0.01)  # 30 s if left to run
    with chatd_in_thread(tmp_path, engine) as srv:
        body = {"model": MODEL, "input": "hi", "stream": True}
        async with (
            httpx.AsyncClient(base_url=srv.base_url, headers=AUTH, timeout=DEADLINE) as http,
            http.stream("POST", URL, json=body) as r,
        ):
            assert r.status_code == 200  # (it once ran without a key: a 401 freed no slot)
            seen = 0
            async for line in r.aiter_lines():
                seen += line.startswith("data: ")
                if seen >= 6:
                    (generation,) = engine.in_flight  # generating, mid-answer
                    break  # leave mid-answer
        await until(lambda: not engine.in_flight, "the slot freed")
        # cancelled, not run to its end (what a slot freed by the answer's end would show)
        assert generation.cancelled


async def test_full_queue_is_503_before_any_byte(tmp_path: Path) -> None:
    engine = FakeEngine("hi")
    engine.queue_full = True
    async with running_chatd(tmp_path, engine) as c:
        resp = await c.http().post(URL, json={"model": MODEL, "input": "hi", "stream": True})
        check_error(resp, 503, param=None, code="server_overloaded", type="server_error")
        assert int(resp.headers["Retry-After"]) >= 1


@pytest.mark.usefixtures("still_minute")
async def test_rate_limits_count_responses(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--rpm", "2")
    async with server(tmp_path) as srv:
        http = srv.http(key)
        body = {"model": MODEL, "input": "hi", "store": False}
        assert (await http.post(URL, json=body)).status_code == 200
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        assert (await http.post("/v1/chat/completions", json=chat)).status_code == 200
        assert_limited(await http.post(URL, json=body), "requests")

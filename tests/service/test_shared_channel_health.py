"""Channel health shared by replicas through Redis (``--redis-url``): two apps in this
process, sharing Redis and the same channels, in front of the fake upstream (a thread).
A cooldown replica A learns is skipped by replica B without a failure of its own; a
recovery clears it for both; without Redis each replica still keeps its own health.
Channel names are unique per test, so their Redis keys are too (and are removed)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from chatd.service.channel_health import KEY_PREFIX

from .harness import REDIS_URL, Chatd, Upstream, fake_upstream, free_port, redis_reachable
from .harness import running_chatd as running

MODEL_ID = "mshared"
DEAD_PORT_URL = "http://127.0.0.1:1/v1"  # nothing listens there: connection refused


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with fake_upstream() as u:  # its own: the flaky switch is per upstream
        yield u


@pytest.fixture
async def redis_keys() -> Any:
    """Skips without Redis; removes the test's keys afterwards."""
    if not redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379: nothing to share health through")
    r = redis.from_url(REDIS_URL)
    names: list[str] = []
    yield names
    for name in names:
        async for key in r.scan_iter(f"{KEY_PREFIX}{name}@*"):
            await r.delete(key)
    await r.aclose()


def config(first: tuple[str, str, str], second: tuple[str, str, str]) -> str:
    """Two channels for MODEL_ID, each (name, base_url, upstream id): the first at
    priority 0, cooling for a minute after one failure; the second at priority 1."""
    (n1, url1, up1), (n2, url2, up2) = first, second
    return (
        f'[[channels]]\nname = "{n1}"\nbase_url = "{url1}"\n'
        f'models = [{{ id = "{MODEL_ID}", upstream = "{up1}" }}]\npriority = 0\n'
        "failures_before_cooldown = 1\ncooldown_seconds = 60\n\n"
        f'[[channels]]\nname = "{n2}"\nbase_url = "{url2}"\n'
        f'models = [{{ id = "{MODEL_ID}", upstream = "{up2}" }}]\npriority = 1\n'
    )


async def ask(srv: Chatd) -> httpx.Response:
    return await srv.http().post(
        "/v1/chat/completions",
        json={"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}]},
    )


async def channels(srv: Chatd) -> dict[str, dict[str, Any]]:
    r = await srv.http().get("/v1/channels")
    assert r.status_code == 200, r.text
    return {c["name"]: c for c in r.json()["data"]}


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for the replicas' background sync (a guard against hanging, not a timing)."""
    deadline = time.monotonic() + 120
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


async def failures_total(srv: Chatd, channel: str) -> float:
    r = await srv.http().get("/metrics")
    line = f'chatd_channel_failures_total{{channel="{channel}"}} '
    return float(next(x for x in r.text.splitlines() if x.startswith(line))[len(line) :])


async def replicas(stack: AsyncExitStack, tmp: Path, toml: str, url: str) -> list[Chatd]:
    return [
        await stack.enter_async_context(running(tmp / n, redis_url=url, config=toml))
        for n in ("a", "b")
    ]


@pytest.mark.parametrize("dead_kind", ["refused", "http500"])
async def test_a_cooldown_seen_by_one_replica_is_skipped_by_the_other(
    tmp_path: Path, upstream: Upstream, redis_keys: list[str], dead_kind: str
) -> None:
    dead, ok = f"dead-{uuid.uuid4().hex[:8]}", f"ok-{uuid.uuid4().hex[:8]}"
    redis_keys += [dead, ok]
    # refused: nothing listens; http500: the fake upstream answers 500 and counts calls
    dead_url = DEAD_PORT_URL if dead_kind == "refused" else upstream.url + "/v1"
    toml = config((dead, dead_url, "500"), (ok, upstream.url + "/v1", "ok"))
    for n in ("a", "b"):
        (tmp_path / n).mkdir()
    async with AsyncExitStack() as stack:
        a, b = await replicas(stack, tmp_path, toml, REDIS_URL)
        assert (await channels(b))[dead]["healthy"]

        r = await ask(a)  # the dead channel fails, the working one answers
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Hello"
        assert (await channels(a))[dead]["cooled_elsewhere"] is False
        assert await failures_total(a, dead) == 1

        async def b_sees_it_cooling() -> bool:
            return not (await channels(b))[dead]["healthy"]

        await until(b_sees_it_cooling, "replica B sees the dead channel cooling down")
        seen = (await channels(b))[dead]
        assert seen["failures"] == 0 and seen["cooled_elsewhere"] is True
        assert 0 < seen["cooling_seconds_left"] <= 60
        calls_500, calls_ok = upstream.calls.get("500", 0), upstream.calls.get("ok", 0)

        r = await ask(b)  # straight to the working channel
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Hello"
        assert await failures_total(b, dead) == 0
        assert upstream.calls.get("ok", 0) == calls_ok + 1
        assert upstream.calls.get("500", 0) == calls_500  # B never called the dead one
        if dead_kind == "http500":
            assert calls_500 == 1  # A's one call, the only one
        status = {m["id"]: m for m in (await b.http().get("/v1/channels")).json()["models"]}
        assert status[MODEL_ID]["available"] is True


async def test_a_recovery_clears_the_cooldown_for_every_replica(
    tmp_path: Path, upstream: Upstream, redis_keys: list[str]
) -> None:
    flaky, ok = f"flaky-{uuid.uuid4().hex[:8]}", f"ok-{uuid.uuid4().hex[:8]}"
    redis_keys += [flaky, ok]
    toml = config((flaky, upstream.url + "/v1", "flaky"), (ok, upstream.url + "/v1", "ok"))
    for n in ("a", "b"):
        (tmp_path / n).mkdir()
    upstream.flaky["down"] = True
    async with AsyncExitStack() as stack:
        a, b = await replicas(stack, tmp_path, toml, REDIS_URL)
        assert (await ask(a)).status_code == 200  # flaky fails: cooled for a minute

        async def b_state() -> dict[str, Any]:
            return (await channels(b))[flaky]

        async def cooling_on_b() -> bool:
            return not (await b_state())["healthy"]

        await until(cooling_on_b, "replica B sees the flaky channel cooling down")
        upstream.flaky["down"] = False
        # A probe of the channel after its cooldown succeeds (here: told at once, rather
        # than waiting a minute): every replica routes to it again.
        a_flaky = next(c for c in a.app.state.services.models.channels if c.name == flaky)
        a_flaky.succeeded()

        async def healthy_on_b() -> bool:
            return bool((await b_state())["healthy"])

        await until(healthy_on_b, "replica B sees the flaky channel recovered")
        assert (await channels(a))[flaky]["healthy"]
        calls = upstream.calls.get("flaky", 0)
        assert (await ask(b)).status_code == 200
        assert upstream.calls.get("flaky", 0) == calls + 1  # B routed to it first


@pytest.mark.parametrize("redis_kind", ["refused", "not-redis"])
async def test_without_redis_each_replica_keeps_its_own_health(
    tmp_path: Path, upstream: Upstream, redis_kind: str
) -> None:
    dead, ok = f"dead-{uuid.uuid4().hex[:8]}", f"ok-{uuid.uuid4().hex[:8]}"
    toml = config((dead, DEAD_PORT_URL, "500"), (ok, upstream.url + "/v1", "ok"))
    # refused: nothing listens there; not-redis: an HTTP server (the fake upstream)
    port = free_port() if redis_kind == "refused" else int(upstream.url.rsplit(":", 1)[1])
    nowhere = f"redis://127.0.0.1:{port}/0"
    for n in ("a", "b"):
        (tmp_path / n).mkdir()
    async with AsyncExitStack() as stack:
        a, b = await replicas(stack, tmp_path, toml, nowhere)
        for _ in range(3):  # the first fails over; the others skip the local cooldown
            r = await ask(a)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "Hello"
        assert await failures_total(a, dead) == 1
        state = (await channels(a))[dead]
        assert not state["healthy"] and state["cooled_elsewhere"] is False

        async def logged() -> bool:
            return "shared channel health: Redis unavailable" in a.log.text()

        await until(logged, "replica A logs that Redis is unavailable")
        # B learnt nothing from A: it finds the dead channel out by itself, and answers.
        assert (await channels(b))[dead]["healthy"]
        assert (await ask(b)).status_code == 200
        assert await failures_total(b, dead) == 1
        assert (await ask(b)).status_code == 200
        assert await failures_total(b, dead) == 1

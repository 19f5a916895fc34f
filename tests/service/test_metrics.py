"""GET /metrics: Prometheus text exposition of engine state, usage totals, model
availability and upstream channel health, for operator keys only; in-process over the
real app (the fake upstream runs in a thread: the relay reaches it over a socket)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .harness import API_KEY, MODEL, Chatd, fake_upstream, running_chatd


async def scrape(srv: Chatd, key: str | None = API_KEY) -> dict[tuple[str, str], float]:
    """Every sample as {(sample name, its one label value): value}."""
    r = await srv.http(key).get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(r.text):
        assert family.name.startswith("chatd_"), family.name
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            samples[(s.name, next(iter(s.labels.values()), ""))] = s.value
    return samples


async def ask(srv: Chatd, model: str, key: str | None = None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    return await srv.http(key).post("/v1/chat/completions", json=body)


async def test_engine_usage_and_availability(chatd: Chatd) -> None:
    before = await scrape(chatd)
    r = await ask(chatd, MODEL, API_KEY)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    after = await scrape(chatd)

    def delta(name: str) -> float:
        return after[(name, MODEL)] - before.get((name, MODEL), 0.0)

    assert delta("chatd_requests_total") == 1
    assert delta("chatd_prompt_tokens_total") == usage["prompt_tokens"] > 0
    assert delta("chatd_completion_tokens_total") == usage["completion_tokens"] > 0
    for stat in ("running_requests", "running_sequences", "waiting_requests"):
        assert after[(f"chatd_engine_{stat}", MODEL)] >= 0
    assert after[("chatd_engine_preemptions_total", MODEL)] >= 0  # a counter
    assert after[("chatd_engine_waiting_requests", MODEL)] == 0
    assert after[("chatd_model_available", MODEL)] == 1


async def test_operator_keys_only(chatd: Chatd) -> None:
    code, out, err = chatd.cli("keys", "create", "--name", "metrics-reader")
    assert code == 0, err
    key = re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    http = chatd.http(key)
    assert (await ask(chatd, MODEL, key)).status_code == 200  # a valid key, not an operator's
    r = await http.get("/metrics")
    channels = await http.get("/v1/channels")
    assert r.status_code == channels.status_code == 404
    assert r.json()["error"].keys() == channels.json()["error"].keys()
    assert "/metrics" in r.json()["error"]["message"]
    assert (await chatd.http(None).get("/metrics")).status_code == 401


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    """An open chatd (every caller is the operator) before the misbehaving fake upstream:
    channel "bad" answers 500 and cools down after 2 failures, "good" answers."""
    with fake_upstream() as upstream:
        url = upstream.url
        config = (
            f'[[channels]]\nname = "bad"\nbase_url = "{url}/v1"\n'
            'models = [{ id = "mbad", upstream = "500" }]\n'
            "failures_before_cooldown = 2\ncooldown_seconds = 300\n\n"
            f'[[channels]]\nname = "good"\nbase_url = "{url}/v1"\n'
            'models = [{ id = "mgood", upstream = "ok" }]\n'
        )
        tmp = tmp_path_factory.mktemp("metrics")
        async with running_chatd(tmp, api_keys=[], config=config) as srv:
            yield srv


async def test_channel_cooldown(gateway: Chatd) -> None:
    assert (await ask(gateway, "mgood")).status_code == 200
    for _ in range(2):
        assert (await ask(gateway, "mbad")).status_code == 503
    assert (await ask(gateway, "mbad")).status_code == 503  # cooling: not even tried
    m = await scrape(gateway, key=None)
    assert m[("chatd_channel_healthy", "bad")] == 0
    assert m[("chatd_channel_consecutive_failures", "bad")] == 2
    assert m[("chatd_channel_failures_total", "bad")] == 2
    assert m[("chatd_channel_cooldowns_total", "bad")] == 1
    assert m[("chatd_channel_successes_total", "bad")] == 0
    assert 290 < m[("chatd_channel_cooldown_remaining_seconds", "bad")] <= 300
    assert m[("chatd_channel_healthy", "good")] == 1
    assert m[("chatd_channel_successes_total", "good")] == 1
    assert m[("chatd_channel_cooldown_remaining_seconds", "good")] == 0
    assert m[("chatd_model_available", "mbad")] == 0
    assert m[("chatd_model_available", "mgood")] == 1
    assert m[("chatd_model_available", MODEL)] == 1
    assert m[("chatd_requests_total", "mgood")] == 1
    assert m[("chatd_prompt_tokens_total", "mgood")] == 7  # the fake's usage
    assert m[("chatd_completion_tokens_total", "mgood")] == 2

"""GET /metrics over HTTP: Prometheus text exposition of engine state, usage totals,
model availability and upstream channel health, for operator keys only."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import API_KEY, MODEL, Server, fake_upstream
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent
CHATD = str(Path(sys.executable).parent / "chatd")


def scrape(srv: Server, key: str | None = API_KEY) -> dict[tuple[str, str], float]:
    """Every sample as {(sample name, its one label value): value}."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(srv.base_url + "/metrics", headers=headers, timeout=30)
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


def ask(srv: Server, model: str, key: str | None = None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(srv.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60)


def test_engine_usage_and_availability(server: Server) -> None:
    before = scrape(server)
    r = ask(server, MODEL, API_KEY)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    after = scrape(server)

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


def test_operator_keys_only(server: Server) -> None:
    out = subprocess.run(
        [CHATD, "keys", "create", "--name", "metrics-reader", "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    key = re.search(r"key:\s+(\S+)", out.stdout).group(1)  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {key}"}
    assert ask(server, MODEL, key).status_code == 200  # a valid key, just not an operator's
    r = httpx.get(server.base_url + "/metrics", headers=headers, timeout=30)
    channels = httpx.get(server.base_url + "/v1/channels", headers=headers, timeout=30)
    assert r.status_code == channels.status_code == 404
    assert r.json()["error"].keys() == channels.json()["error"].keys()
    assert "/metrics" in r.json()["error"]["message"]
    assert httpx.get(server.base_url + "/metrics", timeout=30).status_code == 401


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An open chatd (every caller is the operator) before the misbehaving fake upstream:
    channel "bad" answers 500 and cools down after 2 failures, "good" answers."""
    with fake_upstream() as url:
        path = tmp_path_factory.mktemp("metrics") / "chatd.toml"
        path.write_text(
            f'[[channels]]\nname = "bad"\nbase_url = "{url}/v1"\n'
            'models = [{ id = "mbad", upstream = "500" }]\n'
            "failures_before_cooldown = 2\ncooldown_seconds = 300\n\n"
            f'[[channels]]\nname = "good"\nbase_url = "{url}/v1"\n'
            'models = [{ id = "mgood", upstream = "ok" }]\n'
        )
        srv = Server("--config", str(path))
        yield srv
        srv.stop()


def test_channel_cooldown(gateway: Server) -> None:
    assert ask(gateway, "mgood").status_code == 200
    for _ in range(2):
        assert ask(gateway, "mbad").status_code == 503
    assert ask(gateway, "mbad").status_code == 503  # cooling: not even tried
    m = scrape(gateway, key=None)
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

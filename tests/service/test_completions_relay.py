"""``POST /v1/completions`` relayed: to a channel's own ``/v1/completions`` (the fake
upstream, on a real port), the model mapped, only the allowed fields sent, usage asked
for when streaming and counted, failover to the next channel before the first byte,
and a model served only by an Anthropic channel refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from .harness import (
    MODEL,
    ThreadServer,
    Upstream,
    channel_toml,
    chatd_in_thread,
    fake_upstream,
    run_cli,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with fake_upstream() as u:
        yield u


@pytest.fixture(scope="module")
def gateway(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    v1 = upstream.url + "/v1"
    toml = "".join(
        [
            f'[[models]]\nid = "{MODEL}"\npath = "embedded"\n'
            'aliases = ["claude-or-local"]\npriority = 1\n',
            channel_toml("ok", v1, {"instruct": "ok"}, "chat"),
            channel_toml("down", v1, {"failing": "500"}, "chat", "priority = 0"),
            channel_toml("up", v1, {"failing": "ok"}, "chat", "priority = 1"),
            channel_toml("leaky", v1, {"leaky": "leak400", "dying": "midfail"}, "chat"),
            channel_toml("claude", "http://127.0.0.1:1/v1", {"claude-only": "x"}, "anthropic"),
            channel_toml(
                "claude-first",
                "http://127.0.0.1:1/v1",
                {"claude-then": "x"},
                "anthropic",
                "priority = 0",
            ),
            channel_toml("then-ok", v1, {"claude-then": "ok"}, "chat", "priority = 1"),
            channel_toml(
                "claude-before-local",
                "http://127.0.0.1:1/v1",
                {"claude-or-local": "x"},
                "anthropic",
                "priority = 0",
            ),
        ]
    )
    with chatd_in_thread(tmp_path_factory.mktemp("cmpl"), api_keys=[], config=toml) as srv:
        yield srv


def sdk(srv: ThreadServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key="none", max_retries=0)


def test_relayed_whole_with_the_model_mapped(gateway: ThreadServer, upstream: Upstream) -> None:
    r = sdk(gateway).completions.create(
        model="instruct", prompt=["a", "b"], max_tokens=3, user="me", logprobs=1, echo=False
    )
    assert r.model == "instruct" and r.choices[0].text == "Hello"
    assert r.usage is not None and r.usage.total_tokens == 9
    sent = upstream.last["completions:ok"]
    assert sent["model"] == "ok" and sent["prompt"] == ["a", "b"]
    assert sent["max_tokens"] == 3 and sent["logprobs"] == 1
    assert "user" not in sent  # the client's own user is never sent (relay hygiene)


def test_relayed_stream_asks_for_usage_and_passes_it_only_when_asked(
    gateway: ThreadServer, upstream: Upstream
) -> None:
    body = {"model": "instruct", "prompt": "x", "stream": True}
    r = httpx.post(gateway.base_url + "/v1/completions", json=body, timeout=30)
    data = [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello"
    assert all("usage" not in c for c in chunks) and all(c["model"] == "instruct" for c in chunks)
    assert upstream.last["completions:ok"]["stream_options"] == {"include_usage": True}
    stream = sdk(gateway).completions.create(
        model="instruct", prompt="x", stream=True, stream_options={"include_usage": True}
    )
    last: Any = list(stream)[-1]
    assert last.usage is not None and last.usage.total_tokens == 9


def test_failover_before_the_first_byte(gateway: ThreadServer, upstream: Upstream) -> None:
    before = upstream.calls.get("completions:500", 0)
    r = sdk(gateway).completions.create(model="failing", prompt="x")
    assert r.choices[0].text == "Hello" and r.model == "failing"
    assert upstream.calls["completions:500"] == before + 1


def test_an_anthropic_channel_cannot_serve_it(gateway: ThreadServer) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        sdk(gateway).completions.create(model="claude-only", prompt="x")
    assert e.value.param == "model" and "/v1/chat/completions" in e.value.message
    # one with other routes after it: they answer
    r = sdk(gateway).completions.create(model="claude-then", prompt="x")
    assert r.choices[0].text == "Hello" and r.model == "claude-then"
    r = sdk(gateway).completions.create(model="claude-or-local", prompt="x")
    assert r.system_fingerprint == "fp_fakeengine"  # the local model, after the channel


def test_usage_is_recorded_for_relayed_answers(gateway: ThreadServer) -> None:
    """Written in the background (about once a second): waited for, not timed."""
    sdk(gateway).completions.create(model="instruct", prompt="x")
    deadline = time.monotonic() + 30
    while True:
        out = run_cli("usage", "--data-dir", str(gateway.data_dir))[1]
        rows = [ln.split() for ln in out.splitlines() if " instruct " in ln]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows, out
    _, _, _, requests, prompt, completion, *_ = rows[0]
    assert int(requests) >= 1 and int(prompt) >= 7 and int(completion) >= 2


def test_an_upstreams_errors_are_redacted(gateway: ThreadServer) -> None:
    """The fake's ``leak400`` (a 400 naming hosts, keys, paths) and ``midfail`` (an error
    event mid-stream with that message): the client reads none of it."""
    r = httpx.post(gateway.base_url + "/v1/completions", json={"model": "leaky", "prompt": "x"})
    assert r.status_code == 400
    body = {"model": "dying", "prompt": "x", "stream": True}
    cut = httpx.post(gateway.base_url + "/v1/completions", json=body, timeout=30)
    assert '"error"' in cut.text and "[DONE]" not in cut.text
    for text in (r.text, cut.text):
        for secret in (
            "sk-live",
            "sk-proj",
            "10.1.2.3",
            "gpu-box",
            "/srv/vllm",
            "upstream.example",
        ):
            assert secret not in text, text

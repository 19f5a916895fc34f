"""What the service tells the engine about whose prompt it is (``CacheScope``): every
local request, Chat Completions or Responses, streamed or not, is in its caller's own
partition, and only an operator's shared system prompt is declared shareable, up to its
end. Checked over HTTP with two keys against the FakeEngine's record of each submission
(the engine's side of the promise: tests/unit/test_tenant_isolation.py; the real model:
tests/e2e/test_cache_isolation.py)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fakes.engine import FakeEngine

from chatd.config import ConfigError, load_config

from .harness import MODEL, running_chatd

KEY_A = "sk-tenant-a-0123456789"
KEY_B = "sk-tenant-b-0123456789"
PUBLIC = "You are the support bot of Example Corp. Answer politely and briefly."
CONFIG = f"shared_prompts = [{json.dumps(PUBLIC)}]\n"


def chat(system: str | None, user: str, **kw: object) -> dict[str, object]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    return {"model": MODEL, "messages": [*messages, {"role": "user", "content": user}], **kw}


async def send(http: httpx.AsyncClient, path: str, body: dict[str, object]) -> None:
    r = await http.post(path, json=body)
    assert r.status_code == 200, r.text


async def test_each_key_is_its_own_partition_in_both_apis(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine, [KEY_A, KEY_B]) as chatd:
        a, b = chatd.http(KEY_A), chatd.http(KEY_B)
        await send(a, "/v1/chat/completions", chat(None, "secret 1234"))
        await send(b, "/v1/chat/completions", chat(None, "secret 1234", stream=True))
        await send(a, "/v1/responses", {"model": MODEL, "input": "secret 1234"})
        await send(b, "/v1/responses", {"model": MODEL, "input": "x", "stream": True})
        await send(a, "/v1/chat/completions", chat(None, "again", n=2))
    parts = [s.partition for s in engine.scopes]
    assert parts[0] == parts[2] == parts[4] and parts[1] == parts[3]
    assert parts[0] != parts[1] and "" not in parts
    assert KEY_A not in parts and KEY_B not in parts  # the owner id, never the key
    assert all(s.shared == 0 for s in engine.scopes)  # nothing marked shareable


async def test_a_shared_system_prompt_is_shareable_up_to_its_end(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine, [KEY_A, KEY_B], config=CONFIG) as chatd:
        a, b = chatd.http(KEY_A), chatd.http(KEY_B)
        await send(a, "/v1/chat/completions", chat(PUBLIC, "my secret is 1234"))
        await send(b, "/v1/chat/completions", chat(PUBLIC, "hello", stream=True))
        await send(
            b, "/v1/responses", {"model": MODEL, "instructions": PUBLIC, "input": "my secret"}
        )
    shared = {s.shared for s in engine.scopes}
    assert len(shared) == 1 and shared != {0}  # the same public part for every request
    (n,) = shared
    for prompt, _ in engine.submitted:  # (the fake tokenizer joins "\n" to the next marker)
        assert engine.detokenize(prompt[:n]) == f"<|im_start|>system\n{PUBLIC}<|im_end|>"


@pytest.mark.parametrize(
    "body",
    [
        chat(PUBLIC + " ", "hi"),  # not exactly the shared text
        chat("Another prompt.", "hi"),
        chat(None, PUBLIC),  # the shared text as a user message
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": PUBLIC}],
        },
        # tools written into the system message: it is no longer the shared text alone
        chat(PUBLIC, "hi", tools=[{"type": "function", "function": {"name": "f"}}]),
    ],
    ids=["trailing-space", "other", "as-user", "not-first", "tools-joined"],
)
async def test_nothing_else_is_shareable(tmp_path: Path, body: dict[str, object]) -> None:
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine, [KEY_A], config=CONFIG) as chatd:
        await send(chatd.http(KEY_A), "/v1/chat/completions", body)
    assert engine.scopes[-1].shared == 0


def test_shared_prompts_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "chatd.toml"
    path.write_text(CONFIG)
    assert load_config(path).shared_prompts == [PUBLIC]
    for bad in ('shared_prompts = "one"', "shared_prompts = [1]", 'shared_prompts = [""]'):
        path.write_text(bad)
        with pytest.raises(ConfigError, match="shared_prompts: a list of non-empty strings"):
            load_config(path)


async def test_a_developer_message_may_open_with_the_shared_prompt(tmp_path: Path) -> None:
    engine = FakeEngine()
    body = {
        "model": MODEL,
        "messages": [{"role": "developer", "content": PUBLIC}, {"role": "user", "content": "hi"}],
    }
    async with running_chatd(tmp_path, engine, [KEY_A], config=CONFIG) as chatd:
        await send(chatd.http(KEY_A), "/v1/chat/completions", body)
    n = engine.scopes[-1].shared
    assert engine.detokenize(engine.submitted[-1][0][:n]).endswith(f"{PUBLIC}<|im_end|>")

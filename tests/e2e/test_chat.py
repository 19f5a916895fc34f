"""Chat completions on the real embedded model, through the official SDK and raw HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import jinja2
import llama_cpp
import openai
import pytest
from conftest import MODEL, Server
from openapi_schemas import assert_valid
from sse import stream
from waiting import wait_until

from chatd.config import embedded_model_path

EOG = {"0": -100, "2": -100, "4": -100}  # this model's end-of-generation tokens
HELLO = [{"role": "user", "content": "Write a short poem about the sea."}]


def body(**kw: object) -> dict[str, object]:
    return {"model": MODEL, "messages": HELLO, "max_tokens": 8, **kw}


@pytest.fixture(scope="module")
def vocab() -> llama_cpp.Llama:
    """An independent tokenizer (llama-cpp-python's high-level API) to check our counts."""
    return llama_cpp.Llama(str(embedded_model_path()), vocab_only=True, verbose=False)


def greedy(client: openai.OpenAI, messages: list[dict[str, str]], n: int = 24) -> str:
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=n, temperature=0)
    return r.choices[0].message.content or ""


# --- plain and streamed -------------------------------------------------------------------


def test_plain_completion_matches_schema(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=body(temperature=0))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert_valid("CreateChatCompletionResponse", data)
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", data["id"])
    assert data["object"] == "chat.completion"
    assert data["model"] == MODEL
    assert abs(data["created"] - time.time()) < 60
    assert re.fullmatch(r"fp_[0-9a-f]{10}", data["system_fingerprint"])
    assert "service_tier" not in data
    msg = data["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"]
    assert msg["refusal"] is None and msg["annotations"] == []
    assert data["choices"][0]["logprobs"] is None
    assert data["choices"][0]["finish_reason"] in ("stop", "length")


def test_sdk_sync(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6)
    assert r.choices[0].message.content
    assert r.usage is not None and r.usage.completion_tokens <= 6
    chunks = list(
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


async def test_sdk_async(aclient: openai.AsyncOpenAI) -> None:
    r = await aclient.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=6)
    assert r.choices[0].message.content
    text = ""
    s = await aclient.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=6, stream=True
    )
    async for c in s:
        if c.choices:
            text += c.choices[0].delta.content or ""
    assert text


def test_stream_chunks_match_schema_and_order(http: httpx.Client) -> None:
    s = stream(http, body(temperature=0))
    assert s.status == 200 and s.content_type.startswith("text/event-stream")
    assert s.done
    for c in s.chunks:
        assert_valid("CreateChatCompletionStreamResponse", c)
        assert "usage" not in c  # not asked for
        assert c["object"] == "chat.completion.chunk"
    ids = {c["id"] for c in s.chunks}
    assert len(ids) == 1
    first = s.chunks[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert s.chunks[-1]["choices"][0]["delta"] == {}
    assert s.finish_reasons() == {0: [s.chunks[-1]["choices"][0]["finish_reason"]]}
    plain = http.post("/v1/chat/completions", json=body(temperature=0)).json()
    assert s.content() == plain["choices"][0]["message"]["content"]


def test_stream_include_usage(http: httpx.Client) -> None:
    s = stream(http, body(n=2, stream_options={"include_usage": True}))
    last = s.chunks[-1]
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in s.chunks[:-1])
    for c in s.chunks:
        assert_valid("CreateChatCompletionStreamResponse", c)
    usage = last["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert 0 <= usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"]


def test_obfuscation_default_and_off(http: httpx.Client) -> None:
    on = stream(http, body())
    assert all(isinstance(c.get("obfuscation"), str) and c["obfuscation"] for c in on.chunks)
    off = stream(http, body(stream_options={"include_obfuscation": False}))
    assert all("obfuscation" not in c for c in off.chunks)


def test_service_tier_echoed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=2, service_tier="auto"
    )
    assert r.service_tier == "default"


def test_system_fingerprint_stable(client: openai.OpenAI) -> None:
    a = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    b = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    assert a.system_fingerprint == b.system_fingerprint


# --- n, seed, sampling ---------------------------------------------------------------


def test_n_choices(http: httpx.Client) -> None:
    data = http.post("/v1/chat/completions", json=body(n=3, max_tokens=5, logit_bias=EOG)).json()
    assert_valid("CreateChatCompletionResponse", data)
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert data["usage"]["completion_tokens"] == 15  # counted over every choice
    s = stream(http, body(n=3, max_tokens=5, logit_bias=EOG))
    assert s.finish_reasons() == {0: ["length"], 1: ["length"], 2: ["length"]}
    firsts = [c["choices"][0]["index"] for c in s.chunks[:3]]
    assert firsts == [0, 1, 2]  # each choice opens with its role delta
    order = [c["choices"][0]["index"] for c in s.chunks[3:]]
    assert order != sorted(order)  # choices interleave as they are generated


def test_seed_reproducible(client: openai.OpenAI) -> None:
    def run(seed: int) -> list[str]:
        r = client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=16, temperature=1.0, seed=seed, n=2
        )
        return [c.message.content or "" for c in r.choices]

    a, b, c = run(1234), run(1234), run(99)
    assert a == b
    assert a[0] != a[1]  # choices are independent draws
    assert a != c


async def test_seed_reproducible_under_load(aclient: openai.AsyncOpenAI) -> None:
    """A seeded request gives the same tokens whether alone or batched with others."""

    async def seeded() -> str:
        r = await aclient.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=24,
            temperature=1.0,
            seed=7,
            logit_bias=EOG,
        )
        return r.choices[0].message.content or ""

    async def noise(i: int) -> None:
        await aclient.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Tell me about cats. " * (i + 1)}],
            max_tokens=8 + 3 * i,
            temperature=1.0,
        )

    alone = await seeded()
    loaded = await asyncio.gather(seeded(), *[noise(i) for i in range(6)])
    assert loaded[0] == alone


def test_temperature_zero_and_tiny_top_p_are_greedy(client: openai.OpenAI) -> None:
    g = greedy(client, HELLO, 12)
    assert greedy(client, HELLO, 12) == g
    r = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=12, temperature=1.0, top_p=1e-9
    )
    assert r.choices[0].message.content == g


def test_logit_bias(client: openai.OpenAI, vocab: llama_cpp.Llama) -> None:
    base = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=1, temperature=0, logprobs=True
    )
    first = base.choices[0].logprobs.content[0].bytes
    first_id = vocab.tokenize(bytes(first), add_bos=False, special=False)
    assert len(first_id) == 1
    banned = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=1,
        temperature=0,
        logprobs=True,
        logit_bias={str(first_id[0]): -100},
    )
    assert banned.choices[0].logprobs.content[0].bytes != first
    forced_id = vocab.tokenize(b" Banana", add_bos=False, special=False)[0]
    forced = client.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        max_tokens=1,
        temperature=0,
        logit_bias={str(forced_id): 100},
    )
    assert forced.choices[0].message.content == vocab.detokenize([forced_id]).decode()


def test_penalties_change_greedy_output(client: openai.OpenAI) -> None:
    msgs = [{"role": "user", "content": "Repeat the word 'cat' many times."}]
    base = greedy(client, msgs, 24)
    for kw in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        r = client.chat.completions.create(
            model=MODEL, messages=msgs, max_tokens=24, temperature=0, **kw
        )
        assert r.choices[0].message.content != base, kw


def test_max_completion_tokens_wins(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=10, max_completion_tokens=3, logit_bias=EOG
    )
    assert r.usage.completion_tokens == 3
    assert r.choices[0].finish_reason == "length"


# --- stop -----------------------------------------------------------------------------


def test_stop_sequences(client: openai.OpenAI, http: httpx.Client) -> None:
    base = greedy(client, HELLO, 24)
    words = base.split()
    assert len(words) > 4
    stop = " " + words[3]  # a multi-token boundary in the middle of the text
    cut = base.index(stop)
    for stops in (stop, [stop], ["zzzz-never", stop]):
        r = client.chat.completions.create(
            model=MODEL, messages=HELLO, max_tokens=24, temperature=0, stop=stops
        )
        assert r.choices[0].message.content == base[:cut]
        assert r.choices[0].finish_reason == "stop"
        s = stream(http, body(max_tokens=24, temperature=0, stop=stops))
        assert s.content() == base[:cut]
        assert all(
            stop not in (c["choices"][0]["delta"].get("content") or "")
            for c in s.chunks
            if c["choices"]
        )
        assert s.finish_reasons() == {0: ["stop"]}


# --- logprobs -------------------------------------------------------------------------


def test_logprobs(http: httpx.Client) -> None:
    data = http.post(
        "/v1/chat/completions",
        json=body(max_tokens=6, temperature=0, logprobs=True, top_logprobs=3, logit_bias=EOG),
    ).json()
    assert_valid("CreateChatCompletionResponse", data)
    choice = data["choices"][0]
    entries = choice["logprobs"]["content"]
    assert choice["logprobs"]["refusal"] is None
    assert len(entries) == data["usage"]["completion_tokens"] == 6
    content = choice["message"]["content"]
    assert b"".join(bytes(e["bytes"]) for e in entries) == content.encode()
    for e in entries:
        assert e["logprob"] <= 0
        tops = e["top_logprobs"]
        assert len(tops) == 3
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert tops[0]["token"] == e["token"]  # greedy: the chosen token is the most likely
    s = stream(
        http, body(max_tokens=6, temperature=0, logprobs=True, top_logprobs=3, logit_bias=EOG)
    )
    assert s.logprobs() == entries
    assert all(c["choices"][0]["logprobs"] is None for c in s.chunks[:1])


def test_logprobs_zero_top(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=2, logprobs=True, top_logprobs=0
    )
    assert all(e.top_logprobs == [] for e in r.choices[0].logprobs.content)


def test_partial_utf8_tokens(http: httpx.Client) -> None:
    """Emoji are several tokens here; the first holds two bytes of a four-byte character."""
    req = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Give me three emojis about the sun."}],
        "max_tokens": 6,
        "temperature": 0,
    }
    data = http.post("/v1/chat/completions", json={**req, "logprobs": True}).json()
    content = data["choices"][0]["message"]["content"]
    entries = data["choices"][0]["logprobs"]["content"]
    assert entries[0]["bytes"] == [0xF0, 0x9F]
    assert entries[0]["token"] == "\\xf0\\x9f"
    assert b"".join(bytes(e["bytes"]) for e in entries) == content.encode()
    assert "\ufffd" not in content
    s = stream(http, req)
    assert s.content() == content
    for c in s.chunks:
        for ch in c["choices"]:
            delta = ch["delta"].get("content") or ""
            assert "\ufffd" not in delta  # no delta splits a character


# --- usage and prompts ----------------------------------------------------------------


def test_prompt_tokens_exact(client: openai.OpenAI, vocab: llama_cpp.Llama) -> None:
    """Counted independently: the GGUF's template rendered by jinja2, then tokenized."""
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour. Ünïcödé ✓"},
    ]
    template = vocab.metadata["tokenizer.chat_template"]
    text = (
        jinja2.Environment()
        .from_string(template)
        .render(messages=messages, add_generation_prompt=True)
    )
    expected = len(vocab.tokenize(text.encode(), add_bos=False, special=True))
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    assert r.usage.prompt_tokens == expected
    assert r.usage.total_tokens == expected + r.usage.completion_tokens


def test_developer_role_is_system(client: openai.OpenAI) -> None:
    def prompt_tokens(role: str) -> int:
        r = client.chat.completions.create(
            model=MODEL,
            max_tokens=1,
            messages=[{"role": role, "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        )
        return r.usage.prompt_tokens

    assert prompt_tokens("developer") == prompt_tokens("system")


def test_content_parts_and_history(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        max_tokens=2,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ],
    )
    assert r.choices[0].message.content is not None
    # A returned message appended to the history as the SDK serializes it.
    again = client.chat.completions.create(
        model=MODEL,
        max_tokens=2,
        messages=[*HELLO, r.choices[0].message.model_dump(exclude_none=True)],
    )
    assert again.choices[0].message.content is not None


# --- concurrency and disconnects -----------------------------------------------------


async def test_sixteen_concurrent_streams(aclient: openai.AsyncOpenAI) -> None:
    prompts = [f"Count from {i} to {i + 5}." for i in range(16)]

    async def streamed(p: str) -> tuple[str, list[str]]:
        s = await aclient.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": p}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
        text, finishes = "", []
        async for c in s:
            for ch in c.choices:
                text += ch.delta.content or ""
                if ch.finish_reason:
                    finishes.append(ch.finish_reason)
        return text, finishes

    results = await asyncio.gather(*[streamed(p) for p in prompts])
    for p, (text, finishes) in zip(prompts, results, strict=True):
        assert len(finishes) == 1
        alone = await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": p}], max_tokens=16, temperature=0
        )
        assert text == alone.choices[0].message.content


def running(http: httpx.Client) -> int:
    return http.get("/health").json()["models"][MODEL]["running_requests"]


def wait_idle(http: httpx.Client) -> None:
    wait_until(lambda: running(http) == 0, "the engine idle", interval=0.1)


def request_line(server: Server, field: str, value: str) -> dict[str, str]:
    """The server's request-log line whose ``field`` is ``value``, once written (the
    line comes when the request has ended), as its ``key=value`` pairs."""
    found: list[dict[str, str]] = []

    def written() -> bool:
        for line in server.log().splitlines():
            if f" {field}={value} " in f" {line} ":
                pairs = line.split(" chatd.requests: ", 1)[-1].split(" ")
                found.append(dict(p.split("=", 1) for p in pairs if "=" in p))
                return True
        return False

    wait_until(written, f"a request-log line with {field}={value}", interval=0.1)
    return found[0]


def test_stream_disconnect_frees_slot(http: httpx.Client, base_url: str, server: Server) -> None:
    wait_idle(http)
    long = body(max_tokens=4000, logit_bias=EOG, stream=True)
    with (
        httpx.Client(base_url=base_url, headers=http.headers, timeout=120) as c,
        c.stream("POST", "/v1/chat/completions", json=long) as r,
    ):
        request_id = r.headers["x-request-id"]
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen += 1
            if seen >= 5:
                break
        assert running(http) == 1
    wait_idle(http)
    # freed because the client left, not because the 4,000 tokens were done
    line = request_line(server, "request_id", request_id)
    assert line["client_left"] == "true", line
    assert int(line["completion_tokens"]) < 4000, line


def test_non_stream_disconnect_frees_slot(
    http: httpx.Client, base_url: str, server: Server
) -> None:
    wait_idle(http)
    long = body(max_tokens=4000, logit_bias=EOG)
    tag = f"abandoned-{time.monotonic_ns()}"
    with (
        httpx.Client(
            base_url=base_url, headers={**http.headers, "X-Client-Request-Id": tag}, timeout=1.0
        ) as c,
        pytest.raises(httpx.ReadTimeout),  # 4,000 tokens take longer than 1 s anywhere
    ):
        c.post("/v1/chat/completions", json=long)
    wait_idle(http)
    line = request_line(server, "client_request_id", tag)
    assert line["status"] == "499" and line["client_left"] == "true", line
    assert "completion_tokens" not in line or int(line["completion_tokens"]) < 4000, line


def test_json_bodies_are_compact_utf8(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=body(max_tokens=2))
    json.loads(r.content.decode("utf-8"))

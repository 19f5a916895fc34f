"""On the real embedded model: ``/tokenize`` counts what a chat request is billed, the
tokens round-trip through ``/detokenize``, and the model's defaults are on its card and in
``chatd models`` (docs/tokenize.md, docs/models.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from conftest import API_KEY, MODEL, Server

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_tokenize_counts_a_chat_requests_prompt_tokens(http: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "What colour is the sky? <|im_end|> ünïcödé 🙂"},
    ]
    for extra in ({}, {"tools": TOOLS}):
        body = {"model": MODEL, "messages": messages, **extra}
        tokenized = http.post("/tokenize", json=body)
        assert tokenized.status_code == 200, tokenized.text
        chat = http.post("/v1/chat/completions", json={**body, "max_tokens": 1}, timeout=300)
        assert chat.status_code == 200, chat.text
        assert tokenized.json()["count"] == chat.json()["usage"]["prompt_tokens"], extra
        assert tokenized.json()["max_model_len"] == 8192


def test_tokens_round_trip_and_pieces_are_the_text(http: httpx.Client) -> None:
    text = "Hello, wörld! <|im_start|>user 🙂"
    vllm = http.post("/tokenize", json={"model": MODEL, "prompt": text}).json()
    llama = http.post("/tokenize", json={"content": text, "with_pieces": True}).json()
    # SmolLM2 adds no BOS: both dialects' defaults give the same ids here
    assert [t["id"] for t in llama["tokens"]] == vllm["tokens"]
    assert "<|im_start|>" in [t["piece"] for t in llama["tokens"]]  # one special token
    pieces = b"".join(
        bytes(p) if isinstance(p, list) else p.encode()
        for p in (t["piece"] for t in llama["tokens"])
    )
    assert pieces.decode() == text
    back = http.post("/detokenize", json={"tokens": vllm["tokens"]}).json()
    assert back == {"prompt": text, "content": text}


def test_the_embedded_models_defaults_are_on_its_card(http: httpx.Client) -> None:
    card = http.get(f"/v1/models/{MODEL}").json()
    assert card["sampling_defaults"]["temperature"] == 0.2
    assert card["sampling_defaults"]["top_p"] == 0.9
    assert card["max_output_tokens"] == 1024 and card["context_window"] == 8192
    assert card["meta"]["n_ctx_train"] == 8192


def test_chatd_models_shows_the_defaults(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatd.cli", "models", "--url", server.base_url],
        capture_output=True,
        text=True,
        env={**os.environ, "CHATD_API_KEY": API_KEY},
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[0] == MODEL
    assert lines[2].strip() == (
        "defaults: temperature 0.2, top_p 0.9, max output 1024 tokens, window 8192 tokens"
    )

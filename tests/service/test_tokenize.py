"""``POST /tokenize`` and ``POST /detokenize`` over HTTP, in vLLM's and llama.cpp's
dialects (docs/tokenize.md): raw bodies and status codes, over the FakeEngine (one
token per word or ChatML marker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import MODEL, running_chatd

HI = [{"role": "user", "content": "Hi there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def error(http: httpx.AsyncClient, path: str, body: Any, status: int = 400) -> dict:
    r = await http.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()["error"]


async def test_vllm_prompt_gives_count_tokens_and_the_window(http: httpx.AsyncClient) -> None:
    r = await http.post("/tokenize", json={"model": MODEL, "prompt": "Hello big world"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["tokens"]) == 3
    assert body["max_model_len"] == 8192
    assert all(isinstance(t, int) for t in body["tokens"])
    assert "token_strs" not in body
    strs = (
        await http.post("/tokenize", json={"prompt": "Hello big world", "return_token_strs": True})
    ).json()
    assert strs["token_strs"] == ["Hello", " big", " world"]


async def test_llama_cpp_content_with_pieces(http: httpx.AsyncClient) -> None:
    r = await http.post("/tokenize", json={"content": "Hello world", "with_pieces": True})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    assert [t["piece"] for t in tokens] == ["Hello", " world"]
    ids = (await http.post("/tokenize", json={"content": "Hello world"})).json()["tokens"]
    assert [t["id"] for t in tokens] == ids


async def test_special_token_text_is_read_as_the_token(http: httpx.AsyncClient) -> None:
    body = (await http.post("/tokenize", json={"content": "<|im_start|>user"})).json()
    assert body["count"] == 2  # the marker is one token, as the model's tokenizer reads it


async def test_detokenize_gives_the_text_back_in_both_names(http: httpx.AsyncClient) -> None:
    tokens = (await http.post("/tokenize", json={"prompt": "round and round"})).json()["tokens"]
    r = await http.post("/detokenize", json={"model": MODEL, "tokens": tokens})
    assert r.status_code == 200, r.text
    assert r.json() == {"prompt": "round and round", "content": "round and round"}
    empty = await http.post("/detokenize", json={"tokens": []})
    assert empty.json() == {"prompt": "", "content": ""}


async def test_messages_count_is_the_chat_requests_prompt_tokens(
    http: httpx.AsyncClient,
) -> None:
    for extra in ({}, {"tools": TOOLS}):
        body = {"model": MODEL, "messages": HI, **extra}
        tokenized = (await http.post("/tokenize", json=body)).json()
        chat = await http.post("/v1/chat/completions", json=body)
        assert chat.status_code == 200, chat.text
        assert tokenized["count"] == chat.json()["usage"]["prompt_tokens"], extra
    explicit = {"messages": HI, "add_generation_prompt": True, "add_special_tokens": False}
    assert (await http.post("/tokenize", json=explicit)).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a", "content": "b"}, "content"),
        ({"prompt": "a", "messages": HI}, "messages"),
        ({"model": MODEL}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"content": "a", "add_special": 1}, "add_special"),
        ({"prompt": "a", "add_special_tokens": True, "add_special": False}, "add_special"),
        ({"messages": HI, "add_generation_prompt": False}, "add_generation_prompt"),
        ({"messages": HI, "continue_final_message": True}, "continue_final_message"),
        ({"messages": HI, "add_special_tokens": True}, "add_special_tokens"),
        ({"messages": HI, "chat_template": "{{ x }}"}, "chat_template"),
        ({"prompt": "a", "tools": TOOLS}, "tools"),
        ({"prompt": "a", "add_generation_prompt": True}, "add_generation_prompt"),
        ({"prompt": "a", "temperature": 1}, "temperature"),
        ({"prompt": "a", "model": 7}, "model"),
        ({"messages": [{"role": "user"}]}, None),  # the chat contract's own 400
    ],
)
async def test_bad_tokenize_bodies_are_400_naming_the_field(
    http: httpx.AsyncClient, body: dict, param: str | None
) -> None:
    err = await error(http, "/tokenize", body)
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param, err


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tokens": [1, 49152]}, "tokens[1]"),
        ({"tokens": [-1]}, "tokens[0]"),
        ({"tokens": [True]}, "tokens[0]"),
        ({"tokens": "1 2"}, "tokens"),
        ({}, "tokens"),
        ({"tokens": [], "prompt": "x"}, "prompt"),
    ],
)
async def test_bad_detokenize_bodies_are_400_naming_the_field(
    http: httpx.AsyncClient, body: dict, param: str
) -> None:
    assert (await error(http, "/detokenize", body))["param"] == param


async def test_not_json_and_no_key(chatd: Any) -> None:
    http = chatd.http()
    r = await http.post("/tokenize", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = await http.post("/tokenize", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    for path, body in (("/tokenize", {"prompt": "a"}), ("/detokenize", {"tokens": [1]})):
        r = await chatd.http(None).post(path, json=body)
        assert r.status_code == 401, path
        r = await chatd.http("sk-wrong-key-000").post(path, json=body)
        assert r.status_code == 401, path


async def test_an_unknown_model_is_404(http: httpx.AsyncClient) -> None:
    err = await error(http, "/tokenize", {"model": "nope", "prompt": "a"}, 404)
    assert err["code"] == "model_not_found"
    await error(http, "/detokenize", {"model": "nope", "tokens": [1]}, 404)


async def test_a_channel_only_model_is_400_naming_model(tmp_path: Path) -> None:
    config = '[[channels]]\nname = "up"\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["gpt-up"]\n'
    async with running_chatd(tmp_path, config=config) as chatd:
        http = chatd.http()
        err = await error(http, "/tokenize", {"model": "gpt-up", "prompt": "a"})
        assert err["param"] == "model" and "upstream channels" in err["message"]
        err = await error(http, "/detokenize", {"model": "gpt-up", "tokens": [1]})
        assert err["param"] == "model"
        ok = await http.post("/tokenize", json={"prompt": "a"})  # the one local model
        assert ok.status_code == 200, ok.text


async def test_without_model_several_local_models_is_400(tmp_path: Path) -> None:
    config = (
        f'[[models]]\nid = "{MODEL}"\npath = "embedded"\n'
        '[[models]]\nid = "other"\npath = "embedded"\n'
    )
    async with running_chatd(tmp_path, config=config) as chatd:
        http = chatd.http()
        err = await error(http, "/tokenize", {"prompt": "a"})
        assert err["param"] == "model"
        ok = await http.post("/tokenize", json={"model": "other", "prompt": "a"})
        assert ok.status_code == 200, ok.text

"""``POST /v1/embeddings`` over HTTP, in-process (the FakeEngine's mean-pooled vectors):
the openai SDK's calls (floats, its default base64 decoded to the same numbers, lists,
token lists), every bad input a 400 naming its field, ``dimensions`` only where a model
can honour it, usage in the answer and the usage table, and the relay to channels whose
model entry says ``api = "embeddings"`` (failover, the public id, the upstream's usage),
while a chat request for such a model is a 400 naming ``model``."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from fakes.engine import FakeEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .harness import MODEL, Chatd, running_chatd, serve_in_thread

pytestmark = pytest.mark.asyncio


def _norm(v: list[float]) -> float:
    return float(np.linalg.norm(np.asarray(v, dtype=np.float64)))


async def test_sdk_float_and_base64_agree(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    floats = await client.embeddings.create(
        model=MODEL, input="The cat sat on the mat.", encoding_format="float"
    )
    # the SDK asks for base64 by default and decodes it into floats itself
    default = await client.embeddings.create(model=MODEL, input="The cat sat on the mat.")
    assert floats.object == "list" and floats.model == MODEL
    [item] = floats.data
    assert item.object == "embedding" and item.index == 0
    assert len(item.embedding) == chatd.engine.embedding_dimensions
    assert abs(_norm(item.embedding) - 1.0) < 1e-5
    assert default.data[0].embedding == item.embedding  # float32 both ways: exactly equal
    n = len(chatd.engine.tokenize_text("The cat sat on the mat."))
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == n


async def test_base64_is_little_endian_float32(http: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "input": ["one two", "three"]}
    floats = (await http.post("/v1/embeddings", json=body)).json()
    raw = (await http.post("/v1/embeddings", json={**body, "encoding_format": "base64"})).json()
    for f, b in zip(floats["data"], raw["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.tolist() == f["embedding"]


async def test_lists_of_strings_and_tokens(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    texts = ["alpha beta", "gamma", "alpha beta gamma delta"]
    batch = await client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2]
    singles = [
        (await client.embeddings.create(model=MODEL, input=t, encoding_format="float"))
        .data[0]
        .embedding
        for t in texts
    ]
    assert [d.embedding for d in batch.data] == singles
    tokens = [chatd.engine.tokenize_text(t) for t in texts]
    by_tokens = await client.embeddings.create(model=MODEL, input=tokens, encoding_format="float")
    assert [d.embedding for d in by_tokens.data] == singles
    one = await client.embeddings.create(model=MODEL, input=tokens[2], encoding_format="float")
    assert one.data[0].embedding == singles[2]
    assert by_tokens.usage.prompt_tokens == sum(len(t) for t in tokens)


async def test_similar_texts_are_closer(client: openai.AsyncOpenAI) -> None:
    texts = ["red apples and green pears", "green pears and red apples taste", "tax law 2024"]
    data = (await client.embeddings.create(model=MODEL, input=texts, encoding_format="float")).data
    a, b, c = (np.asarray(d.embedding) for d in data)
    assert float(a @ b) > float(a @ c)


async def test_dimensions(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    native = chatd.engine.embedding_dimensions
    ok = await client.embeddings.create(model=MODEL, input="x", dimensions=native)
    assert len(ok.data[0].embedding) == native
    with pytest.raises(openai.BadRequestError) as e:
        await client.embeddings.create(model=MODEL, input="x", dimensions=8)
    assert e.value.body["param"] == "dimensions"  # type: ignore[index]
    assert e.value.body["code"] == "unsupported_parameter"  # type: ignore[index]
    assert "does not support specifying dimensions" in e.value.body["message"]  # type: ignore[index]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"input": ""}, "input"),
    ({"input": ["a", ""]}, "input"),
    ({"input": []}, "input"),
    ({"input": [[]]}, "input"),
    ({"input": [[1, 2], []]}, "input"),
    ({"input": ["a", 1]}, "input"),
    ({"input": [1, -2]}, "input"),
    ({"input": [True]}, "input"),
    ({"input": [1.5]}, "input"),
    ({"input": {"text": "a"}}, "input"),
    ({"input": 7}, "input"),
    ({"input": ["x"] * 2049}, "input"),
    ({"input": [999999]}, "input"),  # no such token in the model's vocabulary
    ({}, "input"),
    ({"input": None}, "input"),
    ({"input": "a", "encoding_format": "binary"}, "encoding_format"),
    ({"input": "a", "encoding_format": 1}, "encoding_format"),
    ({"input": "a", "dimensions": 0}, "dimensions"),
    ({"input": "a", "dimensions": "64"}, "dimensions"),
    ({"input": "a", "dimensions": 64.0}, "dimensions"),
    ({"input": "a", "dimensions": True}, "dimensions"),
    ({"input": "a", "user": 5}, "user"),
    ({"input": "a", "stream": True}, "stream"),
    ({"input": "a", "model": 5}, "model"),
]


@pytest.mark.parametrize(("fields", "param"), BAD)
async def test_bad_inputs_are_400_naming_the_field(
    http: httpx.AsyncClient, fields: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, **fields}
    response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


async def test_missing_model_and_unknown_model(http: httpx.AsyncClient) -> None:
    missing = await http.post("/v1/embeddings", json={"input": "a"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"
    unknown = await http.post("/v1/embeddings", json={"model": "nope", "input": "a"})
    assert unknown.status_code == 404


async def test_not_json_and_no_key(chatd: Chatd, http: httpx.AsyncClient) -> None:
    bad = await http.post(
        "/v1/embeddings", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    anonymous = await chatd.http(None).post("/v1/embeddings", json={"model": MODEL, "input": "a"})
    assert anonymous.status_code == 401


async def test_input_longer_than_the_context_is_400(chatd: Chatd, http: httpx.AsyncClient) -> None:
    limit = chatd.engine.embedding_limit
    tokens = [1] * (limit + 5)
    response = await http.post("/v1/embeddings", json={"model": MODEL, "input": tokens})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert error["message"].startswith(
        f"This model's maximum context length is {limit} tokens, however you requested"
        f" {limit + 5} tokens"
    )


async def test_user_is_accepted(client: openai.AsyncOpenAI) -> None:
    answer = await client.embeddings.create(model=MODEL, input="hi", user="user-1")
    assert len(answer.data) == 1


async def test_usage_is_recorded(tmp_path: Path) -> None:
    async with running_chatd(tmp_path) as c:
        await c.sdk().embeddings.create(model=MODEL, input=["one two three", "four"])
        buffer = c.app.state.embeddings.usage
        await buffer.flush()
        rows = await buffer.store.rows()
    got = [(r.model, r.requests, r.prompt_tokens, r.completion_tokens) for r in rows]
    assert (MODEL, 1, 4, 0) in got, got


async def test_client_gone_cancels_the_job(tmp_path: Path) -> None:
    """A client that leaves while its job waits: the engine is told to drop it."""
    import asyncio
    import threading

    async with running_chatd(tmp_path) as c:
        c.engine.embed_gate = threading.Event()
        http = c.http()
        task = asyncio.create_task(
            http.post("/v1/embeddings", json={"model": MODEL, "input": "held"})
        )
        for _ in range(2000):  # until the job reached the engine
            if c.engine.embedded:
                break
            await asyncio.sleep(0.005)
        assert c.engine.embedded
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task
        for _ in range(2000):
            if c.engine.embeds_cancelled:
                break
            await asyncio.sleep(0.005)
        assert c.engine.embeds_cancelled == 1
        c.engine.embed_gate.set()


# --- the relay --------------------------------------------------------------------------


def _upstream_app() -> Starlette:
    """An OpenAI-compatible upstream's /v1/embeddings: ``emb-ok`` answers (with usage
    7), ``emb-500`` fails, ``emb-nousage`` answers without usage; its chat route
    counts calls (none is expected for an embedding model)."""
    seen: list[dict[str, Any]] = []
    chats: list[dict[str, Any]] = []

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        if body["model"] == "emb-500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        n = len(body["input"]) if isinstance(body["input"], list) else 1
        data = [{"object": "embedding", "index": i, "embedding": [0.6, 0.8]} for i in range(n)]
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if body["model"] != "emb-nousage":
            answer["usage"] = {"prompt_tokens": 7, "total_tokens": 7}
        return JSONResponse(answer)

    async def chat(request: Request) -> JSONResponse:
        chats.append(await request.json())
        return JSONResponse({"error": {"message": "not a chat model"}}, 404)

    app = Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )
    app.state.seen = seen
    app.state.chats = chats
    return app


@contextlib.contextmanager
def _upstream() -> Iterator[tuple[str, Starlette]]:
    app = _upstream_app()
    with serve_in_thread(app) as url:
        yield url + "/v1", app


def _config(url: str) -> str:
    return (
        '[[channels]]\nname = "bad"\nbase_url = "' + url + '"\npriority = 0\n'
        'models = [{id = "text-embedding-3-small", upstream = "emb-500", api = "embeddings"}]\n'
        '[[channels]]\nname = "good"\nbase_url = "' + url + '"\npriority = 1\n'
        "models = [\n"
        '  {id = "text-embedding-3-small", upstream = "emb-ok", api = "embeddings"},\n'
        '  {id = "quiet-embedder", upstream = "emb-nousage", api = "embeddings"},\n'
        '  "gpt-4o-mini",\n'
        "]\n"
    )


@contextlib.asynccontextmanager
async def _relaying(tmp: Path) -> AsyncIterator[tuple[Chatd, Starlette]]:
    with _upstream() as (url, upstream):
        async with running_chatd(tmp, config=_config(url)) as c:
            yield c, upstream


async def test_relay_fails_over_and_names_the_public_model(tmp_path: Path) -> None:
    async with _relaying(tmp_path) as (c, upstream):
        sdk = c.sdk()
        answer = await sdk.embeddings.create(
            model="text-embedding-3-small",
            input=["a", "b"],
            encoding_format="float",
            dimensions=2,
            user="client-user",
        )
        assert answer.model == "text-embedding-3-small"
        assert [d.embedding for d in answer.data] == [[0.6, 0.8], [0.6, 0.8]]
        assert answer.usage.prompt_tokens == 7
        sent = upstream.state.seen
        assert [b["model"] for b in sent] == ["emb-500", "emb-ok"]  # failed over
        assert sent[-1] == {
            "input": ["a", "b"],
            "encoding_format": "float",
            "dimensions": 2,
            "model": "emb-ok",
        }  # the client's own user is never sent


async def test_relay_without_usage_is_estimated(tmp_path: Path) -> None:
    async with _relaying(tmp_path) as (c, _):
        answer = await c.sdk().embeddings.create(
            model="quiet-embedder", input=[1, 2, 3], encoding_format="float"
        )
        assert answer.data[0].embedding == [0.6, 0.8]


async def test_chat_on_an_embedding_model_is_400_and_embeddings_on_a_chat_model(
    tmp_path: Path,
) -> None:
    async with _relaying(tmp_path) as (c, upstream):
        sdk = c.sdk()
        with pytest.raises(openai.BadRequestError) as e:
            await sdk.chat.completions.create(
                model="text-embedding-3-small", messages=[{"role": "user", "content": "hi"}]
            )
        assert e.value.body["param"] == "model"  # type: ignore[index]
        assert upstream.state.chats == []
        with pytest.raises(openai.BadRequestError) as e:
            await sdk.embeddings.create(model="gpt-4o-mini", input="hi")
        assert e.value.body["param"] == "model"  # type: ignore[index]
        assert "does not serve embeddings" in e.value.body["message"]  # type: ignore[index]


async def test_a_local_embedding_model_refuses_chat(tmp_path: Path) -> None:
    """A GGUF with its own pooling type (an embedding model) embeds; a chat request for
    it is a 400 naming ``model``, never a generation."""
    engine = FakeEngine()
    engine.embedding_only = True
    engine.embedding_pooling = "cls"
    async with running_chatd(tmp_path, engine) as c:
        sdk = c.sdk()
        with pytest.raises(openai.BadRequestError) as e:
            await sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        assert e.value.body["param"] == "model"  # type: ignore[index]
        assert engine.submitted == []
        answer = await sdk.embeddings.create(model=MODEL, input="hi")
        assert len(answer.data[0].embedding) == engine.embedding_dimensions


async def test_a_reranker_makes_no_embeddings(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.embedding_only = True
    engine.embedding_pooling = "rank"
    async with running_chatd(tmp_path, engine) as c:
        response = await c.http().post("/v1/embeddings", json={"model": MODEL, "input": "a"})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "model"
        assert engine.embedded == []

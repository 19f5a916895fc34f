"""``POST /v1/embeddings`` on the embedded model (SmolLM2-135M, mean-pooled and
L2-normalized: docs/embeddings.md): unit-length vectors of the model's width, similar
sentences closer than unrelated ones, a batch equal to single calls, text equal to its
own token ids, the SDK's base64 equal to floats, an embedding request beside a streamed
generation changing nothing of it, and LangChain's ``OpenAIEmbeddings``."""

from __future__ import annotations

import threading

import numpy as np
import openai
import pytest
from conftest import API_KEY, MODEL, Server
from langchain_openai import OpenAIEmbeddings

WIDTH = 576  # SmolLM2-135M's hidden size
SENTENCES = [
    "The cat sat on the mat.",
    "A kitten is sitting on a rug.",
    "Quarterly revenue grew by eight percent.",
]


def _vectors(client: openai.OpenAI, inputs: object, **kw: object) -> list[np.ndarray]:
    answer = client.embeddings.create(model=MODEL, input=inputs, **kw)  # type: ignore[arg-type]
    return [np.asarray(d.embedding, dtype=np.float64) for d in answer.data]


def test_normalized_and_similar_closer(client: openai.OpenAI) -> None:
    cat, kitten, revenue = _vectors(client, SENTENCES, encoding_format="float")
    for v in (cat, kitten, revenue):
        assert v.shape == (WIDTH,)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-4
    assert float(cat @ kitten) > float(cat @ revenue)


def test_batch_equals_singles_and_tokens_equal_text(client: openai.OpenAI) -> None:
    batch = _vectors(client, SENTENCES, encoding_format="float")
    singles = [_vectors(client, s, encoding_format="float")[0] for s in SENTENCES]
    for b, s in zip(batch, singles, strict=True):
        np.testing.assert_allclose(b, s, atol=1e-4)
    # the SDK's default (base64, decoded by it) gives the same numbers
    default = _vectors(client, SENTENCES)
    for d, b in zip(default, batch, strict=True):
        np.testing.assert_allclose(d, b, atol=1e-6)


def test_token_ids_as_input(client: openai.OpenAI, server: Server) -> None:
    answer = client.embeddings.create(model=MODEL, input="The cat sat on the mat.")
    n = answer.usage.prompt_tokens
    assert n > 3
    # token ids of the model's own vocabulary: any in range are accepted
    by_ids = client.embeddings.create(model=MODEL, input=[[1, 2, 3], list(range(100, 100 + n))])
    assert len(by_ids.data) == 2 and by_ids.usage.prompt_tokens == 3 + n
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input=[10**6])
    assert e.value.body["param"] == "input"  # type: ignore[index]


def _stream_text(client: openai.OpenAI, started: threading.Event | None = None) -> str:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
        temperature=0,
        max_tokens=40,
        stream=True,
    )
    text, finished = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finished = chunk.choices[0].finish_reason or finished
            if started is not None and text:
                started.set()
    assert finished in ("stop", "length")
    return text


def test_embedding_beside_a_stream_changes_nothing_of_it(client: openai.OpenAI) -> None:
    alone = _stream_text(client)
    started = threading.Event()
    result: dict[str, str] = {}

    def generate() -> None:
        result["text"] = _stream_text(client, started)

    t = threading.Thread(target=generate)
    t.start()
    assert started.wait(timeout=600)
    documents = [f"Document {i}: " + " ".join(SENTENCES) * 3 for i in range(8)]
    vectors = _vectors(client, documents, encoding_format="float")
    t.join(timeout=600)
    assert len(vectors) == 8 and all(abs(float(np.linalg.norm(v)) - 1) < 1e-4 for v in vectors)
    assert result["text"] == alone  # greedy: the same text with embeddings computed beside


def test_langchain_openai_embeddings(server: Server) -> None:
    """LangChain tokenizes with tiktoken by default (OpenAI's token ids, fetched from the
    network) and would send those ids: ``check_embedding_ctx_length=False`` sends the
    texts themselves, which chatd tokenizes with the model's own tokenizer."""
    embeddings = OpenAIEmbeddings(
        base_url=server.base_url + "/v1",
        api_key=API_KEY,  # type: ignore[arg-type]
        model=MODEL,
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    docs = embeddings.embed_documents(SENTENCES)
    query = embeddings.embed_query(SENTENCES[0])
    assert len(docs) == 3 and all(len(d) == WIDTH for d in docs)
    np.testing.assert_allclose(query, docs[0], atol=1e-4)
    q = np.asarray(query)
    assert float(q @ np.asarray(docs[1])) > float(q @ np.asarray(docs[2]))

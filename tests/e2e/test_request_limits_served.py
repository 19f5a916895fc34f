"""Request limits against a real ``chatd serve`` (real uvicorn, real llguidance, real
KV cache): a body over the limit is refused over a socket, declared or chunked; a
schema the real compiler is still on when the compile limit passes is a 400, and the
server answers the next request; n x max_tokens past the KV cache is a 400 before
admission (it was a 500 "does not fit" from the engine). The limits' other cases run
in-process (tests/service/test_request_limits.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import API_KEY, MODEL, Server
from json_schemas import fmt


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    srv = Server(
        "--api-key", API_KEY,
        "--n-ctx", "2048",
        "--context-window", "1024",
        "--max-body-bytes", "1000000",
        "--max-schema-bytes", "0",  # let the hostile schema reach the compiler
        "--grammar-timeout", "0.05",
    )  # fmt: skip
    try:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=srv.base_url, headers=headers, timeout=120) as c:
            yield c
    finally:
        srv.stop()


ASK = [{"role": "user", "content": "Describe a person as JSON."}]


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    assert error(http.post("/v1/chat/completions", json=big), 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"model": "' + MODEL.encode() + b'", "input": "'
        for _ in range(2000):  # 2 MB if it were all read
            yield b"x" * 1000
        yield b'"}'

    r = http.post("/v1/responses", content=chunks(), headers={"Content-Type": "application/json"})
    assert error(r, 413)["code"] == "request_too_large"
    ok = http.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, "max_tokens": 1})
    assert ok.status_code == 200, ok.text


def test_hostile_schema_is_refused_and_the_server_goes_on(http: httpx.Client) -> None:
    """100 alternatives of 100 patterned properties: ~0.8 s of llguidance work."""
    props = {f"k{j}": {"type": "string", "pattern": f"[a-z]{{{j}}}"} for j in range(100)}
    hostile = {"anyOf": [{"type": "object", "properties": props} for _ in range(100)]}
    body = {"model": MODEL, "messages": ASK, "response_format": fmt(hostile, False)}
    assert len(json.dumps(body)) < 1_000_000
    err = error(http.post("/v1/chat/completions", json=body), 400)
    assert (err["param"], err["code"]) == (
        "response_format.json_schema.schema",
        "grammar_too_complex",
    )
    small = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    r = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": ASK,
            "response_format": fmt(small, False),
            "max_tokens": 5,
        },
    )
    assert r.status_code == 200, r.text


def test_n_times_max_tokens_past_the_kv_cache_is_400(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": ASK, "n": 4, "max_tokens": 600}
    err = error(http.post("/v1/chat/completions", json=body), 400)
    assert (err["param"], err["code"]) == ("n", "invalid_value")
    assert "KV cache holds (2048)" in err["message"]

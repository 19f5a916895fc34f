"""response_format json_object / json_schema, enforced by constrained decoding: even a
135M model's output parses and validates, streamed or not. The refusals of bad schemas
and of json_object without "JSON" run in-process (tests/service/test_structured_inputs.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from conftest import MODEL
from json_schemas import DEFS, LOOSE, PERSON, fmt
from openapi_schemas import assert_valid
from sse import stream

ASK = [{"role": "user", "content": "Describe a person as JSON."}]


def ask(http: httpx.Client, **kw: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, **kw})


def test_json_object(http: httpx.Client) -> None:
    r = ask(http, response_format={"type": "json_object"}, max_tokens=200, temperature=0)
    assert r.status_code == 200, r.text
    data = r.json()
    assert_valid("CreateChatCompletionResponse", data)
    assert data["choices"][0]["finish_reason"] == "stop"
    value = json.loads(data["choices"][0]["message"]["content"])
    assert isinstance(value, dict)
    s = stream(
        http,
        {
            "model": MODEL,
            "messages": ASK,
            "max_tokens": 200,
            "temperature": 0,
            "response_format": {"type": "json_object"},
        },
    )
    assert s.content() == data["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("schema", "strict"),
    [(PERSON, True), (DEFS, True), (LOOSE, False), (LOOSE, None)],
    ids=["person-strict", "defs-strict", "loose", "loose-default"],
)
def test_json_schema_outputs_validate(
    http: httpx.Client, schema: dict, strict: bool | None
) -> None:
    r = ask(http, response_format=fmt(schema, strict), max_tokens=300, temperature=1.0, n=3, seed=3)
    assert r.status_code == 200, r.text
    for choice in r.json()["choices"]:
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_streamed_json_schema_is_the_same_json(http: httpx.Client) -> None:
    body = {
        "model": MODEL,
        "messages": ASK,
        "max_tokens": 300,
        "temperature": 0,
        "response_format": fmt(PERSON),
    }
    plain = http.post("/v1/chat/completions", json=body).json()
    content = plain["choices"][0]["message"]["content"]
    s = stream(http, body)
    assert s.content() == content
    assert s.finish_reasons() == {0: ["stop"]}
    for c in s.chunks:
        assert_valid("CreateChatCompletionStreamResponse", c)
    jsonschema.validate(json.loads(content), PERSON)


def test_sdk_parse(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, response_format=fmt(PERSON), max_tokens=300, temperature=0
    )
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), PERSON)


def test_length_is_the_only_way_to_invalid_json(http: httpx.Client) -> None:
    r = ask(http, response_format=fmt(PERSON), max_tokens=5, temperature=0)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["content"])


def test_strict_false_accepts_what_strict_refuses(http: httpx.Client) -> None:
    r = ask(http, response_format=fmt(LOOSE, strict=False), max_tokens=60, temperature=0)
    assert r.status_code == 200

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
from json_schemas import DEFS, LOOSE, PERSON, fmt, strict_loads
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
    # (an absent ``strict`` is ``strict: false``, the same grammar: checked in-process,
    # tests/service/test_structured_inputs.py, not sampled twice here)
    [(PERSON, True), (DEFS, True), (LOOSE, False)],
    ids=["person-strict", "defs-strict", "loose"],
)
def test_json_schema_outputs_validate(
    http: httpx.Client, schema: dict, strict: bool | None
) -> None:
    # Sampled at temperature 1, the 135M model sometimes rambles inside a free string
    # until max_tokens (any string is valid there): such a choice is cut, not invalid.
    # Every choice that ended validates, and the seed makes at least one end.
    r = ask(http, response_format=fmt(schema, strict), max_tokens=300, temperature=1.0, n=3, seed=3)
    assert r.status_code == 200, r.text
    ended = [c for c in r.json()["choices"] if c["finish_reason"] == "stop"]
    assert ended, r.json()["choices"]
    for choice in r.json()["choices"]:
        assert choice["finish_reason"] in ("stop", "length"), choice
    for choice in ended:
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_streamed_json_schema_is_the_same_json(http: httpx.Client, client: openai.OpenAI) -> None:
    """The official SDK's answer (not streamed) and a raw stream of the same greedy
    request: the same JSON, valid (one constrained generation fewer than asking the
    SDK in a test of its own: they are among the suite's slowest)."""
    body = {
        "model": MODEL,
        "messages": ASK,
        "max_tokens": 300,
        "temperature": 0,
        "response_format": fmt(PERSON),
    }
    plain = client.chat.completions.create(**body)  # type: ignore[call-overload]
    content = plain.choices[0].message.content or ""
    assert plain.choices[0].finish_reason == "stop"
    s = stream(http, body)
    assert s.content() == content
    assert s.finish_reasons() == {0: ["stop"]}
    for c in s.chunks:
        assert_valid("CreateChatCompletionStreamResponse", c)
    jsonschema.validate(json.loads(content), PERSON)


def test_length_is_the_only_way_to_invalid_json(http: httpx.Client) -> None:
    r = ask(http, response_format=fmt(PERSON), max_tokens=5, temperature=0)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["content"])


def test_strict_false_accepts_what_strict_refuses(http: httpx.Client) -> None:
    r = ask(http, response_format=fmt(LOOSE, strict=False), max_tokens=60, temperature=0)
    assert r.status_code == 200


# --- unique keys (engine/json_keys.py) ---------------------------------------------------

DOG = {  # what the llm CLI sends for --schema 'name, age int'
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
INVENT = [{"role": "user", "content": "Invent a dog."}]


@pytest.mark.parametrize(
    "schema",
    [DOG, {**DOG, "required": []}],
    ids=["required", "optional"],
)
def test_a_non_strict_schema_cannot_repeat_keys(http: httpx.Client, schema: dict) -> None:
    # Was '{"name":"Sterk","age":25,"description":"...","description":"...' until
    # max_tokens: the grammar let undeclared keys in, and repeat.
    r = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": INVENT,
            "response_format": fmt(schema, strict=None, name="dog"),
            "temperature": 0,
            "max_tokens": 200,
        },
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    value = strict_loads(choice["message"]["content"])
    jsonschema.validate(value, schema)
    assert set(value) <= {"name", "age"}
    if schema["required"]:
        assert value == {"name": value["name"], "age": value["age"]}


def test_json_object_keys_are_unique(http: httpx.Client) -> None:
    ask_dogs = 'Write JSON with three dogs, each under the key "dog".'
    r = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": ask_dogs}],
            "response_format": {"type": "json_object"},
            "temperature": 1.0,
            "seed": 7,
            "n": 3,
            "max_tokens": 60,
        },
    )
    assert r.status_code == 200, r.text
    for choice in r.json()["choices"]:
        if choice["finish_reason"] != "length":
            assert isinstance(strict_loads(choice["message"]["content"]), dict)


def test_tool_arguments_with_open_objects_have_unique_keys(http: httpx.Client) -> None:
    loose = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "additionalProperties": {"type": "string"},
    }
    r = http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": INVENT,
            "tools": [{"type": "function", "function": {"name": "make_dog", "parameters": loose}}],
            "tool_choice": "required",
            "temperature": 1.0,
            "seed": 3,
            "max_tokens": 100,
        },
    )
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    if choice["finish_reason"] != "length":
        for call in choice["message"]["tool_calls"]:
            jsonschema.validate(strict_loads(call["function"]["arguments"]), loose)

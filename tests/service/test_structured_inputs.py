"""Structured-output and tool inputs the service refuses before anything is
generated: response_format schemas (strict-mode rules, invalid schemas), json_object
without the word JSON, and malformed tools; in-process over the real app (the
FakeEngine's grammar compiler accepts anything, so each refusal is the service's own
check; what needs the real compiler or real output stays in tests/e2e/)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from json_schemas import LOOSE, fmt
from openapi_schemas import assert_valid

from .harness import MODEL, Chatd

ASK = [{"role": "user", "content": "Describe a person as JSON."}]
TOOL_ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


async def ask(http: httpx.AsyncClient, **kw: Any) -> httpx.Response:
    return await http.post("/v1/chat/completions", json={"model": MODEL, "messages": ASK, **kw})


async def test_json_object_needs_the_word_json(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Describe a person."}],
            "response_format": {"type": "json_object"},
        },
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages"


async def _strict_error(http: httpx.AsyncClient, schema: dict[str, Any]) -> dict[str, Any]:
    r = await ask(http, response_format=fmt(schema), max_tokens=5)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert_valid("ErrorResponse", r.json())
    assert error["param"] == "response_format.json_schema.schema"
    assert error["code"] == "invalid_json_schema"
    return error


def _obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
        **extra,
    }


@pytest.mark.parametrize(
    ("schema", "path", "words"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "#",
            "additionalProperties",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "#",
            "'b'",
        ),
        (_obj({"a": _obj({"b": {"type": "string"}}, required=[])}), "#/properties/a", "'b'"),
        (_obj({"a": {"type": "string", "minLength": 1}}), "#/properties/a", "minLength"),
        (_obj({"a": {"allOf": [{"type": "string"}]}}), "#/properties/a", "allOf"),
        (_obj({"a": {"type": "string", "format": "binary"}}), "#/properties/a", "binary"),
        (
            _obj({"a": {"type": "array", "items": {"type": "object", "properties": {}}}}),
            "#/properties/a/items",
            "additionalProperties",
        ),
        ({"anyOf": [_obj({"a": {"type": "string"}})]}, "#", "root"),
        ({"type": "array", "items": {"type": "string"}}, "#", "root"),
    ],
    ids=[
        "no-additional",
        "not-all-required",
        "nested-required",
        "minLength",
        "allOf",
        "format",
        "items-object",
        "root-anyof",
        "root-array",
    ],
)
async def test_strict_mode_rules(
    http: httpx.AsyncClient, schema: dict, path: str, words: str
) -> None:
    error = await _strict_error(http, schema)
    assert f"at {path}:" in error["message"]
    assert words in error["message"]


async def test_strict_false_accepts_what_strict_refuses(http: httpx.AsyncClient) -> None:
    r = await ask(http, response_format=fmt(LOOSE, strict=False), max_tokens=60, temperature=0)
    assert r.status_code == 200


async def test_an_absent_strict_is_strict_false(chatd: Chatd, http: httpx.AsyncClient) -> None:
    """OpenAI's default: no ``strict`` is ``strict: false``, the same schema compiled to
    the same grammar (so the real model's e2e test samples only one of the two)."""
    grammars = []
    for strict in (False, None):
        r = await ask(http, response_format=fmt(LOOSE, strict=strict), max_tokens=5)
        assert r.status_code == 200, r.text
        grammars.append(chatd.engine.grammars.compiled[-1])
    assert grammars[0] == grammars[1]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "foo"},
        {"type": "object", "properties": {"a": {"type": 3}}},
        {"type": "object", "required": "a"},
    ],
    ids=["bad-type", "bad-nested-type", "required-not-array"],
)
async def test_invalid_schema_is_a_400(http: httpx.AsyncClient, schema: dict) -> None:
    r = await ask(http, response_format=fmt(schema, strict=False), max_tokens=5)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "response_format.json_schema.schema"
    assert r.json()["error"]["code"] == "invalid_json_schema"


async def test_unsatisfiable_schema_is_a_400_not_a_500(http: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "pattern": "(("}},
        "required": ["a"],
    }
    r = await ask(http, response_format=fmt(schema, strict=False), max_tokens=5)
    assert r.status_code == 400, r.text


# --- tools --------------------------------------------------------------------------------


async def test_strict_tool_schema_is_checked(http: httpx.AsyncClient) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "strict": True,
                "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
            },
        }
    ]
    r = await http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": TOOL_ASK, "tools": tools}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "tools[0].function.parameters"
    assert "additionalProperties" in error["message"]


def _fn(name: str, **kw: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **kw}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [_fn("bad name")]}, "tools[0].function.name"),
        ({"tools": [_fn("x" * 65)]}, "tools[0].function.name"),
        ({"tools": [_fn(f"f{i}") for i in range(129)]}, "tools"),
        ({"tools": [_fn("f", parameters={"type": "array"})]}, "tools[0].function.parameters"),
        (
            {"tools": [_fn("f")], "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [_fn("f")], "functions": [{"name": "f"}]}, "functions"),
        ({"functions": [{"name": "f"}], "function_call": {"name": "g"}}, "function_call"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a b", "schema": {}},
                }
            },
            "response_format.json_schema.name",
        ),
    ],
    ids=[
        "name-pattern",
        "name-length",
        "129-tools",
        "array-parameters",
        "unknown-named",
        "choice-without-tools",
        "functions-and-tools",
        "unknown-function-call",
        "schema-name-pattern",
    ],
)
async def test_bad_tool_inputs(http: httpx.AsyncClient, extra: dict[str, Any], param: str) -> None:
    r = await http.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": TOOL_ASK, **extra}
    )
    assert r.status_code == 400, r.text
    assert_valid("ErrorResponse", r.json())
    assert r.json()["error"]["param"] == param
    assert r.json()["error"]["type"] == "invalid_request_error"

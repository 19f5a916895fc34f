"""``response_format`` (src/chatd/service/structured.py): OpenAI's strict-mode rules and the
schema a request asks the engine to enforce."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.errors import InvalidRequest
from chatd.service.chat.response_format import SCHEMA_PARAM, json_schema_for, schema_check_for
from chatd.service.structured import strict_violation


def obj(properties: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A strict object schema: every property required, no additional ones."""
    properties = properties or {}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


STRING = {"type": "string"}


def chain(levels: int) -> dict[str, Any]:
    """``levels`` objects nested in one another (the root counted): depth ``levels``."""
    schema = obj()
    for _ in range(levels - 1):
        schema = obj({"a": schema})
    return schema


# --- strict_violation: valid schemas -----------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "empty-object": obj(),
    "flat": obj({"name": STRING, "age": {"type": "integer"}, "ok": {"type": "boolean"}}),
    "nested": obj({"a": obj({"b": obj({"c": STRING})})}),
    "nullable-type-list": obj({"a": {"type": ["string", "null"]}}),
    "nullable-object": obj(
        {"a": {**obj({"b": STRING}), "type": ["object", "null"]}},
    ),
    "anyOf-in-property": obj({"a": {"anyOf": [STRING, obj({"b": {"type": "number"}})]}}),
    "anyOf-null": obj({"a": {"anyOf": [STRING, {"type": "null"}]}}),
    "ref-to-defs": obj(
        {"a": {"$ref": "#/$defs/item"}},
        **{"$defs": {"item": obj({"b": STRING})}},
    ),
    "recursive-ref": obj(
        {"root": {"$ref": "#/$defs/node"}},
        **{
            "$defs": {
                "node": obj(
                    {
                        "value": STRING,
                        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                    }
                )
            }
        },
    ),
    "definitions": obj(
        {"a": {"$ref": "#/definitions/x"}}, definitions={"x": {"type": "string", "enum": ["1"]}}
    ),
    "enum": obj({"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}),
    "const": obj({"kind": {"const": "point"}}),
    "array-of-objects": obj({"xs": {"type": "array", "items": obj({"b": STRING})}}),
    "string-keywords": obj(
        {
            "email": {"type": "string", "format": "email"},
            "when": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        }
    ),
    "number-keywords": obj(
        {
            "n": {
                "type": "number",
                "minimum": 0,
                "maximum": 10,
                "exclusiveMinimum": -1,
                "exclusiveMaximum": 11,
                "multipleOf": 0.5,
            }
        }
    ),
    "array-keywords": obj({"xs": {"type": "array", "items": STRING, "minItems": 1, "maxItems": 3}}),
    "annotations": obj(
        {"a": {"type": "string", "description": "d", "title": "t", "default": "x"}},
        **{"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "T"},
    ),
    "properties-without-type": {
        "type": "object",
        "properties": {"a": {"properties": {}, "required": [], "additionalProperties": False}},
        "required": ["a"],
        "additionalProperties": False,
    },
    "depth-10": chain(10),
    "depth-10-with-leaf": obj({"a": chain(9)}),
    "depth-10-via-items": obj({"a": {"type": "array", "items": chain(8)}}),
    "1000-enum-values": obj(
        {
            "a": {"type": "integer", "enum": list(range(600))},
            "b": {"type": "integer", "enum": list(range(400))},
        }
    ),
    "5000-properties": obj({f"p{i}": STRING for i in range(5000)}),
    "5000-properties-nested": obj(
        {
            "o": obj({f"p{i}": STRING for i in range(2499)}),
            "q": obj({f"p{i}": STRING for i in range(2499)}),
        }
    ),
}


@pytest.mark.parametrize("schema", list(VALID.values()), ids=list(VALID))
def test_strict_valid(schema: dict[str, Any]) -> None:
    before = copy.deepcopy(schema)
    assert strict_violation(schema) is None
    assert schema == before


# --- strict_violation: violations --------------------------------------------------------

NO_ADDITIONAL = {"type": "object", "properties": {"b": STRING}, "required": ["b"]}

INVALID: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (schema, path, a word of the reason)
    "root-no-additionalProperties": (
        {"type": "object", "properties": {"a": STRING}, "required": ["a"]},
        "#",
        "additionalProperties",
    ),
    "root-additionalProperties-true": (
        {**obj({"a": STRING}), "additionalProperties": True},
        "#",
        "additionalProperties",
    ),
    "root-additionalProperties-schema": (
        {**obj({"a": STRING}), "additionalProperties": STRING},
        "#",
        "additionalProperties",
    ),
    "root-empty-no-additionalProperties": ({"type": "object"}, "#", "additionalProperties"),
    "nested-no-additionalProperties": (obj({"a": NO_ADDITIONAL}), "#/properties/a", "additional"),
    "deep-no-additionalProperties": (
        obj({"a": obj({"b": {"type": "object", "properties": {}}})}),
        "#/properties/a/properties/b",
        "additionalProperties",
    ),
    "nullable-object-no-additionalProperties": (
        obj({"a": {**NO_ADDITIONAL, "type": ["object", "null"]}}),
        "#/properties/a",
        "additionalProperties",
    ),
    "nullable-object-without-properties": (
        obj({"a": {"type": ["object", "null"]}}),
        "#/properties/a",
        "additionalProperties",
    ),
    "not-all-required": (
        {**obj({"a": STRING, "b": STRING}), "required": ["a"]},
        "#",
        "'b'",
    ),
    "required-missing": (
        {"type": "object", "properties": {"a": STRING}, "additionalProperties": False},
        "#",
        "'a'",
    ),
    "nested-not-all-required": (
        obj({"a": {**obj({"x": STRING, "y": STRING}), "required": ["y"]}}),
        "#/properties/a",
        "'x'",
    ),
    "minLength": (obj({"a": {"type": "string", "minLength": 1}}), "#/properties/a", "minLength"),
    "maxLength": (obj({"a": {"type": "string", "maxLength": 9}}), "#/properties/a", "maxLength"),
    "allOf-root": (obj({"a": STRING}, allOf=[obj()]), "#", "allOf"),
    "oneOf": (obj({"a": {"oneOf": [STRING, {"type": "null"}]}}), "#/properties/a", "oneOf"),
    "patternProperties": (obj(patternProperties={"^x": STRING}), "#", "patternProperties"),
    "not": (obj({"a": {"not": STRING}}), "#/properties/a", "'not'"),
    "if-then": (obj({"a": {"if": STRING, "then": STRING}}), "#/properties/a", "if"),
    "format-uri": (obj({"a": {"type": "string", "format": "uri"}}), "#/properties/a", "uri"),
    "format-in-array-items": (
        obj({"xs": {"type": "array", "items": {"type": "string", "format": "regex"}}}),
        "#/properties/xs/items",
        "regex",
    ),
    "root-anyOf": ({"anyOf": [obj(), obj({"a": STRING})]}, "#", "root"),
    "root-object-with-anyOf": (obj(anyOf=[obj(), obj({"a": STRING})]), "#", "root"),
    "root-array": ({"type": "array", "items": STRING}, "#", "root"),
    "root-string": ({"type": "string"}, "#", "root"),
    "root-no-type": ({"properties": {}, "additionalProperties": False}, "#", "root"),
    "root-nullable-object": ({**obj(), "type": ["object", "null"]}, "#", "root"),
    "depth-11": (chain(11), "#" + "/properties/a" * 10, "nesting"),
    "depth-11-with-leaf": (obj({"a": chain(10)}), "#" + "/properties/a" * 10, "nesting"),
    "depth-via-items": (
        obj({"a": {"type": "array", "items": chain(9)}}),
        "#/properties/a/items" + "/properties/a" * 8,
        "nesting",
    ),
    "1001-enum-values": (
        obj(
            {
                "a": {"type": "integer", "enum": list(range(600))},
                "b": {"type": "integer", "enum": list(range(401))},
            }
        ),
        "#/properties/b",
        "enum",
    ),
    "5001-properties": (obj({f"p{i}": STRING for i in range(5001)}), "#", "properties"),
    "5001-properties-nested": (
        obj(
            {
                "o": obj({f"p{i}": STRING for i in range(2499)}),
                "q": obj({f"p{i}": STRING for i in range(2500)}),
            }
        ),
        "#/properties/q",
        "properties",
    ),
    "items-object-no-additionalProperties": (
        obj({"xs": {"type": "array", "items": NO_ADDITIONAL}}),
        "#/properties/xs/items",
        "additionalProperties",
    ),
    "items-object-not-all-required": (
        obj({"xs": {"type": "array", "items": {**obj({"a": STRING}), "required": []}}}),
        "#/properties/xs/items",
        "'a'",
    ),
    "defs-entry": (
        obj({"a": {"$ref": "#/$defs/node"}}, **{"$defs": {"node": NO_ADDITIONAL}}),
        "#/$defs/node",
        "additionalProperties",
    ),
    "defs-entry-keyword": (
        obj(**{"$defs": {"s": {"type": "string", "minLength": 2}}}),
        "#/$defs/s",
        "minLength",
    ),
    "definitions-entry": (
        obj(definitions={"node": NO_ADDITIONAL}),
        "#/definitions/node",
        "additionalProperties",
    ),
    "nested-defs-entry": (
        obj({"a": obj(**{"$defs": {"n": NO_ADDITIONAL}})}),
        "#/properties/a/$defs/n",
        "additionalProperties",
    ),
    "anyOf-branch": (
        obj({"a": {"anyOf": [STRING, NO_ADDITIONAL]}}),
        "#/properties/a/anyOf/1",
        "additionalProperties",
    ),
    "escaped-key": (
        obj({"a/b~c": {"type": "string", "minLength": 1}}),
        "#/properties/a~1b~0c",
        "minLength",
    ),
    "subschema-not-object": (obj({"a": True}), "#/properties/a", "object"),
}


@pytest.mark.parametrize(("schema", "path", "word"), list(INVALID.values()), ids=list(INVALID))
def test_strict_violation(schema: dict[str, Any], path: str, word: str) -> None:
    problem = strict_violation(schema)
    assert problem is not None
    got_path, reason = problem
    assert got_path == path
    assert word in reason


def test_first_violation_reported() -> None:
    schema = obj({"a": {"type": "string", "minLength": 1}, "b": {"type": "string", "not": {}}})
    assert strict_violation(schema) == ("#/properties/a", "'minLength' is not supported")


# --- json_schema_for -----------------------------------------------------------------------


def schema_of(req: Any) -> dict[str, Any] | None:
    """The schema a request's output must match, checked as the service checks it (in
    the compile thread, service/generation.py)."""
    check = schema_check_for(req)
    if check is not None:
        check()
    return json_schema_for(req)


def request(
    response_format: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> Any:
    body: dict[str, Any] = {
        "model": "m",
        "messages": messages or [{"role": "user", "content": "Hi"}],
    }
    if response_format is not None:
        body["response_format"] = response_format
    return validate_chat_request(body)


def json_schema(schema: Any = None, *, strict: bool | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "answer", **extra}
    if schema is not None:
        spec["schema"] = schema
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


@pytest.mark.parametrize("response_format", [None, {"type": "text"}], ids=["absent", "text"])
def test_free_text(response_format: dict[str, Any] | None) -> None:
    assert schema_of(request(response_format)) is None


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Answer in JSON."}],
        [{"role": "user", "content": "answer in json"}],
        [{"role": "user", "content": "a JsOn object please"}],
        [{"role": "system", "content": "Reply with JSON."}, {"role": "user", "content": "Hi"}],
        [{"role": "developer", "content": "jsonify"}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": [{"type": "text", "text": "Give me JSON"}]}],
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Sure, json it is."},
            {"role": "user", "content": "Go"},
        ],
    ],
    ids=["user", "lowercase", "mixed-case", "system", "developer", "parts", "assistant"],
)
def test_json_object_needs_json_in_messages(messages: list[dict[str, Any]]) -> None:
    assert schema_of(request({"type": "json_object"}, messages)) == {"type": "object"}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "J S O N"}],
        [{"role": "user", "content": "jso n"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Give me data"}],
    ],
    ids=["none", "spaced", "split", "system"],
)
def test_json_object_without_json_in_messages(messages: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequest) as info:
        schema_of(request({"type": "json_object"}, messages))
    assert info.value.param == "messages"
    assert info.value.status == 400
    assert "json" in info.value.message


VALID_SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 2}}},
    {"type": "array", "items": {"type": "integer"}},
    {"anyOf": [{"type": "string"}, {"type": "number"}]},
    {"type": "string", "format": "uri"},
    {},
]


@pytest.mark.parametrize("schema", VALID_SCHEMAS)
@pytest.mark.parametrize("strict", [None, False])
def test_json_schema_returned_as_given(schema: dict[str, Any], strict: bool | None) -> None:
    assert schema_of(request(json_schema(copy.deepcopy(schema), strict=strict))) == schema


@pytest.mark.parametrize("schema", list(VALID.values())[:8], ids=list(VALID)[:8])
def test_json_schema_strict_valid(schema: dict[str, Any]) -> None:
    assert schema_of(request(json_schema(copy.deepcopy(schema), strict=True))) == schema


def test_json_schema_without_schema_is_any_object() -> None:
    assert schema_of(request(json_schema(description="d"))) == {"type": "object"}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": 5},
        {"type": "strng"},
        {"type": "object", "properties": {"a": {"minimum": "zero"}}},
        {"type": "object", "required": "a"},
        {"enum": 3},
        {"anyOf": []},
        {"type": "string", "pattern": 7},
    ],
)
@pytest.mark.parametrize("strict", [None, True])
def test_json_schema_invalid(schema: dict[str, Any], strict: bool | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        schema_of(request(json_schema(schema, strict=strict)))
    assert info.value.param == SCHEMA_PARAM == "response_format.json_schema.schema"
    assert info.value.code == "invalid_json_schema"
    assert info.value.status == 400
    assert "'answer'" in info.value.message


@pytest.mark.parametrize(
    ("schema", "path"),
    [(schema, path) for schema, path, _ in list(INVALID.values())[:12]],
    ids=list(INVALID)[:12],
)
def test_json_schema_strict_violation(schema: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        schema_of(request(json_schema(schema, strict=True)))
    assert info.value.param == SCHEMA_PARAM
    assert info.value.code == "invalid_json_schema"
    assert f"at {path}:" in info.value.message


def test_json_schema_not_strict_skips_strict_rules() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert schema_of(request(json_schema(schema))) == schema
    with pytest.raises(InvalidRequest):
        schema_of(request(json_schema(schema, strict=True)))

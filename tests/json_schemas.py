"""JSON schemas and the response_format wrapper shared by the structured-output tests
(tests/e2e/test_response_format.py and tests/service/test_structured_inputs.py), and the
strict JSON reading the unique-key tests use (tests/unit/test_json_grammar.py too)."""

from __future__ import annotations

import json
from typing import Any

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": ["string", "null"], "format": "email"},
        "role": {"type": "string", "enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "email", "role", "tags", "address"],
    "additionalProperties": False,
}

DEFS = {  # definitions shared by reference
    "type": "object",
    "properties": {"home": {"$ref": "#/$defs/point"}, "work": {"$ref": "#/$defs/point"}},
    "required": ["home", "work"],
    "additionalProperties": False,
    "$defs": {
        "point": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
            "required": ["x", "y"],
            "additionalProperties": False,
        }
    },
}

LOOSE = {  # not strict-compatible, fine without strict
    "type": "object",
    "properties": {
        "answer": {"type": "string", "minLength": 2, "maxLength": 20},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
    },
    "required": ["answer"],
    "additionalProperties": False,
}


def fmt(schema: dict[str, Any], strict: bool | None = True, name: str = "out") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "schema": schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"repeated key in {keys}"
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


def strict_loads(text: str) -> Any:
    """JSON as a strict parser reads it: no repeated key in any object, no NaN/Infinity."""
    return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)

"""Structured output's checks, for any protocol: a JSON schema the engine will enforce must
be valid, and in strict mode within OpenAI's strict subset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from chatd.protocol.errors import InvalidRequest

__all__ = ["checked_schema", "strict_violation"]

# OpenAI's strict-mode subset (Structured Outputs guide): these keywords and no others.
_STRICT_KEYWORDS = frozenset(
    {
        # structure
        "type", "properties", "required", "additionalProperties", "items", "anyOf",
        "enum", "const", "$ref", "$defs", "definitions",
        # strings
        "pattern", "format",
        # numbers
        "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        # arrays
        "minItems", "maxItems",
        # annotations
        "description", "title", "default", "examples", "$schema", "$id", "$comment",
    }
)  # fmt: skip
_STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_MAX_DEPTH = 10
_MAX_PROPERTIES = 5000
_MAX_ENUM_VALUES = 1000


def checked_schema(name: str, schema: dict[str, Any], strict: bool | None, param: str) -> None:
    """Raise InvalidRequest unless ``schema`` is a valid JSON Schema (and, when ``strict``,
    within OpenAI's strict subset); ``name`` is the format's name, ``param`` its field."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        path = _pointer(e.path)
        raise InvalidRequest(
            f"Invalid schema for response_format '{name}': {e.message} (at {path}).",
            param=param,
            code="invalid_json_schema",
        ) from None
    if strict:
        problem = strict_violation(schema)
        if problem is not None:
            path, why = problem
            raise InvalidRequest(
                f"Invalid schema for response_format '{name}': in strict mode, at {path}: {why}",
                param=param,
                code="invalid_json_schema",
            )


def strict_violation(schema: dict[str, Any]) -> tuple[str, str] | None:
    """The first place where ``schema`` breaks OpenAI's strict-mode rules, as
    (JSON pointer, reason), or None when it follows them."""
    if schema.get("type") != "object" or "anyOf" in schema:
        return "#", "the root must be an object ('type': 'object'), not anyOf"
    counts = {"properties": 0, "enum": 0}
    return _check(schema, "#", 1, counts)


def _check(node: Any, path: str, depth: int, counts: dict[str, int]) -> tuple[str, str] | None:
    problem = _own_problem(node, path, depth, counts)
    if problem is not None:
        return problem
    for sub, sub_path, sub_depth in _subschemas(node, path, depth):
        found = _check(sub, sub_path, sub_depth, counts)
        if found:
            return found
    return None


def _is_object(node: dict[str, Any]) -> bool:
    types = node.get("type")
    return types == "object" or (isinstance(types, list) and "object" in types)


def _own_problem(
    node: Any, path: str, depth: int, counts: dict[str, int]
) -> tuple[str, str] | None:
    """What breaks the strict rules in this node itself (its subschemas aside)."""
    if not isinstance(node, dict):
        return path, "every subschema must be an object"
    if depth > _MAX_DEPTH:
        return path, f"nesting deeper than {_MAX_DEPTH} levels is not supported"
    for key in node:
        if key not in _STRICT_KEYWORDS:
            return path, f"'{key}' is not supported"
    if "format" in node and node["format"] not in _STRICT_FORMATS:
        return path, f"format '{node['format']}' is not supported"
    if "enum" in node:
        counts["enum"] += len(node["enum"])
        if counts["enum"] > _MAX_ENUM_VALUES:
            return path, f"more than {_MAX_ENUM_VALUES} enum values in all"
    if _is_object(node) or "properties" in node:
        props = node.get("properties", {})
        if node.get("additionalProperties") is not False:
            return path, "'additionalProperties' is required to be supplied and to be false"
        missing = [k for k in props if k not in node.get("required", [])]
        if missing:
            return path, (
                "'required' is required to be supplied and to be an array including every"
                f" key in properties; missing {', '.join(repr(k) for k in missing)}"
            )
        counts["properties"] += len(props)
        if counts["properties"] > _MAX_PROPERTIES:
            return path, f"more than {_MAX_PROPERTIES} object properties in all"
    return None


def _subschemas(node: dict[str, Any], path: str, depth: int) -> Iterator[tuple[Any, str, int]]:
    """(subschema, its JSON pointer, its depth), in the order they are checked."""
    if _is_object(node) or "properties" in node:
        for name, sub in node.get("properties", {}).items():
            yield sub, f"{path}/properties/{_escape(name)}", depth + 1
    if "items" in node:
        yield node["items"], f"{path}/items", depth + 1
    for i, sub in enumerate(node.get("anyOf", [])):
        yield sub, f"{path}/anyOf/{i}", depth
    for defs in ("$defs", "definitions"):
        for name, sub in node.get(defs, {}).items():
            yield sub, f"{path}/{defs}/{_escape(name)}", 1


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _pointer(parts: Any) -> str:
    return "#" + "".join(f"/{_escape(str(p))}" for p in parts)

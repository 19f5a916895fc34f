"""Validate JSON bodies against the component schemas of the official OpenAI OpenAPI spec.

The spec (``/work/shared/reference/openai-openapi.yml``, OpenAPI 3.1) is parsed once, its
``components.schemas`` are rewritten into plain JSON Schema Draft 2020-12 and registered in a
``referencing.Registry``, so ``$ref: "#/components/schemas/X"`` resolves against the whole
document and nothing is ever fetched over the network.

Public API::

    validator(schema_name) -> jsonschema.protocols.Validator
    assert_valid(schema_name, instance) -> None   # AssertionError listing every error
    properties(schema_name) -> set[str]            # top-level properties, through allOf

Rewrites applied (OpenAPI quirks, see /work/shared/reference/README.md):

- ``nullable: true`` (OpenAPI 3.0) means "or null": ``"null"`` is added to ``type`` (and
  ``None`` to ``enum``/``const``) or, when the schema is not a plain typed schema (``$ref``,
  ``anyOf``...), it is wrapped as ``anyOf: [schema, {type: "null"}]``. ``nullable: false`` is
  dropped.
- ``discriminator`` (never with a mapping) is dropped. A ``oneOf`` is kept only when its branches
  are provably disjoint (different JSON types, or a shared required property with disjoint
  ``enum``/``const`` values); otherwise it becomes ``anyOf`` so that an instance matching several
  overlapping branches is not rejected.
- OpenAPI 3.0 boolean ``exclusiveMinimum``/``exclusiveMaximum`` become the numeric 2020-12 form;
  ``$recursiveRef: "#"`` (2019-09) becomes a ``$ref`` to its component; duplicate names in
  ``required`` are removed (the metaschema wants them unique).
- OpenAPI-only keywords (``x-*``, ``example``, ``xml``, ``externalDocs``, ``discriminator``...)
  are removed. ``format`` stays an annotation (not asserted), as in Draft 2020-12.

No strictness is added beyond the spec: ``additionalProperties`` is only what the spec says.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "SPEC_PATH",
    "assert_valid",
    "iter_errors",
    "properties",
    "schema",
    "schema_names",
    "validator",
]

SPEC_PATH = Path("/work/shared/reference/openai-openapi.yml")
_BASE_URI = "urn:openai-openapi"
_COMPONENTS = "#/components/schemas/"

# Keywords whose value is a single subschema / a list of subschemas / a map of subschemas.
_SCHEMA_KEYS = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
    }
)
_SCHEMA_LIST_KEYS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP_KEYS = frozenset(
    {"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"}
)
# OpenAPI-only keywords (and typos present in the spec) that mean nothing to JSON Schema.
_DROP_KEYS = frozenset(
    {
        "discriminator",
        "example",
        "xml",
        "externalDocs",
        "optional",
        "min_items",
        "max_items",
        "$recursiveAnchor",
    }
)
_JSON_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})


def _convert(schema: Any, component: str) -> Any:
    """Rewrite one OpenAPI schema object (recursively) into Draft 2020-12."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):  # malformed position: leave it alone
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if not isinstance(key, str):
            key = str(key)
        if key in _DROP_KEYS or key.startswith("x-") or key == "nullable":
            continue
        if key == "$recursiveRef":
            out["$ref"] = _COMPONENTS + component if value == "#" else value
        elif key in _SCHEMA_KEYS:
            out[key] = _convert(value, component)
        elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
            out[key] = [_convert(v, component) for v in value]
        elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
            out[key] = {str(k): _convert(v, component) for k, v in value.items()}
        else:
            out[key] = value

    if isinstance(out.get("required"), list):  # a few spec schemas list a name twice
        out["required"] = list(dict.fromkeys(out["required"]))
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = out.get(exclusive)
        if isinstance(flag, bool):
            del out[exclusive]
            if flag and bound in out:
                out[exclusive] = out.pop(bound)

    if schema.get("nullable") is True:
        out = _make_nullable(out)
    return out


def _make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    composite = {"$ref", "allOf", "anyOf", "oneOf", "not", "if", "$dynamicRef"} & schema.keys()
    typ = schema.get("type")
    if not composite and isinstance(typ, str | list):
        types = [typ] if isinstance(typ, str) else list(typ)
        if "null" not in types:
            types.append("null")
        schema["type"] = types
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        if "const" in schema:
            const = schema.pop("const")
            schema["enum"] = [const] if const is None else [const, None]
        return schema
    if not composite and typ is None and "enum" not in schema and "const" not in schema:
        return schema  # no type constraint at all: null already validates
    return {"anyOf": [schema, {"type": "null"}]}


# --- oneOf branches: provably disjoint or not ---------------------------------------------


def _resolve(schema: Any, schemas: dict[str, Any]) -> Any:
    seen = set()
    while isinstance(schema, dict) and set(schema) <= {"$ref", "description", "title"}:
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith(_COMPONENTS) or ref in seen:
            break
        seen.add(ref)
        schema = schemas.get(ref[len(_COMPONENTS) :], schema)
    return schema


def _types(schema: Any, schemas: dict[str, Any], depth: int = 0) -> frozenset[str] | None:
    """JSON types an instance of ``schema`` may have; None when unknown (any)."""
    schema = _resolve(schema, schemas)
    if not isinstance(schema, dict) or depth > 8:
        return None
    result: frozenset[str] | None = None
    typ = schema.get("type")
    if isinstance(typ, str):
        result = frozenset({typ})
    elif isinstance(typ, list):
        result = frozenset(typ)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            parts = [_types(s, schemas, depth + 1) for s in schema[key]]
            union = None if any(p is None for p in parts) else frozenset().union(*parts)
            result = _intersect(result, union)
    for sub in schema.get("allOf", []):
        result = _intersect(result, _types(sub, schemas, depth + 1))
    if "$ref" in schema and len(schema) > 1:
        result = _intersect(result, _types({"$ref": schema["$ref"]}, schemas, depth + 1))
    for key in ("enum", "const"):
        if key in schema:
            values = schema["enum"] if key == "enum" else [schema["const"]]
            result = _intersect(result, frozenset(_json_type(v) for v in values))
    return result


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    if "number" in a:
        a = a | {"integer"}
    if "number" in b:
        b = b | {"integer"}
    return a & b


def _tags(schema: Any, schemas: dict[str, Any], depth: int = 0) -> dict[str, frozenset]:
    """Required properties whose values are restricted to a finite set (enum/const)."""
    schema = _resolve(schema, schemas)
    if not isinstance(schema, dict) or depth > 8:
        return {}
    tags: dict[str, frozenset] = {}
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        prop = _resolve(props.get(name), schemas)
        if isinstance(prop, dict):
            if "const" in prop:
                tags[name] = frozenset({_hashable(prop["const"])})
            elif isinstance(prop.get("enum"), list):
                tags[name] = frozenset(_hashable(v) for v in prop["enum"])
    subs = list(schema.get("allOf", []))
    if "$ref" in schema and len(schema) > 1:
        subs.append({"$ref": schema["$ref"]})
    for sub in subs:
        for name, values in _tags(sub, schemas, depth + 1).items():
            tags[name] = tags[name] & values if name in tags else values
    return tags


def _hashable(value: Any) -> Any:
    return (_json_type(value), repr(value))


def _disjoint(a: Any, b: Any, schemas: dict[str, Any]) -> bool:
    ta, tb = _types(a, schemas), _types(b, schemas)
    if ta is not None and tb is not None and not _intersect(ta, tb):
        return True
    tags_a, tags_b = _tags(a, schemas), _tags(b, schemas)
    return any(not (tags_a[k] & tags_b[k]) for k in tags_a.keys() & tags_b.keys())


def _fix_one_of(schema: Any, schemas: dict[str, Any], converted: list[int]) -> None:
    """Turn every ``oneOf`` whose branches may overlap into ``anyOf`` (in place)."""
    if isinstance(schema, list):
        for item in schema:
            _fix_one_of(item, schemas, converted)
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key in _SCHEMA_KEYS or key in _SCHEMA_LIST_KEYS:
            _fix_one_of(value, schemas, converted)
        elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
            _fix_one_of(list(value.values()), schemas, converted)
    branches = schema.get("oneOf")
    if isinstance(branches, list):
        pairs = ((a, b) for i, a in enumerate(branches) for b in branches[i + 1 :])
        if not all(_disjoint(a, b, schemas) for a, b in pairs):
            if "anyOf" in schema:  # both present: keep both constraints via allOf
                schema.setdefault("allOf", []).append({"anyOf": schema.pop("oneOf")})
            else:
                schema["anyOf"] = schema.pop("oneOf")
            converted.append(1)


# --- loading ---------------------------------------------------------------------------------


def properties(schema_name: str) -> set[str]:
    """Top-level property names of a component, through its ``allOf`` parts and their refs
    (request bodies such as ``CreateResponse`` are compositions)."""

    def collect(node: dict[str, Any]) -> set[str]:
        found = set(node.get("properties", {}))
        for part in node.get("allOf", []):
            ref = part.get("$ref")
            found |= collect(schema(ref.rsplit("/", 1)[-1]) if ref else part)
        return found

    return collect(schema(schema_name))


@functools.cache
def _load() -> tuple[dict[str, Any], Registry]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as fh:
        document = yaml.load(fh, Loader=loader)
    raw = document["components"]["schemas"]
    schemas = {name: _convert(schema, name) for name, schema in raw.items()}
    converted: list[int] = []
    for schema in schemas.values():
        _fix_one_of(schema, schemas, converted)
    contents = {"components": {"schemas": schemas}}
    registry = Registry().with_resource(
        _BASE_URI, Resource(contents=contents, specification=DRAFT202012)
    )
    return schemas, registry


def schema_names() -> list[str]:
    """Names of every component schema of the spec."""
    return sorted(_load()[0])


def schema(schema_name: str) -> dict[str, Any]:
    """The converted (Draft 2020-12) component schema ``schema_name``; refs left unresolved."""
    schemas = _load()[0]
    if schema_name not in schemas:
        raise KeyError(f"no component schema {schema_name!r} in {SPEC_PATH}")
    return schemas[schema_name]


@functools.cache
def validator(schema_name: str) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator for ``#/components/schemas/<schema_name>``."""
    schema(schema_name)  # KeyError for unknown names
    _, registry = _load()
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"{_BASE_URI}{_COMPONENTS}{schema_name}",
    }
    return jsonschema.Draft202012Validator(root, registry=registry)


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    if not error.context:
        yield error
    for sub in error.context:
        yield from _leaves(sub)


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error: ValidationError, shown: int = 4) -> str:
    line = f"{error.json_path}: {_clip(error.message)}"
    if error.context:  # anyOf / oneOf: why did each branch fail?
        depth = len(error.absolute_path)

        def rank(leaf: ValidationError) -> tuple[bool, int]:
            wrong_type = leaf.validator == "type" and len(leaf.absolute_path) == depth
            return (wrong_type, -len(leaf.absolute_path))

        leaves: dict[str, ValidationError] = {}
        for leaf in sorted(_leaves(error), key=rank):
            leaves.setdefault(f"{leaf.json_path}: {_clip(leaf.message)}", leaf)
        reasons = list(leaves)
        line += "".join(f"\n      branch: {r}" for r in reasons[:shown])
        if len(reasons) > shown:
            line += f"\n      ... and {len(reasons) - shown} more branch error(s)"
    return line


def iter_errors(schema_name: str, instance: object) -> Iterator[ValidationError]:
    """Every validation error, sorted by JSON path."""
    errors = validator(schema_name).iter_errors(instance)
    return iter(sorted(errors, key=lambda e: (e.json_path, e.message)))


def assert_valid(schema_name: str, instance: object) -> None:
    """Raise AssertionError listing every error (with its JSON path) if ``instance`` is invalid."""
    errors = list(iter_errors(schema_name, instance))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise AssertionError(f"{len(errors)} error(s) validating against {schema_name}:\n{lines}")

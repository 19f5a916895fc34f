"""JSON nested too deeply: a 400 naming the top-level field that holds it, however deep
(below Python's recursion limit, where ``json.loads`` still succeeds, and far above it,
where it raises RecursionError), and tool-call arguments too deep stay a string. The
attacks over HTTP, route by route: tests/service/test_small_leaks.py."""

from __future__ import annotations

import json

import pytest

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.validation import MAX_DEPTH, decode_chat_body, too_deep
from chatd.service.tool_calls import parsed_arguments


def nested(depth: int, kind: str = "array") -> str:
    """JSON ``depth`` levels deep (arrays, or objects of one key)."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def error_of(body: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        decode_chat_body(body)
    return info.value


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", [MAX_DEPTH, 500, 5_000, 200_000])
def test_a_field_too_deep_is_named(kind: str, depth: int) -> None:
    body = f'{{"model": "m", "tools" :\n {nested(depth, kind)}, "x": 1}}'.encode()
    error = error_of(body)
    assert error.param == "tools"
    assert error.code == "invalid_value"
    assert str(error) == (
        "Invalid 'tools': JSON nested too deeply. This server accepts objects and arrays"
        f" nested at most {MAX_DEPTH} levels deep (the body is level 1)."
    )


def test_the_deepest_accepted() -> None:
    # the body is level 1: its field may nest MAX_DEPTH - 1 levels
    data = decode_chat_body(f'{{"tools": {nested(MAX_DEPTH - 1)}}}'.encode())
    assert not too_deep(data) and too_deep(data, MAX_DEPTH - 1)


@pytest.mark.parametrize(
    "body",
    [nested(5_000).encode(), b"[" * 5_000, b'{"a": 1, "b": ' + b"[" * 5_000],
    ids=["array-body", "truncated-array", "truncated-field"],
)
def test_deep_without_a_field_to_name(body: bytes) -> None:
    error = error_of(body)
    assert "nested too deeply" in str(error)
    assert error.param in (None, "b")


def test_deep_in_utf16() -> None:
    body = f'{{"metadata": {nested(3_000, "object")}}}'.encode("utf-16")
    assert error_of(body).param == "metadata"


def test_too_deep_is_iterative() -> None:
    value: list[object] = []
    for _ in range(100_000):  # far past the recursion limit: no RecursionError
        value = [value]
    assert too_deep(value)
    assert not too_deep({"a": [{"b": "c"}]}, 3) and too_deep({"a": [{"b": {}}]}, 3)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000])
def test_deep_tool_call_arguments_stay_a_string(depth: int) -> None:
    arguments = nested(depth)
    assert parsed_arguments(arguments) == arguments
    assert parsed_arguments('{"a": [1]}') == {"a": [1]}
    assert parsed_arguments(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))

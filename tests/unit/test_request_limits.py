"""The pure logic of the request limits: counting a conversation's characters, the body
checks on decoded JSON, fitting n x max_tokens to the KV cache, and the serve options
that set them (the HTTP behaviour is in tests/service/test_request_limits.py)."""

from __future__ import annotations

import pytest

from chatd.cli import _parser
from chatd.engine.params import SamplingParams
from chatd.protocol.errors import InvalidRequest
from chatd.protocol.request_limits import (
    Limits,
    check_chat_body,
    check_responses_body,
    count_chars,
)
from chatd.serve_options import limits_from
from chatd.service.generation import fit_kv_cache


def test_count_chars_counts_every_string_value() -> None:
    value = [{"role": "user", "content": [{"type": "text", "text": "abc"}]}, None, 5, "de"]
    assert count_chars(value) == len("user") + len("text") + 3 + 2


def test_count_chars_stops_past_the_limit() -> None:
    value = ["x" * 10] * 1000
    assert 10 < count_chars(value, limit=15) <= 25


def test_nesting_does_not_recurse() -> None:
    deep: list = ["x"]
    for _ in range(100_000):
        deep = [deep]
    assert count_chars(deep) == 1


def test_limits_off_with_zero() -> None:
    off = Limits(max_messages=0, max_chars=0, max_tools=0, max_schema_bytes=0)
    data = {"messages": [{"role": "user", "content": "x" * 10}] * 5000, "tools": [{}] * 500}
    check_chat_body(data, off)
    check_responses_body({"input": data["messages"]}, off)


def test_non_json_shapes_are_left_to_validation() -> None:
    check_chat_body({"messages": "not a list", "tools": 3, "response_format": "x"}, Limits())
    check_responses_body({"input": 5, "text": "x", "instructions": 7}, Limits())


def test_functions_count_as_tools() -> None:
    with pytest.raises(InvalidRequest) as e:
        check_chat_body({"functions": [{}] * 3}, Limits(max_tools=2))
    assert e.value.param == "functions" and e.value.code == "array_above_max_length"


def params(n: int, max_new_tokens: int) -> SamplingParams:
    return SamplingParams(n=n, max_new_tokens=max_new_tokens)


def test_fit_kv_cache_keeps_what_fits() -> None:
    p = params(4, 100)
    assert fit_kv_cache(p, 100, 500, asked=True) is p  # 100 + 4 x 100 = 500


def test_fit_kv_cache_refuses_an_asked_budget_that_cannot_fit() -> None:
    with pytest.raises(InvalidRequest) as e:
        fit_kv_cache(params(4, 101), 100, 500, asked=True)
    assert e.value.param == "n" and "504 KV cache cells" in e.value.message


def test_fit_kv_cache_shrinks_an_unasked_budget() -> None:
    assert fit_kv_cache(params(4, 1000), 100, 500, asked=False).max_new_tokens == 100
    with pytest.raises(InvalidRequest):  # not even one token each
        fit_kv_cache(params(4, 1000), 498, 500, asked=False)


def test_serve_options_set_the_limits() -> None:
    args = _parser().parse_args(
        ["serve", "--max-body-bytes", "10", "--max-messages", "0", "--request-timeout", "1.5"]
    )
    limits = limits_from(args)
    assert (limits.max_body_bytes, limits.max_messages, limits.request_timeout) == (10, 0, 1.5)
    assert limits.max_tools == Limits().max_tools

"""Unit tests of the request contract (src/chatd/protocol/chat_request.py, chat_tools.py and the
error translation of validation.py), no server involved; messages are tested apart, in
test_chat_messages.py.

Every bad input must come back as a 400 ``invalid_request_error`` with OpenAI's wording, param
and code; every valid shape of the spec must parse into typed models.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from chat_contract import (
    INVALID_JSON,
    TOOL_F,
    USER,
    make,
    parse,
    reject,
    spec_schemas,
    user,
    with_messages,
)

from chatd.engine.params import SamplingParams
from chatd.protocol.chat_request import (
    EXTENSION_FIELDS,
    KNOWN_REQUEST_FIELDS,
    ChatCompletionRequest,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    ResponseFormatText,
    parse_chat_request,
    validate_chat_request,
)
from chatd.protocol.chat_tools import CustomTool, FunctionTool
from chatd.protocol.errors import InvalidRequest
from chatd.service.chat.sampling import sampling_fields
from chatd.service.generation import engine_params

WINDOW = 1000


def engine(request: ChatCompletionRequest) -> SamplingParams:
    """What the engine gets of ``request`` (one prompt token, a window of ``WINDOW``)."""
    return engine_params(sampling_fields(request), 1, WINDOW)


# --------------------------------------------------------------------------------------------
# Body-level faults
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"{'model': 'x'}",
        b'{"model": "m", "messages": [],}',
        b"[]",
        b'"a string"',
        b"42",
        b"null",
        b'{"model": "m", "messages": [], "temperature": NaN}',
        b'{"model": "m", "messages": [], "temperature": Infinity}',
        b"\xff\xfe\xfa",
        b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
    ],
    ids=[
        "empty",
        "truncated",
        "text",
        "single-quotes",
        "trailing-comma",
        "array",
        "string",
        "number",
        "null",
        "nan",
        "infinity",
        "not-utf8",
        "lone-surrogate",
    ],  # too deep: tests/unit/test_json_depth.py
)
def test_unparseable_or_non_object_body(raw: bytes) -> None:
    error = reject(raw)
    assert error.message == INVALID_JSON
    assert error.param is None
    assert error.code is None


@pytest.mark.parametrize("model", [..., None, ""], ids=["absent", "null", "empty"])
def test_missing_model(model: Any) -> None:
    error = reject(make(model=model))
    assert (error.message, error.param, error.code) == (
        "you must provide a model parameter",
        None,
        None,
    )


def test_missing_messages() -> None:
    error = reject(make(messages=...))
    assert (error.message, error.param, error.code) == (
        "Missing required parameter: 'messages'.",
        "messages",
        "missing_required_parameter",
    )


@pytest.mark.parametrize("key", ["foo", "reasoning", "text", "input", "max_output_tokens", "n_"])
def test_unknown_top_level_field(key: str) -> None:
    error = reject(make(**{key: 1}))
    assert error.message == f"Unrecognized request argument supplied: {key}"
    assert error.param is None
    assert error.code is None


def test_several_unknown_top_level_fields_are_all_named() -> None:
    error = reject(make(foo=1, bar=2))
    assert error.message == "Unrecognized request arguments supplied: foo, bar"


def test_fault_order_follows_openai() -> None:
    # a missing model beats an unknown key, which beats a bad type
    assert reject(make(model=..., zzz=1)).message == "you must provide a model parameter"
    assert reject(make(messages=..., zzz=1)).param == "messages"
    assert reject(make(zzz=1, n="abc")).message.startswith("Unrecognized request argument")
    assert reject(make(zzz=1, messages=[])).param is None
    # fields are reported in OpenAI's order, not the body's
    assert reject(make(temperature="x", n="x")).param == "n"
    assert reject(make(metadata={"k": 7}, n=0)).param == "n"
    assert reject(make(store="x", stream="y")).param == "stream"


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------

TYPE_CASES = [
    # (field, bad value, expected, got)
    ("model", 5, "a string", "an integer"),
    ("model", ["m"], "a string", "an array"),
    ("messages", "hi", "an array of objects", "a string"),
    ("messages", None, "an array of objects", "null"),
    ("messages", {"role": "user"}, "an array of objects", "an object"),
    ("temperature", "hot", "a decimal", "a string"),
    ("temperature", True, "a decimal", "a boolean"),
    ("temperature", [1], "a decimal", "an array"),
    ("top_p", "wide", "a decimal", "a string"),
    ("presence_penalty", False, "a decimal", "a boolean"),
    ("frequency_penalty", {"a": 1}, "a decimal", "an object"),
    ("n", "2", "an integer", "a string"),
    ("n", 1.0, "an integer", "a decimal number"),
    ("n", True, "an integer", "a boolean"),
    ("seed", 1.5, "an integer", "a decimal number"),
    ("max_tokens", 10.0, "an integer", "a decimal number"),
    ("max_completion_tokens", "10", "an integer", "a string"),
    ("top_logprobs", 1.5, "an integer", "a decimal number"),
    ("stream", "yes", "a boolean", "a string"),
    ("stream", 1, "a boolean", "an integer"),
    ("store", "yes", "a boolean", "a string"),
    ("logprobs", 0, "a boolean", "an integer"),
    ("parallel_tool_calls", "true", "a boolean", "a string"),
    ("user", {"a": 1}, "a string", "an object"),
    ("user", 7, "a string", "an integer"),
    ("safety_identifier", 7, "a string", "an integer"),
    ("prompt_cache_key", True, "a string", "a boolean"),
    ("tools", "none", "an array of objects", "a string"),
    ("functions", "x", "an array of function definitions", "a string"),
    ("response_format", "json", "an object", "a string"),
    ("stream_options", True, "an object", "a boolean"),
    ("metadata", "x", "a metadata object", "a string"),
    ("logit_bias", [1], "an object", "an array"),
    ("stop", 5, "one of a string or array of strings", "an integer"),
    ("stop", {"a": "b"}, "one of a string or array of strings", "an object"),
    ("tool_choice", 7, "one of one of 'none', 'auto', or 'required' or object", "an integer"),
    ("function_call", 1, "one of one of 'none' or 'auto' or object", "an integer"),
    ("modalities", "text", "an array of strings", "a string"),
    ("prediction", "text", "an object", "a string"),
    ("audio", "alloy", "an object", "a string"),
    ("web_search_options", [], "an object", "an array"),
    ("moderation", "x", "an object", "a string"),
    ("prompt_cache_options", "x", "an object", "a string"),
    ("prompt_cache_retention", {"a": 1}, "one of 'in_memory' or '24h'", "an object"),
    (
        "service_tier",
        {"a": 1},
        "one of 'auto', 'default', 'flex', 'scale', 'priority', or 'fast'",
        "an object",
    ),
    ("verbosity", 1, "one of 'low', 'medium', or 'high'", "an integer"),
]


@pytest.mark.parametrize(
    ("field", "value", "expected", "got"),
    TYPE_CASES,
    ids=[f"{c[0]}={json.dumps(c[1])}" for c in TYPE_CASES],
)
def test_wrong_top_level_type(field: str, value: Any, expected: str, got: str) -> None:
    error = reject(make(**{field: value}))
    assert error.param == field
    assert error.code == "invalid_type"
    assert (
        error.message == f"Invalid type for '{field}': expected {expected}, but got {got} instead."
    )


NESTED_TYPE_CASES = [
    # (body, param, expected, got)
    (with_messages("hi"), "messages[0]", "an object", "a string"),
    (with_messages(USER, 7), "messages[1]", "an object", "an integer"),
    (
        with_messages(user(7)),
        "messages[0].content",
        "one of a string or array of objects",
        "an integer",
    ),
    (
        with_messages(user({"type": "text", "text": "x"})),
        "messages[0].content",
        "one of a string or array of objects",
        "an object",
    ),
    (
        with_messages({"role": "developer", "content": None}),
        "messages[0].content",
        "one of a string or array of objects",
        "null",
    ),
    (
        with_messages({"role": "system", "content": None}),
        "messages[0].content",
        "one of a string or array of objects",
        "null",
    ),
    (with_messages(user(["x"])), "messages[0].content[0]", "an object", "a string"),
    (
        with_messages(user([{"type": "text", "text": 5}])),
        "messages[0].content[0].text",
        "a string",
        "an integer",
    ),
    (
        with_messages(user([{"type": "image_url", "image_url": "http://x/y.png"}])),
        "messages[0].content[0].image_url",
        "an object",
        "a string",
    ),
    (
        with_messages(user([{"type": "image_url", "image_url": {"url": 5}}])),
        "messages[0].content[0].image_url.url",
        "a string",
        "an integer",
    ),
    (
        with_messages(user("x", name=5)),
        "messages[0].name",
        "a string",
        "an integer",
    ),
    (
        with_messages(USER, {"role": "assistant", "content": "x", "tool_calls": "x"}),
        "messages[1].tool_calls",
        "an array of objects",
        "a string",
    ),
    (
        with_messages(
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}
                ],
            },
        ),
        "messages[1].tool_calls[0].function.arguments",
        "a string",
        "an object",
    ),
    (
        with_messages(USER, {"role": "tool", "content": "x", "tool_call_id": 5}),
        "messages[1].tool_call_id",
        "a string",
        "an integer",
    ),
    (
        with_messages({"role": "function", "name": "f", "content": 5}),
        "messages[0].content",
        "a string",
        "an integer",
    ),
    (make(stop=["a", 1]), "stop[1]", "a string", "an integer"),
    (make(metadata={"k": 7}), "metadata.k", "a string", "an integer"),
    (make(logit_bias={"50": 1.5}), "logit_bias.50", "an integer", "a decimal number"),
    (make(logit_bias={"50": True}), "logit_bias.50", "an integer", "a boolean"),
    (make(tools=["f"]), "tools[0]", "an object", "a string"),
    (
        make(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        "tools[0].function.parameters",
        "an object",
        "a string",
    ),
    (
        make(tools=[{"type": "function", "function": {"name": "f", "strict": "yes"}}]),
        "tools[0].function.strict",
        "a boolean",
        "a string",
    ),
    (
        make(response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": 1}}),
        "response_format.json_schema.schema",
        "an object",
        "an integer",
    ),
    (
        make(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
        "a boolean",
        "a string",
    ),
    (
        make(audio={"voice": 5, "format": "wav"}),
        "audio.voice",
        "one of a string or object",
        "an integer",
    ),
    (
        make(prediction={"type": "content", "content": 5}),
        "prediction.content",
        "one of a string or array of objects",
        "an integer",
    ),
    (
        with_messages({"role": 5, "content": "x"}),
        "messages[0].role",
        "one of 'system', 'assistant', 'user', 'function', 'tool', or 'developer'",
        "an integer",
    ),
]


@pytest.mark.parametrize(
    ("body", "param", "expected", "got"),
    NESTED_TYPE_CASES,
    ids=[c[1] + ":" + c[3].split()[-1] for c in NESTED_TYPE_CASES],
)
def test_wrong_nested_type(body: dict[str, Any], param: str, expected: str, got: str) -> None:
    error = reject(body)
    assert error.param == param
    assert error.code == "invalid_type"
    assert (
        error.message == f"Invalid type for '{param}': expected {expected}, but got {got} instead."
    )


# --------------------------------------------------------------------------------------------
# Ranges
# --------------------------------------------------------------------------------------------

RANGE_CASES = [
    # (field, value, code, bound text)
    ("temperature", 2.5, "decimal_above_max_value", "<= 2"),
    ("temperature", 3, "decimal_above_max_value", "<= 2"),
    ("temperature", -0.1, "decimal_below_min_value", ">= 0"),
    ("top_p", 1.01, "decimal_above_max_value", "<= 1"),
    ("top_p", -1, "decimal_below_min_value", ">= 0"),
    ("presence_penalty", 2.5, "decimal_above_max_value", "<= 2"),
    ("presence_penalty", -3, "decimal_below_min_value", ">= -2"),
    ("frequency_penalty", 3, "decimal_above_max_value", "<= 2"),
    ("frequency_penalty", -2.01, "decimal_below_min_value", ">= -2"),
    ("n", 0, "integer_below_min_value", ">= 1"),
    ("n", 129, "integer_above_max_value", "<= 128"),
    ("max_tokens", 0, "integer_below_min_value", ">= 1"),
    ("max_completion_tokens", 0, "integer_below_min_value", ">= 1"),
    ("max_completion_tokens", -5, "integer_below_min_value", ">= 1"),
    ("seed", 2**63, "integer_above_max_value", f"<= {2**63 - 1}"),
    ("seed", -(2**63) - 1, "integer_below_min_value", f">= {-(2**63)}"),
]


@pytest.mark.parametrize(
    ("field", "value", "code", "bound"), RANGE_CASES, ids=[f"{c[0]}={c[1]}" for c in RANGE_CASES]
)
def test_out_of_range(field: str, value: Any, code: str, bound: str) -> None:
    error = reject(make(**{field: value}))
    kind, side = code.split("_")[0], "above maximum" if "above" in code else "below minimum"
    assert error.param == field
    assert error.code == code
    assert error.message == (
        f"Invalid '{field}': {kind} {side} value. Expected a value {bound}, "
        f"but got {value} instead."
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [(-1, "integer_below_min_value"), (21, "integer_above_max_value")],
)
def test_top_logprobs_range(value: int, code: str) -> None:
    error = reject(make(logprobs=True, top_logprobs=value))
    assert (error.param, error.code) == ("top_logprobs", code)


@pytest.mark.parametrize(("value", "code"), [(101, "above_max"), (-101, "below_min")])
def test_logit_bias_value_range(value: int, code: str) -> None:
    error = reject(make(logit_bias={"50256": value}))
    assert error.param == "logit_bias.50256"
    assert error.code == f"integer_{code}_value"
    assert error.message.startswith("Invalid 'logit_bias.50256': integer ")


@pytest.mark.parametrize("key", ["abc", "-1", "1.5", "", " 1", "0x10"])
def test_logit_bias_key_must_be_a_token_id(key: str) -> None:
    error = reject(make(logit_bias={key: 1}))
    assert error.param == "logit_bias"
    assert error.message == (
        f"Invalid key in 'logit_bias': {key}. You should only be submitting non-negative integers."
    )


def test_huge_integer_for_a_decimal_is_a_400() -> None:
    error = reject(make(temperature=10**400))
    assert error.param == "temperature"


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 0.7},
        {"top_p": 0},
        {"top_p": 1},
        {"presence_penalty": -2, "frequency_penalty": 2},
        {"n": 1},
        {"n": 128},
        {"max_tokens": 1},
        {"max_completion_tokens": 1},
        {"seed": 2**63 - 1},
        {"seed": -(2**63)},
        {"logprobs": True, "top_logprobs": 0},
        {"logprobs": True, "top_logprobs": 20},
        {"logit_bias": {"0": -100, "50256": 100}},
        {"metadata": {f"k{i}": "v" for i in range(16)}},
        {"metadata": {"k" * 64: "v" * 512}},
    ],
    ids=lambda f: ",".join(f"{k}={str(v)[:12]}" for k, v in f.items()),
)
def test_boundaries_are_accepted(fields: dict[str, Any]) -> None:
    parse(make(**fields))


# --------------------------------------------------------------------------------------------
# stop, logprobs, metadata, stream_options
# --------------------------------------------------------------------------------------------


def test_too_many_stop_sequences() -> None:
    error = reject(make(stop=["a", "b", "c", "d", "e"]))
    assert (error.param, error.code) == ("stop", "array_above_max_length")
    assert error.message == (
        "Invalid 'stop': array too long. Expected an array with maximum length 4, "
        "but got an array with length 5 instead."
    )


@pytest.mark.parametrize(
    ("stop", "param"), [("", "stop"), (["a", ""], "stop[1]"), ([""], "stop[0]")]
)
def test_empty_stop_sequences_are_rejected(stop: Any, param: str) -> None:
    error = reject(make(stop=stop))
    assert (error.param, error.code) == (param, "empty_string")
    assert error.message == (
        f"Invalid '{param}': empty string. Expected a string with minimum length 1, "
        "but got an empty string instead."
    )


@pytest.mark.parametrize(
    ("stop", "expected"),
    [(None, []), ([], []), ("\n", ["\n"]), (["a", "b", "c", "d"], ["a", "b", "c", "d"])],
)
def test_stop_list(stop: Any, expected: list[str]) -> None:
    assert engine(parse(make(stop=stop))).stop == tuple(expected)
    assert engine(parse(make())).stop == ()


@pytest.mark.parametrize("logprobs", [..., None, False])
def test_top_logprobs_requires_logprobs(logprobs: Any) -> None:
    error = reject(make(logprobs=logprobs, top_logprobs=2))
    assert (error.param, error.code) == ("top_logprobs", None)
    assert error.message == (
        "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled."
    )


def test_top_logprobs_null_needs_nothing() -> None:
    assert parse(make(top_logprobs=None)).top_logprobs is None


def test_metadata_too_many_keys() -> None:
    error = reject(make(metadata={f"k{i}": "v" for i in range(17)}))
    assert (error.param, error.code) == ("metadata", "object_above_max_properties")
    assert error.message == (
        "Invalid 'metadata': too many properties. Expected an object with at most 16 "
        "properties, but got an object with 17 properties instead."
    )


def test_metadata_value_too_long() -> None:
    error = reject(make(metadata={"k": "x" * 513}))
    assert (error.param, error.code) == ("metadata.k", "string_above_max_length")
    assert error.message == (
        "Invalid 'metadata.k': string too long. Expected a string with maximum length 512, "
        "but got a string with length 513 instead."
    )


def test_metadata_key_too_long() -> None:
    key = "k" * 65
    error = reject(make(metadata={key: "v"}))
    assert error.param == f"metadata.{key}"
    assert error.param.startswith("metadata")
    assert error.code == "property_name_above_max_length"
    assert "Expected a string with maximum length 64, but got a string with length 65" in (
        error.message
    )


@pytest.mark.parametrize("stream", [..., None, False])
def test_stream_options_require_stream(stream: Any) -> None:
    error = reject(make(stream=stream, stream_options={"include_usage": True}))
    assert (error.param, error.code) == ("stream_options", None)
    assert error.message == (
        "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    )


def test_stream_options_unknown_key() -> None:
    error = reject(make(stream=True, stream_options={"include_usage": True, "bogus": 1}))
    assert (error.param, error.code) == ("stream_options.bogus", "unknown_parameter")
    assert error.message == "Unknown parameter: 'stream_options.bogus'."


def test_stream_options_null_without_stream_is_fine() -> None:
    assert parse(make(stream_options=None)).include_usage() is False


@pytest.mark.parametrize(
    ("options", "usage", "obfuscation"),
    [
        (None, False, True),
        ({}, False, True),
        ({"include_usage": True}, True, True),
        ({"include_usage": False, "include_obfuscation": False}, False, False),
    ],
)
def test_stream_options_helpers(options: Any, usage: bool, obfuscation: bool) -> None:
    request = parse(make(stream=True, stream_options=options))
    assert request.is_streaming()
    assert request.include_usage() is usage
    assert request.include_obfuscation() is obfuscation


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------

ENUM_CASES = [
    ("service_tier", "bogus", "'auto', 'default', 'flex', 'scale', 'priority', and 'fast'"),
    ("reasoning_effort", "ultra", "'none', 'minimal', 'low', 'medium', 'high', 'xhigh', and 'max'"),
    ("verbosity", "loud", "'low', 'medium', and 'high'"),
    ("prompt_cache_retention", "1h", "'in_memory' and '24h'"),
]


@pytest.mark.parametrize(
    ("field", "value", "supported"), ENUM_CASES, ids=[c[0] for c in ENUM_CASES]
)
def test_enum_value(field: str, value: str, supported: str) -> None:
    error = reject(make(**{field: value}))
    assert (error.param, error.code) == (field, "invalid_value")
    assert error.message == f"Invalid value: '{value}'. Supported values are: {supported}."


NESTED_ENUM_CASES = [
    (make(modalities=["text", "video"]), "modalities[1]"),
    (make(response_format={"type": "xml"}), "response_format.type"),
    (make(audio={"voice": "alloy", "format": "ogg"}), "audio.format"),
    (
        make(web_search_options={"search_context_size": "huge"}),
        "web_search_options.search_context_size",
    ),
    (
        make(web_search_options={"user_location": {"type": "exact", "approximate": {}}}),
        "web_search_options.user_location.type",
    ),
    (make(prediction={"type": "diff", "content": "x"}), "prediction.type"),
    (
        make(moderation={"model": "m", "policy": {"input": {"mode": "strict"}}}),
        "moderation.policy.input.mode",
    ),
    (make(prompt_cache_options={"ttl": "1h"}), "prompt_cache_options.ttl"),
    (make(tools=[{"type": "retrieval"}]), "tools[0].type"),
    (make(tools=[TOOL_F], tool_choice="any"), "tool_choice"),
    (
        make(tools=[TOOL_F], tool_choice={"type": "tool", "function": {"name": "get_weather"}}),
        "tool_choice.type",
    ),
    (
        make(
            tools=[TOOL_F],
            tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "none", "tools": []}},
        ),
        "tool_choice.allowed_tools.mode",
    ),
    (make(functions=[{"name": "f"}], function_call="required"), "function_call"),
    (
        make(
            tools=[
                {
                    "type": "custom",
                    "custom": {
                        "name": "c",
                        "format": {
                            "type": "grammar",
                            "grammar": {"definition": "x", "syntax": "ebnf"},
                        },
                    },
                }
            ]
        ),
        "tools[0].custom.format.grammar.syntax",
    ),
]


@pytest.mark.parametrize(
    ("body", "param"), NESTED_ENUM_CASES, ids=[c[1] for c in NESTED_ENUM_CASES]
)
def test_nested_enum_value(body: dict[str, Any], param: str) -> None:
    error = reject(body)
    assert (error.param, error.code) == (param, "invalid_value")
    assert error.message.startswith("Invalid value: '")
    assert "Supported values are: " in error.message


def test_response_format_supported_types_in_openai_order() -> None:
    error = reject(make(response_format={"type": "bogus"}))
    assert error.message == (
        "Invalid value: 'bogus'. Supported values are: 'json_object', 'json_schema', and 'text'."
    )


def test_tool_choice_string_enum() -> None:
    error = reject(make(tools=[TOOL_F], tool_choice="bogus"))
    assert error.message == (
        "Invalid value: 'bogus'. Supported values are: 'none', 'auto', and 'required'."
    )


# --------------------------------------------------------------------------------------------
# Tools, functions, response_format and the other structured options
# --------------------------------------------------------------------------------------------

MISSING_CASES = [
    (make(response_format={}), "response_format.type"),
    (make(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (
        make(response_format={"type": "json_schema", "json_schema": {}}),
        "response_format.json_schema.name",
    ),
    (make(tools=[{"type": "function"}]), "tools[0].function"),
    (make(tools=[{"function": {"name": "f"}}]), "tools[0].type"),
    (make(tools=[{"type": "function", "function": {"parameters": {}}}]), "tools[0].function.name"),
    (make(tools=[{"type": "custom", "custom": {}}]), "tools[0].custom.name"),
    (make(functions=[{"parameters": {}}]), "functions[0].name"),
    (make(tools=[TOOL_F], tool_choice={"type": "function"}), "tool_choice.function"),
    (
        make(tools=[TOOL_F], tool_choice={"type": "function", "function": {}}),
        "tool_choice.function.name",
    ),
    (make(tools=[TOOL_F], tool_choice={"function": {"name": "get_weather"}}), "tool_choice.type"),
    (make(functions=[{"name": "f"}], function_call={}), "function_call.name"),
    (make(audio={"voice": "alloy"}), "audio.format"),
    (make(audio={"format": "wav"}), "audio.voice"),
    (make(audio={"voice": {}, "format": "wav"}), "audio.voice.id"),
    (make(prediction={"type": "content"}), "prediction.content"),
    (
        make(web_search_options={"user_location": {"type": "approximate"}}),
        "web_search_options.user_location.approximate",
    ),
    (make(moderation={}), "moderation.model"),
    (make(moderation={"model": "m", "policy": {"output": {}}}), "moderation.policy.output.mode"),
]


@pytest.mark.parametrize(("body", "param"), MISSING_CASES, ids=[c[1] for c in MISSING_CASES])
def test_missing_nested_member(body: dict[str, Any], param: str) -> None:
    error = reject(body)
    assert (error.param, error.code) == (param, "missing_required_parameter")
    assert error.message == f"Missing required parameter: '{param}'."


UNKNOWN_NESTED = [
    (make(response_format={"type": "json_object", "strict": True}), "response_format.strict"),
    (
        make(response_format={"type": "json_schema", "json_schema": {"name": "n", "extra": 1}}),
        "response_format.json_schema.extra",
    ),
    (make(tools=[{**TOOL_F, "strict": True}]), "tools[0].strict"),
    (
        make(tools=[{"type": "function", "function": {"name": "f", "returns": {}}}]),
        "tools[0].function.returns",
    ),
    (make(audio={"voice": {"id": "v", "name": "n"}, "format": "wav"}), "audio.voice.name"),
    (make(prompt_cache_options={"bogus": 1}), "prompt_cache_options.bogus"),
    (
        make(
            web_search_options={
                "user_location": {"type": "approximate", "approximate": {"zip": "1"}}
            }
        ),
        "web_search_options.user_location.approximate.zip",
    ),
    (make(prediction={"type": "content", "content": "x", "x": 1}), "prediction.x"),
]


@pytest.mark.parametrize(("body", "param"), UNKNOWN_NESTED, ids=[c[1] for c in UNKNOWN_NESTED])
def test_unknown_nested_member(body: dict[str, Any], param: str) -> None:
    error = reject(body)
    assert (error.param, error.code) == (param, "unknown_parameter")
    assert error.message == f"Unknown parameter: '{param}'."


NAME_WHERE = [
    (
        "tools[0].function.name",
        lambda n: make(tools=[{"type": "function", "function": {"name": n}}]),
    ),
    ("functions[0].name", lambda n: make(functions=[{"name": n}])),
    (
        "response_format.json_schema.name",
        lambda n: make(response_format={"type": "json_schema", "json_schema": {"name": n}}),
    ),
]


@pytest.mark.parametrize(("param", "build"), NAME_WHERE, ids=[w[0] for w in NAME_WHERE])
@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "empty_string"),
        ("a" * 65, "string_above_max_length"),
        ("get weather", "invalid_value"),
        ("fn.call", "invalid_value"),
        ("héllo", "invalid_value"),
    ],
    ids=["empty", "too-long", "space", "dot", "non-ascii"],
)
def test_function_and_schema_names(param: str, build: Any, name: str, code: str) -> None:
    error = reject(build(name))
    assert (error.param, error.code) == (param, code)
    if code == "invalid_value":
        assert error.message == (
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$'."
        )
    elif code == "empty_string":
        assert error.message == (
            f"Invalid '{param}': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead."
        )
    else:
        assert error.message == (
            f"Invalid '{param}': string too long. Expected a string with maximum length 64, "
            "but got a string with length 65 instead."
        )


@pytest.mark.parametrize("name", ["a", "A_b-9", "x" * 64])
def test_valid_function_names(name: str) -> None:
    request = parse(make(tools=[{"type": "function", "function": {"name": name}}]))
    assert request.function_definitions()[0].name == name


def test_too_many_tools() -> None:
    tools = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]
    error = reject(make(tools=tools))
    assert (error.param, error.code) == ("tools", "array_above_max_length")
    parse(make(tools=tools[:128]))


def test_too_many_functions_and_empty_functions() -> None:
    functions = [{"name": f"f{i}"} for i in range(129)]
    assert reject(make(functions=functions)).code == "array_above_max_length"
    error = reject(make(functions=[]))
    assert (error.param, error.code) == ("functions", "empty_array")


def test_duplicate_tool_names() -> None:
    error = reject(make(tools=[TOOL_F, TOOL_F]))
    assert error.param == "tools[1]"


def test_tool_choice_without_tools() -> None:
    for choice in ("auto", "none", "required", {"type": "function", "function": {"name": "f"}}):
        error = reject(make(tool_choice=choice))
        assert (error.param, error.code) == ("tool_choice", None)
        assert error.message == (
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified."
        )
    assert reject(make(tools=[], tool_choice="auto")).param == "tool_choice"


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "function", "function": {"name": "nope"}},
        {"type": "custom", "custom": {"name": "get_weather"}},
    ],
)
def test_tool_choice_naming_an_undeclared_tool(choice: dict[str, Any]) -> None:
    error = reject(make(tools=[TOOL_F], tool_choice=choice))
    assert error.param == "tool_choice"
    assert "was specified in the 'tools' parameter" in error.message


def test_functions_together_with_tools() -> None:
    error = reject(make(tools=[TOOL_F], functions=[{"name": "f"}]))
    assert error.param == "functions"


@pytest.mark.parametrize("value", [True, False])
def test_parallel_tool_calls_without_tools(value: bool) -> None:
    error = reject(make(parallel_tool_calls=value))
    assert (error.param, error.code) == ("parallel_tool_calls", None)
    assert error.message == (
        "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when "
        "'tools' are specified."
    )


def test_function_call_needs_declared_functions() -> None:
    assert reject(make(function_call="auto")).param == "function_call"
    error = reject(make(functions=[{"name": "f"}], function_call={"name": "g"}))
    assert error.param == "function_call"
    assert "no function named 'g'" in error.message


def test_prediction_parts_must_be_text_and_non_empty() -> None:
    error = reject(make(prediction={"type": "content", "content": []}))
    assert (error.param, error.code) == ("prediction.content", "empty_array")
    error = reject(
        make(prediction={"type": "content", "content": [{"type": "image_url", "image_url": {}}]})
    )
    assert (error.param, error.code) == ("prediction.content[0].type", "invalid_value")


def test_safety_identifier_length() -> None:
    error = reject(make(safety_identifier="x" * 65))
    assert (error.param, error.code) == ("safety_identifier", "string_above_max_length")


# --------------------------------------------------------------------------------------------
# Valid requests
# --------------------------------------------------------------------------------------------


def test_every_field_at_once() -> None:
    body = make(
        temperature=0.5,
        top_p=0.9,
        n=2,
        stream=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
        stop=["\n\n", "END"],
        max_tokens=50,
        max_completion_tokens=100,
        presence_penalty=0.1,
        frequency_penalty=-0.1,
        logit_bias={"50256": -100},
        logprobs=True,
        top_logprobs=3,
        user="u-1",
        safety_identifier="hash",
        prompt_cache_key="k",
        prompt_cache_retention="24h",
        prompt_cache_options={"ttl": "30m", "mode": "explicit"},
        service_tier="auto",
        metadata={"a": "b"},
        modalities=["text", "audio"],
        verbosity="low",
        reasoning_effort="minimal",
        web_search_options={
            "search_context_size": "low",
            "user_location": {"type": "approximate", "approximate": {"country": "FR", "city": "P"}},
        },
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "description": "d", "schema": {"type": "object"}},
        },
        audio={"voice": "alloy", "format": "pcm16"},
        store=False,
        moderation={"model": "omni", "policy": {"input": {"mode": "score"}, "output": None}},
        seed=42,
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "d",
                    "parameters": {"type": "object", "properties": {}},
                    "strict": True,
                },
            },
            {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}},
            {
                "type": "custom",
                "custom": {
                    "name": "lark",
                    "description": "g",
                    "format": {"type": "grammar", "grammar": {"definition": "x", "syntax": "lark"}},
                },
            },
        ],
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {}}]},
        },
        parallel_tool_calls=True,
        prediction={"type": "content", "content": [{"type": "text", "text": "p"}]},
        top_k=40,
        min_p=0.05,
        repetition_penalty=1.1,
        min_tokens=10,
    )
    assert set(body) == KNOWN_REQUEST_FIELDS - {"functions", "function_call"}
    request = parse(body)
    params = engine(request)
    assert params.max_new_tokens == 100
    assert params.stop == ("\n\n", "END")
    assert params.n == 2
    assert (params.temperature, params.top_p) == (0.5, 0.9)
    assert request.include_usage() and not request.include_obfuscation()
    assert request.logit_bias_map() == {50256: -100}
    assert request.wants_logprobs() and params.top_logprobs == 3
    assert isinstance(request.response_format, ResponseFormatJSONSchema)
    assert request.response_format.json_schema.schema_ == {"type": "object"}
    assert [type(t) for t in request.tools or ()] == [FunctionTool, CustomTool, CustomTool]
    assert [f.name for f in request.function_definitions()] == ["get_weather"]
    assert request.prediction is not None and request.prediction.text() == "p"
    assert request.supplied_fields() == frozenset(body)
    assert request.raw == body
    # serializes back to what was sent (aliases included), e.g. for an upstream gateway
    assert request.model_dump(mode="json", by_alias=True, exclude_unset=True) == body


def test_legacy_functions() -> None:
    request = parse(
        make(
            functions=[{"name": "f", "description": "d", "parameters": {"type": "object"}}],
            function_call={"name": "f"},
        )
    )
    (definition,) = request.function_definitions()
    assert (definition.name, definition.description) == ("f", "d")
    assert parse(make(functions=[{"name": "f"}], function_call="none")).function_call == "none"


@pytest.mark.parametrize(
    ("response_format", "cls"),
    [
        ({"type": "text"}, ResponseFormatText),
        ({"type": "json_object"}, ResponseFormatJSONObject),
        (
            {"type": "json_schema", "json_schema": {"name": "n", "strict": None}},
            ResponseFormatJSONSchema,
        ),
    ],
)
def test_response_formats(response_format: dict[str, Any], cls: type) -> None:
    assert type(parse(make(response_format=response_format)).response_format) is cls


def test_defaults_and_nulls_mean_default() -> None:
    nulls = {
        key: None
        for key in KNOWN_REQUEST_FIELDS
        if key not in ("model", "messages", "stream_options")
    }
    for request in (parse(make()), parse(make(**nulls))):
        assert engine(request) == SamplingParams(max_new_tokens=WINDOW - 1)
        assert not request.is_streaming() and not request.include_usage()
        assert not request.wants_logprobs()
        assert request.function_definitions() == []
        assert request.logit_bias_map() == {}
        assert request.supplied_fields() == {"model", "messages"}


def test_max_tokens_alone() -> None:
    assert engine(parse(make(max_tokens=7))).max_new_tokens == 7


def test_integer_is_a_valid_decimal() -> None:
    request = parse(make(temperature=1, top_p=0, presence_penalty=-2))
    assert engine(request).temperature == 1.0
    assert isinstance(request.temperature, float)


def test_models_are_immutable() -> None:
    request = parse(make())
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        request.temperature = 0.1  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        request.messages[0].content = "changed"  # type: ignore[misc]


def test_validate_chat_request_takes_decoded_json() -> None:
    assert validate_chat_request(make()).model == "smollm2"
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request([1, 2])
    assert caught.value.message == INVALID_JSON


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_json_text_encodings(encoding: str) -> None:
    body = json.dumps(make(messages=[user("héllo 🌍")]), ensure_ascii=False).encode(encoding)
    assert parse_chat_request(body).messages[0].text() == "héllo 🌍"


# --------------------------------------------------------------------------------------------
# Agreement with the official spec
# --------------------------------------------------------------------------------------------


def _spec_request_properties() -> set[str]:
    """Through tests/openapi_schemas.py: the spec parsed once per session with
    libyaml (a pure-Python parse here took ~25 s of the fast tier on its own)."""
    return spec_schemas().properties("CreateChatCompletionRequest")


def test_known_fields_are_exactly_the_spec_properties() -> None:
    assert _spec_request_properties() == KNOWN_REQUEST_FIELDS - EXTENSION_FIELDS


def test_error_bodies_are_valid_per_spec() -> None:
    spec_validator = spec_schemas()
    for body in (make(temperature=9), make(foo=1), make(messages=[{"role": "x"}])):
        spec_validator.assert_valid("ErrorResponse", reject(body).body())

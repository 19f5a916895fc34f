"""Every way of getting a request's contract wrong (bodies that are no request, shape,
types and ranges), in-process over the real app: each refusal is OpenAI's error with the
right status and exact wording; raw httpx checks the bytes, the openai SDK checks that
clients map each status to the right exception class."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from .checks import HI, URL, VOCAB, body, check_error, user
from .harness import MODEL

# --------------------------------------------------------------------------------------------
# Bodies that are not a request at all
# --------------------------------------------------------------------------------------------

INVALID_JSON = "We could not parse the JSON body of your request."


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"model": "x", "messages": [', id="truncated"),
        pytest.param(b"{'model': 'x'}", id="single-quotes"),
        pytest.param(b'{"model": NaN}', id="nan"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b'"hello"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
        pytest.param(
            b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}',
            id="lone-surrogate",
        ),
    ],
)
async def test_not_a_json_object(http: httpx.AsyncClient, raw: bytes) -> None:
    resp = await http.post(URL, content=raw, headers={"Content-Type": "application/json"})
    err = check_error(resp, 400, param=None, code=None)
    assert err["message"].startswith(INVALID_JSON), err


# --------------------------------------------------------------------------------------------
# Request contract: shape, types and ranges (400, exact OpenAI wording)
# --------------------------------------------------------------------------------------------

CONTRACT_CASES: list[Any] = [
    # (request body, param, code, message or substrings)
    pytest.param(
        body(foo=1), None, None, "Unrecognized request argument supplied: foo", id="unknown-field"
    ),
    pytest.param(
        body(foo=1, bar=2),
        None,
        None,
        "Unrecognized request arguments supplied: foo, bar",
        id="unknown-fields",
    ),
    pytest.param(
        {"messages": HI}, None, None, "you must provide a model parameter", id="missing-model"
    ),
    pytest.param(
        {"model": "", "messages": HI},
        None,
        None,
        "you must provide a model parameter",
        id="empty-model",
    ),
    pytest.param(
        {"model": MODEL},
        "messages",
        "missing_required_parameter",
        "Missing required parameter: 'messages'.",
        id="missing-messages",
    ),
    pytest.param(
        body(messages=[]),
        "messages",
        "empty_array",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
        "empty array instead.",
        id="empty-messages",
    ),
    pytest.param(
        body(messages="hi"),
        "messages",
        "invalid_type",
        "Invalid type for 'messages': expected an array of objects, but got a string instead.",
        id="messages-not-list",
    ),
    pytest.param(
        body(messages=["hi"]),
        "messages[0]",
        "invalid_type",
        ("'messages[0]'", "expected an object", "but got a string"),
        id="message-not-object",
    ),
    pytest.param(
        body(temperature="hot"),
        "temperature",
        "invalid_type",
        "Invalid type for 'temperature': expected a decimal, but got a string instead.",
        id="temperature-string",
    ),
    pytest.param(
        body(n=1.5),
        "n",
        "invalid_type",
        "Invalid type for 'n': expected an integer, but got a decimal number instead.",
        id="n-decimal",
    ),
    pytest.param(
        body(stream="yes"),
        "stream",
        "invalid_type",
        "Invalid type for 'stream': expected a boolean, but got a string instead.",
        id="stream-string",
    ),
    pytest.param(
        body(max_tokens="1"),
        "max_tokens",
        "invalid_type",
        "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        id="max-tokens-string",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": 42}]),
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
        "but got an integer instead.",
        id="content-number",
    ),
    pytest.param(
        body(messages=[{"role": "user"}]),
        "messages[0].content",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].content'.",
        id="content-missing",
    ),
    pytest.param(
        body(model=5),
        "model",
        "invalid_type",
        "Invalid type for 'model': expected a string, but got an integer instead.",
        id="model-number",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
        "but got null instead.",
        id="content-null",
    ),
    pytest.param(
        body(metadata={"a": 1}),
        "metadata.a",
        "invalid_type",
        "Invalid type for 'metadata.a': expected a string, but got an integer instead.",
        id="metadata-value-number",
    ),
    pytest.param(
        body(stream=True, stream_options={"include_usage": "x"}),
        "stream_options.include_usage",
        "invalid_type",
        "Invalid type for 'stream_options.include_usage': expected a boolean, but got a string "
        "instead.",
        id="include-usage-string",
    ),
    pytest.param(
        body(temperature=2.5),
        "temperature",
        "decimal_above_max_value",
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 "
        "instead.",
        id="temperature-2.5",
    ),
    pytest.param(
        body(temperature=-0.1),
        "temperature",
        "decimal_below_min_value",
        "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -0.1 "
        "instead.",
        id="temperature-negative",
    ),
    pytest.param(
        body(top_p=1.5),
        "top_p",
        "decimal_above_max_value",
        "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 instead.",
        id="top-p-1.5",
    ),
    pytest.param(
        body(n=0),
        "n",
        "integer_below_min_value",
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        id="n-0",
    ),
    pytest.param(
        body(n=129),
        "n",
        "integer_above_max_value",
        "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead.",
        id="n-129",
    ),
    pytest.param(
        body(presence_penalty=3),
        "presence_penalty",
        "decimal_above_max_value",
        "Invalid 'presence_penalty': decimal above maximum value. Expected a value <= 2, but got "
        "3 instead.",
        id="presence-penalty-3",
    ),
    pytest.param(
        body(frequency_penalty=3),
        "frequency_penalty",
        "decimal_above_max_value",
        "Invalid 'frequency_penalty': decimal above maximum value. Expected a value <= 2, but "
        "got 3 instead.",
        id="frequency-penalty-3",
    ),
    pytest.param(
        body(frequency_penalty=-2.5),
        "frequency_penalty",
        "decimal_below_min_value",
        ("Expected a value >= -2, but got -2.5 instead.",),
        id="frequency-penalty-negative",
    ),
    pytest.param(
        body(logprobs=True, top_logprobs=21),
        "top_logprobs",
        "integer_above_max_value",
        "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21 "
        "instead.",
        id="top-logprobs-21",
    ),
    pytest.param(
        body(max_tokens=0),
        "max_tokens",
        "integer_below_min_value",
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 "
        "instead.",
        id="max-tokens-0",
    ),
    pytest.param(
        {"model": MODEL, "messages": HI, "max_completion_tokens": 0},
        "max_completion_tokens",
        "integer_below_min_value",
        "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, "
        "but got 0 instead.",
        id="max-completion-tokens-0",
    ),
    pytest.param(
        body(stop=["a", "b", "c", "d", "e"]),
        "stop",
        "array_above_max_length",
        "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
        "array with length 5 instead.",
        id="stop-5",
    ),
    pytest.param(
        body(top_logprobs=2),
        "top_logprobs",
        None,
        "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
        id="top-logprobs-without-logprobs",
    ),
    pytest.param(
        body(metadata={f"k{i}": "v" for i in range(17)}),
        "metadata",
        "object_above_max_properties",
        "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
        "but got an object with 17 properties instead.",
        id="metadata-17-keys",
    ),
    pytest.param(
        body(metadata={"k" * 65: "v"}),
        "metadata." + "k" * 65,
        "property_name_above_max_length",
        "Invalid property name in 'metadata': 'kkk...kkk' is too long. Expected a string with "
        "maximum length 64, but got a string with length 65 instead.",
        id="metadata-key-65",
    ),
    pytest.param(
        body(metadata={"k": "v" * 513}),
        "metadata.k",
        "string_above_max_length",
        "Invalid 'metadata.k': string too long. Expected a string with maximum length 512, but "
        "got a string with length 513 instead.",
        id="metadata-value-513",
    ),
    pytest.param(
        body(stream_options={"include_usage": True}),
        "stream_options",
        None,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        id="stream-options-without-stream",
    ),
    pytest.param(
        body(logit_bias={"50": 101}),
        "logit_bias.50",
        "integer_above_max_value",
        "Invalid 'logit_bias.50': integer above maximum value. Expected a value <= 100, but got "
        "101 instead.",
        id="logit-bias-101",
    ),
    pytest.param(
        body(logit_bias={"abc": 1}),
        "logit_bias",
        "invalid_value",
        "Invalid key in 'logit_bias': abc. You should only be submitting non-negative integers.",
        id="logit-bias-key-abc",
    ),
    pytest.param(
        body(logit_bias={"-1": 1}),
        "logit_bias",
        "invalid_value",
        "Invalid key in 'logit_bias': -1. You should only be submitting non-negative integers.",
        id="logit-bias-key-negative",
    ),
    pytest.param(
        body(logit_bias={str(VOCAB): 5}),
        "logit_bias",
        "invalid_value",
        f"Invalid key in 'logit_bias': {VOCAB}. Token ids of `{MODEL}` are 0 to {VOCAB - 1}.",
        id="logit-bias-beyond-vocab",
    ),
    pytest.param(
        body(messages=[{"role": "robot", "content": "hi"}]),
        "messages[0].role",
        "invalid_value",
        "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'.",
        id="bad-role",
    ),
    pytest.param(
        body(messages=[{"content": "hi"}]),
        "messages[0].role",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].role'.",
        id="missing-role",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": "hi", "foo": 1}]),
        "messages[0].foo",
        "unknown_parameter",
        "Unknown parameter: 'messages[0].foo'.",
        id="unknown-message-field",
    ),
    pytest.param(
        body(messages=user({"type": "video", "video": "x"})),
        "messages[0].content[1].type",
        "invalid_value",
        "Invalid value: 'video'. Supported values are: 'text', 'image_url', 'input_audio', and "
        "'file'.",
        id="bad-part-type",
    ),
    pytest.param(
        body(tool_choice="auto"),
        "tool_choice",
        None,
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
        id="tool-choice-without-tools",
    ),
    pytest.param(
        body(service_tier="turbo"),
        "service_tier",
        "invalid_value",
        ("Invalid value: 'turbo'.", "'auto'", "'flex'"),
        id="bad-service-tier",
    ),
]


@pytest.mark.parametrize(("payload", "param", "code", "expected"), CONTRACT_CASES)
async def test_contract_violation(
    http: httpx.AsyncClient,
    payload: dict[str, Any],
    param: str | None,
    code: str | None,
    expected: str | tuple[str, ...],
) -> None:
    resp = await http.post(URL, json=payload)
    if isinstance(expected, str):
        check_error(resp, 400, param=param, code=code, message=expected)
    else:
        check_error(resp, 400, param=param, code=code, contains=expected)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(body(temperature=2.5), id="temperature"),
        pytest.param(body(extra_body={"foo": 1}), id="unknown-field"),
        pytest.param(body(messages=[]), id="empty-messages"),
    ],
)
async def test_contract_violation_via_sdk(
    client: openai.AsyncOpenAI, payload: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(**payload)
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict) and "message" in info.value.body
    assert info.value.body["type"] == "invalid_request_error"

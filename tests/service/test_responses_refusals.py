"""Every ``POST /v1/responses`` the local engine refuses, in-process over the real app:
the status, OpenAI's error shape, the field named, and the SDK's exception class. What the
engine cannot honour is a 400 naming it, never silently ignored."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from chatd.protocol.chat_fields import Policy
from chatd.protocol.responses_fields import RESPONSES_FIELDS, responses_refused_fields

from .checks import check_error
from .harness import API_KEY, MODEL, Chatd

URL = "/v1/responses"
FN = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}

# A value the contract accepts for each field the local engine refuses outright.
REFUSED_VALUES: dict[str, Any] = {
    "conversation": "conv_123",
    "prompt": {"id": "pmpt_123"},
    "background": True,
    "moderation": {"model": "omni-moderation-latest"},
    "context_management": [{"type": "compaction"}],
}


def test_every_refused_field_has_a_test_value() -> None:
    assert set(REFUSED_VALUES) == set(responses_refused_fields())


async def post(http: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await http.post(URL, json={"model": MODEL, "input": "hi", **fields})


@pytest.mark.parametrize("field", sorted(REFUSED_VALUES))
async def test_refused_field(http: httpx.AsyncClient, field: str) -> None:
    resp = await post(http, **{field: REFUSED_VALUES[field]})
    err = check_error(resp, 400, param=field, code="unsupported_parameter")
    why = RESPONSES_FIELDS[field].why.format(model=MODEL)
    assert err["message"] == f"Unsupported parameter: '{field}' {why}"


async def test_refused_even_when_streaming(http: httpx.AsyncClient) -> None:
    """Refusals come before any byte: a real status, not an event."""
    resp = await post(http, stream=True, background=True)
    check_error(resp, 400, param="background", code="unsupported_parameter")


def test_hints_and_server_fields_are_not_refused() -> None:
    refused = {n for n, p in RESPONSES_FIELDS.items() if p.policy is Policy.REFUSED}
    assert "store" not in refused and "truncation" not in refused


VALUE_REFUSALS = [
    pytest.param(
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        "input[0].content[0].type",
        "unsupported_content_type",
        id="input-image",
    ),
    pytest.param(
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input[0].content[0].type",
        "unsupported_content_type",
        id="input-file",
    ),
    pytest.param(
        {"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]},
        "input[0]",
        "unsupported_parameter",
        id="reasoning-item",
    ),
    pytest.param(
        {"input": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]},
        "input[0]",
        "unsupported_parameter",
        id="web-search-item",
    ),
    pytest.param(
        {"tools": [FN], "tool_choice": {"type": "file_search"}},
        "tool_choice",
        "unsupported_parameter",
        id="tool-choice-builtin",
    ),
    pytest.param(
        {"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search_preview"}},
        "tool_choice",
        "unsupported_parameter",
        id="tool-choice-forces-hosted",
    ),
    pytest.param(
        {"tools": [{"type": "mcp", "server_label": "x"}], "tool_choice": {"type": "mcp"}},
        "tool_choice",
        "unsupported_parameter",
        id="tool-choice-mcp",
    ),
    pytest.param(
        {"tools": [{"type": "web_search"}], "tool_choice": "required"},
        "tool_choice",
        "unsupported_parameter",
        id="required-with-only-hosted-tools",
    ),
    pytest.param(
        {"tools": [FN], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}},
        "tool_choice",
        "unsupported_parameter",
        id="allowed-tools",
    ),
    pytest.param({"tool_choice": "required"}, "tool_choice", None, id="required-without-tools"),
    pytest.param(
        {"text": {"verbosity": "high"}}, "text.verbosity", "unsupported_parameter", id="verbosity"
    ),
    pytest.param(
        {"text": {"format": {"type": "json_object"}}}, "input", None, id="json-object-no-json"
    ),
    pytest.param(
        {
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
            "tools": [FN],
            "tool_choice": "required",
        },
        "text.format",
        "unsupported_parameter",
        id="schema-with-tools",
    ),
    pytest.param(
        {
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "x",
                    "strict": True,
                    "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                }
            }
        },
        "text.format.schema",
        "invalid_json_schema",
        id="strict-schema-rules",
    ),
    pytest.param(
        {
            "tools": [
                {
                    "type": "function",
                    "name": "f",
                    "strict": True,
                    "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                }
            ]
        },
        "tools[0].parameters",
        "invalid_function_parameters",
        id="strict-function-rules",
    ),
    pytest.param(
        {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
        "input",
        None,
        id="output-without-call",
    ),
    pytest.param(
        {"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]},
        "input",
        None,
        id="call-without-output",
    ),
    pytest.param(
        {"input": [{"type": "item_reference", "id": "msg_unknown"}]},
        "input[0]",
        None,
        id="unknown-item-reference",
    ),
    pytest.param(
        {"previous_response_id": "resp_unknown"},
        "previous_response_id",
        "previous_response_not_found",
        id="unknown-previous",
    ),
]


@pytest.mark.parametrize(("fields", "param", "code"), VALUE_REFUSALS)
async def test_value_refused(
    http: httpx.AsyncClient, fields: dict[str, Any], param: str, code: str | None
) -> None:
    check_error(await post(http, **fields), 400, param=param, code=code)


async def test_sdk_maps_refusals(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        await client.responses.create(
            model=MODEL,
            input="hi",
            tools=[{"type": "web_search"}],
            tool_choice={"type": "web_search_preview"},
        )
    assert e.value.param == "tool_choice"
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="no-such-model", input="hi")


CONTRACT = [
    pytest.param(
        {"model": MODEL, "input": "hi", "foo": 1}, "foo", "unknown_parameter", id="unknown-field"
    ),
    pytest.param({"input": "hi"}, "model", "missing_required_parameter", id="no-model"),
    pytest.param({"model": MODEL, "input": 3}, "input", "invalid_type", id="input-type"),
    pytest.param(
        {"model": MODEL, "temperature": 3},
        "temperature",
        "decimal_above_max_value",
        id="temperature-range",
    ),
    pytest.param(
        {"model": MODEL, "max_output_tokens": 8},
        "max_output_tokens",
        "integer_below_min_value",
        id="min-16",
    ),
    pytest.param(
        {"model": MODEL, "top_logprobs": 21},
        "top_logprobs",
        "integer_above_max_value",
        id="top-logprobs",
    ),
    pytest.param(
        {"model": MODEL, "stream_options": {"include_obfuscation": False}},
        "stream_options",
        None,
        id="stream-options-without-stream",
    ),
    pytest.param(
        {"model": MODEL, "include": ["nope"]}, "include[0]", "invalid_value", id="include-value"
    ),
    pytest.param(
        {"model": MODEL, "tools": [FN, FN]},
        "tools[1].name",
        "invalid_value",
        id="duplicate-function-names",
    ),
]


@pytest.mark.parametrize(("data", "param", "code"), CONTRACT)
async def test_contract(
    http: httpx.AsyncClient, data: dict[str, Any], param: str, code: str | None
) -> None:
    check_error(await http.post(URL, json=data), 400, param=param, code=code)


async def test_bad_json(http: httpx.AsyncClient) -> None:
    resp = await http.post(URL, content=b"{nope", headers={"Content-Type": "application/json"})
    check_error(resp, 400, param=None, code=None)


async def test_auth_required(chatd: Chatd) -> None:
    resp = await chatd.http(None).post(URL, json={"model": MODEL, "input": "hi"})
    check_error(resp, 401, param=None, code=None)
    ok = await chatd.http(API_KEY).get(f"{URL}/resp_missing")
    check_error(ok, 404, param="response_id", code=None)


async def test_unknown_query_parameter(http: httpx.AsyncClient) -> None:
    """Replaying a response's events is for background responses, which chatd refuses."""
    resp = await http.get(f"{URL}/resp_x?stream=true")
    check_error(resp, 400, param="stream", code="unsupported_parameter")
    check_error(await http.get(f"{URL}/resp_x?nope=1"), 400, param="nope", code=None)

"""The Responses request contract (src/chatd/protocol/responses_request.py, responses_items.py)
and its policy table (responses_fields.py): every field of OpenAI's ``CreateResponse`` is a
field of the contract with one policy, valid requests parse, and faults read like OpenAI's."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from chatd.engine.params import SamplingParams
from chatd.protocol.chat_fields import Policy
from chatd.protocol.errors import InvalidRequest
from chatd.protocol.responses_fields import (
    RESPONSES_FIELDS,
    responses_engine_fields,
    responses_refused_fields,
    undeclared_responses_fields,
)
from chatd.protocol.responses_items import (
    FunctionCallItem,
    FunctionCallOutputItem,
    ItemReference,
    MessageItem,
    OtherItem,
)
from chatd.protocol.responses_request import (
    CreateResponseRequest,
    FunctionToolParam,
    TextFormatJSONSchema,
    parse_response_request,
    validate_response_request,
)

MODEL = "smollm2"


def request(**fields: Any) -> CreateResponseRequest:
    return validate_response_request({"model": MODEL, "input": "Hi", **fields})


def error(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(InvalidRequest) as caught:
        validate_response_request(data)
    assert caught.value.status == 400
    body = caught.value.body()["error"]
    assert body["type"] == "invalid_request_error"
    return body


# --------------------------------------------------------------------------------------------
# The spec and the table
# --------------------------------------------------------------------------------------------


def spec_properties() -> set[str]:
    """Top-level properties of the spec's ``CreateResponse``, through allOf and $ref."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        schemas = pytest.importorskip("openapi_schemas")
    finally:
        sys.path.pop(0)
    if not schemas.SPEC_PATH.exists():
        pytest.skip("OpenAPI spec not available")

    return schemas.properties("CreateResponse")


def test_every_field_of_the_spec_is_a_field_of_the_contract() -> None:
    spec = spec_properties()
    assert len(spec) > 25  # the spec was read, not an empty shell
    contract = {f.alias or n for n, f in CreateResponseRequest.model_fields.items()}
    assert spec - contract == set()
    # nothing invented either: client_metadata is the one field a real client (Codex)
    # sends that the spec lacks, and the live API accepts (docs/acceptance.md)
    assert contract - spec == {"client_metadata"}


def test_every_field_of_the_contract_has_a_policy() -> None:
    assert undeclared_responses_fields() == set()
    assert set(RESPONSES_FIELDS) == set(CreateResponseRequest.model_fields)


def test_a_field_without_a_policy_is_caught() -> None:
    class Wider(CreateResponseRequest):
        min_p: float | None = None

    assert undeclared_responses_fields(Wider) == {"min_p"}


def test_engine_rows_name_a_sampling_parameter() -> None:
    parameters = {f.name for f in dataclasses.fields(SamplingParams)}
    for name, policy in responses_engine_fields().items():
        assert policy.engine in parameters, name
    for name, policy in RESPONSES_FIELDS.items():
        assert (policy.engine is not None) == (policy.policy is Policy.ENGINE), name
        if policy.policy is not Policy.ENGINE:
            assert policy.why.strip(), name
    assert RESPONSES_FIELDS["max_output_tokens"].engine == "max_new_tokens"
    assert RESPONSES_FIELDS["temperature"].to_engine(1) == 1.0


def test_refusals_and_hints() -> None:
    assert list(responses_refused_fields()) == [
        "conversation",
        "prompt",
        "background",
        "moderation",
        "context_management",
    ]
    hints = {n for n, p in RESPONSES_FIELDS.items() if p.policy is Policy.HINT}
    assert hints == {
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning",
        "max_tool_calls",
        "prompt_cache_options",
    }
    valued = {n for n, p in RESPONSES_FIELDS.items() if p.refuses_values}
    assert valued == {"input", "tool_choice", "text"}


# --------------------------------------------------------------------------------------------
# Valid requests
# --------------------------------------------------------------------------------------------


def test_string_input_is_one_user_message() -> None:
    req = request()
    (item,) = req.input_items()
    assert isinstance(item, MessageItem)
    assert (item.role, item.text()) == ("user", "Hi")
    assert req.stores() and not req.is_streaming() and not req.include_obfuscation()
    assert validate_response_request({"model": MODEL}).input_items() == []


def test_parse_from_bytes() -> None:
    body = json.dumps({"model": MODEL, "input": "Hi", "stream": True}).encode()
    req = parse_response_request(body)
    assert req.is_streaming() and req.include_obfuscation()
    assert error_of_bytes(b"{nope")["message"].startswith("We could not parse the JSON body")


def error_of_bytes(body: bytes) -> dict[str, Any]:
    with pytest.raises(InvalidRequest) as caught:
        parse_response_request(body)
    return caught.value.body()["error"]


def test_function_call_round_trip() -> None:
    req = request(
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
                "id": "fc_1",
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "It is 18C.", "annotations": []}],
            },
            {"type": "item_reference", "id": "msg_0"},
            {"id": "msg_1"},
        ]
    )
    items = req.input_items()
    kinds = [type(i) for i in items]
    assert kinds == [
        MessageItem,
        FunctionCallItem,
        FunctionCallOutputItem,
        MessageItem,
        ItemReference,
        ItemReference,
    ]
    assert items[2].text() == "18C"
    assert items[3].text() == "It is 18C."


def test_content_parts() -> None:
    parts = [
        {"type": "input_text", "text": "look "},
        {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
        {"type": "input_file", "file_id": "file-1"},
    ]
    (item,) = request(input=[{"role": "user", "content": parts}]).input_items()
    assert item.text() == "look "
    assert [p.type for p in item.parts()] == ["input_text", "input_image", "input_file"]
    (output,) = request(
        input=[{"type": "function_call_output", "call_id": "c", "output": parts[:1]}]
    ).input_items()
    assert output.text() == "look "


def test_other_item_types_parse_to_be_refused_by_name() -> None:
    items = request(
        input=[
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {"type": "computer_call", "call_id": "c", "action": {"type": "click"}},
        ]
    ).input_items()
    assert all(isinstance(i, OtherItem) for i in items)
    assert [i.type for i in items] == ["reasoning", "web_search_call", "computer_call"]


def test_text_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    req = request(
        text={
            "format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True},
            "verbosity": "low",
        }
    )
    assert req.text is not None and isinstance(req.text.format, TextFormatJSONSchema)
    assert req.text.format.schema_ == schema
    for kind in ("text", "json_object"):
        assert request(text={"format": {"type": kind}}).text is not None


def test_tools() -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    }
    req = request(
        tools=[tool, {"type": "web_search", "search_context_size": "low"}],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    (function,) = req.function_tools()
    assert isinstance(function, FunctionToolParam) and function.strict is True
    assert req.tools is not None and req.tools[1].type == "web_search"
    for choice in ("none", "auto", "required", {"type": "allowed_tools", "mode": "auto"}):
        request(tools=[tool], tool_choice=choice)


def test_other_options() -> None:
    req = request(
        instructions="Be brief.",
        max_output_tokens=16,
        temperature=0,
        top_p=0.5,
        top_logprobs=3,
        metadata={"k": "v"},
        store=False,
        previous_response_id="resp_1",
        user="u",
        safety_identifier="s",
        prompt_cache_key="k",
        truncation="auto",
        include=["message.output_text.logprobs"],
        stream=True,
        stream_options={"include_obfuscation": False},
        reasoning={"effort": "low", "summary": "auto"},
        service_tier="auto",
        max_tool_calls=2,
        background=False,
        prompt={"id": "pmpt_1", "variables": {"x": "y"}},
    )
    assert req.wants_logprobs() and not req.stores() and not req.include_obfuscation()
    assert "instructions" in req.supplied_fields()
    assert request(conversation="conv_1").conversation == "conv_1"


# --------------------------------------------------------------------------------------------
# Faults, as OpenAI words them
# --------------------------------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"temperature": 3}, "temperature", "decimal_above_max_value"),
    ({"temperature": "1"}, "temperature", "invalid_type"),
    ({"top_p": True}, "top_p", "invalid_type"),
    ({"max_output_tokens": 15}, "max_output_tokens", "integer_below_min_value"),
    ({"top_logprobs": 21}, "top_logprobs", "integer_above_max_value"),
    ({"unknown_field": 1}, "unknown_field", "unknown_parameter"),
    ({"input": 5}, "input", "invalid_type"),
    ({"input": [{"content": "x"}]}, "input[0].type", "missing_required_parameter"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
    (
        {"input": [{"role": "user", "content": [{"type": "x"}]}]},
        "input[0].content[0].type",
        "invalid_value",
    ),
    (
        {"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
        "input[0].arguments",
        "missing_required_parameter",
    ),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "object_above_max_properties"),
    ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65, "property_name_above_max_length"),
    (
        {"tools": [{"type": "function", "parameters": {}}]},
        "tools[0].name",
        "missing_required_parameter",
    ),
    ({"tools": [{"name": "f"}]}, "tools[0].type", "missing_required_parameter"),
    ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type", "invalid_value"),
    (
        {"text": {"format": {"type": "json_schema", "name": "x"}}},
        "text.format.schema",
        "missing_required_parameter",
    ),
    ({"truncation": "sometimes"}, "truncation", "invalid_value"),
    ({"include": ["everything"]}, "include[0]", "invalid_value"),
    (
        {"stream": True, "stream_options": {"include_usage": True}},
        "stream_options.include_usage",
        "unknown_parameter",
    ),
]


@pytest.mark.parametrize(("fields", "param", "code"), BAD, ids=[b[1] for b in BAD])
def test_fault(fields: dict[str, Any], param: str, code: str) -> None:
    body = error({"model": MODEL, "input": "Hi", **fields})
    assert (body["param"], body["code"]) == (param, code)
    assert body["message"]


def test_fault_messages() -> None:
    assert error({"model": MODEL, "temperature": 3})["message"] == (
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 "
        "instead."
    )
    assert error({"model": MODEL, "foo": 1})["message"] == "Unknown parameter: 'foo'."
    assert error({"input": "Hi"})["param"] == "model"


def test_conversation_excludes_previous_response() -> None:
    body = error({"model": MODEL, "conversation": "c", "previous_response_id": "r"})
    assert body["code"] == "mutually_exclusive_parameters"


def test_tool_names() -> None:
    tool = {"type": "function", "name": "f", "parameters": {}, "strict": False}
    body = error({"model": MODEL, "tools": [tool, tool]})
    assert (body["param"], body["code"]) == ("tools[1].name", "invalid_value")
    body = error(
        {"model": MODEL, "tools": [tool], "tool_choice": {"type": "function", "name": "g"}}
    )
    assert (body["param"], body["code"]) == ("tool_choice", "invalid_value")


def test_stream_options_need_a_stream() -> None:
    body = error({"model": MODEL, "stream_options": {"include_obfuscation": True}})
    assert body["param"] == "stream_options"
    assert "only allowed when 'stream' is enabled" in body["message"]


def test_not_an_object() -> None:
    with pytest.raises(InvalidRequest):
        validate_response_request([])  # type: ignore[arg-type]


def test_dump_round_trips() -> None:
    """A stored request is its dump; validating the dump gives the same request back."""
    req = request(
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {"type": "reasoning", "summary": []},
            {"id": "msg_1"},
        ],
        tools=[{"type": "function", "name": "f", "parameters": {}, "strict": True}],
        tool_choice={"type": "allowed_tools", "mode": "auto"},
        text={"format": {"type": "json_schema", "name": "n", "schema": {}}},
    )
    dumped = req.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert validate_response_request(dumped) == req

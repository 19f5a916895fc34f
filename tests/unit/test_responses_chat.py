"""A Responses request relayed to a Chat Completions channel: the request translated to a
chat body (protocol/responses_chat.py), valid by the spec and by chatd's own chat contract,
every field mapped or refused by name. The answer half is
tests/unit/test_responses_chat_answer.py."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schemas import assert_valid

from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.errors import Unsupported
from chatd.protocol.responses_chat import chat_body
from chatd.protocol.responses_request import validate_response_request
from chatd.service.responses.conversation import stored_input_items

Json = dict[str, Any]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOL = {"type": "function", "name": "get_weather", "parameters": WEATHER}
IMAGE = {"type": "input_image", "image_url": "https://x/cat.png"}


def body(items: list[Json] | None = None, **fields: Any) -> Json:
    """The chat body for a request of ``fields`` (``input`` defaults to "Hi"), checked
    against the spec and chatd's own chat contract."""
    req = validate_response_request({"model": "gw-model", "input": "Hi", **fields})
    if items is None:
        items = [i.model_dump(exclude_none=True, by_alias=True) for i in req.input_items()]
    out = chat_body(req, items, "upstream-model")
    assert_valid("CreateChatCompletionRequest", out)
    if out.get("service_tier") != "ultrafast":
        validate_chat_request(out)
    return out


def refused(items: list[Json] | None = None, **fields: Any) -> Unsupported:
    with pytest.raises(Unsupported) as info:
        body(items, **fields)
    assert info.value.code == "unsupported_parameter"
    assert "Chat Completions" in info.value.message
    return info.value


def user(*parts: Json) -> Json:
    return {"type": "message", "role": "user", "content": list(parts)}


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------


def test_minimal() -> None:
    assert body() == {"model": "upstream-model", "messages": [{"role": "user", "content": "Hi"}]}


def test_instructions_are_a_leading_system_message() -> None:
    out = body(instructions="Be brief.", input=[{"role": "developer", "content": "Use SI."}])
    assert out["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use SI."},
    ]


def test_messages_and_parts() -> None:
    text = {"type": "input_text", "text": "a"}
    out = body(
        input=[
            {"role": "system", "content": [{"type": "input_text", "text": "sys"}]},
            user(text, {"type": "input_text", "text": "b"}),
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "c", "annotations": [], "logprobs": []}
                ],
            },
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            user({**text, "prompt_cache_breakpoint": {"mode": "explicit"}}),
        ]
    )
    assert out["messages"] == [
        {"role": "system", "content": "sys"},  # one plain text part is a string
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "a", "prompt_cache_breakpoint": {"mode": "explicit"}}
            ],
        },
    ]


def test_calls_and_their_outputs() -> None:
    call_a = {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": "{}"}
    call_b = {**call_a, "call_id": "call_b", "arguments": '{"x":1}', "id": "fc_1"}
    output_a = {"type": "function_call_output", "call_id": "call_a", "output": "sunny"}
    output_b = {
        "type": "function_call_output",
        "call_id": "call_b",
        "output": [{"type": "input_text", "text": "1"}, {"type": "input_text", "text": "2"}],
    }
    out = body(
        input=[
            {"role": "user", "content": "Go"},
            {"role": "assistant", "content": "Calling."},
            call_a,
            call_b,
            output_a,
            output_b,
            call_a,
        ],
        tools=[{"type": "function", "name": "f", "parameters": None}],
    )
    tool_call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert out["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [
                {"id": "call_a", **tool_call},
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"x":1}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {
            "role": "tool",
            "tool_call_id": "call_b",
            "content": [{"type": "text", "text": "1"}, {"type": "text", "text": "2"}],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_a", **tool_call}]},
    ]
    assert out["tools"] == [{"type": "function", "function": {"name": "f"}}]


def test_items_as_chatd_stores_them() -> None:
    """The caller hands history in the stored shape (ids, statuses, parts everywhere)."""
    req = validate_response_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "Checking."},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
        }
    )
    items = stored_input_items(req.input_items(), {})
    assert all("id" in i for i in items)
    assert chat_body(req, items, "u")["messages"] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]


def test_images_and_files_are_mapped() -> None:
    image = {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"}
    file = {
        "type": "input_file",
        "filename": "a.pdf",
        "file_data": "data:application/pdf;base64,AA",
    }
    by_id = {"type": "input_file", "file_id": "file-1"}
    out = body(input=[user(image, file, by_id)])
    assert out["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": file["file_data"]}},
        {"type": "file", "file": {"file_id": "file-1"}},
    ]


def test_sampling_and_passed_through_fields() -> None:
    out = body(
        max_output_tokens=64,
        temperature=0.5,
        top_p=0.9,
        user="u-1",
        safety_identifier="s-1",
        prompt_cache_key="k",
        prompt_cache_retention="24h",
        prompt_cache_options={"mode": "explicit"},
        service_tier="flex",
        moderation={"model": "omni-moderation-latest"},
        reasoning={"effort": "low"},
        text={"verbosity": "low"},
    )
    del out["messages"]
    assert out == {
        "model": "upstream-model",
        "max_completion_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u-1",
        "safety_identifier": "s-1",
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
        "prompt_cache_options": {"mode": "explicit"},
        "service_tier": "flex",
        "moderation": {"model": "omni-moderation-latest"},
        "reasoning_effort": "low",
        "verbosity": "low",
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"include": ["message.output_text.logprobs"]}, {"logprobs": True}),
        ({"top_logprobs": 3}, {"logprobs": True, "top_logprobs": 3}),
        (
            {"include": ["message.output_text.logprobs"], "top_logprobs": 0},
            {"logprobs": True, "top_logprobs": 0},
        ),
        ({"top_logprobs": 0}, {}),
        ({"include": ["reasoning.encrypted_content"]}, {}),
    ],
)
def test_logprobs(fields: Json, expected: Json) -> None:
    out = body(**fields)
    assert {k: out[k] for k in ("logprobs", "top_logprobs") if k in out} == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", "none"),
        ("auto", "auto"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
        (
            {"type": "allowed_tools", "mode": "required", "tools": [TOOL | {"parameters": None}]},
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
        ),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    out = body(tools=[{**TOOL, "description": "d", "strict": True}], tool_choice=choice)
    assert out["tool_choice"] == expected
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "d",
                "parameters": WEATHER,
                "strict": True,
            },
        }
    ]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, {"type": "text"}),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {"type": "json_schema", "name": "w", "schema": WEATHER, "strict": True},
            {
                "type": "json_schema",
                "json_schema": {"name": "w", "schema": WEATHER, "strict": True},
            },
        ),
        (
            {"type": "json_schema", "name": "w", "schema": WEATHER, "description": "d"},
            {
                "type": "json_schema",
                "json_schema": {"name": "w", "schema": WEATHER, "description": "d"},
            },
        ),
    ],
)
def test_text_format(fmt: Json, expected: Json) -> None:
    assert body(text={"format": fmt})["response_format"] == expected


def test_tool_options_without_tools() -> None:
    """Chat refuses them without tools; without tools they change nothing."""
    assert set(body(parallel_tool_calls=True, tool_choice="auto")) == {"model", "messages"}
    assert "tool_choice" not in body(tool_choice="none")
    out = body(tools=[TOOL], parallel_tool_calls=False)
    assert out["parallel_tool_calls"] is False


def test_streaming_asks_for_usage_and_nothing_of_obfuscation() -> None:
    out = body(stream=True, stream_options={"include_obfuscation": False})
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert "stream" not in body(stream=False)


def test_what_chatd_handles_is_never_forwarded() -> None:
    out = body(
        store=True,
        metadata={"k": "v"},
        previous_response_id="resp_1",
        include=["message.output_text.logprobs"],
        truncation="auto",
    )
    assert set(out) == {"model", "messages", "logprobs"}


def test_history_items_are_named_input_and_own_items_by_index() -> None:
    req = validate_response_request(
        {
            "model": "m",
            "input": [{"role": "user", "content": "a"}, {"type": "item_reference", "id": "msg_1"}],
        }
    )
    history = [{"role": "user", "content": "old"}, {"type": "reasoning", "summary": []}]
    with pytest.raises(Unsupported) as info:
        chat_body(req, [*history, {"role": "user", "content": "a"}, history[0]], "u")
    assert info.value.param == "input"
    # The reference, expanded by the caller, is one item: an assistant message with an image.
    own = [{"role": "user", "content": "a"}, {"role": "assistant", "content": [IMAGE]}]
    with pytest.raises(Unsupported) as info:
        chat_body(req, history[:1] + own, "u")
    assert info.value.param == "input[1].content[0]"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"tools": [TOOL, {"type": "mcp", "server_label": "x"}]}, "tools[1]"),
        ({"tools": [{**TOOL, "output_schema": {}}]}, "tools[0].output_schema"),
        ({"tools": [TOOL], "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        (
            {
                "tools": [TOOL],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "mcp"}],
                },
            },
            "tool_choice",
        ),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"background": True}, "background"),
        ({"max_tool_calls": 3}, "max_tool_calls"),
        ({"context_management": [{"type": "compaction"}]}, "context_management"),
        ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary"),
        (
            {"input": [user({"type": "input_image", "file_id": "file-1"})]},
            "input[0].content[0].file_id",
        ),
        ({"input": [user({**IMAGE, "detail": "original"})]}, "input[0].content[0].detail"),
        (
            {"input": [user({"type": "input_file", "file_url": "https://x/a.pdf"})]},
            "input[0].content[0].file_url",
        ),
        (
            {"input": [user({"type": "input_file", "file_id": "f", "detail": "high"})]},
            "input[0].content[0].detail",
        ),
        ({"input": [{"role": "system", "content": [IMAGE]}]}, "input[0].content[0]"),
        ({"input": [{"role": "assistant", "content": [IMAGE]}]}, "input[0].content[0]"),
        ({"input": [user({"type": "refusal", "refusal": "no"})]}, "input[0].content[0]"),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": [IMAGE]}]},
            "input[0].output[0]",
        ),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0]"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
        (
            {
                "input": [
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {
                        "type": "function_call",
                        "call_id": "d",
                        "name": "f",
                        "arguments": "{}",
                        "namespace": "n",
                    },
                ]
            },
            "input[1].namespace",
        ),
    ],
)
def test_refusals_name_the_field(fields: Json, param: str) -> None:
    assert refused(**fields).param == param

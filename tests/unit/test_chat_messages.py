"""Unit tests of the messages of a chat request (src/chatd/protocol/chat_messages.py), no server
involved: every role and content form parses into typed models, and every bad message or part is
refused with OpenAI's wording, param and code.
"""

from __future__ import annotations

from typing import Any

import pytest
from chat_contract import TOOL_F, USER, make, parse, reject, spec_schemas, user, with_messages

from chatd.protocol.chat_messages import (
    AssistantMessage,
    DeveloperMessage,
    FilePart,
    FunctionMessage,
    ImagePart,
    InputAudioPart,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)
from chatd.protocol.chat_tools import NamedToolChoice

# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def test_empty_messages() -> None:
    error = reject(make(messages=[]))
    assert (error.param, error.code) == ("messages", "empty_array")
    assert error.message == (
        "Invalid 'messages': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead."
    )


@pytest.mark.parametrize("message", [{"content": "x"}, {}], ids=["no-role", "empty-object"])
def test_message_without_role(message: dict[str, Any]) -> None:
    error = reject(with_messages(USER, message))
    assert (error.param, error.code) == ("messages[1].role", "missing_required_parameter")
    assert error.message == "Missing required parameter: 'messages[1].role'."


@pytest.mark.parametrize("role", ["bogus", "User", "model", "ai", ""])
def test_message_with_unknown_role(role: str) -> None:
    error = reject(with_messages({"role": role, "content": "x"}))
    assert (error.param, error.code) == ("messages[0].role", "invalid_value")
    assert error.message == (
        f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'."
    )


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": "x", "foo": 1},
        {"role": "system", "content": "x", "tool_calls": []},
        {"role": "developer", "content": "x", "refusal": "no"},
        {"role": "tool", "content": "x", "tool_call_id": "c", "name": "f"},
        {"role": "assistant", "content": "x", "reasoning_content": "..."},
        {"role": "function", "content": "x", "name": "f", "tool_call_id": "c"},
    ],
    ids=lambda m: f"{m['role']}+{list(m)[-1]}",
)
def test_message_with_unknown_property(message: dict[str, Any]) -> None:
    extra = list(message)[-1]
    error = reject(with_messages(USER, message))
    assert error.param == f"messages[1].{extra}"
    assert error.param.startswith("messages[1]")
    assert error.code == "unknown_parameter"
    assert error.message == f"Unknown parameter: 'messages[1].{extra}'."


@pytest.mark.parametrize("role", ["developer", "system", "user", "tool"])
def test_content_is_required(role: str) -> None:
    message: dict[str, Any] = {"role": role}
    if role == "tool":
        message["tool_call_id"] = "call_1"
    error = reject(with_messages(USER, message))
    assert (error.param, error.code) == ("messages[1].content", "missing_required_parameter")
    assert error.message == "Missing required parameter: 'messages[1].content'."


@pytest.mark.parametrize(
    "message",
    [
        {"role": "assistant"},
        {"role": "assistant", "content": None},
        {"role": "assistant", "content": None, "tool_calls": None},
        {"role": "assistant", "function_call": None, "refusal": None},
    ],
)
def test_assistant_content_required_without_a_substitute(message: dict[str, Any]) -> None:
    error = reject(with_messages(USER, message))
    assert (error.param, error.code) == ("messages[1].content", "missing_required_parameter")


def test_assistant_empty_tool_calls() -> None:
    error = reject(with_messages(USER, {"role": "assistant", "content": "x", "tool_calls": []}))
    assert (error.param, error.code) == ("messages[1].tool_calls", "empty_array")


def test_tool_message_requires_tool_call_id() -> None:
    error = reject(with_messages(USER, {"role": "tool", "content": "42"}))
    assert (error.param, error.code) == ("messages[1].tool_call_id", "missing_required_parameter")
    assert error.message == "Missing required parameter: 'messages[1].tool_call_id'."


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "function", "content": "x"}, "messages[0].name"),
        ({"role": "function", "name": "f"}, "messages[0].content"),
    ],
)
def test_function_message_required_fields(message: dict[str, Any], param: str) -> None:
    error = reject(with_messages(message))
    assert (error.param, error.code) == (param, "missing_required_parameter")


@pytest.mark.parametrize(
    ("name", "code"),
    [("John Smith", "invalid_value"), ("a.b", "invalid_value")],
)
def test_participant_name_pattern(name: str, code: str) -> None:
    error = reject(with_messages(user("hi", name=name)))
    assert (error.param, error.code) == ("messages[0].name", code)
    assert error.message == (
        "Invalid 'messages[0].name': string does not match pattern. Expected a string that "
        "matches the pattern '^[a-zA-Z0-9_-]+$'."
    )


TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

TOOL_CALL_FAULTS = [
    ({**TOOL_CALL, "index": 0}, "messages[1].tool_calls[0].index", "unknown_parameter"),
    (
        {"id": "c", "function": TOOL_CALL["function"]},
        "messages[1].tool_calls[0].type",
        "missing_required_parameter",
    ),
    ({**TOOL_CALL, "type": "tool"}, "messages[1].tool_calls[0].type", "invalid_value"),
    (
        {"type": "function", "function": TOOL_CALL["function"]},
        "messages[1].tool_calls[0].id",
        "missing_required_parameter",
    ),
    (
        {**TOOL_CALL, "function": {"name": "f"}},
        "messages[1].tool_calls[0].function.arguments",
        "missing_required_parameter",
    ),
    (
        {"id": "c", "type": "custom", "custom": {"name": "x"}},
        "messages[1].tool_calls[0].custom.input",
        "missing_required_parameter",
    ),
]


@pytest.mark.parametrize(
    ("call", "param", "code"), TOOL_CALL_FAULTS, ids=[c[1] for c in TOOL_CALL_FAULTS]
)
def test_assistant_tool_call_shape(call: dict[str, Any], param: str, code: str) -> None:
    error = reject(with_messages(USER, {"role": "assistant", "tool_calls": [call]}))
    assert (error.param, error.code) == (param, code)


# --------------------------------------------------------------------------------------------
# Content parts
# --------------------------------------------------------------------------------------------

PART_FAULTS = [
    # (role, part, param suffix, code, message or None)
    (
        "user",
        {"text": "x"},
        "type",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].content[0].type'.",
    ),
    (
        "user",
        {"type": "bogus"},
        "type",
        "invalid_value",
        "Invalid value: 'bogus'. Supported values are: "
        "'text', 'image_url', 'input_audio', and 'file'.",
    ),
    ("user", {"type": "refusal", "refusal": "no"}, "type", "invalid_value", None),
    (
        "system",
        {"type": "image_url", "image_url": {"url": "u"}},
        "type",
        "invalid_value",
        "Invalid value: 'image_url'. Supported values are: 'text'.",
    ),
    (
        "developer",
        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
        "type",
        "invalid_value",
        "Invalid value: 'input_audio'. Supported values are: 'text'.",
    ),
    (
        "assistant",
        {"type": "image_url", "image_url": {"url": "u"}},
        "type",
        "invalid_value",
        "Invalid value: 'image_url'. Supported values are: 'text' and 'refusal'.",
    ),
    ("user", {"type": "text"}, "text", "missing_required_parameter", None),
    (
        "user",
        {"type": "text", "text": "x", "cache_control": {}},
        "cache_control",
        "unknown_parameter",
        "Unknown parameter: 'messages[0].content[0].cache_control'.",
    ),
    ("user", {"type": "image_url"}, "image_url", "missing_required_parameter", None),
    (
        "user",
        {"type": "image_url", "image_url": {}},
        "image_url.url",
        "missing_required_parameter",
        None,
    ),
    (
        "user",
        {"type": "image_url", "image_url": {"url": "u", "detail": "max"}},
        "image_url.detail",
        "invalid_value",
        "Invalid value: 'max'. Supported values are: 'auto', 'low', and 'high'.",
    ),
    (
        "user",
        {"type": "image_url", "image_url": {"url": "u", "size": 1}},
        "image_url.size",
        "unknown_parameter",
        None,
    ),
    (
        "user",
        {"type": "input_audio", "input_audio": {"data": "AAAA"}},
        "input_audio.format",
        "missing_required_parameter",
        None,
    ),
    (
        "user",
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}},
        "input_audio.format",
        "invalid_value",
        "Invalid value: 'ogg'. Supported values are: 'wav' and 'mp3'.",
    ),
    (
        "user",
        {"type": "file", "file": {"filename": "a.pdf"}},
        "file.file_id",
        "missing_required_parameter",
        None,
    ),
    (
        "user",
        {"type": "file", "file": {"file_id": "f", "data": "x"}},
        "file.data",
        "unknown_parameter",
        None,
    ),
    (
        "user",
        {"type": "text", "text": "x", "prompt_cache_breakpoint": {"mode": "implicit"}},
        "prompt_cache_breakpoint.mode",
        "invalid_value",
        None,
    ),
    ("assistant", {"type": "refusal"}, "refusal", "missing_required_parameter", None),
]


@pytest.mark.parametrize(
    ("role", "part", "suffix", "code", "message"),
    PART_FAULTS,
    ids=[f"{c[0]}:{c[2]}:{c[3]}" for c in PART_FAULTS],
)
def test_content_part_shape(
    role: str, part: dict[str, Any], suffix: str, code: str, message: str | None
) -> None:
    error = reject(with_messages({"role": role, "content": [part]}))
    assert error.param == f"messages[0].content[0].{suffix}"
    assert error.code == code
    if message is not None:
        assert error.message == message


def test_error_in_a_later_part_and_message_is_located() -> None:
    body = with_messages(
        USER,
        user([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]),
    )
    assert reject(body).param == "messages[1].content[1].image_url.url"


# --------------------------------------------------------------------------------------------
# Valid messages
# --------------------------------------------------------------------------------------------

TEXT = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
VALID_MESSAGES = [
    ({"role": "developer", "content": "be brief"}, DeveloperMessage, "be brief"),
    ({"role": "developer", "content": TEXT, "name": "dev"}, DeveloperMessage, "a\nb"),
    ({"role": "system", "content": "sys"}, SystemMessage, "sys"),
    ({"role": "system", "content": TEXT, "name": "s_1"}, SystemMessage, "a\nb"),
    ({"role": "user", "content": "hi", "name": "alice-1"}, UserMessage, "hi"),
    ({"role": "user", "content": ""}, UserMessage, ""),
    ({"role": "user", "content": []}, UserMessage, ""),
    ({"role": "user", "content": TEXT}, UserMessage, "a\nb"),
    (
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-abc"}},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,AA"},
                },
                {"type": "text", "text": "x", "prompt_cache_breakpoint": {"mode": "explicit"}},
            ],
        },
        UserMessage,
        "what is this?\nx",
    ),
    ({"role": "assistant", "content": "hello"}, AssistantMessage, "hello"),
    (
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}],
        },
        AssistantMessage,
        "a",
    ),
    ({"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}, AssistantMessage, ""),
    (
        {
            "role": "assistant",
            "tool_calls": [
                TOOL_CALL,
                {"id": "c2", "type": "custom", "custom": {"name": "c", "input": "x"}},
            ],
        },
        AssistantMessage,
        "",
    ),
    (
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
        AssistantMessage,
        "",
    ),
    ({"role": "assistant", "refusal": "I can't."}, AssistantMessage, ""),
    ({"role": "assistant", "audio": {"id": "audio_1"}}, AssistantMessage, ""),
    (
        {
            "role": "assistant",
            "content": "x",
            "refusal": None,
            "tool_calls": None,
            "function_call": None,
            "audio": None,
            "name": None,
        },
        AssistantMessage,
        "x",
    ),
    ({"role": "tool", "content": "42", "tool_call_id": "call_1"}, ToolMessage, "42"),
    ({"role": "tool", "content": TEXT, "tool_call_id": "call_1"}, ToolMessage, "a\nb"),
    ({"role": "function", "name": "f", "content": "23C"}, FunctionMessage, "23C"),
    ({"role": "function", "name": "f", "content": None}, FunctionMessage, ""),
]


@pytest.mark.parametrize(
    ("message", "cls", "text"),
    VALID_MESSAGES,
    ids=[f"{i}-{m[0]['role']}" for i, m in enumerate(VALID_MESSAGES)],
)
def test_every_role_and_content_form_parses(message: dict[str, Any], cls: type, text: str) -> None:
    request = parse(with_messages(message))
    (parsed,) = request.messages
    assert type(parsed) is cls
    assert parsed.role == message["role"]
    assert parsed.text() == text


def test_content_part_access() -> None:
    (message,) = parse(with_messages(VALID_MESSAGES[8][0])).messages
    parts = message.content_parts()
    assert [type(p) for p in parts] == [
        TextPart,
        ImagePart,
        ImagePart,
        InputAudioPart,
        FilePart,
        FilePart,
        TextPart,
    ]
    assert message.part_types() == {"text", "image_url", "input_audio", "file"}
    assert parts[2].image_url.detail == "low"
    assert message.text(sep="") == "what is this?x"
    (plain,) = parse(with_messages(USER)).messages
    assert plain.content_parts() == [TextPart(type="text", text="Hello!")]
    assert plain.part_types() == {"text"}
    (refusing,) = parse(with_messages(VALID_MESSAGES[10][0])).messages
    assert isinstance(refusing.content_parts()[1], RefusalPart)


def test_a_full_conversation() -> None:
    request = parse(
        make(
            messages=[
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                {"role": "tool", "content": "23C", "tool_call_id": "call_1"},
            ],
            tools=[TOOL_F],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            parallel_tool_calls=False,
        )
    )
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool"]
    assistant = request.messages[2]
    assert isinstance(assistant, AssistantMessage)
    assert assistant.tool_calls is not None
    assert assistant.tool_calls[0].function.arguments == "{}"
    assert isinstance(request.tool_choice, NamedToolChoice)


def test_accepted_bodies_are_valid_per_spec() -> None:
    spec_validator = spec_schemas()
    for message, _, _ in VALID_MESSAGES:
        # Deliberately more lenient than the spec, like OpenAI: an empty parts array, and null
        # for an optional member that the spec does not call nullable.
        if message.get("content") == [] or "tool_calls" in message and not message["tool_calls"]:
            continue
        spec_validator.assert_valid("CreateChatCompletionRequest", with_messages(message))

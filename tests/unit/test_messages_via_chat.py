"""``protocol/messages_via_chat.py``: a Messages request as the chat body a Chat
Completions channel is sent, and its answer back as Anthropic's message and stream
events, validated with the ``anthropic`` SDK's own types; what cannot be carried is a
400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from chatd.protocol.chat_as_messages import messages_from_chat
from chatd.protocol.errors import InvalidRequest, Unsupported
from chatd.protocol.messages_via_chat import chat_from_messages

TOOL = {
    "name": "weather",
    "description": "The weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
            {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}},
        ],
    },
]


def body(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 100, "messages": CONVERSATION, **kw}


def test_a_request_as_chat() -> None:
    chat = chat_from_messages(
        body(
            system=[{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
            tools=[TOOL, {"type": "web_search_20250305", "name": "web_search"}],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            stop_sequences=["END"],
            temperature=0.5,
            stream=True,
            metadata={"user_id": "u"},
            thinking={"type": "adaptive"},
            context_management={"edits": []},
            output_config={"effort": "high"},
        )
    )
    assert chat == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Let me look.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 100,
        "temperature": 0.5,
        "stop": ["END"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": TOOL["input_schema"],
                    "description": "The weather",
                },
            }
        ],  # the server tool, not forced, left out
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_there_and_back_again() -> None:
    """A chat body made from a Messages body translates back to the same conversation
    (but for what chat cannot hold: thinking, cache marks)."""
    chat = chat_from_messages(body(system="S", tools=[TOOL]))
    back = messages_from_chat(chat)
    assert back["system"] == [{"type": "text", "text": "S"}]
    assert back["messages"][1]["content"][1] == CONVERSATION[1]["content"][2]
    assert back["messages"][2]["content"][0]["tool_use_id"] == "toolu_1"


def test_images_documents_formats_and_choices() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}},
        {
            "type": "document",
            "title": "a.pdf",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JV"},
        },
    ]
    schema = {"type": "object"}
    chat = chat_from_messages(
        body(
            messages=[{"role": "user", "content": content}],
            output_config={"format": {"type": "json_schema", "schema": schema}},
            tools=[TOOL],
            tool_choice={"type": "tool", "name": "weather"},
        )
    )
    assert chat["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
        {"type": "text", "text": "d"},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JV", "filename": "a.pdf"},
        },
    ]
    assert chat["response_format"]["json_schema"]["schema"] == schema
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    none = chat_from_messages(body(tools=[TOOL], tool_choice={"type": "none"}))
    assert none["tool_choice"] == "none"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"mcp_servers": [{"type": "url", "url": "https://m", "name": "m"}]}, "mcp_servers"),
        (
            {
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                "tool_choice": {"type": "tool", "name": "web_search"},
            },
            "tools[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": {}}],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}
                ]
            },
            "messages[0].content[0].source",
        ),
    ],
)
def test_what_a_chat_channel_cannot_carry_is_a_400(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(Unsupported) as e:
        chat_from_messages(body(**fields))
    assert e.value.param == param


@pytest.mark.parametrize(
    "messages",
    [None, "x", [{"role": "tool", "content": "x"}], [{"role": "user", "content": 3}],
     [{"role": "user", "content": [{"type": "video"}]}]],
)  # fmt: skip
def test_a_conversation_that_cannot_be_read_is_a_400(messages: Any) -> None:
    with pytest.raises(InvalidRequest):
        chat_from_messages(body(messages=messages))


JUNK: list[Any] = [None, 0, "x", True, [], [None], {}, {"type": 1}, [{"type": "text"}]]


def test_junk_is_a_400_or_dropped_never_a_crash() -> None:
    fields = ["system", "messages", "tools", "tool_choice", "stop_sequences", "thinking",
              "output_config", "output_format", "mcp_servers"]  # fmt: skip
    for field in fields:
        for value in JUNK:
            try:
                chat_from_messages(body(**{field: value}))
            except InvalidRequest as e:
                assert e.status == 400
    for value in JUNK:
        blocks = [
            value,
            {"type": "tool_use", "input": value, "id": value},
            {"type": "tool_result", "content": value},
            {"type": "image", "source": value},
            {"type": "document", "source": value},
        ]
        for block in blocks:
            for role in ("user", "assistant"):
                try:
                    chat_from_messages(body(messages=[{"role": role, "content": [block]}]))
                except InvalidRequest as e:
                    assert e.status == 400


def test_a_base64_source_without_its_data_is_a_400() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    with pytest.raises(InvalidRequest) as e:
        chat_from_messages(body(messages=[{"role": "user", "content": [image]}]))
    assert e.value.param == "messages[0].content[0].source"


def test_a_system_message_in_the_conversation_stays_a_system_message() -> None:
    """Claude Code's mid-conversation system message (its tools changed): Chat
    Completions takes a system message anywhere."""
    chat = chat_from_messages(
        body(messages=[{"role": "user", "content": "Hi"}, {"role": "system", "content": "New"}])
    )
    assert chat["messages"][-1] == {"role": "system", "content": "New"}


def test_claude_codes_billing_header_is_not_relayed_to_a_chat_channel() -> None:
    billing = "x-anthropic-billing-header: cc_version=2.1.337.ef8; cc_entrypoint=cli; cch=3f2a1;"
    chat = chat_from_messages(
        body(system=[{"type": "text", "text": billing}, {"type": "text", "text": "Be kind."}])
    )
    assert chat["messages"][0] == {"role": "system", "content": "Be kind."}

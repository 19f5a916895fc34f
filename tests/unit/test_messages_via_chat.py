"""``protocol/messages_via_chat.py``: a Messages request as the chat body a Chat
Completions channel is sent, and its answer back as Anthropic's message and stream
events, validated with the ``anthropic`` SDK's own types; what cannot be carried is a
400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import anthropic.types as at
import pytest
from pydantic import TypeAdapter

from chatd.protocol.chat_as_messages import messages_from_chat
from chatd.protocol.errors import InvalidRequest, Unsupported
from chatd.protocol.messages_via_chat import (
    ChatChunksToMessages,
    chat_from_messages,
    message_from_completion,
    messages_usage,
)

EVENT = TypeAdapter(at.RawMessageStreamEvent)
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
    [None, "x", [{"role": "system", "content": "x"}], [{"role": "user", "content": 3}],
     [{"role": "user", "content": [{"type": "video"}]}]],
)  # fmt: skip
def test_a_conversation_that_cannot_be_read_is_a_400(messages: Any) -> None:
    with pytest.raises(InvalidRequest):
        chat_from_messages(body(messages=messages))


def test_usage_splits_the_cache_out() -> None:
    usage = {
        "prompt_tokens": 11,
        "completion_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert messages_usage(usage) == {
        "input_tokens": 8,
        "output_tokens": 2,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 0,
    }
    assert messages_usage(None)["input_tokens"] == 0


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
     ("content_filter", "refusal"), (None, "end_turn")],
)  # fmt: skip
def test_a_whole_answer_as_a_message(finish: str | None, stop: str) -> None:
    completion = {
        "id": "chatcmpl-abc",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "message": {
                    "role": "assistant",
                    "content": "Hi",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "g", "arguments": "oops"},
                        },
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    message = message_from_completion(completion, "pub")
    at.Message.model_validate(message)
    assert message["id"] == "msg_abc" and message["model"] == "pub"
    assert message["stop_reason"] == stop
    assert [b["type"] for b in message["content"]] == ["text", "tool_use", "tool_use"]
    assert message["content"][1]["input"] == {"a": 1} and message["content"][2]["input"] == {}


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_a_stream_as_events_in_anthropics_order() -> None:
    reader = ChatChunksToMessages("msg_x", "pub", input_tokens=9)
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let"}),
        chunk({"content": " me"}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        chunk(
            {"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{}"}}]}
        ),
        chunk({}, "tool_calls"),
        {"id": "chatcmpl-x", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
    ]
    events = [reader.start()]
    for c in chunks:
        events += reader.read(c)
    events += reader.finish()
    for e in events:
        EVENT.validate_python(e)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[0]["message"]["usage"]["input_tokens"] == 9
    pieces = [e["delta"].get("partial_json", "") for e in events[5:9] if "delta" in e]
    assert json.loads("".join(pieces)) == {"a": 1}
    assert [e["index"] for e in events if e["type"] == "content_block_start"] == [0, 1, 2]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["output_tokens"] == 4


def test_an_empty_stream_still_ends_well() -> None:
    reader = ChatChunksToMessages("msg_x", "pub")
    events = [reader.start(), *reader.finish()]
    assert [e["type"] for e in events] == ["message_start", "message_delta", "message_stop"]
    for e in events:
        EVENT.validate_python(e)


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


def test_a_hostile_chat_upstream_never_crashes_the_readers() -> None:
    for value in JUNK:
        message = message_from_completion({"choices": value, "usage": value}, "pub")
        at.Message.model_validate(message)
        reader = ChatChunksToMessages("msg_x", "pub")
        for c in ({"choices": value}, {"choices": [value]}, {"choices": [{"delta": value}]},
                  {"choices": [{"delta": {"tool_calls": value}}]},
                  {"choices": [{"delta": {"tool_calls": [value]}}]}, {"usage": value}):  # fmt: skip
            try:
                reader.read(c)
            except TypeError as e:  # only a list of choices is iterable: the wire checks
                raise AssertionError(c) from e
        for e in reader.finish():
            EVENT.validate_python(e)


def test_a_base64_source_without_its_data_is_a_400() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    with pytest.raises(InvalidRequest) as e:
        chat_from_messages(body(messages=[{"role": "user", "content": [image]}]))
    assert e.value.param == "messages[0].content[0].source"

"""``protocol/messages_as_chat.py``: an Anthropic answer as Chat Completions objects: a
whole message as a ``chat.completion`` (text joined, tool calls, finish reasons, usage
with the cache counts in the prompt), and a Messages stream, event by event, as chat
chunks valid against OpenAI's schema (role, text, tool calls and their arguments, finish,
usage) ending at ``message_stop``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openapi_schemas import assert_valid

from chatd.protocol.messages_as_chat import (
    MessagesStreamToChat,
    chat_usage,
    completion_from_message,
    finish_reason,
)

USAGE = {
    "input_tokens": 7,
    "output_tokens": 5,
    "cache_read_input_tokens": 3,
    "cache_creation_input_tokens": 1,
}


def message(content: list[dict[str, Any]], stop: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": USAGE,
    }


def test_usage_counts_the_cache_in_the_prompt() -> None:
    assert chat_usage(USAGE) == {
        "prompt_tokens": 11,
        "completion_tokens": 5,
        "total_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert chat_usage({"input_tokens": 2, "output_tokens": 1})["prompt_tokens"] == 2  # type: ignore[index]
    assert chat_usage(None) is None


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(stop: str | None, finish: str) -> None:
    assert finish_reason(stop) == finish


def test_a_text_answer() -> None:
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "s"}
    out = completion_from_message(
        message([thinking, {"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}])
    )
    assert_valid("CreateChatCompletionResponse", out)
    assert out["id"] == "chatcmpl-01abc" and out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["message"]["content"] == "Hello" and choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert out["usage"]["prompt_tokens"] == 11


def test_a_tool_use_answer() -> None:
    tool = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
    out = completion_from_message(message([tool], "tool_use"))
    assert_valid("CreateChatCompletionResponse", out)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_1" and call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def stream(tool_input_whole: bool = False) -> list[dict[str, Any]]:
    start = message([], "end_turn")
    start["stop_reason"] = None
    start["usage"] = {**USAGE, "output_tokens": 1}
    tool_start = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    if tool_input_whole:
        tool_start["input"] = {"city": "Rome"}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "x"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Let"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " me"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": tool_start},
    ]
    if not tool_input_whole:
        events += [
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": ""},
            },
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": '{"city"'},
            },
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": ': "Paris"}'},
            },
        ]
    events += [
        {"type": "content_block_stop", "index": 2},
        {
            "type": "content_block_start",
            "index": 3,
            "content_block": {**tool_start, "id": "toolu_2", "name": "noargs", "input": {}},
        },
        {"type": "content_block_stop", "index": 3},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    return events


def read_all(events: list[dict[str, Any]]) -> tuple[MessagesStreamToChat, list[dict[str, Any]]]:
    reader = MessagesStreamToChat()
    chunks = []
    for event in events:
        assert not reader.ended
        chunk = reader.read(event)
        if chunk is not None:
            assert_valid("CreateChatCompletionStreamResponse", chunk)
            chunks.append(chunk)
    return reader, chunks


def calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for tc in choice["delta"].get("tool_calls", []):
                call = out.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                call["id"] += tc.get("id", "")
                call["name"] += tc.get("function", {}).get("name", "")
                call["arguments"] += tc.get("function", {}).get("arguments", "")
    return out


def test_a_stream_as_chat_chunks() -> None:
    reader, chunks = read_all(stream())
    assert reader.ended
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["id"] for c in chunks} == {"chatcmpl-01abc"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Let me"  # the thinking left out
    assert calls(chunks) == {
        0: {"id": "toolu_1", "name": "weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "toolu_2", "name": "noargs", "arguments": "{}"},  # never empty
    }
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "tool_calls" and set(finish[:-1]) == {None}
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 9
    assert last["usage"]["prompt_tokens"] == 11
    assert reader.chat_usage() == last["usage"]


def test_a_tool_input_sent_whole_at_the_blocks_start() -> None:
    _, chunks = read_all(stream(tool_input_whole=True))
    assert json.loads(calls(chunks)[0]["arguments"]) == {"city": "Rome"}


def test_no_usage_no_usage_chunk() -> None:
    reader = MessagesStreamToChat()
    reader.read({"type": "message_start", "message": {"id": "msg_x", "model": "m"}})
    assert reader.read({"type": "message_stop"}) is None and reader.ended


def test_unknown_events_are_skipped() -> None:
    reader = MessagesStreamToChat()
    assert reader.read({"type": "something_new", "x": 1}) is None
    delta = {"type": "citations_delta", "citation": {}}
    assert reader.read({"type": "content_block_delta", "index": 0, "delta": delta}) is None


def test_a_hostile_upstreams_events_never_crash_the_reader() -> None:
    """Whatever shape an upstream's event has, the reader gives a chunk or nothing."""
    junk: list[Any] = [None, 1, "x", [], {}, {"type": 1}, [{"type": "text"}]]
    kinds = ["message_start", "content_block_start", "content_block_delta",
             "content_block_stop", "message_delta", "message_stop", "ping"]  # fmt: skip
    for kind in kinds:
        for value in junk:
            for key in ("message", "content_block", "delta", "usage", "index"):
                reader = MessagesStreamToChat()
                chunk = reader.read({"type": kind, key: value})
                assert chunk is None or isinstance(chunk, dict)
    for value in junk:
        out = completion_from_message({"content": value, "usage": value, "stop_reason": value})
        assert out["choices"][0]["message"]["content"] == ""

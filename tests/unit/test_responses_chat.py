"""A Responses request relayed to a Chat Completions channel, both ways: the request
translated to a chat body (protocol/responses_chat.py), valid by the spec and by chatd's own
chat contract, every field mapped or refused by name; and the chat answer read back into core
events (service/responses/chat_events.py), whose Responses stream is spec-valid and adds up
to the same items as the whole completion."""

from __future__ import annotations

from typing import Any

import pytest
from test_responses_output import check_stream, run

from chatd.engine.params import FinishReason, TokenLogprob, TopLogprob
from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.errors import ServerError, Unsupported
from chatd.protocol.responses_chat import chat_body
from chatd.protocol.responses_request import validate_response_request
from chatd.service.chat.choice import finish_reason
from chatd.service.events import CallArguments, CallStarted, Event, Finished, TextDelta
from chatd.service.responses.chat_events import (
    ChatStreamReader,
    chat_finish_reason,
    completion_events,
    usage_of,
)
from chatd.service.responses.conversation import stored_input_items
from chatd.service.responses.output import response_status
from tests.openapi_schemas import assert_valid

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


# --------------------------------------------------------------------------------------------
# The answer: pieces
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "called", "reason", "chat", "status"),
    [
        ("stop", False, FinishReason.END_OF_GENERATION, "stop", ("completed", None)),
        (None, False, FinishReason.END_OF_GENERATION, "stop", ("completed", None)),
        ("tool_calls", True, FinishReason.END_OF_GENERATION, "tool_calls", ("completed", None)),
        ("function_call", True, FinishReason.END_OF_GENERATION, "tool_calls", ("completed", None)),
        ("length", False, FinishReason.LENGTH, "length", ("incomplete", "max_output_tokens")),
        (
            "content_filter",
            False,
            FinishReason.CONTENT_FILTER,
            "content_filter",
            ("incomplete", "content_filter"),
        ),
        ("eos", False, FinishReason.END_OF_GENERATION, "stop", ("completed", None)),
    ],
)
def test_finish_reasons(
    name: str | None, called: bool, reason: FinishReason, chat: str, status: tuple
) -> None:
    """Each chat word, in the core's, and back out through both protocols' namings."""
    assert chat_finish_reason(name) is reason
    assert finish_reason(reason, called, legacy=False) == chat
    assert response_status(reason) == status


def test_usage() -> None:
    assert usage_of(None) is None
    usage = usage_of(
        {
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "total_tokens": 17,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
    )
    assert usage == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 17,
    }
    assert_valid("ResponseUsage", usage)
    assert usage_of({"prompt_tokens": 3, "completion_tokens": 1})["total_tokens"] == 4


def chunk(delta: Json, finish: str | None = None, logprobs: Json | None = None, **kw: Any) -> Json:
    c = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        **kw,
    }
    assert_valid("CreateChatCompletionStreamResponse", c)
    return c


def read(chunks: list[Json]) -> tuple[list[Event], ChatStreamReader]:
    reader = ChatStreamReader()
    return [e for c in chunks for e in reader.read(c)], reader


def call_piece(index: int, arguments: str, id: str | None = None, name: str | None = None) -> Json:
    piece: Json = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        piece |= {"id": id, "type": "function"}
    if name is not None:
        piece["function"]["name"] = name
    return {"tool_calls": [piece]}


def test_stream_reader_pieces() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    events, reader = read(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hi"}),
            chunk({}, "stop"),
            {**chunk({}), "choices": [], "usage": usage},
        ]
    )
    assert events == [TextDelta("Hi"), Finished(FinishReason.END_OF_GENERATION, False)]
    assert reader.finish is FinishReason.END_OF_GENERATION
    assert reader.usage == usage
    other = chunk({"content": "x"})
    other["choices"][0]["index"] = 1
    assert ChatStreamReader().read(other) == []


def test_refusal_is_relayed_as_text() -> None:
    events, reader = read([chunk({"refusal": "I can't."}), chunk({}, "stop")])
    assert events[0] == TextDelta("I can't.")
    assert reader.refused


def test_calls_that_reuse_index_zero_and_a_name_that_comes_late() -> None:
    events, _ = read(
        [
            chunk(call_piece(0, '{"a":1}', "call_a", "f")),
            chunk(call_piece(0, '{"b":2}', "call_b", "g")),  # a new id: a new call
            chunk({"tool_calls": [{"index": 1, "id": "call_c", "type": "function"}]}),
            chunk(call_piece(1, "{}")),  # held until the name comes
            chunk(call_piece(1, "", name="h")),
            chunk({}, "tool_calls"),
        ]
    )
    assert events == [
        CallStarted(0, "call_a", "f"),
        CallArguments(0, '{"a":1}'),
        CallStarted(1, "call_b", "g"),
        CallArguments(1, '{"b":2}'),
        CallStarted(2, "call_c", "h"),
        CallArguments(2, "{}"),
        Finished(FinishReason.END_OF_GENERATION, True),
    ]


def test_several_whole_calls_in_one_chunk() -> None:
    """Some servers send each call whole, all in one delta."""
    a = call_piece(0, '{"city": "Oslo"}', "call_a", "get_weather")["tool_calls"][0]
    b = call_piece(1, "{}", "call_b", "get_time")["tool_calls"][0]
    events, _ = read([chunk({"tool_calls": [a, b]}, "tool_calls")])
    assert events == [
        CallStarted(0, "call_a", "get_weather"),
        CallArguments(0, '{"city": "Oslo"}'),
        CallStarted(1, "call_b", "get_time"),
        CallArguments(1, "{}"),
        Finished(FinishReason.END_OF_GENERATION, True),
    ]


def test_interleaved_or_nameless_calls_are_an_upstream_fault() -> None:
    with pytest.raises(ServerError, match="interleaved"):
        read(
            [
                chunk(call_piece(0, "{", "call_a", "f")),
                chunk(call_piece(1, "{", "call_b", "g")),
                chunk(call_piece(0, "}")),
            ]
        )
    with pytest.raises(ServerError, match="without a name"):
        read(
            [
                chunk({"tool_calls": [{"index": 0, "id": "c", "type": "function"}]}),
                chunk({}, "stop"),
            ]
        )


# --------------------------------------------------------------------------------------------
# The answer: a stream and the whole completion give the same response
# --------------------------------------------------------------------------------------------


def lp_entry(token: str) -> Json:
    raw = list(token.encode())
    top = [
        {"token": token, "logprob": -0.5, "bytes": raw},
        {"token": "x", "logprob": -2.0, "bytes": None},
    ]
    return {"token": token, "logprob": -0.5, "bytes": raw, "top_logprobs": top}


Call = tuple[str, str, list[str]]  # id, name, argument pieces


def stream_of(text: list[str], calls: list[Call], finish: str, logprobs: bool) -> list[Json]:
    """The chunks a Chat Completions server sends for this answer, in OpenAI's order: the
    role, text, each call (id and name, then arguments), the end, usage."""
    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for piece in text:
        lp = {"content": [lp_entry(piece)], "refusal": None} if logprobs else None
        out.append(chunk({"content": piece}, logprobs=lp))
    for index, (cid, name, pieces) in enumerate(calls):
        out.append(chunk(call_piece(index, "", cid, name)))
        out += [chunk(call_piece(index, p)) for p in pieces]
    out.append(chunk({}, finish))
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    out.append({**chunk({}), "choices": [], "usage": usage})
    return out


def completion_of(text: list[str], calls: list[Call], finish: str, logprobs: bool) -> Json:
    message: Json = {"role": "assistant", "content": "".join(text) or None, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": "".join(p)}}
            for cid, name, p in calls
        ]
    lp = {"content": [lp_entry(p) for p in text], "refusal": None} if logprobs else None
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "message": message, "logprobs": lp, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    assert_valid("CreateChatCompletionResponse", completion)
    return completion


def without_ids(items: list[Json]) -> list[Json]:
    return [{k: v for k, v in item.items() if k != "id"} for item in items]


WEATHER_CALL = ("call_w", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])
TIME_CALL = ("call_t", "get_time", ["{", "}"])


@pytest.mark.parametrize(
    ("text", "calls", "finish", "logprobs", "types", "status"),
    [
        (["Hel", "lo", ", world."], [], "stop", False, ["message"], "completed"),
        ([], [WEATHER_CALL], "tool_calls", False, ["function_call"], "completed"),
        (
            ["Checking."],
            [WEATHER_CALL, TIME_CALL],
            "tool_calls",
            False,
            ["message", "function_call", "function_call"],
            "completed",
        ),
        (["Once", " upon", " a"], [], "length", False, ["message"], "incomplete"),
        (
            [],
            [("call_w", "get_weather", ['{"ci'])],
            "length",
            False,
            ["function_call"],
            "incomplete",
        ),
        (["Bon", "jour", " é"], [], "stop", True, ["message"], "completed"),
        (["Some"], [], "content_filter", True, ["message"], "incomplete"),
        ([], [], "stop", False, ["message"], "completed"),
    ],
)
def test_round_trip(
    text: list[str], calls: list[Call], finish: str, logprobs: bool, types: list[str], status: str
) -> None:
    events, reader = read(stream_of(text, calls, finish, logprobs))
    sent, final = run(events, logprobs)
    check_stream(sent, final)
    assert final["status"] == status
    assert [i["type"] for i in final["output"]] == types
    assert all(i["status"] == status for i in final["output"][-1:])
    assert usage_of(reader.usage) == usage_of(completion_of(text, calls, finish, logprobs)["usage"])

    whole = completion_events(completion_of(text, calls, finish, logprobs))
    whole_sent, whole_final = run(whole, logprobs)
    check_stream(whole_sent, whole_final)
    assert without_ids(final["output"]) == without_ids(whole_final["output"])

    message = [i for i in final["output"] if i["type"] == "message"]
    if message:
        part = message[0]["content"][0]
        assert part["text"] == "".join(text)
        assert [x["token"] for x in part["logprobs"]] == (text if logprobs else [])
    calls_out = [i for i in final["output"] if i["type"] == "function_call"]
    assert [(i["call_id"], i["name"], i["arguments"]) for i in calls_out] == [
        (cid, name, "".join(p)) for cid, name, p in calls
    ]


def test_logprobs_are_the_cores_tuples() -> None:
    [event, _] = completion_events(completion_of(["é"], [], "stop", True))
    raw = list("é".encode())
    assert event == TextDelta(
        "é",
        (TokenLogprob("é", raw, -0.5, (TopLogprob("é", raw, -0.5), TopLogprob("x", None, -2.0))),),
    )


def test_a_completion_with_no_choice_is_an_upstream_fault() -> None:
    with pytest.raises(ServerError):
        completion_events({"choices": []})

"""A Chat Completions channel's answer to a Responses request, read back into core events
(service/chat_events.py): finish reasons, usage, the stream reader's pieces, and
a stream and the whole completion giving the same spec-valid response. The request half
is tests/unit/test_responses_chat.py."""

from typing import Any

import pytest
from openapi_schemas import assert_valid
from test_responses_output import check_stream, run

from chatd.engine.params import FinishReason, TokenLogprob, TopLogprob
from chatd.protocol.errors import ServerError
from chatd.service.chat.choice import finish_reason
from chatd.service.chat_events import (
    ChatStreamReader,
    chat_finish_reason,
    completion_events,
    usage_of,
)
from chatd.service.events import CallArguments, CallStarted, Event, Finished, TextDelta
from chatd.service.responses.output import response_status

Json = dict[str, Any]

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

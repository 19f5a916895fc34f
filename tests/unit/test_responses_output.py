"""The Responses adapter's output (service/responses/output.py) and the protocol builders it
uses (protocol/responses_response.py): every stream event and the whole ``response`` object
validate against OpenAI's spec, sequence numbers run on by one, streamed deltas add up to
the final items, and a choice cut by the token limit is ``incomplete``."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_schemas import assert_valid

from chatd.engine.params import Delta, FinishReason, TokenLogprob, TopLogprob
from chatd.protocol.ids import function_call_item_id, message_item_id, response_id
from chatd.protocol.responses_response import (
    ResponseSettings,
    ResponseStream,
    response_event,
    response_usage,
)
from chatd.service.events import (
    CallArguments,
    CallStarted,
    ChoiceReader,
    Event,
    Finished,
    TextDelta,
)
from chatd.service.responses.output import ResponseOutput, response_status
from chatd.service.tool_calls import CLOSE, OPEN, Function, ToolPlan

Json = dict[str, Any]

WEATHER = Function("get_weather", None, {"type": "object", "properties": {}})

# Each stream event's type and the spec component that describes it.
COMPONENTS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "error": "ResponseErrorEvent",
}


def lp(token: str) -> TokenLogprob:
    return TokenLogprob(token, list(token.encode()), -0.25, (TopLogprob(token, None, -0.25),))


def run(events: list[Event], logprobs: bool = False) -> tuple[list[Json], Json]:
    """A whole stream as the route will send it: created, in_progress, the choice's
    events, the final event; and the final response object."""
    settings = ResponseSettings(model="local-model", max_output_tokens=16)
    stream = ResponseStream()
    sent = [
        stream.emit(response_event(settings.response("in_progress", []), "created")),
        stream.emit(response_event(settings.response("in_progress", []))),
    ]
    output = ResponseOutput(logprobs)
    for e in events:
        sent += [stream.emit(x) for x in output.on_event(e)]
    status, reason = response_status(output.finish)
    final = settings.response(
        status, output.output, response_usage(10, 5, 2), incomplete_reason=reason
    )
    sent.append(stream.emit(response_event(final)))
    return sent, final


def check_stream(sent: list[Json], final: Json) -> None:
    """What holds for every stream: valid events, contiguous numbers, deltas that add up."""
    for event in sent:
        assert_valid(COMPONENTS[event["type"]], event)
        assert_valid("ResponseStreamEvent", event)
    assert_valid("Response", final)
    assert [e["sequence_number"] for e in sent] == list(range(len(sent)))
    assert sent[0]["type"] == "response.created"
    assert sent[1]["type"] == "response.in_progress"
    assert sent[-1]["response"] is final
    done = [e["item"] for e in sent if e["type"] == "response.output_item.done"]
    assert done == final["output"]
    for index, item in enumerate(final["output"]):
        mine = [e for e in sent if e.get("output_index") == index]
        assert mine[0]["type"] == "response.output_item.added"
        assert mine[0]["item"]["id"] == item["id"]
        assert mine[0]["item"]["status"] == "in_progress"
        assert mine[-1]["type"] == "response.output_item.done"
        if item["type"] == "message":
            check_message(mine, item)
        else:
            check_call(mine, item)


def check_message(mine: list[Json], item: Json) -> None:
    types = [e["type"] for e in mine]
    assert types[1] == "response.content_part.added"
    assert types[-3:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    deltas = [e for e in mine if e["type"] == "response.output_text.delta"]
    part = item["content"][0]
    assert "".join(d["delta"] for d in deltas) == part["text"] == mine[-3]["text"]
    streamed = [x for d in deltas for x in d["logprobs"]]
    assert [x["token"] for x in streamed] == [x["token"] for x in part["logprobs"]]
    assert mine[-3]["logprobs"] == streamed
    assert mine[-2]["part"] == part
    assert all(e["item_id"] == item["id"] for e in mine[1:-1])


def check_call(mine: list[Json], item: Json) -> None:
    deltas = [e for e in mine if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(d["delta"] for d in deltas) == item["arguments"] == mine[-2]["arguments"]
    assert mine[-2]["type"] == "response.function_call_arguments.done"
    assert mine[-2]["name"] == item["name"]
    assert all(e["item_id"] == item["id"] for e in mine[1:-1])


def test_ids_look_like_openais() -> None:
    assert re.fullmatch("resp_[0-9a-f]{48}", response_id())
    assert re.fullmatch("msg_[0-9a-f]{48}", message_item_id())
    assert re.fullmatch("fc_[0-9a-f]{48}", function_call_item_id())
    assert response_id() != response_id()


def test_text_only() -> None:
    sent, final = run(
        [
            TextDelta("Hello"),
            TextDelta(", "),
            TextDelta("world."),
            Finished(FinishReason.END_OF_GENERATION, False),
        ]
    )
    check_stream(sent, final)
    assert final["status"] == "completed"
    assert final["incomplete_details"] is None
    assert final["completed_at"] is not None
    [item] = final["output"]
    assert item["type"] == "message" and item["status"] == "completed"
    assert item["content"] == [
        {"type": "output_text", "text": "Hello, world.", "annotations": [], "logprobs": []}
    ]
    assert sent[-1]["type"] == "response.completed"
    assert len(sent) == 2 + 2 + 3 + 3 + 1


def test_text_with_logprobs() -> None:
    sent, final = run(
        [
            TextDelta("", (lp("He"),)),  # a token that released no text yet
            TextDelta("Hello", (lp("llo"),)),
            TextDelta(" you", (lp(" you"),)),
            Finished(FinishReason.STOP_SEQUENCE, False),
        ],
        logprobs=True,
    )
    check_stream(sent, final)
    part = final["output"][0]["content"][0]
    assert [x["token"] for x in part["logprobs"]] == ["He", "llo", " you"]
    assert part["logprobs"][1]["bytes"] == list(b"llo")
    assert part["logprobs"][0]["top_logprobs"] == [{"token": "He", "logprob": -0.25, "bytes": []}]
    first = next(e for e in sent if e["type"] == "response.output_text.delta")
    assert first["logprobs"][0] == {
        "token": "He",
        "logprob": -0.25,
        "top_logprobs": [{"token": "He", "logprob": -0.25}],
    }


def test_logprobs_not_asked_for_are_empty() -> None:
    sent, final = run(
        [TextDelta("Hi", (lp("Hi"),)), Finished(FinishReason.END_OF_GENERATION, False)]
    )
    check_stream(sent, final)
    assert final["output"][0]["content"][0]["logprobs"] == []
    assert all(e.get("logprobs", []) == [] for e in sent)


def test_one_function_call() -> None:
    sent, final = run(
        [
            CallStarted(0, "call_abc", "get_weather"),
            CallArguments(0, '{"city": '),
            CallArguments(0, '"Paris"}'),
            Finished(FinishReason.GRAMMAR_END, True),
        ]
    )
    check_stream(sent, final)
    assert final["status"] == "completed"
    [item] = final["output"]
    assert item["type"] == "function_call"
    assert item["call_id"] == "call_abc"
    assert item["name"] == "get_weather"
    assert item["arguments"] == '{"city": "Paris"}'
    assert item["status"] == "completed"
    assert item["id"].startswith("fc_")


def test_text_then_two_parallel_calls() -> None:
    sent, final = run(
        [
            TextDelta("Checking."),
            CallStarted(0, "call_a", "get_weather"),
            CallArguments(0, '{"city": "Paris"}'),
            CallStarted(1, "call_b", "get_time"),
            CallArguments(1, "{}"),
            Finished(FinishReason.END_OF_GENERATION, True),
        ]
    )
    check_stream(sent, final)
    assert [i["type"] for i in final["output"]] == ["message", "function_call", "function_call"]
    assert [i.get("call_id") for i in final["output"]] == [None, "call_a", "call_b"]
    assert all(i["status"] == "completed" for i in final["output"])
    # The message is closed before the first call is added.
    types = [e["type"] for e in sent]
    assert types.index("response.output_item.done") < types.index(
        "response.function_call_arguments.delta"
    )


def test_cut_by_length_is_incomplete() -> None:
    sent, final = run(
        [TextDelta("Once upon"), TextDelta(" a"), Finished(FinishReason.LENGTH, False)]
    )
    check_stream(sent, final)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["completed_at"] is None
    assert final["output"][0]["status"] == "incomplete"
    assert sent[-1]["type"] == "response.incomplete"


def test_call_cut_by_length_is_incomplete() -> None:
    sent, final = run(
        [
            CallStarted(0, "call_a", "f"),
            CallArguments(0, '{"x": '),
            Finished(FinishReason.LENGTH, True),
        ]
    )
    check_stream(sent, final)
    assert final["output"][0]["status"] == "incomplete"
    assert final["output"][0]["arguments"] == '{"x": '


def test_empty_answer_is_an_empty_message() -> None:
    sent, final = run([Finished(FinishReason.END_OF_GENERATION, False)])
    check_stream(sent, final)
    assert final["output"][0]["content"][0]["text"] == ""


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (FinishReason.END_OF_GENERATION, ("completed", None)),
        (FinishReason.STOP_SEQUENCE, ("completed", None)),
        (FinishReason.GRAMMAR_END, ("completed", None)),
        (FinishReason.LENGTH, ("incomplete", "max_output_tokens")),
    ],
)
def test_status_mapping(reason: FinishReason, expected: tuple[str, str | None]) -> None:
    assert response_status(reason) == expected


def test_failed_response_and_error_event() -> None:
    settings = ResponseSettings(model="m", user="u-1", metadata={"k": "v"})
    failed = settings.response(
        "failed", [], error={"code": "server_error", "message": "the engine stopped"}
    )
    stream = ResponseStream()
    event = stream.emit(response_event(failed))
    assert event["type"] == "response.failed"
    assert_valid("ResponseFailedEvent", event)
    error = stream.error("server_error", "the engine stopped")
    assert error["sequence_number"] == 1
    assert_valid("ResponseErrorEvent", error)
    assert failed["user"] == "u-1"


def test_the_core_readers_events_add_up_to_its_answer() -> None:
    """The real reader and tool-call parser, fed in small pieces: two parallel calls
    (this parser reads calls only at the start of the answer)."""
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_weather", "arguments": {"city": "Oslo"}},
    ]
    text = "".join(OPEN + json.dumps(c) + CLOSE for c in calls)
    pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
    reader = ChoiceReader(0, ToolPlan([WEATHER], "auto"))
    events: list[Event] = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        reason = FinishReason.END_OF_GENERATION if last else None
        events += reader.read(Delta(0, piece, (), reason, i + 1))
    sent, final = run(events)
    check_stream(sent, final)
    items = final["output"]
    assert reader.text == ""
    assert [(i["call_id"], i["name"], i["arguments"]) for i in items] == [
        (c.id, c.name, c.arguments) for c in reader.calls
    ]
    assert [json.loads(i["arguments"]) for i in items] == [c["arguments"] for c in calls]


@pytest.mark.parametrize(
    ("component", "event"),
    [
        ("ResponseTextDeltaEvent", {"type": "response.output_text.delta", "delta": "x"}),
        (
            "ResponseOutputItemDoneEvent",
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "sequence_number": 3,
                "item": {"type": "function_call", "name": "f", "call_id": "c"},
            },
        ),
    ],
)
def test_the_spec_check_can_fail(component: str, event: Json) -> None:
    """The validation the tests above rely on rejects malformed events."""
    with pytest.raises(AssertionError):
        assert_valid(component, event)

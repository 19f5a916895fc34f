"""The core's events (service/events.py) and the Chat adapter's choices built from them
(service/chat/choice.py): text and logprobs, tool calls, finish reasons, and a streamed
answer that adds up to the whole one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatd.engine.params import Delta, FinishReason, TokenLogprob, TopLogprob
from chatd.service.chat.choice import Choice, finish_reason
from chatd.service.events import (
    CallArguments,
    CallStarted,
    ChoiceReader,
    Finished,
    TextDelta,
)
from chatd.service.tool_calls import CLOSE, OPEN, Function, ToolPlan

WEATHER = Function("get_weather", None, {"type": "object", "properties": {}})
AUTO = ToolPlan([WEATHER], "auto")


def lp(token: str) -> TokenLogprob:
    return TokenLogprob(token, list(token.encode()), -0.5, (TopLogprob(token, None, -0.5),))


def deltas(pieces: list[str], reason: FinishReason, logprobs: bool = False) -> list[Delta]:
    out = []
    for i, text in enumerate(pieces):
        last = i == len(pieces) - 1
        lps = (lp(text),) if logprobs and text else ()
        out.append(Delta(0, text, lps, reason if last else None, i + 1))
    return out


def test_plain_text_events_carry_their_logprobs() -> None:
    reader = ChoiceReader(0, None)
    events = [
        e for d in deltas(["Hel", "lo", ""], FinishReason.LENGTH, True) for e in reader.read(d)
    ]
    assert events[:2] == [TextDelta("Hel", (lp("Hel"),)), TextDelta("lo", (lp("lo"),))]
    assert events[-1] == Finished(FinishReason.LENGTH, called=False)
    assert reader.text == "Hello" and reader.tokens == 3 and len(reader.logprobs) == 2


def test_logprobs_without_text_yet_are_not_held_for_plain_text() -> None:
    """A token that released no text (half a UTF-8 character) still reports its logprob."""
    reader = ChoiceReader(0, None)
    token = TokenLogprob("\\xe2", [0xE2], -1.0, ())
    assert reader.read(Delta(0, "", (token,), None, 1)) == [TextDelta("", (token,))]


def test_tool_calls_become_call_events() -> None:
    body = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
    reader = ChoiceReader(0, AUTO)
    text = OPEN + body + CLOSE
    events = []
    for d in deltas([text[:5], text[5:30], text[30:]], FinishReason.GRAMMAR_END):
        events += reader.read(d)
    started = [e for e in events if isinstance(e, CallStarted)]
    args = "".join(e.text for e in events if isinstance(e, CallArguments))
    assert [(e.call, e.name) for e in started] == [(0, "get_weather")]
    assert started[0].id == reader.calls[0].id and started[0].id.startswith("call_")
    assert json.loads(args) == {"city": "Paris"}
    assert not any(isinstance(e, TextDelta) for e in events)
    assert events[-1] == Finished(FinishReason.GRAMMAR_END, called=True)


@pytest.mark.parametrize(
    ("reason", "called", "legacy", "expected"),
    [
        (FinishReason.END_OF_GENERATION, False, False, "stop"),
        (FinishReason.STOP_SEQUENCE, False, False, "stop"),
        (FinishReason.GRAMMAR_END, False, False, "stop"),
        (FinishReason.LENGTH, False, False, "length"),
        (FinishReason.GRAMMAR_END, True, False, "tool_calls"),
        (FinishReason.END_OF_GENERATION, True, True, "function_call"),
        (FinishReason.LENGTH, True, False, "length"),  # cut short inside a call
    ],
)
def test_chat_finish_reasons(
    reason: FinishReason, called: bool, legacy: bool, expected: str
) -> None:
    assert finish_reason(reason, called, legacy) == expected


def stream_and_message(
    plan: ToolPlan | None, pieces: list[str], legacy: bool = False, logprobs: bool = True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    reader = ChoiceReader(0, plan)
    choice = Choice(reader, legacy, logprobs)
    chunks = choice.open_early()
    for d in deltas(pieces, FinishReason.END_OF_GENERATION, logprobs):
        for event in reader.read(d):
            chunks += choice.on_event(event)
    return chunks, choice.message()


def test_streamed_text_adds_up_to_the_message() -> None:
    chunks, message = stream_and_message(None, ["The ", "sky ", "is ", "blue."])
    assert chunks[0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    content = "".join(c["delta"].get("content") or "" for c in chunks)
    assert content == message["message"]["content"] == "The sky is blue."
    streamed_lps = [e for c in chunks if c["logprobs"] for e in c["logprobs"]["content"]]
    assert streamed_lps == message["logprobs"]["content"]
    assert streamed_lps[0] == {
        "token": "The ",
        "logprob": -0.5,
        "bytes": list(b"The "),
        "top_logprobs": [{"token": "The ", "logprob": -0.5, "bytes": None}],
    }
    assert chunks[-1]["finish_reason"] == message["finish_reason"] == "stop"


@pytest.mark.parametrize("legacy", [False, True])
def test_streamed_calls_add_up_to_the_message(legacy: bool) -> None:
    body = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
    text = OPEN + body + CLOSE
    plan = ToolPlan([WEATHER], "auto", legacy=legacy)
    chunks, message = stream_and_message(plan, [text[:9], text[9:40], text[40:]], legacy)
    opening = chunks[0]["delta"]
    assert opening["role"] == "assistant" and opening["content"] is None
    msg = message["message"]
    assert msg["content"] is None
    if legacy:
        args = "".join(c["delta"].get("function_call", {}).get("arguments", "") for c in chunks)
        assert msg["function_call"] == {"name": "get_weather", "arguments": args}
        assert message["finish_reason"] == chunks[-1]["finish_reason"] == "function_call"
    else:
        calls = [tc for c in chunks for tc in c["delta"].get("tool_calls", [])]
        args = "".join(tc["function"]["arguments"] for tc in calls)
        assert msg["tool_calls"] == [
            {
                "id": calls[0]["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": args},
            }
        ]
        assert message["finish_reason"] == chunks[-1]["finish_reason"] == "tool_calls"
    assert json.loads(args) == {"city": "Paris"}

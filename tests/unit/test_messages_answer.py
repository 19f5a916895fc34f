"""service/messages/answer.py: the core's events as Anthropic's content blocks and
stream events, stop reasons, usage, and pings while a generation is silent (a long
prefill). Pure: a scripted event source, no engine, no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from chatd.engine.params import FinishReason
from chatd.protocol.errors import ServerError
from chatd.service.event_sources import SourceUsage
from chatd.service.events import CallArguments, CallStarted, Event, Finished, TextDelta
from chatd.service.messages.answer import MessageOutput, StreamedMessage


class Source:
    """Scripted events; ``gate`` (when given) holds the first one back until set."""

    def __init__(self, events: list[Event], gate: asyncio.Event | None = None,
                 fail: bool = False) -> None:  # fmt: skip
        self.script = events
        self.gate = gate
        self.fail = fail
        self.cancelled = False

    async def events(self) -> AsyncIterator[Event]:
        if self.gate is not None:
            await self.gate.wait()
        for e in self.script:
            yield e
        if self.fail:
            raise ServerError("The engine failed while generating.")

    def usage(self) -> SourceUsage:
        return SourceUsage(10, len(self.script), 4)

    def cancel(self) -> None:
        self.cancelled = True


def test_text_then_calls_are_blocks_in_order() -> None:
    out = MessageOutput()
    events: list[dict[str, Any]] = []
    for e in [
        TextDelta("Let me "),
        TextDelta("check."),
        CallStarted(0, "call_x", "get_weather"),
        CallArguments(0, '{"city":'),
        CallArguments(0, '"Paris"}'),
        Finished(FinishReason.GRAMMAR_END, True),
    ]:
        events += out.on_event(e)
    assert [e["type"] for e in events] == [
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop",
    ]  # fmt: skip
    assert [e.get("index") for e in events] == [0, 0, 0, 0, 1, 1, 1, 1]
    text, use = out.content
    assert text == {"type": "text", "text": "Let me check."}
    assert use["type"] == "tool_use" and use["id"].startswith("toolu_")
    assert use["name"] == "get_weather" and use["input"] == {"city": "Paris"}


def test_a_call_cut_by_max_tokens_has_no_input() -> None:
    out = MessageOutput()
    for e in [CallStarted(0, "c", "f"), CallArguments(0, '{"ci'),
              Finished(FinishReason.LENGTH, True)]:  # fmt: skip
        out.on_event(e)
    assert out.content[0]["input"] == {}


async def test_whole_message_with_stop_sequence_and_usage() -> None:
    finish = Finished(FinishReason.STOP_SEQUENCE, False, "###")
    msg = StreamedMessage(Source([TextDelta("hi"), finish]), "m")
    body = await msg.result()
    assert body["stop_reason"] == "stop_sequence" and body["stop_sequence"] == "###"
    assert body["usage"] == {
        "input_tokens": 6,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": 2,
    }


async def test_usage_is_accounted_once() -> None:
    seen: list[SourceUsage] = []
    msg = StreamedMessage(Source([Finished(FinishReason.END_OF_GENERATION, False)]), "m",
                          account=seen.append)  # fmt: skip
    assert [e["type"] async for e in msg.events()][-1] == "message_stop"
    assert len(seen) == 1


async def test_pings_while_the_generation_is_silent() -> None:
    """A ping each time ``ping_seconds`` pass with nothing to send; the generation's
    wait is not disturbed by them (its events all arrive after)."""
    gate = asyncio.Event()
    source = Source([TextDelta("ok"), Finished(FinishReason.END_OF_GENERATION, False)], gate)
    msg = StreamedMessage(source, "m", ping_seconds=0.001)
    names = []
    async for event in msg.events():
        names.append(event["type"])
        if names.count("ping") == 4:
            gate.set()
    assert names[0] == "message_start" and names.count("ping") >= 4
    assert names[-5:] == ["content_block_start", "content_block_delta", "content_block_stop",
                          "message_delta", "message_stop"]  # fmt: skip


async def test_a_failure_mid_stream_is_an_error_event() -> None:
    msg = StreamedMessage(Source([TextDelta("x")], fail=True), "m")
    events = [e async for e in msg.events()]
    assert events[-1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "The engine failed while generating."},
    }

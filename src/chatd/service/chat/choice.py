"""One choice of a chat completion, as the client sees it: the core's events as stream
deltas, and the whole ``message`` at the end. Both come from the same events, so a
streamed answer always adds up to the whole one."""

from __future__ import annotations

from typing import Any

from chatd.engine.params import FinishReason, TokenLogprob
from chatd.protocol.chat_response import delta_choice, logprob_entry, message_choice
from chatd.service.events import (
    CallArguments,
    CallStarted,
    ChoiceReader,
    Event,
    Finished,
    TextDelta,
)

__all__ = ["Choice", "finish_reason"]

# Chat Completions says "stop" for a natural end or a stop sequence, "length" for a limit,
# "content_filter" for an (upstream's) filter.
_FINISH_REASONS = {
    FinishReason.END_OF_GENERATION: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.GRAMMAR_END: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.CONTENT_FILTER: "content_filter",
}


def finish_reason(reason: FinishReason | None, called: bool, legacy: bool) -> str:
    """An answer that ended in tool calls says so (``function_call`` for ``functions``)."""
    name = _FINISH_REASONS[reason] if reason is not None else "stop"
    if name == "stop" and called:
        return "function_call" if legacy else "tool_calls"
    return name


class Choice:
    """Turns one choice's events into chunk choices, and its reader into the message."""

    def __init__(self, reader: ChoiceReader, legacy: bool, logprobs: bool) -> None:
        self.reader = reader
        self.index = reader.index
        self.legacy = legacy  # calls answered as the deprecated message.function_call
        self.want_logprobs = logprobs
        self.opened = False

    def open_early(self) -> list[dict[str, Any]]:
        """Plain text opens at once; tool-capable choices open when they know what
        they are writing (content, or content null and a call)."""
        if self.reader.parser is not None:
            return []
        return [self._open_text()]

    def _open_text(self) -> dict[str, Any]:
        self.opened = True
        return delta_choice(self.index, {"role": "assistant", "content": "", "refusal": None})

    def on_event(self, event: Event) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if isinstance(event, TextDelta):
            lp = _entries(event.logprobs) if self.want_logprobs else None
            if event.text:
                if not self.opened:
                    out.append(self._open_text())
                out.append(delta_choice(self.index, {"content": event.text}, logprobs=lp))
            elif lp:
                out.append(delta_choice(self.index, {"content": ""}, logprobs=lp))
        elif isinstance(event, CallStarted | CallArguments):
            out.append(delta_choice(self.index, self._call_delta(event)))
        elif isinstance(event, Finished):
            if not self.opened:
                out.append(self._open_text())
            reason = finish_reason(event.reason, event.called, self.legacy)
            out.append(delta_choice(self.index, {}, finish_reason=reason))
        return out

    def _call_delta(self, event: CallStarted | CallArguments) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if not self.opened:
            self.opened = True
            delta = {"role": "assistant", "content": None}
        if isinstance(event, CallStarted):
            if self.legacy:
                delta["function_call"] = {"name": event.name, "arguments": ""}
            else:
                call = {"name": event.name, "arguments": ""}
                delta["tool_calls"] = [
                    {"index": event.call, "id": event.id, "type": "function", "function": call}
                ]
        elif self.legacy:
            delta["function_call"] = {"arguments": event.text}
        else:
            delta["tool_calls"] = [{"index": event.call, "function": {"arguments": event.text}}]
        if "role" in delta:
            delta["refusal"] = None
        return delta

    def message(self) -> dict[str, Any]:
        r = self.reader
        calls = r.calls
        content: str | None = r.text
        if calls and not content:
            content = None
        extra: dict[str, Any] = {}
        if calls and self.legacy:
            extra["function_call"] = {"name": calls[0].name, "arguments": calls[0].arguments}
        elif calls:
            extra["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        return message_choice(
            self.index,
            content,
            finish_reason(r.finish, bool(calls), self.legacy),
            _entries(tuple(r.logprobs)) if self.want_logprobs else None,
            **extra,
        )


def _entries(logprobs: tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    return [
        logprob_entry(
            lp.token,
            lp.logprob,
            lp.bytes,
            [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in lp.top],
        )
        for lp in logprobs
    ]

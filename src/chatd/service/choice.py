"""One choice of a completion, as the client sees it: plain text, or tool calls read
back from the model's output. Stream deltas and the final message are built by the same
code, so a streamed answer always adds up to the whole one."""

from __future__ import annotations

from typing import Any

from chatd.engine.params import Delta, FinishReason, TokenLogprob
from chatd.protocol.responses import LogprobEntry, delta_choice, message_choice
from chatd.service.tools import CallEvent, OutputParser, ParsedCall, ToolPlan

# Chat Completions says "stop" for a natural end or a stop sequence, "length" for a limit.
_FINISH_REASONS = {
    FinishReason.END_OF_GENERATION: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.GRAMMAR_END: "stop",
    FinishReason.LENGTH: "length",
}


class Choice:
    """One choice's output: plain text, or tool calls read back by an OutputParser.

    ``on_delta`` turns engine deltas into stream deltas and accumulates the message, so
    a streamed answer and a whole one are built by the same code.
    """

    def __init__(self, index: int, plan: ToolPlan | None, logprobs: bool) -> None:
        self.index = index
        self.parser = OutputParser(plan) if plan is not None and plan.may_call else None
        self.legacy = plan is not None and plan.legacy
        self.want_logprobs = logprobs
        self.content = ""
        self.logprobs: list[LogprobEntry] = []
        self._unsent_logprobs: list[LogprobEntry] = []
        self.tokens = 0
        self.finish: str | None = None
        self.opened = False

    def open_early(self) -> list[dict[str, Any]]:
        """Plain text opens at once; tool-capable choices open when they know what
        they are writing (content, or content null and a call)."""
        if self.parser is not None:
            return []
        return [self._open_text()]

    def _open_text(self) -> dict[str, Any]:
        self.opened = True
        return delta_choice(self.index, {"role": "assistant", "content": "", "refusal": None})

    def on_delta(self, d: Delta) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self.tokens = d.completion_tokens
        entries = _entries(d.logprobs)
        self.logprobs.extend(entries)
        self._unsent_logprobs.extend(entries)
        if self.parser is None:
            content, events = d.text, []
        else:
            content, events = self.parser.feed(d.text)
            if d.finish_reason is not None:
                content += self.parser.finish()
        if content:
            if not self.opened:
                out.append(self._open_text())
            self.content += content
            lp = self._unsent_logprobs if self.want_logprobs else None
            out.append(delta_choice(self.index, {"content": content}, logprobs=lp))
            self._unsent_logprobs = []
        elif self.parser is None and entries and self.want_logprobs:
            out.append(delta_choice(self.index, {"content": ""}, logprobs=entries))
            self._unsent_logprobs = []
        for event in events:
            out.append(delta_choice(self.index, self._call_delta(event)))
        if d.finish_reason is not None:
            if not self.opened:
                out.append(self._open_text())
            self.finish = _FINISH_REASONS[d.finish_reason]
            if self.finish == "stop" and self.calls:
                self.finish = "function_call" if self.legacy else "tool_calls"
            out.append(delta_choice(self.index, {}, finish_reason=self.finish))
        return out

    @property
    def calls(self) -> list[ParsedCall]:
        return self.parser.calls if self.parser is not None else []

    def _call_delta(self, event: CallEvent) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if not self.opened:
            self.opened = True
            delta = {"role": "assistant", "content": None}
        if self.legacy:
            fc = (
                {"name": event.name, "arguments": ""}
                if event.name
                else {"arguments": event.arguments}
            )
            delta["function_call"] = fc
        elif event.name is not None:
            call = self.calls[event.index]
            delta["tool_calls"] = [
                {
                    "index": event.index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ]
        else:
            delta["tool_calls"] = [
                {"index": event.index, "function": {"arguments": event.arguments}}
            ]
        if "role" in delta:
            delta["refusal"] = None
        return delta

    def message(self) -> dict[str, Any]:
        calls = self.calls
        content: str | None = self.content
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
            self.finish or "stop",
            self.logprobs if self.want_logprobs else None,
            **extra,
        )


def _entries(logprobs: tuple[TokenLogprob, ...]) -> list[LogprobEntry]:
    return [
        LogprobEntry(
            token=lp.token,
            logprob=lp.logprob,
            bytes=lp.bytes,
            top_logprobs=[
                {"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in lp.top
            ],
        )
        for lp in logprobs
    ]

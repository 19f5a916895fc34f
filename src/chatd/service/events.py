"""What one choice of a local generation produced, in protocol-neutral events: text (with
its tokens' logprobs), a tool call begun, a call's arguments grown, the end.

Every protocol's adapter turns these into its own objects (Chat Completions deltas and
messages, Responses items, ...). Streamed and whole answers are built from the same events,
so a streamed answer always adds up to the whole one.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatd.engine.params import Delta, FinishReason, TokenLogprob
from chatd.service.tool_calls import OutputParser, ParsedCall, ToolPlan

__all__ = [
    "CallArguments",
    "CallStarted",
    "ChoiceReader",
    "Event",
    "Finished",
    "TextDelta",
]


# Events are made per token: slotted, not frozen (a frozen dataclass's __init__ costs
# twice as much, measured on the streaming path).
@dataclass(slots=True)
class TextDelta:
    """Answer text. ``logprobs`` are the tokens released with it (and, for plain text,
    tokens that released no text yet: then ``text`` is empty)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(slots=True)
class CallStarted:
    call: int  # the call's index within this choice
    id: str
    name: str


@dataclass(slots=True)
class CallArguments:
    call: int
    text: str  # the next piece of the call's JSON arguments


@dataclass(slots=True)
class Finished:
    reason: FinishReason
    called: bool  # the answer is tool calls
    stop_sequence: str | None = None  # which stop ended it (reason STOP_SEQUENCE)


Event = TextDelta | CallStarted | CallArguments | Finished


class ChoiceReader:
    """One choice's engine deltas as events; keeps the whole answer (text, calls, logprobs,
    tokens) for the final object and for storage."""

    def __init__(self, index: int, plan: ToolPlan | None) -> None:
        self.index = index
        self.parser = OutputParser(plan) if plan is not None and plan.may_call else None
        self.text = ""
        self.logprobs: list[TokenLogprob] = []
        self._unsent: list[TokenLogprob] = []
        self.tokens = 0
        self.finish: FinishReason | None = None

    @property
    def calls(self) -> list[ParsedCall]:
        return self.parser.calls if self.parser is not None else []

    def read(self, d: Delta) -> list[Event]:
        self.tokens = d.completion_tokens
        self.logprobs.extend(d.logprobs)
        self._unsent.extend(d.logprobs)
        if self.parser is None:
            content, found = d.text, []
        else:
            content, found = self.parser.feed(d.text)
            if d.finish_reason is not None:
                content += self.parser.finish()
                found += self.parser.flush()
        out: list[Event] = []
        # Logprobs travel with text; a tool-capable choice holds them until text comes
        # (a call's tokens are no content).
        if content or (self.parser is None and self._unsent):
            self.text += content
            out.append(TextDelta(content, tuple(self._unsent)))
            self._unsent = []
        for e in found:
            if e.name is not None:
                out.append(CallStarted(e.index, self.calls[e.index].id, e.name))
            else:
                out.append(CallArguments(e.index, e.arguments))
        if d.finish_reason is not None:
            self.finish = d.finish_reason
            out.append(Finished(d.finish_reason, bool(self.calls), d.stop_sequence))
        return out

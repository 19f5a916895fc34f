"""One choice of a response, as the client sees it: the core's events as Responses stream
events, and the final ``output`` items. Both come from the same state, so the streamed
deltas always add up to the whole items.

The Responses API has no ``n``: one choice, whose text is a ``message`` item (one
``output_text`` part) and whose tool calls are ``function_call`` items (``custom_tool_call``
items for custom tools; a namespace's member's call names its ``namespace``), in the order
the model wrote them.
"""

from __future__ import annotations

from typing import Any

from chatd.engine.params import FinishReason, TokenLogprob
from chatd.protocol.ids import custom_tool_call_item_id, function_call_item_id, message_item_id
from chatd.protocol.responses_response import (
    content_part_event,
    custom_tool_call_input_delta_event,
    custom_tool_call_input_done_event,
    custom_tool_call_item,
    function_call_arguments_delta_event,
    function_call_arguments_done_event,
    function_call_item,
    message_item,
    output_item_event,
    output_text_delta_event,
    output_text_done_event,
    output_text_part,
    part_logprob,
    stream_logprob,
)
from chatd.service.events import CallArguments, CallStarted, Event, Finished, TextDelta
from chatd.service.responses.tools import ToolNames

__all__ = ["ResponseOutput", "response_status"]

Json = dict[str, Any]


def response_status(reason: FinishReason | None) -> tuple[str, str | None]:
    """The response's status and ``incomplete_details.reason``: a choice cut by the token
    limit (or the context window), or by an upstream's content filter, is ``incomplete``;
    every other end is ``completed``."""
    if reason is FinishReason.LENGTH:
        return "incomplete", "max_output_tokens"
    if reason is FinishReason.CONTENT_FILTER:
        return "incomplete", "content_filter"
    return "completed", None


class _Message:
    """The open ``message`` item: its text and logprobs so far."""

    def __init__(self, output_index: int) -> None:
        self.id = message_item_id()
        self.output_index = output_index
        self.text = ""
        self.logprobs: list[Json] = []

    def part(self) -> Json:
        return output_text_part(self.text, list(self.logprobs))

    def item(self, status: str) -> Json:
        content = [self.part()] if status != "in_progress" else []
        return message_item(self.id, status, content)


class _Call:
    """The open call item (``function_call``, or ``custom_tool_call``): its arguments
    (a custom tool's input) so far."""

    def __init__(
        self,
        index: int,
        output_index: int,
        call_id: str,
        written: str,
        names: ToolNames | None,
    ) -> None:
        self.index = index  # the core's call index, to match its arguments
        self.output_index = output_index
        self.call_id = call_id
        custom, self.name, self.namespace = (
            names.item_fields(written) if names is not None else (False, written, None)
        )
        self.custom = custom
        self.id = custom_tool_call_item_id() if custom else function_call_item_id()
        self.arguments = ""

    def item(self, status: str) -> Json:
        if self.custom:
            return custom_tool_call_item(
                self.id, self.call_id, self.name, self.arguments, status, self.namespace
            )
        return function_call_item(
            self.id, self.call_id, self.name, self.arguments, status, self.namespace
        )

    def delta(self, text: str) -> Json:
        if self.custom:
            return custom_tool_call_input_delta_event(self.id, self.output_index, text)
        return function_call_arguments_delta_event(self.id, self.output_index, text)

    def done(self) -> Json:
        if self.custom:
            return custom_tool_call_input_done_event(self.id, self.output_index, self.arguments)
        return function_call_arguments_done_event(
            self.id, self.output_index, self.name, self.arguments
        )


class ResponseOutput:
    """Turns one choice's events into stream events (unnumbered: the caller's
    ``ResponseStream`` numbers them) and keeps the final ``output`` items.

    An item is closed (its ``.done`` events sent) when the next item starts or the choice
    ends; a choice cut short (token limit, content filter) closes its last item
    ``incomplete``.
    """

    def __init__(self, logprobs: bool, names: ToolNames | None = None) -> None:
        self.want_logprobs = logprobs
        self.names = names
        self.items: list[Json] = []  # closed items, final; open ones are added when closed
        self.finish: FinishReason | None = None
        self._message: _Message | None = None
        self._call: _Call | None = None
        self._pending: list[Json] = []  # logprobs of tokens that released no text yet
        self._count = 0  # output items opened so far

    @property
    def output(self) -> list[Json]:
        """The final ``output`` items (complete once ``Finished`` was read)."""
        return self.items

    def on_event(self, event: Event) -> list[Json]:
        if isinstance(event, TextDelta):
            return self._text(event)
        if isinstance(event, CallStarted):
            out = self._close("completed")
            self._call = _Call(event.call, self._count, event.id, event.name, self.names)
            self._count += 1
            out.append(
                output_item_event(False, self._call.output_index, self._call.item("in_progress"))
            )
            return out
        if isinstance(event, CallArguments):
            return self._arguments(event)
        return self._finished(event)

    def _text(self, event: TextDelta) -> list[Json]:
        if self.want_logprobs:
            self._pending.extend(_entries(event.logprobs))
        if not event.text and (self._message is None or not self._pending):
            return []  # logprobs wait for the text they belong to
        out = self._open_message()
        m = self._message
        assert m is not None
        m.text += event.text
        lp, self._pending = self._pending, []
        m.logprobs.extend(lp)
        out.append(
            output_text_delta_event(
                m.id, m.output_index, 0, event.text, [stream_logprob(e) for e in lp]
            )
        )
        return out

    def _open_message(self) -> list[Json]:
        """A message opens on its first text: ``output_item.added`` (no content yet) and
        ``content_part.added`` (empty text), as OpenAI sends them."""
        if self._message is not None:
            return []
        out = self._close("completed")
        m = self._message = _Message(self._count)
        self._count += 1
        out.append(output_item_event(False, m.output_index, m.item("in_progress")))
        out.append(content_part_event(False, m.id, m.output_index, 0, output_text_part("", [])))
        return out

    def _arguments(self, event: CallArguments) -> list[Json]:
        c = self._call
        # The core writes one call at a time; a piece for any other call has no open item.
        if c is None or c.index != event.call or not event.text:
            return []
        c.arguments += event.text
        return [c.delta(event.text)]

    def _finished(self, event: Finished) -> list[Json]:
        self.finish = event.reason
        out: list[Json] = []
        if self._count == 0:
            # An empty answer is still one (empty) message; held logprobs go with it.
            # After calls, held logprobs are the calls' tokens: no content, dropped.
            out += self._open_message()
            if self._pending:
                out += self._text(TextDelta("", ()))
        out += self._close(response_status(event.reason)[0])
        return out

    def _close(self, status: str) -> list[Json]:
        """The open item's ``.done`` events; the item joins ``output``."""
        out: list[Json] = []
        if self._message is not None:
            m, self._message = self._message, None
            lp = [stream_logprob(e) for e in m.logprobs]
            out.append(output_text_done_event(m.id, m.output_index, 0, m.text, lp))
            out.append(content_part_event(True, m.id, m.output_index, 0, m.part()))
            item = m.item(status)
            out.append(output_item_event(True, m.output_index, item))
            self.items.append(item)
        if self._call is not None:
            c, self._call = self._call, None
            out.append(c.done())
            item = c.item(status)
            out.append(output_item_event(True, c.output_index, item))
            self.items.append(item)
        return out


def _entries(logprobs: tuple[TokenLogprob, ...]) -> list[Json]:
    return [
        part_logprob(
            lp.token, lp.logprob, lp.bytes, [(t.token, t.logprob, t.bytes) for t in lp.top]
        )
        for lp in logprobs
    ]

"""A Chat Completions answer from an upstream channel, as the core's protocol-neutral events.

Part of the core, for every adapter whose protocol is not Chat Completions: when its request
is relayed to a channel that speaks only Chat Completions (for Responses, translated by
``protocol/responses_chat.py``), the answer (chunks, or one ``chat.completion``) is read back
into the same events the local engine's answers make (``service/events.py``), so the adapter
builds its objects and stream events exactly as it does for a local answer (Responses:
``ResponseOutput``). Only choice 0 is read: chatd never asks an upstream for more than one.
``usage_of`` is the one Responses-shaped helper here (chat's usage as a response's).

Decisions (see also each function):

* ``finish_reason``: ``stop`` is a natural end; ``tool_calls`` (or ``function_call``) is a
  natural end of an answer that is calls (``Finished.called``), as the local engine says it;
  ``length`` is the token limit; ``content_filter`` is ``FinishReason.CONTENT_FILTER``, an
  ``incomplete`` response, never a quiet "completed". A word chat does not define is taken as
  a natural end.
* A ``refusal`` is relayed as text (``ChatStreamReader.refused`` says so): the core has no
  refusal event, and dropping the model's words would be worse.
* Calls are relayed one at a time, as the core writes them and ``ResponseOutput`` expects. An
  upstream that goes back to an earlier call's arguments after starting a later call cannot be
  streamed as Responses items; that is a ``ServerError``, not arguments silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatd.engine.params import FinishReason, TokenLogprob, TopLogprob
from chatd.protocol.errors import ServerError
from chatd.protocol.ids import call_id
from chatd.protocol.responses_response import response_usage
from chatd.service.events import CallArguments, CallStarted, Event, Finished, TextDelta

__all__ = ["ChatStreamReader", "chat_finish_reason", "completion_events", "usage_of"]

Json = dict[str, Any]

_FINISH_REASONS = {
    "stop": FinishReason.END_OF_GENERATION,
    "tool_calls": FinishReason.END_OF_GENERATION,
    "function_call": FinishReason.END_OF_GENERATION,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
}


def chat_finish_reason(name: str | None) -> FinishReason:
    """Chat's ``finish_reason`` in the core's words. Chat cannot tell a stop sequence from
    the model's own end (and a Responses request sets no stop sequences): both are
    ``END_OF_GENERATION``. An unknown word (some servers say ``eos``) is an end too."""
    return _FINISH_REASONS.get(name or "stop", FinishReason.END_OF_GENERATION)


def usage_of(chat_usage: Json | None) -> Json | None:
    """Chat's ``usage`` as a response's (``None`` when the upstream sent none)."""
    if not chat_usage:
        return None
    prompt = chat_usage.get("prompt_tokens_details") or {}
    completion = chat_usage.get("completion_tokens_details") or {}
    usage = response_usage(
        int(chat_usage.get("prompt_tokens") or 0),
        int(chat_usage.get("completion_tokens") or 0),
        int(prompt.get("cached_tokens") or 0),
    )
    usage["output_tokens_details"]["reasoning_tokens"] = int(
        completion.get("reasoning_tokens") or 0
    )
    return usage


def _token_logprobs(logprobs: Json | None) -> tuple[TokenLogprob, ...]:
    """``logprobs.content`` (and ``.refusal``, relayed as text too) as the core's tuples."""
    if not logprobs:
        return ()
    entries = [*(logprobs.get("content") or ()), *(logprobs.get("refusal") or ())]
    return tuple(
        TokenLogprob(
            e["token"],
            e.get("bytes"),
            float(e["logprob"]),
            tuple(
                TopLogprob(t["token"], t.get("bytes"), float(t["logprob"]))
                for t in e.get("top_logprobs") or ()
            ),
        )
        for e in entries
    )


def _choice_zero(obj: Json) -> Json | None:
    for choice in obj.get("choices") or ():
        if choice.get("index", 0) == 0:
            return choice
    return None


# --------------------------------------------------------------------------------------------
# A whole completion
# --------------------------------------------------------------------------------------------


def completion_events(completion: Json) -> list[Event]:
    """A whole ``chat.completion``'s choice 0 as events: its text (with every logprob),
    then each call, then the end: what a stream of the same answer adds up to."""
    choice = _choice_zero(completion)
    if choice is None:
        raise ServerError("The upstream's completion has no choice.")
    message = choice.get("message") or {}
    out: list[Event] = []
    text = (message.get("content") or "") + (message.get("refusal") or "")
    logprobs = _token_logprobs(choice.get("logprobs"))
    if text or logprobs:
        out.append(TextDelta(text, logprobs))
    calls = message.get("tool_calls") or []
    for i, call in enumerate(calls):
        function = call.get("function") or {}
        out.append(CallStarted(i, call.get("id") or call_id(), function.get("name") or ""))
        if function.get("arguments"):
            out.append(CallArguments(i, function["arguments"]))
    out.append(Finished(chat_finish_reason(choice.get("finish_reason")), bool(calls)))
    return out


# --------------------------------------------------------------------------------------------
# A stream
# --------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """A call the upstream began: started (an event sent) once its name is known."""

    number: int  # the core's call index: the order calls began in
    id: str | None
    name: str | None = None
    held: str = ""  # arguments that came before the name
    started: bool = False


class ChatStreamReader:
    """Reads chunks (decoded ``chat.completion.chunk`` dicts) into events, in order.

    ``usage`` keeps the upstream's usage (the last chunk when ``include_usage`` was asked),
    ``finish`` the end once read; a stream that ends before ``finish`` is set was cut.
    """

    def __init__(self) -> None:
        self.finish: FinishReason | None = None
        self.usage: Json | None = None
        self.refused = False  # a refusal was relayed as text
        self._calls: list[_Call] = []
        self._by_index: dict[int, _Call] = {}  # the upstream's tool_calls index -> call

    def read(self, chunk: Json) -> list[Event]:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choice = _choice_zero(chunk)
        if choice is None:
            return []
        delta = choice.get("delta") or {}
        out: list[Event] = []
        refusal = delta.get("refusal") or ""
        self.refused = self.refused or bool(refusal)
        text = (delta.get("content") or "") + refusal
        logprobs = _token_logprobs(choice.get("logprobs"))
        if text or logprobs:
            out.append(TextDelta(text, logprobs))
        for position, piece in enumerate(delta.get("tool_calls") or ()):
            out += self._call_piece(piece, position)
        reason = choice.get("finish_reason")
        if reason is not None and self.finish is None:
            if any(not c.started for c in self._calls):
                # Its arguments would belong to no function.
                raise ServerError("The upstream sent a tool call without a name.")
            self.finish = chat_finish_reason(reason)
            out.append(Finished(self.finish, bool(self._calls)))
        return out

    def _call_piece(self, piece: Json, position: int) -> list[Event]:
        """One ``delta.tool_calls`` entry: the first of a call carries its id and name, the
        next ones arguments. A new id at a known index is a new call (some servers number
        every call 0)."""
        index = piece.get("index", position)
        function = piece.get("function") or {}
        pid = piece.get("id")
        call = self._by_index.get(index)
        if call is None or (pid and call.id and pid != call.id):
            call = _Call(len(self._calls), pid)
            self._calls.append(call)
            self._by_index[index] = call
        elif pid and call.id is None:
            call.id = pid
        out: list[Event] = []
        if not call.started and function.get("name"):
            call.name = function["name"]
            out += self._start(call)
        arguments = function.get("arguments") or ""
        if not arguments:
            return out
        if not call.started:
            call.held += arguments
        elif call is not self._calls[-1]:
            raise ServerError(
                "The upstream interleaved the arguments of two tool calls, which a response "
                "cannot stream."
            )
        else:
            out.append(CallArguments(call.number, arguments))
        return out

    def _start(self, call: _Call) -> list[Event]:
        if call is not self._calls[-1]:
            raise ServerError("The upstream named a tool call after starting a later one.")
        call.started = True
        if call.id is None:
            call.id = call_id()
        assert call.name is not None
        out: list[Event] = [CallStarted(call.number, call.id, call.name)]
        if call.held:
            out.append(CallArguments(call.number, call.held))
            call.held = ""
        return out

"""Builders for the response side of the Responses API: the ``response`` object, its
output items (``message`` with ``output_text`` parts, ``function_call``), usage, and the
stream events. Plain dicts, shaped exactly as OpenAI's schemas (tests validate them against
the OpenAPI spec); no engine types here.

Two logprob shapes on purpose: an ``output_text`` part carries the spec's ``LogProb``
(``bytes`` a required array, never null), while ``response.output_text.delta`` / ``.done``
carry ``ResponseLogProb`` (no ``bytes``, top entries without ``bytes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chatd.protocol.ids import response_id

__all__ = [
    "ResponseSettings",
    "ResponseStream",
    "content_part_event",
    "custom_tool_call_input_delta_event",
    "custom_tool_call_input_done_event",
    "custom_tool_call_item",
    "function_call_arguments_delta_event",
    "function_call_arguments_done_event",
    "function_call_item",
    "message_item",
    "output_item_event",
    "output_text_delta_event",
    "output_text_done_event",
    "output_text_part",
    "part_logprob",
    "response_event",
    "response_usage",
    "stream_logprob",
]

Json = dict[str, Any]

# The final event's type follows the response's status (response.completed, ...).
_FINAL_EVENTS = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    "in_progress": "response.in_progress",
}


@dataclass
class ResponseSettings:
    """The request settings a ``response`` object echoes back, with OpenAI's defaults.

    The spec requires ``instructions``, ``tools``, ``tool_choice``, ``temperature``,
    ``top_p``, ``parallel_tool_calls`` and ``metadata`` on every response, so they are
    always written, even when the request left them out.
    """

    model: str
    instructions: str | list[Json] | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    top_logprobs: int | None = 0
    text_format: Json = field(default_factory=lambda: {"type": "text"})
    tool_choice: str | Json = "auto"
    tools: list[Json] = field(default_factory=list)
    truncation: str = "disabled"
    metadata: dict[str, str] = field(default_factory=dict)
    store: bool = True
    # The spec types ``user`` as a plain string (not nullable): written only when set.
    user: str | None = None
    # Echoed as given, as the live API does (the spec's Response has both).
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    service_tier: str = "default"
    id: str = field(default_factory=response_id)
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        status: str,
        output: list[Json],
        usage: Json | None = None,
        *,
        error: Json | None = None,
        incomplete_reason: str | None = None,
    ) -> Json:
        """The ``response`` object in one state; ``completed_at`` is set only when
        completed. OpenAI sends ``usage: null`` before the end, but the spec's ``usage``
        is not nullable (and not required): it is left out until there is one."""
        body: Json = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": (
                {"reason": incomplete_reason} if incomplete_reason is not None else None
            ),
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "max_tool_calls": None,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": self.previous_response_id,
            "reasoning": None,
            "service_tier": self.service_tier,
            "store": self.store,
            "temperature": self.temperature,
            "text": {"format": self.text_format},
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "top_logprobs": self.top_logprobs,
            "top_p": self.top_p,
            "truncation": self.truncation,
            "metadata": self.metadata,
        }
        if usage is not None:
            body["usage"] = usage
        if self.user is not None:
            body["user"] = self.user
        if self.prompt_cache_key is not None:
            body["prompt_cache_key"] = self.prompt_cache_key
        if self.safety_identifier is not None:
            body["safety_identifier"] = self.safety_identifier
        return body


def response_usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> Json:
    """``cache_write_tokens`` is required by the spec; the local engine reports none."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def part_logprob(
    token: str,
    logprob: float,
    raw: list[int] | None,
    top: list[tuple[str, float, list[int] | None]],
) -> Json:
    """One token of an ``output_text`` part's ``logprobs`` (the spec's ``LogProb``); a
    token that is no whole UTF-8 sequence has no bytes of its own: ``[]``, never null."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": raw or [],
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": b or []} for t, lp, b in top],
    }


def stream_logprob(part_entry: Json) -> Json:
    """The same token as a text event carries it (the spec's ``ResponseLogProb``)."""
    return {
        "token": part_entry["token"],
        "logprob": part_entry["logprob"],
        "top_logprobs": [
            {"token": t["token"], "logprob": t["logprob"]} for t in part_entry["top_logprobs"]
        ],
    }


def output_text_part(text: str, logprobs: list[Json]) -> Json:
    """``logprobs`` is required by the spec: ``[]`` when they were not asked for."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def message_item(item_id: str, status: str, content: list[Json]) -> Json:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    status: str,
    namespace: str | None = None,
) -> Json:
    """``id`` is the item's (``fc_...``); ``call_id`` the model's, echoed back with the
    ``function_call_output`` input item. ``namespace``: a namespace tool's member's call
    (``name`` is then the member's own)."""
    item = {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }
    if namespace is not None:
        item["namespace"] = namespace
    return item


def custom_tool_call_item(
    item_id: str, call_id: str, name: str, text: str, status: str, namespace: str | None = None
) -> Json:
    """A custom tool's call (``ctc_...``): its raw ``input``, answered by the client's
    ``custom_tool_call_output`` item. The spec's ``CustomToolCall`` has no ``status``;
    the live API sends one, as for function calls."""
    item = {
        "id": item_id,
        "type": "custom_tool_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "input": text,
    }
    if namespace is not None:
        item["namespace"] = namespace
    return item


# Stream events. Each is built without ``sequence_number``: ``ResponseStream.emit`` numbers
# them in the order they are sent, so numbering cannot disagree with order.


def response_event(response: Json, kind: str | None = None) -> Json:
    """``response.created`` when ``kind="created"``; otherwise the event named after the
    response's status (``response.in_progress``, ``.completed``, ``.incomplete``,
    ``.failed``)."""
    name = "response.created" if kind == "created" else _FINAL_EVENTS[response["status"]]
    return {"type": name, "response": response}


def output_item_event(done: bool, output_index: int, item: Json) -> Json:
    return {
        "type": "response.output_item.done" if done else "response.output_item.added",
        "output_index": output_index,
        "item": item,
    }


def content_part_event(
    done: bool, item_id: str, output_index: int, content_index: int, part: Json
) -> Json:
    return {
        "type": "response.content_part.done" if done else "response.content_part.added",
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "part": part,
    }


def output_text_delta_event(
    item_id: str, output_index: int, content_index: int, delta: str, logprobs: list[Json]
) -> Json:
    """``logprobs`` is required by the spec: ``[]`` when they were not asked for."""
    return {
        "type": "response.output_text.delta",
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "delta": delta,
        "logprobs": logprobs,
    }


def output_text_done_event(
    item_id: str, output_index: int, content_index: int, text: str, logprobs: list[Json]
) -> Json:
    return {
        "type": "response.output_text.done",
        "item_id": item_id,
        "output_index": output_index,
        "content_index": content_index,
        "text": text,
        "logprobs": logprobs,
    }


def function_call_arguments_delta_event(item_id: str, output_index: int, delta: str) -> Json:
    return {
        "type": "response.function_call_arguments.delta",
        "item_id": item_id,
        "output_index": output_index,
        "delta": delta,
    }


def function_call_arguments_done_event(
    item_id: str, output_index: int, name: str, arguments: str
) -> Json:
    return {
        "type": "response.function_call_arguments.done",
        "item_id": item_id,
        "output_index": output_index,
        "name": name,
        "arguments": arguments,
    }


def custom_tool_call_input_delta_event(item_id: str, output_index: int, delta: str) -> Json:
    return {
        "type": "response.custom_tool_call_input.delta",
        "item_id": item_id,
        "output_index": output_index,
        "delta": delta,
    }


def custom_tool_call_input_done_event(item_id: str, output_index: int, text: str) -> Json:
    return {
        "type": "response.custom_tool_call_input.done",
        "item_id": item_id,
        "output_index": output_index,
        "input": text,
    }


class ResponseStream:
    """Numbers one response's stream events: ``sequence_number`` counts from 0
    (``response.created``) by one across the whole stream, every item and part included."""

    def __init__(self) -> None:
        self.next = 0

    def emit(self, event: Json) -> Json:
        event["sequence_number"] = self.next
        self.next += 1
        return event

    def error(self, code: str | None, message: str, param: str | None = None) -> Json:
        """An ``error`` event (the stream broke before a final response object)."""
        return self.emit({"type": "error", "code": code, "message": message, "param": param})

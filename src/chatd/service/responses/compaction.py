"""Compaction on the Responses API: a long conversation replaced by the model's summary.

Two ways in, one mechanism (docs/compaction.md):

* ``POST /v1/responses/compact`` (``compact_body`` makes it a create request) and
* a create request whose input ends with ``{"type": "compaction_trigger"}`` (Codex's
  "compaction v2").

Either way the model is asked, with :data:`COMPACTION_PROMPT` after the conversation, to
write a handoff summary; its text is sealed (compaction_seal.py) into the one
``compaction`` item of the answer (:class:`CompactionOutput`). A ``compaction`` item sent
back in a later turn is opened and shown to the model as a user message,
:data:`SUMMARY_HEADER` followed by the summary (:func:`expanded_items`).

Items here are the stored (plain dict) shapes of service/responses/conversation.py."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import Any

from chatd.protocol.errors import InvalidRequest, Unsupported
from chatd.protocol.responses_response import output_item_event
from chatd.service.events import CallArguments, CallStarted, Event, Finished, TextDelta
from chatd.service.responses.compaction_seal import CompactionSeal, SealError

__all__ = [
    "COMPACTION_PROMPT",
    "COMPACTION_TYPES",
    "SUMMARY_HEADER",
    "TRIGGER",
    "CompactionOutput",
    "check_compaction_items",
    "compact_body",
    "compact_fields",
    "compacted",
    "expanded_items",
    "has_trigger",
    "trigger_refused",
]

Json = dict[str, Any]

TRIGGER = "compaction_trigger"
# ``compaction_summary`` is the older name Codex still reads as ``compaction``
ITEM_TYPES = ("compaction", "compaction_summary")
COMPACTION_TYPES = (*ITEM_TYPES, TRIGGER)

COMPACTION_PROMPT = (
    "The conversation above is about to be compacted: it will be replaced by a summary"
    " that you write now, and another assistant will continue from that summary alone."
    " Write the summary as a handoff: the user's goal and requests, the decisions made,"
    " the work done so far (files, commands, results), what remains to be done and the"
    " next step, and any facts, names or values needed to continue. Be concise and"
    " precise. Write only the summary."
)
SUMMARY_HEADER = (
    "[Summary of the earlier conversation, written when it was compacted; continue from it.]\n"
)
# Fields of a create request that /v1/responses/compact also takes (its spec's and what
# Codex sends it); anything else is refused as an unknown argument.
_COMPACT_FIELDS = (
    "model",
    "input",
    "previous_response_id",
    "instructions",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "service_tier",
    "tools",
    "parallel_tool_calls",
    "reasoning",
    "text",
)
# The user messages /v1/responses/compact keeps (before the compaction item), newest
# first, up to this many characters (about 20k tokens, Codex's own budget).
RETAINED_CHARS = 80_000


def compact_fields() -> tuple[str, ...]:
    """The fields ``/v1/responses/compact`` takes (its OpenAPI schema's too)."""
    return _COMPACT_FIELDS


def has_trigger(items: Iterable[Json]) -> bool:
    return any(i.get("type") == TRIGGER for i in items)


def check_compaction_items(items: list[Json]) -> None:
    """400 for a trigger that is not the final input item (the spec: "Must be the final
    input item"), or a compaction item without its ``encrypted_content`` string."""
    for i, item in enumerate(items):
        kind = item.get("type")
        if kind == TRIGGER and i != len(items) - 1:
            raise InvalidRequest(
                "A compaction_trigger item must be the final input item.",
                param=f"input[{i}]",
                code="invalid_value",
            )
        if kind in ITEM_TYPES and not isinstance(item.get("encrypted_content"), str):
            raise InvalidRequest(
                f"Missing required parameter: 'input[{i}].encrypted_content'.",
                param=f"input[{i}].encrypted_content",
                code="missing_required_parameter",
            )


def trigger_refused(index: int, model: str) -> Unsupported:
    """A compaction through a channel: chatd seals only what its own engine wrote, and
    an upstream's compaction items would be its own (docs/compaction.md, "Channels")."""
    return Unsupported(
        f"input[{index}]",
        f"(compaction_trigger) is not supported for `{model}`, which this server relays to"
        " an upstream channel: compaction runs on this server's local models only.",
    )


def _unsealed(seal: CompactionSeal, item: Json, owner: str, model: str, param: str) -> str:
    try:
        return seal.open(item["encrypted_content"], owner, model)
    except SealError:
        raise InvalidRequest(
            f"The encrypted content for item {param} could not be verified: it was not"
            " made by this server for this API key's owner and this model.",
            param=f"{param}.encrypted_content",
            code="invalid_encrypted_content",
        ) from None


def _summary_message(summary: str) -> Json:
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": SUMMARY_HEADER + summary}],
    }


def expanded_items(
    history: list[Json], items: list[Json], seal: CompactionSeal, owner: str, model: str
) -> list[Json]:
    """The conversation as the model is shown it: each compaction item opened into its
    summary message, a trailing trigger replaced by the compaction prompt.

    In the history a ``previous_response_id`` brings, the last compaction item stands
    for everything before it (that is what it summarises): the items before it are
    dropped. Items the request sends itself are shown as sent (Codex keeps the user's
    recent messages before the compaction item). Raises InvalidRequest (400) for a
    compaction item that does not open, naming it."""
    last = max((n for n, i in enumerate(history) if i.get("type") in ITEM_TYPES), default=0)
    out: list[Json] = []
    for item in history[last:]:
        out.extend(_expanded(item, seal, owner, model, "previous_response_id", True))
    for n, item in enumerate(items):
        out.extend(_expanded(item, seal, owner, model, f"input[{n}]", False))
    return out


def _expanded(
    item: Json, seal: CompactionSeal, owner: str, model: str, param: str, earlier: bool
) -> list[Json]:
    kind = item.get("type")
    if kind in ITEM_TYPES:
        return [_summary_message(_unsealed(seal, item, owner, model, param))]
    if kind == TRIGGER:
        if earlier:  # a trigger of an earlier turn: a control, not history
            return []
        return [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": COMPACTION_PROMPT}],
            }
        ]
    return [item]


def compaction_item_id() -> str:
    return "cmp_" + secrets.token_hex(24)


class CompactionOutput:
    """The answer to a compaction request, in place of ``output.ResponseOutput``: the
    model's text is read whole, never streamed; once it ends, it is sealed into the one
    ``compaction`` item of the answer (``output_item.added`` then ``.done``, as Codex
    reads it). A tool call cannot happen (none is offered); its pieces are ignored."""

    def __init__(self, seal: CompactionSeal, owner: str, model: str) -> None:
        self.seal = seal
        self.owner = owner
        self.model = model
        self.items: list[Json] = []
        self.finish = None
        self._text = ""

    @property
    def output(self) -> list[Json]:
        return self.items

    def on_event(self, event: Event) -> list[Json]:
        if isinstance(event, TextDelta):
            self._text += event.text
            return []
        if isinstance(event, CallStarted | CallArguments):
            return []
        assert isinstance(event, Finished)
        self.finish = event.reason
        item = {
            "id": compaction_item_id(),
            "type": "compaction",
            "encrypted_content": self.seal.seal(self._text.strip(), self.owner, self.model),
        }
        self.items.append(item)
        return [output_item_event(False, 0, item), output_item_event(True, 0, item)]


def compact_body(data: Any) -> Json:
    """``POST /v1/responses/compact``'s body as the create request that does the work:
    its input with the trigger appended, never stored nor streamed. Raises
    InvalidRequest for what the endpoint does not take."""
    if not isinstance(data, dict):
        raise InvalidRequest("Invalid request: the body is not a JSON object.")
    for key in data:
        if key not in _COMPACT_FIELDS:
            raise InvalidRequest(f"Unrecognized request argument supplied: {key}", param=key)
    body = dict(data)
    given = body.get("input")
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    if given is None:
        given = []
    if isinstance(given, list):
        body["input"] = [*given, {"type": TRIGGER}]
    body.update(store=False, stream=False)
    return body


def compacted(response: Json, user_texts: list[str]) -> Json:
    """The ``response.compaction`` object of ``/v1/responses/compact``: the user messages
    of the input it compacted (``user_texts``; the newest that fit ``RETAINED_CHARS``,
    in their order), then the compaction item; the usage of the pass that wrote it."""
    kept: list[Json] = []
    room = RETAINED_CHARS
    for text in reversed(user_texts):
        if len(text) > room:
            break
        room -= len(text)
        kept.append(
            {
                "id": "msg_" + secrets.token_hex(24),
                "type": "message",
                "status": "completed",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            }
        )
    kept.reverse()
    compaction = [i for i in response.get("output", []) if i.get("type") == "compaction"]
    return {
        "id": response["id"],
        "object": "response.compaction",
        "created_at": response.get("created_at", int(time.time())),
        "output": [*kept, *compaction],
        "usage": response["usage"],
    }

"""A Messages request's ``system`` and ``messages`` as the core's turns.

Text blocks are text; an assistant's ``tool_use`` blocks are its calls (``Called``); a
user's ``tool_result`` blocks are results (``Answered``), an ``is_error`` result saying
so in its text (the model has no other way to learn it). ``thinking`` and
``redacted_thinking`` blocks are dropped: a model that does not think has no use for
another's thoughts. Images, documents and server-tool blocks never get here on the local
engine (service/messages/capabilities.py refuses them first).

A ``system`` message inside ``messages`` (Claude Code sends one, with the beta
``mid-conversation-tool-changes-2026-07-01``, to tell the model its tools changed) is
read at its place as text for the model, joined to the user's turn beside it: many chat
templates refuse a system turn anywhere but first, and some refuse two user turns in a
row. It is what Claude Code itself sends when a server refuses the system message (the
text moved into the user's message), so the model reads the same either way.

Anthropic's own checks of the tool round trip are kept, worded as its 400s: every
``tool_use`` is answered by a ``tool_result`` in the next message, and a
``tool_result`` answers a ``tool_use`` of the message before it.
"""

from __future__ import annotations

import json
from typing import Any

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.messages_blocks import (
    SearchResultBlock,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    is_billing_header,
)
from chatd.protocol.messages_request import InputMessage, MessagesRequest
from chatd.service.turns import Answered, Call, Called, Said, Turn

__all__ = ["conversation_turns", "system_text"]


def system_text(req: MessagesRequest) -> str | None:
    """``system`` as one text (its blocks joined by blank lines, Claude Code's billing
    header left out: ``is_billing_header``), None when absent or empty."""
    system = req.system
    if system is None:
        return None
    if isinstance(system, str):
        return system or None
    return "\n\n".join(b.text for b in system if not is_billing_header(b.text)) or None


def conversation_turns(req: MessagesRequest) -> list[Turn]:
    """The whole conversation, system first. Raises InvalidRequest for a broken tool
    round trip, an empty conversation, or a final assistant message (a prefill, which
    this server cannot continue: its chat template closes every assistant turn)."""
    if not req.messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    last = req.messages[-1]
    if last.role == "assistant":
        raise InvalidRequest(
            f"messages.{len(req.messages) - 1}: This model does not support assistant message"
            " prefill. The conversation must end with a user message.",
            param=f"messages.{len(req.messages) - 1}",
        )
    system = system_text(req)
    turns: list[Turn] = [Said("system", system)] if system else []
    pending: list[str] = []  # tool_use ids of the previous assistant message
    for i, message in enumerate(req.messages):
        if message.role == "system":
            text = "\n".join(b.text for b in message.blocks() if isinstance(b, TextBlock))
            if text:
                _said_by_user(turns, text)
        elif message.role == "assistant":
            if pending:
                raise _unanswered(i - 1, pending)
            turn, pending = _assistant(message)
            if turn is not None:
                turns.append(turn)
        else:
            for turn in _user(i, message, pending):
                if isinstance(turn, Said):
                    _said_by_user(turns, turn.text)
                else:
                    turns.append(turn)
            pending = []
    return turns


def _said_by_user(turns: list[Turn], text: str) -> None:
    """``text`` as the user's, joined to the user's turn just before if there is one."""
    last = turns[-1] if turns else None
    if isinstance(last, Said) and last.role == "user":
        turns[-1] = Said("user", f"{last.text}\n\n{text}")
    else:
        turns.append(Said("user", text))


def _assistant(message: InputMessage) -> tuple[Turn | None, list[str]]:
    text = "".join(b.text for b in message.blocks() if isinstance(b, TextBlock))
    calls = tuple(
        Call(b.id, b.name, json.dumps(b.input, ensure_ascii=False, separators=(",", ":")))
        for b in message.blocks()
        if isinstance(b, ToolUseBlock)
    )
    if calls:
        return Called(text, calls), [c.id for c in calls]
    return (Said("assistant", text) if text else None), []


def _user(i: int, message: InputMessage, pending: list[str]) -> list[Turn]:
    turns: list[Turn] = []
    text: list[str] = []
    answered: set[str] = set()
    for j, block in enumerate(message.blocks()):
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolResultBlock):
            if block.tool_use_id not in pending:
                raise InvalidRequest(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result`"
                    f" blocks: {block.tool_use_id}. Each `tool_result` block must have a"
                    " corresponding `tool_use` block in the previous message.",
                    param=f"messages.{i}.content.{j}",
                )
            if text:  # text before a result stays before it
                turns.append(Said("user", "\n".join(text)))
                text = []
            answered.add(block.tool_use_id)
            turns.append(Answered(result_text(block), call_id=block.tool_use_id))
    missing = [p for p in pending if p not in answered]
    if missing:
        raise _unanswered(i - 1, missing)
    if text:
        turns.append(Said("user", "\n".join(text)))
    return turns


def result_text(block: ToolResultBlock) -> str:
    """A tool result's content as text; an error result says it is one."""
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "\n".join(_part_text(p) for p in content)
    return f"Error: {text}" if block.is_error else text


def _part_text(part: Any) -> str:
    if isinstance(part, TextBlock):
        return part.text
    if isinstance(part, SearchResultBlock):
        body = "\n".join(t.text for t in part.content)
        return f"{part.title} ({part.source})\n{body}"
    return ""  # images and documents are refused before (capabilities.py)


def _unanswered(i: int, ids: list[str]) -> InvalidRequest:
    return InvalidRequest(
        f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately"
        f" after: {', '.join(ids)}. Each `tool_use` block must have a corresponding"
        " `tool_result` block in the next message.",
        param=f"messages.{i}",
    )

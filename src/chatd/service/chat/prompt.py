"""A Chat Completions conversation as the core's turns, rendered for the chat template."""

from __future__ import annotations

from typing import Any

from chatd.protocol.chat_messages import (
    AssistantMessage,
    FunctionMessage,
    FunctionToolCall,
    ToolMessage,
)
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.errors import InvalidRequest, NotYetSupported
from chatd.service.tool_calls import ToolPlan
from chatd.service.turns import Answered, Call, Called, Said, Turn, render_turns

__all__ = ["render_messages"]


def render_messages(
    req: ChatCompletionRequest, plan: ToolPlan | None, *, native: bool = False
) -> list[dict[str, Any]]:
    """The conversation as messages for the chat template (``turns.render_turns``)."""
    return render_turns(chat_turns(req), plan, native=native)


def chat_turns(req: ChatCompletionRequest) -> list[Turn]:
    """The messages as turns; a tool result must answer a call made earlier."""
    known_ids: set[str] = set()
    out: list[Turn] = []
    for i, m in enumerate(req.messages):
        if isinstance(m, AssistantMessage):
            text = m.text() if m.content is not None else ""
            calls: list[Call] = []
            for call in m.tool_calls or []:
                if not isinstance(call, FunctionToolCall):
                    raise NotYetSupported(f"messages[{i}].tool_calls")
                known_ids.add(call.id)
                calls.append(Call(call.id, call.function.name, call.function.arguments))
            if m.function_call is not None:
                calls.append(Call("", m.function_call.name, m.function_call.arguments))
            out.append(Called(text, tuple(calls)) if calls else Said("assistant", text))
        elif isinstance(m, ToolMessage):
            if m.tool_call_id not in known_ids:
                raise InvalidRequest(
                    f"Invalid parameter: 'tool_call_id' of '{m.tool_call_id}' not found in"
                    " 'tool_calls' of previous message.",
                    param=f"messages[{i}].tool_call_id",
                )
            out.append(Answered(m.text(), call_id=m.tool_call_id))
        elif isinstance(m, FunctionMessage):
            out.append(Answered(m.content or "", name=m.name))
        else:
            out.append(Said(m.role, m.text(), getattr(m, "name", None)))
    return out

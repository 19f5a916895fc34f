"""A Chat Completions conversation as messages for the model's chat template."""

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
from chatd.service.tool_calls import (
    ToolPlan,
    call_text,
    parsed_arguments,
    response_text,
    system_prompt,
)

__all__ = ["render_messages"]


def render_messages(
    req: ChatCompletionRequest, plan: ToolPlan | None, *, native: bool = False
) -> list[dict[str, Any]]:
    """The conversation as messages for the chat template.

    ``native``: the template renders tools itself (Hugging Face conventions: assistant
    ``tool_calls`` with parsed arguments, ``tool`` messages). Otherwise earlier calls
    become their <tool_call> text, results become <tool_response> user turns, and the
    tool prompt joins the system message.
    """
    known_ids: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        if isinstance(m, AssistantMessage):
            text = m.text() if m.content is not None else ""
            calls = []
            for call in m.tool_calls or []:
                if not isinstance(call, FunctionToolCall):
                    raise NotYetSupported(f"messages[{i}].tool_calls")
                known_ids.add(call.id)
                calls.append((call.id, call.function.name, call.function.arguments))
            if m.function_call is not None:
                calls.append(("", m.function_call.name, m.function_call.arguments))
            if native and calls:
                native_calls = [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {"name": name, "arguments": parsed_arguments(args)},
                    }
                    for cid, name, args in calls
                ]
                out.append({"role": "assistant", "content": text, "tool_calls": native_calls})
            else:
                parts = ([text] if text else []) + [call_text(n, a) for _, n, a in calls]
                out.append({"role": "assistant", "content": "\n".join(parts)})
        elif isinstance(m, ToolMessage):
            if m.tool_call_id not in known_ids:
                raise InvalidRequest(
                    f"Invalid parameter: 'tool_call_id' of '{m.tool_call_id}' not found in"
                    " 'tool_calls' of previous message.",
                    param=f"messages[{i}].tool_call_id",
                )
            if native:
                out.append({"role": "tool", "content": m.text(), "tool_call_id": m.tool_call_id})
            else:
                out.append({"role": "user", "content": response_text(m.text())})
        elif isinstance(m, FunctionMessage):
            if native:
                out.append({"role": "tool", "content": m.content or "", "name": m.name})
            else:
                out.append({"role": "user", "content": response_text(m.content or "", m.name)})
        else:
            entry: dict[str, Any] = {"role": m.role, "content": m.text()}
            if getattr(m, "name", None):
                entry["name"] = m.name  # type: ignore[union-attr]
            out.append(entry)
    if plan is not None and plan.may_call and not native:
        prompt = system_prompt(plan)
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out

"""A conversation in protocol-neutral turns, and its rendering for the model's chat template.

Every protocol says the same few things in its own shapes: someone said some text, the
assistant called functions (perhaps after some text), a function's result came back. Each
adapter turns its request into these :data:`Turn` values (Chat Completions' messages,
Responses' input items); :func:`render_turns` is the one place that knows how a template
is shown them: natively when it renders tools itself, or as the generic tool-call text of
``tool_calls.py`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatd.service.tool_calls import (
    ToolPlan,
    call_text,
    custom_call_text,
    parsed_arguments,
    response_text,
    system_prompt,
)

__all__ = ["Answered", "Called", "Call", "Said", "Turn", "render_turns"]


@dataclass(frozen=True)
class Said:
    """Text from anyone (``system``, ``developer``, ``user``, ``assistant``)."""

    role: str
    text: str
    name: str | None = None


@dataclass(frozen=True)
class Call:
    id: str  # "" for the deprecated function_call, which had none
    name: str
    arguments: str  # JSON text, as the model wrote it; a custom tool's raw input
    custom: bool = False  # a custom tool's call (service/custom_tools.py)


@dataclass(frozen=True)
class Called:
    """An assistant turn that called functions, perhaps after some text."""

    text: str
    calls: tuple[Call, ...]


@dataclass(frozen=True)
class Answered:
    """A function's result. ``call_id`` ties it to its call (None for the deprecated
    function messages, which name the function instead)."""

    text: str
    call_id: str | None = None
    name: str | None = None


Turn = Said | Called | Answered


def render_turns(
    turns: list[Turn], plan: ToolPlan | None, *, native: bool = False
) -> list[dict[str, Any]]:
    """The conversation as messages for the chat template.

    ``native``: the template renders tools itself (Hugging Face conventions: assistant
    ``tool_calls`` with parsed arguments, ``tool`` messages). Otherwise earlier calls
    become their <tool_call> text, results become <tool_response> user turns, and the
    tool prompt joins the system message.
    """
    out = [_render(turn, native) for turn in turns]
    if plan is not None and plan.may_call and not native:
        prompt = system_prompt(plan)
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _render(turn: Turn, native: bool) -> dict[str, Any]:
    if isinstance(turn, Said):
        entry: dict[str, Any] = {"role": turn.role, "content": turn.text}
        if turn.name:
            entry["name"] = turn.name
        return entry
    if isinstance(turn, Called):
        if native:
            calls = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": {"input": c.arguments}
                        if c.custom
                        else parsed_arguments(c.arguments),
                    },
                }
                for c in turn.calls
            ]
            return {"role": "assistant", "content": turn.text, "tool_calls": calls}
        parts = ([turn.text] if turn.text else []) + [
            custom_call_text(c.name, c.arguments) if c.custom else call_text(c.name, c.arguments)
            for c in turn.calls
        ]
        return {"role": "assistant", "content": "\n".join(parts)}
    if native:
        entry = {"role": "tool", "content": turn.text}
        if turn.call_id is not None:
            entry["tool_call_id"] = turn.call_id
        else:
            entry["name"] = turn.name
        return entry
    return {"role": "user", "content": response_text(turn.text, turn.name)}

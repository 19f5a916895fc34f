"""A Messages request's ``tools`` and ``tool_choice`` as the core's ``ToolPlan``: the
same grammar that serves OpenAI's tools constrains each ``tool_use.input`` by its tool's
``input_schema``, so the input always parses and has exactly the schema's keys.

``tool_choice``: ``auto`` (the default) may call; ``any`` must call some tool
(``required``); ``tool`` must call the one named (``named``); ``none`` calls nothing.
``disable_parallel_tool_use`` allows one call at most. Server tools (Anthropic's
versioned ones, ``web_search_...``) are accepted in ``auto`` and never called: the model
is not shown them, and nothing here could run them. Forcing one is a 400 (capabilities).
"""

from __future__ import annotations

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.messages_request import MessagesRequest, ServerTool
from chatd.service.tool_calls import Mode, ToolPlan, checked_function

__all__ = ["plan_tools"]


def plan_tools(req: MessagesRequest) -> ToolPlan | None:
    """What the request allows, validated; None when it declares no custom tools."""
    tools = [(i, t) for i, t in enumerate(req.tools or ()) if not isinstance(t, ServerTool)]
    choice = req.tool_choice
    kind = choice.type if choice is not None else "auto"
    if kind == "tool":
        assert choice is not None
        if not choice.name:
            raise InvalidRequest("tool_choice.tool.name: Field required", param="tool_choice")
        if choice.name not in {t.name for _, t in tools}:
            raise InvalidRequest(
                f"tool_choice: Tool '{choice.name}' not found in the request's tools.",
                param="tool_choice",
            )
    if kind == "any" and not tools:
        raise InvalidRequest(
            "tool_choice: 'any' requires at least one tool the model can call in 'tools'.",
            param="tool_choice",
        )
    if not tools:
        return None
    functions = [
        checked_function(t.name, t.description, t.input_schema, t.strict, f"tools.{i}")
        for i, t in tools
    ]
    mode: Mode = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}[kind]
    forced = choice.name if choice is not None and kind == "tool" else None
    single = choice is not None and bool(choice.disable_parallel_tool_use)
    return ToolPlan(functions, mode, forced, parallel=not single and mode != "named")

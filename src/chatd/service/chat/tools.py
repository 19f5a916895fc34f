"""Chat Completions' tool fields (``tools``/``tool_choice``/``parallel_tool_calls``, and
the deprecated ``functions``/``function_call``) as the core's ``ToolPlan``."""

from __future__ import annotations

from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.chat_tools import CustomTool, FunctionDefinition, NamedToolChoice
from chatd.protocol.errors import NotYetSupported
from chatd.service.tool_calls import Function, Mode, ToolPlan, checked_function

__all__ = ["plan_tools"]


def plan_tools(req: ChatCompletionRequest) -> ToolPlan | None:
    """What the request allows, validated; None when it declares no tools."""
    if req.tools:
        for i, tool in enumerate(req.tools):
            if isinstance(tool, CustomTool):
                raise NotYetSupported(f"tools[{i}]")
        functions = [
            _function(d, f"tools[{i}].function") for i, d in enumerate(req.function_definitions())
        ]
        mode, forced = _tool_choice(req)
        parallel = req.parallel_tool_calls is not False
        # A named choice means exactly one call of that function.
        return ToolPlan(functions, mode, forced, parallel=parallel and mode != "named")
    if req.functions:
        functions = [
            _function(d, f"functions[{i}]") for i, d in enumerate(req.function_definitions())
        ]
        fc = req.function_call
        if fc is None or fc == "auto":
            mode, forced = "auto", None
        elif fc == "none":
            mode, forced = "none", None
        else:
            mode, forced = "named", fc.name
        return ToolPlan(functions, mode, forced, parallel=False, legacy=True)
    return None


def _function(d: FunctionDefinition, param: str) -> Function:
    return checked_function(d.name, d.description, d.parameters, d.strict, param)


def _tool_choice(req: ChatCompletionRequest) -> tuple[Mode, str | None]:
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return "auto", None
    if choice == "none":
        return "none", None
    if choice == "required":
        return "required", None
    if isinstance(choice, NamedToolChoice):
        return "named", choice.function.name
    raise NotYetSupported("tool_choice")

"""A Responses request's ``tools``/``tool_choice``/``parallel_tool_calls`` as the core's
``ToolPlan``, and ``text.format`` as the JSON schema the output must match.

Function tools are flat in this API (no ``function`` wrapper). ``strict`` given true holds
the parameters to OpenAI's strict rules (a 400 otherwise); left out, it reads true when
the schema follows those rules, as the live API reports it. Either way the grammar makes
every call match its schema.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.responses_request import (
    CreateResponseRequest,
    FunctionToolParam,
    TextFormatJSONObject,
    TextFormatJSONSchema,
    ToolChoiceFunction,
)
from chatd.service.structured import checked_schema, strict_violation
from chatd.service.tool_calls import Mode, ToolPlan, checked_function

__all__ = [
    "FORMAT_PARAM",
    "SCHEMA_PARAM",
    "echoed_tools",
    "json_schema_for",
    "plan_tools",
    "schema_check_for",
]

FORMAT_PARAM = "text.format"
SCHEMA_PARAM = "text.format.schema"
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def plan_tools(req: CreateResponseRequest) -> ToolPlan | None:
    """What the request allows, validated; None when it declares no function tools."""
    tools = req.function_tools()
    if not tools:
        return None
    functions = [
        checked_function(t.name, t.description, t.parameters, t.strict, f"tools[{i}]")
        for i, t in enumerate(tools)
    ]
    choice = req.tool_choice
    mode: Mode
    forced = None
    if isinstance(choice, ToolChoiceFunction):
        mode, forced = "named", choice.name
    elif choice in ("none", "required"):
        mode = choice
    else:
        mode = "auto"
    parallel = req.parallel_tool_calls is not False and mode != "named"
    return ToolPlan(functions, mode, forced, parallel=parallel)


def echoed_tools(req: CreateResponseRequest) -> list[dict[str, Any]]:
    """The function tools as a response shows them (``strict`` resolved)."""
    return [_echo(t) for t in req.function_tools()]


def _echo(tool: FunctionToolParam) -> dict[str, Any]:
    parameters = tool.parameters if tool.parameters is not None else None
    strict = tool.strict
    if strict is None:
        strict = parameters is not None and strict_violation(parameters) is None
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": parameters,
        "strict": strict,
    }


def json_schema_for(req: CreateResponseRequest, input_text: str) -> dict[str, Any] | None:
    """The schema the output must match, or None for free text. ``input_text`` is the
    conversation's text, which JSON mode requires to mention JSON. Raises InvalidRequest."""
    fmt = req.text.format if req.text is not None else None
    if isinstance(fmt, TextFormatJSONObject):
        if "json" not in input_text.lower():
            raise InvalidRequest(
                "Response input messages must contain the word 'json' in some form to use"
                " 'text.format' of type 'json_object'.",
                param="input",
            )
        return _ANY_OBJECT
    if isinstance(fmt, TextFormatJSONSchema):
        return fmt.schema_
    return None


def schema_check_for(req: CreateResponseRequest) -> Callable[[], None] | None:
    """The check that a json_schema text format is valid (raises InvalidRequest): slow on
    a big schema, it runs off the event loop with the grammar's compilation."""
    fmt = req.text.format if req.text is not None else None
    if isinstance(fmt, TextFormatJSONSchema):
        return partial(checked_schema, fmt.name, fmt.schema_, fmt.strict, SCHEMA_PARAM)
    return None

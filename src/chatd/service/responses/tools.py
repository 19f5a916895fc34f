"""A Responses request's ``tools``/``tool_choice``/``parallel_tool_calls`` as the core's
``ToolPlan``, and ``text.format`` as the JSON schema the output must match.

Function tools are flat in this API (no ``function`` wrapper). ``strict`` given true holds
the parameters to OpenAI's strict rules (a 400 otherwise); left out, it reads true when
the schema follows those rules, as the live API reports it. Either way the grammar makes
every call match its schema. Custom tools' input is held to their Lark or regex grammar
(service/custom_tools.py). A namespace's members are offered as ``namespace.name``
(:class:`ToolNames` maps a call back to its item). Hosted tools are offered to no one:
:func:`tools_not_run` names them for the response's header and the log.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.responses_request import (
    CreateResponseRequest,
    TextFormatJSONObject,
    TextFormatJSONSchema,
)
from chatd.protocol.responses_tools import (
    CustomGrammarFormat,
    CustomToolParam,
    FunctionToolParam,
    NamespaceToolParam,
    ToolChoiceCustom,
    ToolChoiceFunction,
    ToolEntry,
)
from chatd.service.custom_tools import checked_format
from chatd.service.structured import checked_schema, strict_violation
from chatd.service.tool_calls import Function, Mode, ToolPlan, checked_function

__all__ = [
    "FORMAT_PARAM",
    "SCHEMA_PARAM",
    "ToolNames",
    "echoed_tools",
    "json_schema_for",
    "plan_tools",
    "schema_check_for",
    "tools_not_run",
]

FORMAT_PARAM = "text.format"
SCHEMA_PARAM = "text.format.schema"
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def plan_tools(req: CreateResponseRequest) -> ToolPlan | None:
    """What the request allows, validated; None when it declares no tool the model can
    call (hosted tools alone are no plan: the model answers in text)."""
    entries = req.callable_tools()
    if not entries:
        return None
    functions = [_function(e) for e in entries]
    choice = req.tool_choice
    mode: Mode
    forced = None
    if isinstance(choice, ToolChoiceFunction | ToolChoiceCustom):
        mode, forced = "named", choice.name
    elif choice in ("none", "required"):
        mode = choice
    else:
        mode = "auto"
    parallel = req.parallel_tool_calls is not False and mode != "named"
    return ToolPlan(functions, mode, forced, parallel=parallel)


def _function(entry: ToolEntry) -> Function:
    tool = entry.tool
    if isinstance(tool, CustomToolParam):
        fmt = tool.format
        if isinstance(fmt, CustomGrammarFormat):
            custom = checked_format(
                entry.qualified, fmt.syntax, fmt.definition, f"{entry.param}.format"
            )
        else:
            custom = checked_format(entry.qualified, "text", "", f"{entry.param}.format")
        return Function(entry.qualified, tool.description, {"type": "object"}, custom)
    return checked_function(
        entry.qualified, tool.description, tool.parameters, tool.strict, entry.param
    )


class ToolNames:
    """How a call the model wrote (by its qualified name) is returned: a function or a
    custom tool's call, with the member's own ``name`` and its ``namespace``, as the live
    API returns it (and as Codex reads it back: ``ToolName::new(namespace, name)``)."""

    def __init__(self, req: CreateResponseRequest) -> None:
        self._entries = {e.qualified: e for e in req.callable_tools()}

    def item_fields(self, qualified: str) -> tuple[bool, str, str | None]:
        """(is a custom tool, name, namespace) of a call."""
        entry = self._entries.get(qualified)
        if entry is None:  # a relayed upstream's call of a name chatd did not offer
            return False, qualified, None
        return entry.custom, entry.tool.name, entry.namespace


def tools_not_run(req: CreateResponseRequest) -> list[str]:
    """The types of the hosted tools offered, which nothing here runs (each once)."""
    return list(dict.fromkeys(t.type for t in req.hosted_tools()))


def echoed_tools(req: CreateResponseRequest) -> list[dict[str, Any]]:
    """The tools as a response shows them (a function's ``strict`` resolved; the others
    as sent)."""
    out = []
    for tool in req.tools or ():
        if isinstance(tool, FunctionToolParam):
            out.append(_echo(tool))
        elif isinstance(tool, NamespaceToolParam):
            members = [
                _echo(m) if isinstance(m, FunctionToolParam) else _dumped(m) for m in tool.tools
            ]
            out.append({**_dumped(tool), "tools": members})
        else:
            out.append(_dumped(tool))
    return out


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


def _dumped(tool: Any) -> dict[str, Any]:
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)


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

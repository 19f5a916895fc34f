"""The tools of a Responses request and the choice among them: their shapes only.

``tools`` holds four kinds of entries, as OpenAI's ``Tool`` union does:

- ``function`` (:class:`FunctionToolParam`): flat, unlike chat's ``function`` wrapper;
- ``custom`` (:class:`CustomToolParam`): a tool whose input is free text, or text of a Lark
  or regex grammar (``format``), called with a ``custom_tool_call`` item;
- ``namespace`` (:class:`NamespaceToolParam`): a named group of function and custom tools
  (OpenAI's and Codex's way of grouping an MCP server's tools); a call of one member is
  returned with the member's ``name`` and the group's ``namespace``, as the live API does;
- a hosted tool (:class:`HostedTool`: ``web_search``, ``file_search``, ``mcp``...), run by
  OpenAI's servers, kept as sent so that the service can say what becomes of it
  (docs/acceptance.md).

What chatd does with each is the service's (service/responses/tools.py, capabilities.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field

from chatd.protocol.shapes import (
    ANY_OBJECT,
    BAD,
    FunctionName,
    JSONObject,
    Strict,
    bad_tag_model,
    discriminator,
    tag,
)
from chatd.protocol.validation import TAG

__all__ = [
    "CustomGrammarFormat",
    "CustomToolParam",
    "FunctionToolParam",
    "HostedTool",
    "NamespaceToolParam",
    "ToolChoiceCustom",
    "ToolChoiceField",
    "ToolChoiceFunction",
    "ToolChoiceOther",
    "ToolEntry",
    "ToolField",
    "callable_tools",
]


class _Permissive(BaseModel):
    """An object chatd does not act on itself: kept as sent, judged by its ``type``."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class FunctionToolParam(Strict):
    """``FunctionTool``: flat (no ``function`` wrapper, unlike chat)."""

    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None
    output_schema: Any = None
    defer_loading: bool | None = None
    allowed_callers: Any = None


class CustomTextFormat(Strict):
    type: Literal["text"]


class CustomGrammarFormat(Strict):
    """``CustomGrammarFormatParam``: flat here (chat nests it under ``grammar``)."""

    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str


_FORMATS = ("text", "grammar")
_BadFormat = bad_tag_model("_BadCustomFormat", "type", _FORMATS)
CustomFormatField = Annotated[
    Annotated[CustomTextFormat, tag("text")]
    | Annotated[CustomGrammarFormat, tag("grammar")]
    | Annotated[_BadFormat, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=_FORMATS),
]


class CustomToolParam(Strict):
    """``CustomToolParam``: input is free text, or text the grammar of ``format`` allows."""

    type: Literal["custom"]
    name: FunctionName
    description: str | None = None
    format: CustomFormatField | None = None
    defer_loading: bool | None = None
    allowed_callers: Any = None


_MEMBERS = ("function", "custom")
_BadMember = bad_tag_model("_BadMember", "type", _MEMBERS)
MemberField = Annotated[
    Annotated[FunctionToolParam, tag("function")]
    | Annotated[CustomToolParam, tag("custom")]
    | Annotated[_BadMember, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=_MEMBERS),
]


class NamespaceToolParam(Strict):
    """``NamespaceToolParam``: function and custom tools grouped under ``name``. The spec
    allows any non-empty name; chatd's has no dot and no white space, so that the
    qualified names its members are offered under (``name.member``) stay unambiguous
    and on one line (real ones: ``multi_agent_v1``, ``mcp__server__``)."""

    type: Literal["namespace"]
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\s.]+$")
    description: str
    tools: list[MemberField] = Field(min_length=1)


class HostedTool(_Permissive):
    """A tool OpenAI's servers run (``web_search``, ``file_search``, ``code_interpreter``,
    ``image_generation``, ``mcp``, ``local_shell``, ``computer_use_preview``,
    ``tool_search``...): kept as sent, whatever its options."""

    type: str


_OWN = ("function", "custom", "namespace")
_BadTool = bad_tag_model("_BadTool", "type", _OWN)


def _pick_tool(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        kind = getattr(value, "type", None)
        return TAG + (kind if kind in _OWN and not isinstance(value, HostedTool) else "hosted")
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if not isinstance(kind, str):
        return TAG + BAD
    return TAG + (kind if kind in _OWN else "hosted")


ToolField = Annotated[
    Annotated[FunctionToolParam, tag("function")]
    | Annotated[CustomToolParam, tag("custom")]
    | Annotated[NamespaceToolParam, tag("namespace")]
    | Annotated[HostedTool, tag("hosted")]
    | Annotated[_BadTool, tag(BAD)],
    # not shapes.discriminator(): an unknown type is a hosted tool, not a fault
    Discriminator(_pick_tool, custom_error_type="invalid_type", custom_error_message=ANY_OBJECT),
]
Tool = FunctionToolParam | CustomToolParam | NamespaceToolParam | HostedTool


class ToolChoiceFunction(Strict):
    type: Literal["function"]
    name: str


class ToolChoiceCustom(Strict):
    type: Literal["custom"]
    name: str


class ToolChoiceOther(_Permissive):
    """``allowed_tools``, a hosted tool's type, ``mcp``...: judged by type later."""

    type: str


_BadToolChoice = bad_tag_model("_BadToolChoice", "type", ("function", "custom"))


def _pick_tool_choice(value: Any) -> str | None:
    if isinstance(value, str):
        return TAG + "str"
    if isinstance(value, BaseModel):
        if isinstance(value, ToolChoiceFunction):
            return TAG + "function"
        return TAG + ("custom" if isinstance(value, ToolChoiceCustom) else "other")
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if not isinstance(kind, str):
        return TAG + BAD
    return TAG + (kind if kind in ("function", "custom") else "other")


ToolChoiceField = Annotated[
    Annotated[Literal["none", "auto", "required"], tag("str")]
    | Annotated[ToolChoiceFunction, tag("function")]
    | Annotated[ToolChoiceCustom, tag("custom")]
    | Annotated[ToolChoiceOther, tag("other")]
    | Annotated[_BadToolChoice, tag(BAD)],
    Discriminator(
        _pick_tool_choice,
        custom_error_type="invalid_type",
        custom_error_message="one of a string or object",
    ),
]


@dataclass(frozen=True)
class ToolEntry:
    """One tool the model may call: a top-level function or custom tool, or a member of
    a namespace. ``qualified`` is the name the model is shown and writes
    (``namespace.name`` for a member: a dot is in no tool name, so it is unambiguous);
    ``param`` where the request declares it (``tools[4].tools[2]``)."""

    tool: FunctionToolParam | CustomToolParam
    namespace: str | None
    param: str

    @property
    def qualified(self) -> str:
        name = self.tool.name
        return name if self.namespace is None else f"{self.namespace}.{name}"

    @property
    def custom(self) -> bool:
        return isinstance(self.tool, CustomToolParam)


def callable_tools(tools: list[Any] | None) -> Iterator[ToolEntry]:
    """Every function and custom tool, namespaces' members included, in request order."""
    for i, tool in enumerate(tools or ()):
        if isinstance(tool, FunctionToolParam | CustomToolParam):
            yield ToolEntry(tool, None, f"tools[{i}]")
        elif isinstance(tool, NamespaceToolParam):
            for j, member in enumerate(tool.tools):
                yield ToolEntry(member, tool.name, f"tools[{i}].tools[{j}]")

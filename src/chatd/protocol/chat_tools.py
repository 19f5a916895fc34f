"""Tools a chat request declares, and how it says which of them the model may call.

``tools`` (function and custom tools), the deprecated ``functions``, and the two choices that
go with them, ``tool_choice`` and ``function_call``. They are a contract of their own: the
tool-calling service (``service/tools.py``) turns them into a prompt and a grammar, while the
request only checks that they agree with each other (see ``ChatCompletionRequest._coherent``).
"""

from __future__ import annotations

from typing import Annotated, Literal

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

__all__ = [
    "CustomTool",
    "CustomToolChoice",
    "FunctionCallField",
    "FunctionCallOption",
    "FunctionDefinition",
    "FunctionTool",
    "LegacyFunction",
    "NamedToolChoice",
    "ToolChoiceField",
    "ToolField",
]

# --------------------------------------------------------------------------------------------
# Tools and function calling
# --------------------------------------------------------------------------------------------


class FunctionDefinition(Strict):
    name: FunctionName
    description: str | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None


class FunctionTool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class CustomFormatText(Strict):
    type: Literal["text"]


class GrammarDefinition(Strict):
    definition: str
    syntax: Literal["lark", "regex"]


class CustomFormatGrammar(Strict):
    type: Literal["grammar"]
    grammar: GrammarDefinition


_BadCustomFormat = bad_tag_model("_BadCustomFormat", "type", ("text", "grammar"))
CustomFormatField = Annotated[
    Annotated[CustomFormatText, tag("text")]
    | Annotated[CustomFormatGrammar, tag("grammar")]
    | Annotated[_BadCustomFormat, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=("text", "grammar")),
]


class CustomToolDefinition(Strict):
    name: str
    description: str | None = None
    format: CustomFormatField | None = None


class CustomTool(Strict):
    type: Literal["custom"]
    custom: CustomToolDefinition


_BadTool = bad_tag_model("_BadTool", "type", ("function", "custom"))
ToolField = Annotated[
    Annotated[FunctionTool, tag("function")]
    | Annotated[CustomTool, tag("custom")]
    | Annotated[_BadTool, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=("function", "custom")),
]
Tool = FunctionTool | CustomTool


class LegacyFunction(Strict):
    """An entry of the deprecated ``functions`` list."""

    name: FunctionName
    description: str | None = None
    parameters: JSONObject | None = None

    def as_definition(self) -> FunctionDefinition:
        return FunctionDefinition(
            name=self.name, description=self.description, parameters=self.parameters
        )


class NamedFunction(Strict):
    name: str


class NamedToolChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class CustomToolChoice(Strict):
    type: Literal["custom"]
    custom: NamedFunction


class AllowedTools(Strict):
    mode: Literal["auto", "required"]
    tools: list[JSONObject]


class AllowedToolsChoice(Strict):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


_TOOL_CHOICE_TYPES = ("function", "custom", "allowed_tools")
_BadToolChoice = bad_tag_model("_BadToolChoice", "type", _TOOL_CHOICE_TYPES)
ToolChoiceField = Annotated[
    Annotated[Literal["none", "auto", "required"], tag("str")]
    | Annotated[NamedToolChoice, tag("function")]
    | Annotated[CustomToolChoice, tag("custom")]
    | Annotated[AllowedToolsChoice, tag("allowed_tools")]
    | Annotated[_BadToolChoice, tag(BAD)],
    # OpenAI's own (sic) wording for this union.
    discriminator(
        "one of one of 'none', 'auto', or 'required' or object",
        field="type",
        values=_TOOL_CHOICE_TYPES,
        string=True,
    ),
]


class FunctionCallOption(Strict):
    name: str


FunctionCallField = Annotated[
    Annotated[Literal["none", "auto"], tag("str")] | Annotated[FunctionCallOption, tag("obj")],
    discriminator("one of one of 'none' or 'auto' or object", string=True, obj=True),
]

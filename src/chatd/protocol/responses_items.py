"""The input items of ``POST /v1/responses``: messages, function calls and their outputs.

``input`` of a ``CreateResponse`` is a string or a list of items (``InputItem`` of the spec).
chatd's local engine can act on a few of them (messages, ``function_call``,
``function_call_output``, ``item_reference``); the spec defines many more (``reasoning``,
``web_search_call``, ``computer_call``...). Those others must still *parse*, into
:class:`OtherItem` recording their ``type``, so that a later layer refuses them with a 400
naming the type instead of pydantic failing on a shape it was never told about.

Dispatch follows the spec: an item is picked by its ``type``; an item without ``type`` but with
a ``role`` is a message (``EasyInputMessage``), and one with neither but an ``id`` is an item
reference (``ItemReferenceParam``'s ``type`` is optional).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field

from chatd.protocol.shapes import (
    ANY_OBJECT,
    BAD,
    STRING_OR_PARTS,
    CallId,
    ItemId,
    Strict,
    bad_tag_model,
    discriminator,
    tag,
)
from chatd.protocol.validation import TAG

__all__ = [
    "CustomToolCallItem",
    "CustomToolCallOutputItem",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "InputFile",
    "InputImage",
    "InputItemField",
    "ItemReference",
    "MessageItem",
    "OtherItem",
    "OutputText",
    "Refusal",
]


class Permissive(BaseModel):
    """A shape chatd does not act on: its ``type`` is recorded, the rest kept as sent."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    type: str


# --------------------------------------------------------------------------------------------
# Content parts
# --------------------------------------------------------------------------------------------


class InputText(Strict):
    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: Any = None


class InputImage(Strict):
    """Parsed so that a text-only model can refuse it by name (a value-dependent refusal)."""

    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] | None = None
    prompt_cache_breakpoint: Any = None


class InputFile(Strict):
    """Parsed so that a text-only model can refuse it by name (a value-dependent refusal)."""

    type: Literal["input_file"]
    file_id: str | None = None
    filename: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    detail: str | None = None
    prompt_cache_breakpoint: Any = None


class OutputText(Strict):
    """Text of an earlier assistant turn, as the Responses API returned it."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(Strict):
    type: Literal["refusal"]
    refusal: str


_PART_TYPES = ("input_text", "input_image", "input_file", "output_text", "refusal")
_BadPart = bad_tag_model("_BadPart", "type", _PART_TYPES)
PartField = Annotated[
    Annotated[InputText, tag("input_text")]
    | Annotated[InputImage, tag("input_image")]
    | Annotated[InputFile, tag("input_file")]
    | Annotated[OutputText, tag("output_text")]
    | Annotated[Refusal, tag("refusal")]
    | Annotated[_BadPart, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=_PART_TYPES),
]
Part = InputText | InputImage | InputFile | OutputText | Refusal
ContentField = Annotated[
    Annotated[str, tag("str")] | Annotated[list[PartField], tag("list")],
    discriminator(STRING_OR_PARTS, string=True, array=True),
]


def _text_of(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    out = []
    for part in content:
        if isinstance(part, InputText | OutputText):
            out.append(part.text)
        elif isinstance(part, Refusal):
            out.append(part.refusal)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


class MessageItem(Strict):
    """``EasyInputMessage``, ``InputMessage`` or an earlier ``OutputMessage``."""

    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: ContentField
    id: ItemId | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: str | None = None

    def parts(self) -> list[Part]:
        """The content as parts (a string is one ``input_text``, or ``output_text`` if ours)."""
        if isinstance(self.content, str):
            if self.role == "assistant":
                return [OutputText(type="output_text", text=self.content)]
            return [InputText(type="input_text", text=self.content)]
        return list(self.content)

    def text(self) -> str:
        return _text_of(self.content)


class FunctionCallItem(Strict):
    """A call the model made in an earlier turn (``FunctionToolCall``)."""

    type: Literal["function_call"]
    call_id: CallId
    name: str
    arguments: str
    id: ItemId | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    namespace: str | None = None
    caller: Any = None


class FunctionCallOutputItem(Strict):
    """The client's result of a call (``FunctionCallOutputItemParam``)."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=64)
    output: ContentField
    id: ItemId | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    name: str | None = None
    namespace: str | None = None
    caller: Any = None

    def text(self) -> str:
        return _text_of(self.output)


class CustomToolCallItem(Strict):
    """A custom tool's call the model made in an earlier turn (``CustomToolCall``)."""

    type: Literal["custom_tool_call"]
    call_id: CallId
    name: str
    input: str
    id: ItemId | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    namespace: str | None = None
    caller: Any = None


class CustomToolCallOutputItem(Strict):
    """The client's result of a custom tool call (``CustomToolCallOutput``)."""

    type: Literal["custom_tool_call_output"]
    call_id: str = Field(min_length=1, max_length=64)
    output: ContentField
    id: ItemId | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    caller: Any = None

    def text(self) -> str:
        return _text_of(self.output)


class ItemReference(Strict):
    """An item of an earlier response or conversation, by id."""

    type: Literal["item_reference"] | None = None
    id: ItemId


class OtherItem(Permissive):
    """Any other item type of the spec: parsed, to be refused by name later (its id, as
    every item's, is a string that fits the stored items' column)."""

    id: ItemId | None = None


_ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "item_reference",
)
_BadItem = bad_tag_model("_BadItem", "type", _ITEM_TYPES)


def _pick_item(value: Any) -> str | None:
    """The branch of an input item: by ``type``; by ``role`` or ``id`` when it has none."""
    if isinstance(value, BaseModel):
        kind = getattr(value, "type", None)
        if isinstance(value, MessageItem):
            return TAG + "message"
        if isinstance(value, ItemReference):
            return TAG + "item_reference"
        return TAG + (kind if kind in _ITEM_TYPES else "other")
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind is None:
        if "role" in value:
            return TAG + "message"
        return TAG + ("item_reference" if "id" in value else BAD)
    if not isinstance(kind, str):
        return TAG + BAD
    return TAG + (kind if kind in _ITEM_TYPES else "other")


InputItemField = Annotated[
    Annotated[MessageItem, tag("message")]
    | Annotated[FunctionCallItem, tag("function_call")]
    | Annotated[FunctionCallOutputItem, tag("function_call_output")]
    | Annotated[CustomToolCallItem, tag("custom_tool_call")]
    | Annotated[CustomToolCallOutputItem, tag("custom_tool_call_output")]
    | Annotated[ItemReference, tag("item_reference")]
    | Annotated[OtherItem, tag("other")]
    | Annotated[_BadItem, tag(BAD)],
    Discriminator(_pick_item, custom_error_type="invalid_type", custom_error_message=ANY_OBJECT),
]
InputItem = (
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | CustomToolCallOutputItem
    | ItemReference
    | OtherItem
)

"""The messages of a chat request, and the content parts they are made of.

``messages`` is most of what a client sends and most of what can be wrong with it: each role
has its own shape (OpenAI dispatches on ``role``, then on each part's ``type``), and content
may be a string or an array of parts. Keeping the conversation apart from the request's options
lets the services that read it (prompt rendering, tools, capabilities) depend on this alone.

Every message gives uniform text access whatever form its content took
(:meth:`_MessageBase.content_parts`, ``part_types``, ``text``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from chatd.protocol.shapes import (
    ANY_OBJECT,
    BAD,
    STRING_OR_PARTS,
    FunctionName,
    ParticipantName,
    Strict,
    bad_tag_model,
    discriminator,
    tag,
)
from chatd.protocol.validation import openai_error

__all__ = [
    "AssistantMessage",
    "DeveloperMessage",
    "FilePart",
    "FunctionMessage",
    "FunctionToolCall",
    "ImagePart",
    "InputAudioPart",
    "MessageField",
    "RefusalPart",
    "SystemMessage",
    "TextPart",
    "TextPartField",
    "ToolMessage",
    "UserMessage",
]

# --------------------------------------------------------------------------------------------
# Content parts
# --------------------------------------------------------------------------------------------


class PromptCacheBreakpoint(Strict):
    """Marks the end of a reusable prompt prefix (accepted; caching policy is ours)."""

    mode: Literal["explicit"]


class TextPart(Strict):
    type: Literal["text"]
    text: str
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class ImageURL(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class InputAudio(Strict):
    data: str
    format: Literal["wav", "mp3"]


class InputAudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class FileData(Strict):
    """A file given inline (``file_data``) or by reference (``file_id``): one is needed."""

    filename: str | None = None
    file_data: str | None = None
    file_id: str | None = None

    @model_validator(mode="after")
    def _needs_a_source(self) -> FileData:
        if self.file_data is None and self.file_id is None:
            raise openai_error(
                "Missing required parameter: '{param}'.",
                code="missing_required_parameter",
                suffix=".file_id",
            )
        return self


class FilePart(Strict):
    type: Literal["file"]
    file: FileData
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class RefusalPart(Strict):
    type: Literal["refusal"]
    refusal: str


_BadUserPart = bad_tag_model("_BadUserPart", "type", ("text", "image_url", "input_audio", "file"))
_BadTextPart = bad_tag_model("_BadTextPart", "type", ("text",))
_BadAssistantPart = bad_tag_model("_BadAssistantPart", "type", ("text", "refusal"))


UserPartField = Annotated[
    Annotated[TextPart, tag("text")]
    | Annotated[ImagePart, tag("image_url")]
    | Annotated[InputAudioPart, tag("input_audio")]
    | Annotated[FilePart, tag("file")]
    | Annotated[_BadUserPart, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=("text", "image_url", "input_audio", "file")),
]
TextPartField = Annotated[
    Annotated[TextPart, tag("text")] | Annotated[_BadTextPart, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=("text",)),
]
AssistantPartField = Annotated[
    Annotated[TextPart, tag("text")]
    | Annotated[RefusalPart, tag("refusal")]
    | Annotated[_BadAssistantPart, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=("text", "refusal")),
]

# OpenAI accepts an empty parts array as (empty) content, although the spec says minItems 1.
UserContent = Annotated[
    Annotated[str, tag("str")] | Annotated[list[UserPartField], tag("list")],
    discriminator(STRING_OR_PARTS, string=True, array=True),
]
TextContent = Annotated[
    Annotated[str, tag("str")] | Annotated[list[TextPartField], tag("list")],
    discriminator(STRING_OR_PARTS, string=True, array=True),
]
AssistantContent = Annotated[
    Annotated[str, tag("str")] | Annotated[list[AssistantPartField], tag("list")],
    discriminator(STRING_OR_PARTS, string=True, array=True),
]

ContentPart = TextPart | ImagePart | InputAudioPart | FilePart | RefusalPart


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


class _MessageBase(Strict):
    """Text access common to every role, whatever form the content took."""

    if TYPE_CHECKING:  # declared by each role, with its own type and position
        content: Any

    def content_parts(self) -> list[ContentPart]:
        """The content as parts: a string is one text part, no content is no part."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextPart(type="text", text=self.content)]
        return list(self.content)

    def part_types(self) -> frozenset[str]:
        """Kinds of content present (``text``, ``image_url``...): what capability checks need."""
        return frozenset(part.type for part in self.content_parts())

    def text(self, sep: str = "\n") -> str:
        """The text of the message: text parts joined with ``sep``; other parts are skipped."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return sep.join(part.text for part in self.content if isinstance(part, TextPart))


class DeveloperMessage(_MessageBase):
    role: Literal["developer"]
    content: TextContent
    name: ParticipantName | None = None


class SystemMessage(_MessageBase):
    role: Literal["system"]
    content: TextContent
    name: ParticipantName | None = None


class UserMessage(_MessageBase):
    role: Literal["user"]
    content: UserContent
    name: ParticipantName | None = None


class FunctionCall(Strict):
    """A (deprecated) function call made by the assistant in an earlier turn."""

    name: str
    arguments: str


class FunctionToolCall(Strict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class CustomToolCallBody(Strict):
    name: str
    input: str


class CustomToolCall(Strict):
    id: str
    type: Literal["custom"]
    custom: CustomToolCallBody


_BadToolCall = bad_tag_model("_BadToolCall", "type", ("function", "custom"))
ToolCallField = Annotated[
    Annotated[FunctionToolCall, tag("function")]
    | Annotated[CustomToolCall, tag("custom")]
    | Annotated[_BadToolCall, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=("function", "custom")),
]
ToolCall = FunctionToolCall | CustomToolCall


class AssistantAudioRef(Strict):
    """Points at a previous audio answer of the model."""

    id: str


class AssistantMessage(_MessageBase):
    """A previous model turn. Content may be absent when the turn was a call or a refusal."""

    role: Literal["assistant"]
    content: AssistantContent | None = None
    refusal: str | None = None
    name: ParticipantName | None = None
    audio: AssistantAudioRef | None = None
    # OpenAI accepts null here (as absent), but not an empty array.
    tool_calls: list[ToolCallField] | None = Field(None, min_length=1)
    function_call: FunctionCall | None = None
    # Not in the request schema, but a returned message appended to the history as-is
    # carries it (the openai SDK does exactly that); it has no meaning as input.
    annotations: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _needs_content_or_substitute(self) -> AssistantMessage:
        substitutes = (self.tool_calls, self.function_call, self.refusal, self.audio)
        if self.content is None and all(s is None for s in substitutes):
            raise openai_error(
                "Missing required parameter: '{param}'.",
                code="missing_required_parameter",
                suffix=".content",
            )
        return self


class ToolMessage(_MessageBase):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str


class FunctionMessage(_MessageBase):
    """Deprecated result of a ``function_call``: ``content`` must be present, may be null."""

    role: Literal["function"]
    content: str | None
    name: FunctionName


# OpenAI lists roles in this order in its "Supported values" message.
_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_BadRole = bad_tag_model("_BadRole", "role", _ROLES)

MessageField = Annotated[
    Annotated[DeveloperMessage, tag("developer")]
    | Annotated[SystemMessage, tag("system")]
    | Annotated[UserMessage, tag("user")]
    | Annotated[AssistantMessage, tag("assistant")]
    | Annotated[ToolMessage, tag("tool")]
    | Annotated[FunctionMessage, tag("function")]
    | Annotated[_BadRole, tag(BAD)],
    discriminator(ANY_OBJECT, field="role", values=_ROLES),
]
ChatMessage = (
    DeveloperMessage
    | SystemMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)

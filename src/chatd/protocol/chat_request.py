"""The request contract of ``POST /v1/chat/completions``: shape, types and ranges.

Everything a client can send is modelled here after ``CreateChatCompletionRequest`` of the
official OpenAPI spec, and every way of getting it wrong becomes an :class:`InvalidRequest`
worded like OpenAI's own error (message, ``param`` in ``messages[0].content`` style, ``code``).
Capabilities (does this model take images, audio, ``reasoning_effort``...) are judged by a later
layer: a request that passes here is well formed, not necessarily servable.

Entry points: :func:`parse_chat_request` (raw body) and :func:`validate_chat_request` (decoded
JSON). Both raise nothing but :class:`InvalidRequest`.

How errors are made: the models are strict pydantic models (no coercion: a bool is not a
number, ``1.0`` is not an integer) with ``extra="forbid"``; pydantic reports every problem, and
the first one is translated into OpenAI's wording. Unions are dispatched by callable
discriminators whose branch tags start with ``_TAG`` so that they can be dropped from the error
location, and whose failure is reported as an ``invalid_type`` naming what was expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chatd.protocol.errors import InvalidRequest

__all__ = [
    "AllowedTools",
    "AllowedToolsChoice",
    "ApproximateLocation",
    "AssistantAudioRef",
    "AssistantMessage",
    "AudioOutput",
    "ChatCompletionRequest",
    "ChatMessage",
    "ContentPart",
    "CustomFormatGrammar",
    "CustomFormatText",
    "CustomTool",
    "CustomToolCall",
    "CustomToolCallBody",
    "CustomToolChoice",
    "CustomToolDefinition",
    "CustomVoice",
    "DeveloperMessage",
    "FileData",
    "FilePart",
    "FunctionCall",
    "FunctionCallOption",
    "FunctionDefinition",
    "FunctionMessage",
    "FunctionTool",
    "FunctionToolCall",
    "GrammarDefinition",
    "ImagePart",
    "ImageURL",
    "InputAudio",
    "InputAudioPart",
    "JSONSchemaFormat",
    "KNOWN_REQUEST_FIELDS",
    "LegacyFunction",
    "Moderation",
    "ModerationConfig",
    "ModerationPolicy",
    "NamedFunction",
    "NamedToolChoice",
    "Prediction",
    "PromptCacheBreakpoint",
    "PromptCacheOptions",
    "RefusalPart",
    "ResponseFormat",
    "ResponseFormatJSONObject",
    "ResponseFormatJSONSchema",
    "ResponseFormatText",
    "StreamOptions",
    "SystemMessage",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolMessage",
    "UserLocation",
    "UserMessage",
    "WebSearchOptions",
    "parse_chat_request",
    "validate_chat_request",
]

# Branch tags of our unions start with this; they are internal and never shown in a param.
_TAG = "\x00"
# Custom pydantic error type carrying a ready OpenAI error in its context.
_OPENAI_ERROR = "openai_error"

_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# OpenAI's pattern for function, schema and participant names.
NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"
FunctionName = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]
ParticipantName = Annotated[str, Field(pattern=NAME_PATTERN)]
JSONObject = dict[str, Any]


_AT_LOCATION: Any = object()  # default of ``_openai_error(param=...)``: the error's location


def _openai_error(
    message: str,
    *,
    code: str | None = None,
    suffix: str = "",
    param: str | None = _AT_LOCATION,
) -> PydanticCustomError:
    """A pydantic error that the translator turns into exactly this OpenAI error.

    ``message`` may contain ``{param}``; the param is the error location plus ``suffix``, unless
    ``param`` is given explicitly (``None`` meaning OpenAI's null).
    """
    ctx: dict[str, Any] = {"oa_message": message, "oa_code": code, "oa_suffix": suffix}
    if param is not _AT_LOCATION:
        ctx["oa_param"] = param
    return PydanticCustomError(_OPENAI_ERROR, "{oa_message}", ctx)


class _Strict(BaseModel):
    """Base of every request object: no coercion, no unknown keys, no mutation."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Union dispatch
# --------------------------------------------------------------------------------------------


def _tag(name: str) -> Tag:
    return Tag(_TAG + name)


_BAD = "?"  # tag of the branch that explains a missing or unknown discriminator value


def _dispatch(
    *,
    field: str | None = None,
    values: Iterable[str] = (),
    string: bool = False,
    array: bool = False,
    obj: bool = False,
) -> Callable[[Any], str | None]:
    """Pick a union branch from the JSON type of the value and, for objects, from ``field``.

    Returning ``None`` makes pydantic raise the discriminator's custom ``invalid_type`` error.
    Model instances (seen when serializing) are dispatched on their own ``field``.
    """
    known = frozenset(values)

    def pick(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            return _TAG + (getattr(value, field) if field else "obj")
        if isinstance(value, str):
            return _TAG + "str" if string else None
        if isinstance(value, list):
            return _TAG + "list" if array else None
        if isinstance(value, dict):
            if field is None:
                return _TAG + "obj" if obj else None
            tag = value.get(field)
            if isinstance(tag, str) and tag in known:
                return _TAG + tag
            return _TAG + _BAD
        return None

    return pick


def _discriminator(expected: str, **kwargs: Any) -> Discriminator:
    return Discriminator(
        _dispatch(**kwargs), custom_error_type="invalid_type", custom_error_message=expected
    )


# --------------------------------------------------------------------------------------------
# Content parts
# --------------------------------------------------------------------------------------------


class PromptCacheBreakpoint(_Strict):
    """Marks the end of a reusable prompt prefix (accepted; caching policy is ours)."""

    mode: Literal["explicit"]


class TextPart(_Strict):
    type: Literal["text"]
    text: str
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class InputAudio(_Strict):
    data: str
    format: Literal["wav", "mp3"]


class InputAudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class FileData(_Strict):
    """A file given inline (``file_data``) or by reference (``file_id``): one is needed."""

    filename: str | None = None
    file_data: str | None = None
    file_id: str | None = None

    @model_validator(mode="after")
    def _needs_a_source(self) -> FileData:
        if self.file_data is None and self.file_id is None:
            raise _openai_error(
                "Missing required parameter: '{param}'.",
                code="missing_required_parameter",
                suffix=".file_id",
            )
        return self


class FilePart(_Strict):
    type: Literal["file"]
    file: FileData
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class RefusalPart(_Strict):
    type: Literal["refusal"]
    refusal: str


def _bad_tag_model(name: str, field: str, supported: tuple[str, ...]) -> type[BaseModel]:
    """The branch taken when ``field`` is missing or unknown: it can only fail, and says why.

    ``supported`` is listed in the order OpenAI lists it in its ``invalid_value`` message.
    """
    namespace = {
        "__annotations__": {field: Literal[supported]},  # type: ignore[valid-type]
        "model_config": ConfigDict(strict=True, extra="allow", frozen=True),
        "__doc__": f"Never valid: explains a missing or unknown '{field}'.",
    }
    return type(name, (BaseModel,), namespace)


_BadUserPart = _bad_tag_model("_BadUserPart", "type", ("text", "image_url", "input_audio", "file"))
_BadTextPart = _bad_tag_model("_BadTextPart", "type", ("text",))
_BadAssistantPart = _bad_tag_model("_BadAssistantPart", "type", ("text", "refusal"))

_ANY_OBJECT = "an object"
_STRING_OR_PARTS = "one of a string or array of objects"

UserPartField = Annotated[
    Annotated[TextPart, _tag("text")]
    | Annotated[ImagePart, _tag("image_url")]
    | Annotated[InputAudioPart, _tag("input_audio")]
    | Annotated[FilePart, _tag("file")]
    | Annotated[_BadUserPart, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="type", values=("text", "image_url", "input_audio", "file")),
]
TextPartField = Annotated[
    Annotated[TextPart, _tag("text")] | Annotated[_BadTextPart, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="type", values=("text",)),
]
AssistantPartField = Annotated[
    Annotated[TextPart, _tag("text")]
    | Annotated[RefusalPart, _tag("refusal")]
    | Annotated[_BadAssistantPart, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="type", values=("text", "refusal")),
]

# OpenAI accepts an empty parts array as (empty) content, although the spec says minItems 1.
UserContent = Annotated[
    Annotated[str, _tag("str")] | Annotated[list[UserPartField], _tag("list")],
    _discriminator(_STRING_OR_PARTS, string=True, array=True),
]
TextContent = Annotated[
    Annotated[str, _tag("str")] | Annotated[list[TextPartField], _tag("list")],
    _discriminator(_STRING_OR_PARTS, string=True, array=True),
]
AssistantContent = Annotated[
    Annotated[str, _tag("str")] | Annotated[list[AssistantPartField], _tag("list")],
    _discriminator(_STRING_OR_PARTS, string=True, array=True),
]

ContentPart = TextPart | ImagePart | InputAudioPart | FilePart | RefusalPart


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


class _MessageBase(_Strict):
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


class FunctionCall(_Strict):
    """A (deprecated) function call made by the assistant in an earlier turn."""

    name: str
    arguments: str


class FunctionToolCall(_Strict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class CustomToolCallBody(_Strict):
    name: str
    input: str


class CustomToolCall(_Strict):
    id: str
    type: Literal["custom"]
    custom: CustomToolCallBody


_BadToolCall = _bad_tag_model("_BadToolCall", "type", ("function", "custom"))
ToolCallField = Annotated[
    Annotated[FunctionToolCall, _tag("function")]
    | Annotated[CustomToolCall, _tag("custom")]
    | Annotated[_BadToolCall, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="type", values=("function", "custom")),
]
ToolCall = FunctionToolCall | CustomToolCall


class AssistantAudioRef(_Strict):
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
            raise _openai_error(
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
_BadRole = _bad_tag_model("_BadRole", "role", _ROLES)

MessageField = Annotated[
    Annotated[DeveloperMessage, _tag("developer")]
    | Annotated[SystemMessage, _tag("system")]
    | Annotated[UserMessage, _tag("user")]
    | Annotated[AssistantMessage, _tag("assistant")]
    | Annotated[ToolMessage, _tag("tool")]
    | Annotated[FunctionMessage, _tag("function")]
    | Annotated[_BadRole, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="role", values=_ROLES),
]
ChatMessage = (
    DeveloperMessage
    | SystemMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)


# --------------------------------------------------------------------------------------------
# Tools and function calling
# --------------------------------------------------------------------------------------------


class FunctionDefinition(_Strict):
    name: FunctionName
    description: str | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None


class FunctionTool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class CustomFormatText(_Strict):
    type: Literal["text"]


class GrammarDefinition(_Strict):
    definition: str
    syntax: Literal["lark", "regex"]


class CustomFormatGrammar(_Strict):
    type: Literal["grammar"]
    grammar: GrammarDefinition


_BadCustomFormat = _bad_tag_model("_BadCustomFormat", "type", ("text", "grammar"))
CustomFormatField = Annotated[
    Annotated[CustomFormatText, _tag("text")]
    | Annotated[CustomFormatGrammar, _tag("grammar")]
    | Annotated[_BadCustomFormat, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="type", values=("text", "grammar")),
]


class CustomToolDefinition(_Strict):
    name: str
    description: str | None = None
    format: CustomFormatField | None = None


class CustomTool(_Strict):
    type: Literal["custom"]
    custom: CustomToolDefinition


_BadTool = _bad_tag_model("_BadTool", "type", ("function", "custom"))
ToolField = Annotated[
    Annotated[FunctionTool, _tag("function")]
    | Annotated[CustomTool, _tag("custom")]
    | Annotated[_BadTool, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="type", values=("function", "custom")),
]
Tool = FunctionTool | CustomTool


class LegacyFunction(_Strict):
    """An entry of the deprecated ``functions`` list."""

    name: FunctionName
    description: str | None = None
    parameters: JSONObject | None = None

    def as_definition(self) -> FunctionDefinition:
        return FunctionDefinition(
            name=self.name, description=self.description, parameters=self.parameters
        )


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class CustomToolChoice(_Strict):
    type: Literal["custom"]
    custom: NamedFunction


class AllowedTools(_Strict):
    mode: Literal["auto", "required"]
    tools: list[JSONObject]


class AllowedToolsChoice(_Strict):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


_TOOL_CHOICE_TYPES = ("function", "custom", "allowed_tools")
_BadToolChoice = _bad_tag_model("_BadToolChoice", "type", _TOOL_CHOICE_TYPES)
ToolChoiceField = Annotated[
    Annotated[Literal["none", "auto", "required"], _tag("str")]
    | Annotated[NamedToolChoice, _tag("function")]
    | Annotated[CustomToolChoice, _tag("custom")]
    | Annotated[AllowedToolsChoice, _tag("allowed_tools")]
    | Annotated[_BadToolChoice, _tag(_BAD)],
    # OpenAI's own (sic) wording for this union.
    _discriminator(
        "one of one of 'none', 'auto', or 'required' or object",
        field="type",
        values=_TOOL_CHOICE_TYPES,
        string=True,
    ),
]


class FunctionCallOption(_Strict):
    name: str


FunctionCallField = Annotated[
    Annotated[Literal["none", "auto"], _tag("str")] | Annotated[FunctionCallOption, _tag("obj")],
    _discriminator("one of one of 'none' or 'auto' or object", string=True, obj=True),
]


# --------------------------------------------------------------------------------------------
# Output shaping and other options
# --------------------------------------------------------------------------------------------


class ResponseFormatText(_Strict):
    type: Literal["text"]


class ResponseFormatJSONObject(_Strict):
    type: Literal["json_object"]


class JSONSchemaFormat(_Strict):
    name: FunctionName
    description: str | None = None
    schema_: JSONObject | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatJSONSchema(_Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


_RESPONSE_FORMATS = ("json_object", "json_schema", "text")
_BadResponseFormat = _bad_tag_model("_BadResponseFormat", "type", _RESPONSE_FORMATS)
ResponseFormatField = Annotated[
    Annotated[ResponseFormatText, _tag("text")]
    | Annotated[ResponseFormatJSONSchema, _tag("json_schema")]
    | Annotated[ResponseFormatJSONObject, _tag("json_object")]
    | Annotated[_BadResponseFormat, _tag(_BAD)],
    _discriminator(_ANY_OBJECT, field="type", values=_RESPONSE_FORMATS),
]
ResponseFormat = ResponseFormatText | ResponseFormatJSONSchema | ResponseFormatJSONObject


class Prediction(_Strict):
    """Predicted Output: text the answer is expected to largely repeat."""

    type: Literal["content"]
    content: Annotated[
        Annotated[str, _tag("str")]
        | Annotated[list[TextPartField], Field(min_length=1), _tag("list")],
        _discriminator(_STRING_OR_PARTS, string=True, array=True),
    ]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class CustomVoice(_Strict):
    id: str


class AudioOutput(_Strict):
    voice: Annotated[
        Annotated[str, _tag("str")] | Annotated[CustomVoice, _tag("obj")],
        _discriminator("one of a string or object", string=True, obj=True),
    ]
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]


class ApproximateLocation(_Strict):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


class UserLocation(_Strict):
    type: Literal["approximate"]
    approximate: ApproximateLocation


class WebSearchOptions(_Strict):
    user_location: UserLocation | None = None
    search_context_size: Literal["low", "medium", "high"] | None = None


class ModerationConfig(_Strict):
    mode: Literal["score", "block"]


class ModerationPolicy(_Strict):
    input: ModerationConfig | None = None
    output: ModerationConfig | None = None


class Moderation(_Strict):
    model: str
    policy: ModerationPolicy | None = None


class PromptCacheOptions(_Strict):
    ttl: Literal["30m"] | None = None
    mode: Literal["implicit", "explicit"] | None = None


class StreamOptions(_Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


StopField = Annotated[
    Annotated[str, Field(min_length=1), _tag("str")]
    # An empty array means "no stop sequence" (clients send it); empty strings never match
    # anything meaningful and are refused.
    | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4), _tag("list")],
    _discriminator("one of a string or array of strings", string=True, array=True),
]

MetadataValue = Annotated[str, Field(max_length=512)]
LogitBiasValue = Annotated[int, Field(ge=-100, le=100)]
_TOKEN_ID = re.compile(r"^[0-9]+$")


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------


class ChatCompletionRequest(_Strict):
    """A well-formed ``CreateChatCompletionRequest``. ``None`` always means "not given".

    Fields are declared in the order OpenAI reports faults in, so that the first pydantic error
    is the one OpenAI would name.
    """

    model: str
    messages: list[MessageField] = Field(min_length=1)
    functions: list[LegacyFunction] | None = Field(None, min_length=1, max_length=128)
    tools: list[ToolField] | None = Field(None, max_length=128)
    parallel_tool_calls: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = None
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    safety_identifier: str | None = Field(None, max_length=64)
    prompt_cache_options: PromptCacheOptions | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    stream: bool | None = None
    store: bool | None = None
    metadata: dict[str, MetadataValue] | None = Field(None, max_length=16)
    verbosity: Literal["low", "medium", "high"] | None = None
    max_tokens: int | None = Field(None, ge=1)
    stop: StopField | None = None
    logit_bias: dict[str, LogitBiasValue] | None = None
    stream_options: StreamOptions | None = None
    response_format: ResponseFormatField | None = None
    tool_choice: ToolChoiceField | None = None
    function_call: FunctionCallField | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = (
        None
    )
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOutput | None = None
    prediction: Prediction | None = None
    web_search_options: WebSearchOptions | None = None
    moderation: Moderation | None = None

    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    # -- checks that need more than one field, or come before field validation ---------------

    @model_validator(mode="before")
    @classmethod
    def _required_then_known(cls, data: Any) -> Any:
        """OpenAI's order: a missing model, then missing messages, then unknown keys."""
        if not isinstance(data, dict):
            raise _openai_error(_INVALID_JSON, param=None)
        model = data.get("model")
        if model is None or model == "":
            raise _openai_error("you must provide a model parameter", param=None)
        if "messages" not in data:
            raise _openai_error(
                "Missing required parameter: 'messages'.",
                code="missing_required_parameter",
                param="messages",
            )
        unknown = [key for key in data if key not in KNOWN_REQUEST_FIELDS]
        if unknown:
            noun = "argument" if len(unknown) == 1 else "arguments"
            raise _openai_error(
                f"Unrecognized request {noun} supplied: {', '.join(map(str, unknown))}",
                param=None,
            )
        return data

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata_keys(value)

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _logit_bias_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if not _TOKEN_ID.match(key):
                    raise _openai_error(
                        f"Invalid key in 'logit_bias': {key}. You should only be submitting "
                        "non-negative integers.",
                        code="invalid_value",
                        param="logit_bias",
                    )
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ChatCompletionRequest:
        if self.stream_options is not None and self.stream is not True:
            raise _openai_error(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if self.top_logprobs is not None and self.logprobs is not True:
            raise _openai_error(
                "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
                param="top_logprobs",
            )
        has_tools = bool(self.tools)
        if self.functions is not None and has_tools:
            raise _openai_error(
                "Invalid value for 'functions': 'functions' and 'tools' cannot both be "
                "specified. Use 'tools' only.",
                param="functions",
            )
        self._check_tool_choice(has_tools, self._tool_names())
        self._check_function_call()
        if self.parallel_tool_calls is not None and not has_tools:
            raise _openai_error(
                "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
                "when 'tools' are specified.",
                param="parallel_tool_calls",
            )
        return self

    def _tool_names(self) -> set[tuple[str, str]]:
        """(type, name) of every tool; a name given twice would make calls ambiguous."""
        seen: set[tuple[str, str]] = set()
        for index, tool in enumerate(self.tools or ()):
            if isinstance(tool, FunctionTool):
                key = ("function", tool.function.name)
            else:
                key = ("custom", tool.custom.name)
            if key in seen:
                raise _openai_error(
                    f"Invalid 'tools[{index}]': a tool named '{key[1]}' is already defined. "
                    "Tool names must be unique.",
                    code="invalid_value",
                    param=f"tools[{index}]",
                )
            seen.add(key)
        return seen

    def _check_tool_choice(self, has_tools: bool, names: set[tuple[str, str]]) -> None:
        choice = self.tool_choice
        if choice is None:
            return
        if not has_tools:
            raise _openai_error(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                param="tool_choice",
            )
        if isinstance(choice, NamedToolChoice) and ("function", choice.function.name) not in names:
            raise _openai_error(
                f"Invalid value for 'tool_choice': no function named '{choice.function.name}' "
                "was specified in the 'tools' parameter.",
                param="tool_choice",
            )
        if isinstance(choice, CustomToolChoice) and ("custom", choice.custom.name) not in names:
            raise _openai_error(
                f"Invalid value for 'tool_choice': no custom tool named '{choice.custom.name}' "
                "was specified in the 'tools' parameter.",
                param="tool_choice",
            )

    def _check_function_call(self) -> None:
        choice = self.function_call
        if choice is None:
            return
        if not self.functions:
            raise _openai_error(
                "Invalid value for 'function_call': 'function_call' is only allowed when "
                "'functions' are specified.",
                param="function_call",
            )
        if isinstance(choice, FunctionCallOption) and choice.name not in {
            f.name for f in self.functions
        }:
            raise _openai_error(
                f"Invalid value for 'function_call': no function named '{choice.name}' was "
                "specified in the 'functions' parameter.",
                param="function_call",
            )

    # -- convenient, typed access --------------------------------------------------------------

    @property
    def raw(self) -> dict[str, Any] | None:
        """The decoded JSON body as sent (for gateways forwarding it), if parsed from one."""
        return self._raw

    def supplied_fields(self) -> frozenset[str]:
        """Top-level fields the client gave a non-null value: null means default."""
        return frozenset(name for name in self.model_fields_set if getattr(self, name) is not None)

    def effective_max_tokens(self) -> int | None:
        """The completion budget: ``max_completion_tokens`` wins over deprecated ``max_tokens``."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        if isinstance(self.stop, str):
            return [self.stop]
        return list(self.stop)

    def effective_n(self) -> int:
        return 1 if self.n is None else self.n

    def effective_temperature(self) -> float:
        return 1.0 if self.temperature is None else float(self.temperature)

    def effective_top_p(self) -> float:
        return 1.0 if self.top_p is None else float(self.top_p)

    def effective_presence_penalty(self) -> float:
        return 0.0 if self.presence_penalty is None else float(self.presence_penalty)

    def effective_frequency_penalty(self) -> float:
        return 0.0 if self.frequency_penalty is None else float(self.frequency_penalty)

    def is_streaming(self) -> bool:
        return self.stream is True

    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        options = self.stream_options
        return self.is_streaming() and options is not None and options.include_usage is True

    def include_obfuscation(self) -> bool:
        """Obfuscation padding is on by default when streaming; clients may turn it off."""
        options = self.stream_options
        if not self.is_streaming():
            return False
        return options is None or options.include_obfuscation is not False

    def wants_logprobs(self) -> bool:
        return self.logprobs is True

    def effective_top_logprobs(self) -> int:
        return 0 if self.top_logprobs is None else self.top_logprobs

    def function_definitions(self) -> list[FunctionDefinition]:
        """Callable functions, from ``tools`` or (deprecated) ``functions`` alike."""
        if self.tools:
            return [tool.function for tool in self.tools if isinstance(tool, FunctionTool)]
        return [function.as_definition() for function in self.functions or ()]

    def logit_bias_map(self) -> dict[int, int]:
        """``logit_bias`` with token ids as integers."""
        return {int(token): bias for token, bias in (self.logit_bias or {}).items()}

    def prompt_text(self) -> str:
        """The text of the messages, for chatd's own token count of relayed requests."""
        return "\n".join(m.text() for m in self.messages)

    def stored_request(self) -> dict[str, Any]:
        """The request as a stored completion keeps it (its messages apart)."""
        return self.model_dump(mode="json", by_alias=True, exclude={"messages"}, exclude_none=True)

    def stored_messages(self) -> list[dict[str, Any]]:
        return [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in self.messages]


KNOWN_REQUEST_FIELDS: frozenset[str] = frozenset(
    field.alias or name for name, field in ChatCompletionRequest.model_fields.items()
)


# --------------------------------------------------------------------------------------------
# Parsing and error translation
# --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def check_metadata_keys(value: dict[str, str] | None) -> dict[str, str] | None:
    for key in value or ():
        if len(key) > 64:
            shown = f"{key[:3]}...{key[-3:]}"
            raise _openai_error(
                f"Invalid property name in 'metadata': '{shown}' is too long. Expected a "
                f"string with maximum length 64, but got a string with length {len(key)} "
                "instead.",
                code="property_name_above_max_length",
                suffix=f".{key}",
            )
    return value


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Decode and validate a request body; any fault is an OpenAI-worded ``InvalidRequest``."""
    return validate_chat_request(decode_chat_body(body))


def decode_chat_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body; anything else is OpenAI's invalid-JSON 400."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
        # A lone surrogate escape decodes to a str that cannot be encoded back to UTF-8.
        if _SURROGATE_ESCAPE.search(body):
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeError):
        raise InvalidRequest(_INVALID_JSON) from None
    if not isinstance(data, dict):
        raise InvalidRequest(_INVALID_JSON)
    return data


def validate_chat_request(data: Any) -> ChatCompletionRequest:
    """Validate already decoded JSON (a dict from ``json.loads``)."""
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise translate_error(exc) from None
    except RecursionError:
        raise InvalidRequest(_INVALID_JSON) from None
    except Exception as exc:  # only reachable with non-JSON Python input; still a 400
        raise InvalidRequest(f"Invalid request: {type(exc).__name__}.") from None
    if isinstance(data, dict):
        request._raw = data
    return request


def translate_error(exc: ValidationError) -> InvalidRequest:
    """A validation failure as OpenAI words it (its first error)."""
    try:
        return _translate(exc.errors(include_url=False)[0])
    except Exception:  # a translation bug must still read as a 400, not escape as a 500
        return InvalidRequest(f"Invalid request: {exc.errors()[0].get('msg', 'invalid value')}.")


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(_TAG):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _pattern(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    return tuple(
        "*" if isinstance(p, int) else p
        for p in loc
        if isinstance(p, int) or not p.startswith(_TAG)
    )


# What OpenAI says it expected, where the generic word is not what it says.
_EXPECTED_OVERRIDES: dict[tuple[str, ...], str] = {
    ("functions",): "an array of function definitions",
    ("metadata",): "a metadata object",
    ("modalities",): "an array of strings",
}
_EXPECTED_BY_ERROR = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a decimal",
    "bool_type": "a boolean",
    "list_type": "an array of objects",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "an unsupported value"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _quoted_list(values: list[str], conjunction: str, oxford: bool = True) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 1:
        return "".join(quoted)
    if len(quoted) == 2:
        return f"{quoted[0]} {conjunction} {quoted[1]}"
    comma = "," if oxford else ""
    return f"{', '.join(quoted[:-1])}{comma} {conjunction} {quoted[-1]}"


def _literal_values(ctx: dict[str, Any]) -> list[str]:
    return re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", "")))


def _translate(error: Any) -> InvalidRequest:
    """One pydantic error, in OpenAI's words."""
    etype: str = error["type"]
    loc: tuple[int | str, ...] = tuple(error["loc"])
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    param = _param(loc)

    if etype == _OPENAI_ERROR:
        target = ctx["oa_param"] if "oa_param" in ctx else param + ctx.get("oa_suffix", "")
        message = str(ctx["oa_message"]).replace("{param}", str(target))
        return InvalidRequest(message, param=target, code=ctx.get("oa_code"))
    if etype == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if etype == "extra_forbidden":
        return InvalidRequest(
            f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
        )
    if etype == "literal_error":
        values = _literal_values(ctx)
        if isinstance(value, str):
            return InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: {_quoted_list(values, 'and')}.",
                param=param,
                code="invalid_value",
            )
        expected = f"one of {_quoted_list(values, 'or')}"
        return _invalid_type(param, expected, value)
    if etype == "invalid_type":  # a union's discriminator: the message names what was expected
        return _invalid_type(param, str(error["msg"]), value)
    if etype == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return InvalidRequest(
            f"Invalid '{param}': decimal above maximum value. The number is too large.",
            param=param,
            code="decimal_above_max_value",
        )
    if etype in _EXPECTED_BY_ERROR:
        expected = _EXPECTED_OVERRIDES.get(_pattern(loc), _EXPECTED_BY_ERROR[etype])
        return _invalid_type(param, expected, value)
    if etype in ("greater_than_equal", "less_than_equal"):
        above = etype == "less_than_equal"
        bound = ctx["le"] if above else ctx["ge"]
        kind = "decimal" if isinstance(bound, float) else "integer"
        side = "above maximum" if above else "below minimum"
        return InvalidRequest(
            f"Invalid '{param}': {kind} {side} value. Expected a value "
            f"{'<=' if above else '>='} {_number(bound)}, but got {_number(value)} instead.",
            param=param,
            code=f"{kind}_{'above_max' if above else 'below_min'}_value",
        )
    if etype in ("too_short", "too_long"):
        return _length_error(etype, param, ctx, value)
    if etype == "string_too_short":
        minimum = ctx.get("min_length", 1)
        if not value:
            return InvalidRequest(
                f"Invalid '{param}': empty string. Expected a string with minimum length "
                f"{minimum}, but got an empty string instead.",
                param=param,
                code="empty_string",
            )
        return InvalidRequest(
            f"Invalid '{param}': string too short. Expected a string with minimum length "
            f"{minimum}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_below_min_length",
        )
    if etype == "string_too_long":
        return InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{ctx.get('max_length')}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    if etype == "string_pattern_mismatch":
        return InvalidRequest(
            f"Invalid '{param}': string does not match pattern. Expected a string that "
            f"matches the pattern '{ctx.get('pattern')}'.",
            param=param,
            code="invalid_value",
        )
    return InvalidRequest(
        f"Invalid value for '{param}': {error.get('msg', 'invalid value')}.",
        param=param or None,
        code="invalid_value",
    )


def _invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_kind_of(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _length_error(etype: str, param: str, ctx: dict[str, Any], value: Any) -> InvalidRequest:
    length = len(value) if hasattr(value, "__len__") else ctx.get("actual_length")
    if isinstance(value, dict):
        limit = ctx.get("max_length")
        return InvalidRequest(
            f"Invalid '{param}': too many properties. Expected an object with at most {limit} "
            f"properties, but got an object with {length} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    if etype == "too_short":
        minimum = ctx.get("min_length")
        if not length:
            return InvalidRequest(
                f"Invalid '{param}': empty array. Expected an array with minimum length "
                f"{minimum}, but got an empty array instead.",
                param=param,
                code="empty_array",
            )
        return InvalidRequest(
            f"Invalid '{param}': array too short. Expected an array with minimum length "
            f"{minimum}, but got an array with length {length} instead.",
            param=param,
            code="array_below_min_length",
        )
    return InvalidRequest(
        f"Invalid '{param}': array too long. Expected an array with maximum length "
        f"{ctx.get('max_length')}, but got an array with length {length} instead.",
        param=param,
        code="array_above_max_length",
    )

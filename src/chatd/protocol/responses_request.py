"""The request contract of ``POST /v1/responses``: shape, types and ranges.

Modelled after ``CreateResponse`` of the official OpenAPI spec (with what it composes:
``CreateModelResponseProperties``, ``ResponseProperties``...), and checked the way the chat
contract is: strict pydantic models, the first error worded like OpenAI's by
``validation.translate_error``. Only the request is here; the route and the service adapter
come later (``docs/architecture.md``, "Adding a protocol"). What chatd does with each field is
declared in ``protocol/responses_fields.py``.

Shapes chatd will not act on (built-in tools, reasoning, prompt templates, conversations...)
are parsed permissively: a request using them is *well formed* and is refused later, by name,
with a 400, rather than failing here on details that do not matter to a refusal.

Entry points: :func:`parse_response_request` (raw body) and :func:`validate_response_request`
(decoded JSON). Both raise nothing but :class:`InvalidRequest`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.responses_items import InputItemField, MessageItem
from chatd.protocol.responses_tools import (
    FunctionToolParam,
    HostedTool,
    ToolChoiceCustom,
    ToolChoiceField,
    ToolChoiceFunction,
    ToolEntry,
    ToolField,
    callable_tools,
)
from chatd.protocol.shapes import (
    ANY_OBJECT,
    BAD,
    METADATA_MAX_PAIRS,
    FunctionName,
    JSONObject,
    MetadataValue,
    ResponseId,
    Strict,
    bad_tag_model,
    check_metadata_keys,
    discriminator,
    tag,
)
from chatd.protocol.validation import (
    INVALID_JSON,
    check_stream_options,
    decode_chat_body,
    openai_error,
    translate_error,
)

__all__ = [
    "CreateResponseRequest",
    "FunctionToolParam",
    "IncludeValue",
    "TextFormatJSONObject",
    "TextFormatJSONSchema",
    "parse_response_request",
    "validate_response_request",
]


class _Permissive(BaseModel):
    """An object chatd does not act on: kept as sent, refused later by the field's policy."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


# --------------------------------------------------------------------------------------------
# Text output, streaming and the permissive options
# --------------------------------------------------------------------------------------------


class TextFormatText(Strict):
    type: Literal["text"]


class TextFormatJSONObject(Strict):
    type: Literal["json_object"]


class TextFormatJSONSchema(Strict):
    """``TextResponseFormatJsonSchema``: flat, unlike chat's ``json_schema`` wrapper."""

    type: Literal["json_schema"]
    name: FunctionName
    schema_: JSONObject = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


_FORMATS = ("text", "json_schema", "json_object")
_BadFormat = bad_tag_model("_BadFormat", "type", _FORMATS)
TextFormatField = Annotated[
    Annotated[TextFormatText, tag("text")]
    | Annotated[TextFormatJSONSchema, tag("json_schema")]
    | Annotated[TextFormatJSONObject, tag("json_object")]
    | Annotated[_BadFormat, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=_FORMATS),
]


class TextParam(Strict):
    format: TextFormatField | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class StreamOptions(Strict):
    include_obfuscation: bool | None = None


class Reasoning(Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    mode: Any = None
    context: Any = None


class PromptParam(_Permissive):
    id: str


class PromptCacheOptions(Strict):
    ttl: Literal["30m"] | None = None
    mode: Literal["implicit", "explicit"] | None = None


class Moderation(_Permissive):
    model: str


class ContextManagement(_Permissive):
    type: str


class ConversationRef(_Permissive):
    id: str


IncludeValue = Literal[
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
]
InputField = Annotated[
    Annotated[str, tag("str")] | Annotated[list[InputItemField], tag("list")],
    discriminator("one of a string or array of input items", string=True, array=True),
]
ConversationField = Annotated[
    Annotated[str, tag("str")] | Annotated[ConversationRef, tag("obj")],
    discriminator("one of a string or object", string=True, obj=True),
]


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------


class CreateResponseRequest(Strict):
    """A well-formed ``CreateResponse``. ``None`` always means "not given"."""

    model: str
    input: InputField | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=16)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ToolField] | None = None
    tool_choice: ToolChoiceField | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = None
    text: TextParam | None = None
    metadata: dict[str, MetadataValue] | None = Field(None, max_length=METADATA_MAX_PAIRS)
    # Not in OpenAI's spec, sent by Codex (its thread, turn and window ids) and accepted by
    # the live API: string values, no documented bounds (the body limits bound them).
    client_metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: ResponseId | None = None
    conversation: ConversationField | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    include: list[IncludeValue] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: (
        Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None
    ) = None
    user: str | None = None
    safety_identifier: str | None = Field(None, max_length=64)
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: PromptCacheOptions | None = None
    reasoning: Reasoning | None = None
    background: bool | None = None
    prompt: PromptParam | None = None
    moderation: Moderation | None = None
    context_management: list[ContextManagement] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        """A body that is not an object is OpenAI's invalid-JSON error, not a type error."""
        if not isinstance(data, dict):
            raise openai_error(INVALID_JSON, param=None)
        return data

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata_keys(value)

    @model_validator(mode="after")
    def _coherent(self) -> CreateResponseRequest:
        """Checks across fields the spec states in words rather than in the schema."""
        check_stream_options(self.stream_options, self.stream)
        if self.conversation is not None and self.previous_response_id is not None:
            raise openai_error(
                "Mutually exclusive parameters: Ensure you are only providing one of: "
                "'previous_response_id' or 'conversation'.",
                code="mutually_exclusive_parameters",
                param=None,
            )
        self._check_tools()
        return self

    def _check_tools(self) -> None:
        """Names the model writes are unique (calls would be ambiguous): functions and
        custom tools share one name space, a namespace's members are qualified by it. A
        forced function or custom tool exists."""
        kinds: dict[str, bool] = {}  # qualified name -> is custom
        for entry in self.callable_tools():
            name = entry.qualified
            if name in kinds:
                raise openai_error(
                    f"Duplicate tool name: '{name}'. Tool names must be unique.",
                    code="invalid_value",
                    param=f"{entry.param}.name",
                )
            kinds[name] = entry.custom
        choice = self.tool_choice
        if isinstance(choice, ToolChoiceFunction) and kinds.get(choice.name) is not False:
            raise openai_error(
                f"Tool choice 'function' with name '{choice.name}' not found in 'tools' parameter.",
                code="invalid_value",
                param="tool_choice",
            )
        if isinstance(choice, ToolChoiceCustom) and kinds.get(choice.name) is not True:
            raise openai_error(
                f"Tool choice 'custom' with name '{choice.name}' not found in 'tools' parameter.",
                code="invalid_value",
                param="tool_choice",
            )

    # -- what later code reads ---------------------------------------------------------------

    def input_items(self) -> list[Any]:
        """``input`` as a list of items: a string is one user message, absent is none."""
        if self.input is None:
            return []
        if isinstance(self.input, str):
            return [MessageItem(type="message", role="user", content=self.input)]
        return list(self.input)

    def supplied_fields(self) -> frozenset[str]:
        """The fields the client gave a non-null value, which is what policies judge."""
        return frozenset(name for name in self.model_fields_set if getattr(self, name) is not None)

    def is_streaming(self) -> bool:
        return self.stream is True

    def include_obfuscation(self) -> bool:
        """Obfuscation padding of stream events: on by default, as OpenAI does."""
        if not self.is_streaming():
            return False
        options = self.stream_options
        return options is None or options.include_obfuscation is not False

    def wants_logprobs(self) -> bool:
        """Log probabilities are asked by ``include`` or a ``top_logprobs`` above zero."""
        included = "message.output_text.logprobs" in (self.include or ())
        return included or bool(self.top_logprobs)

    def stores(self) -> bool:
        """``store`` defaults to true in the Responses API (unlike chat)."""
        return self.store is not False

    def function_tools(self) -> list[FunctionToolParam]:
        """The top-level function tools (a namespace's are in :meth:`callable_tools`)."""
        return [tool for tool in self.tools or () if isinstance(tool, FunctionToolParam)]

    def callable_tools(self) -> list[ToolEntry]:
        """Every tool the model itself may call: functions and custom tools, namespaces'
        members included."""
        return list(callable_tools(self.tools))

    def hosted_tools(self) -> list[HostedTool]:
        """The tools OpenAI's servers run (web_search...), in request order."""
        return [tool for tool in self.tools or () if isinstance(tool, HostedTool)]


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def parse_response_request(body: bytes) -> CreateResponseRequest:
    """Decode and validate a request body; any fault is an OpenAI-worded ``InvalidRequest``."""
    return validate_response_request(decode_chat_body(body))


def validate_response_request(data: Any) -> CreateResponseRequest:
    """Validate already decoded JSON (a dict from ``json.loads``)."""
    try:
        return CreateResponseRequest.model_validate(data)
    except ValidationError as exc:
        raise translate_error(exc) from None
    except RecursionError:
        raise InvalidRequest(INVALID_JSON) from None
    except Exception:  # only reachable with non-JSON Python input; still a 400
        raise InvalidRequest("Invalid request: the body is not a JSON object.") from None

"""The request contract of ``POST /v1/chat/completions``: shape, types and ranges.

Everything a client can send is modelled after ``CreateChatCompletionRequest`` of the official
OpenAPI spec, and every way of getting it wrong becomes an :class:`InvalidRequest` worded like
OpenAI's own error (message, ``param`` in ``messages[0].content`` style, ``code``).
Capabilities (does this model take images, audio, ``reasoning_effort``...) are judged by a later
layer: a request that passes here is well formed, not necessarily servable. What chatd does with
each field is declared in ``protocol/chat_fields.py``.

The contract is spread over a few modules, one job each:

- here: the request itself (:class:`ChatCompletionRequest`), its options (response format,
  prediction, audio, stream options...) and the checks that need several fields;
- ``protocol/chat_messages.py``: the messages and their content parts;
- ``protocol/chat_tools.py``: tools, functions, ``tool_choice`` and ``function_call``;
- ``protocol/shapes.py``: the strict base model and the union dispatch all of them use;
- ``protocol/validation.py``: body decoding and the translation of pydantic errors into
  OpenAI's, shared with ``protocol/relayed_request.py``.

Entry points: :func:`parse_chat_request` (raw body) and :func:`validate_chat_request` (decoded
JSON). Both raise nothing but :class:`InvalidRequest`.

How errors are made: the models are strict pydantic models (no coercion: a bool is not a
number, ``1.0`` is not an integer) with ``extra="forbid"``; pydantic reports every problem, and
the first one is translated into OpenAI's wording (``validation.translate_error``). Fields are
declared in the order OpenAI reports faults in.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from chatd.protocol.chat_messages import MessageField, TextPartField
from chatd.protocol.chat_tools import (
    CustomToolChoice,
    FunctionCallField,
    FunctionCallOption,
    FunctionDefinition,
    FunctionTool,
    LegacyFunction,
    NamedToolChoice,
    ToolChoiceField,
    ToolField,
)
from chatd.protocol.errors import InvalidRequest
from chatd.protocol.shapes import (
    ANY_OBJECT,
    BAD,
    INT64_MAX,
    INT64_MIN,
    METADATA_MAX_PAIRS,
    STRING_OR_PARTS,
    FunctionName,
    JSONObject,
    MetadataValue,
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
    "EXTENSION_FIELDS",
    "ChatCompletionRequest",
    "KNOWN_REQUEST_FIELDS",
    "LogitBiasValue",
    "ResponseFormatJSONObject",
    "ResponseFormatJSONSchema",
    "ResponseFormatText",
    "StopField",
    "parse_chat_request",
    "validate_chat_request",
]

# --------------------------------------------------------------------------------------------
# Output shaping and other options
# --------------------------------------------------------------------------------------------


class ResponseFormatText(Strict):
    type: Literal["text"]


class ResponseFormatJSONObject(Strict):
    type: Literal["json_object"]


class JSONSchemaFormat(Strict):
    name: FunctionName
    description: str | None = None
    schema_: JSONObject | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormatJSONSchema(Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


_RESPONSE_FORMATS = ("json_object", "json_schema", "text")
_BadResponseFormat = bad_tag_model("_BadResponseFormat", "type", _RESPONSE_FORMATS)
ResponseFormatField = Annotated[
    Annotated[ResponseFormatText, tag("text")]
    | Annotated[ResponseFormatJSONSchema, tag("json_schema")]
    | Annotated[ResponseFormatJSONObject, tag("json_object")]
    | Annotated[_BadResponseFormat, tag(BAD)],
    discriminator(ANY_OBJECT, field="type", values=_RESPONSE_FORMATS),
]
ResponseFormat = ResponseFormatText | ResponseFormatJSONSchema | ResponseFormatJSONObject


class Prediction(Strict):
    """Predicted Output: text the answer is expected to largely repeat."""

    type: Literal["content"]
    content: Annotated[
        Annotated[str, tag("str")]
        | Annotated[list[TextPartField], Field(min_length=1), tag("list")],
        discriminator(STRING_OR_PARTS, string=True, array=True),
    ]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class CustomVoice(Strict):
    id: str


class AudioOutput(Strict):
    voice: Annotated[
        Annotated[str, tag("str")] | Annotated[CustomVoice, tag("obj")],
        discriminator("one of a string or object", string=True, obj=True),
    ]
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]


class ApproximateLocation(Strict):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


class UserLocation(Strict):
    type: Literal["approximate"]
    approximate: ApproximateLocation


class WebSearchOptions(Strict):
    user_location: UserLocation | None = None
    search_context_size: Literal["low", "medium", "high"] | None = None


class ModerationConfig(Strict):
    mode: Literal["score", "block"]


class ModerationPolicy(Strict):
    input: ModerationConfig | None = None
    output: ModerationConfig | None = None


class Moderation(Strict):
    model: str
    policy: ModerationPolicy | None = None


class PromptCacheOptions(Strict):
    ttl: Literal["30m"] | None = None
    mode: Literal["implicit", "explicit"] | None = None


class StreamOptions(Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


StopField = Annotated[
    Annotated[str, Field(min_length=1), tag("str")]
    # An empty array means "no stop sequence" (clients send it); empty strings never match
    # anything meaningful and are refused.
    | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=4), tag("list")],
    discriminator("one of a string or array of strings", string=True, array=True),
]

LogitBiasValue = Annotated[int, Field(ge=-100, le=100)]
_TOKEN_ID = re.compile(r"^[0-9]+\Z")  # \Z: "12\n" is no token id


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------


class ChatCompletionRequest(Strict):
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
    metadata: dict[str, MetadataValue] | None = Field(None, max_length=METADATA_MAX_PAIRS)
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
    # -- extensions (not OpenAI's): the sampling knobs of llama.cpp's and vLLM's servers ------
    top_k: int | None = Field(None, ge=-1)  # -1 or 0: off
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    min_tokens: int | None = Field(None, ge=0)

    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    # -- checks that need more than one field, or come before field validation ---------------

    @model_validator(mode="before")
    @classmethod
    def _required_then_known(cls, data: Any) -> Any:
        """OpenAI's order: a missing model, then missing messages, then unknown keys."""
        if not isinstance(data, dict):
            raise openai_error(INVALID_JSON, param=None)
        model = data.get("model")
        if model is None or model == "":
            raise openai_error("you must provide a model parameter", param=None)
        if "messages" not in data:
            raise openai_error(
                "Missing required parameter: 'messages'.",
                code="missing_required_parameter",
                param="messages",
            )
        unknown = [key for key in data if key not in KNOWN_REQUEST_FIELDS]
        if unknown:
            noun = "argument" if len(unknown) == 1 else "arguments"
            raise openai_error(
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
                    raise openai_error(
                        f"Invalid key in 'logit_bias': {key}. You should only be submitting "
                        "non-negative integers.",
                        code="invalid_value",
                        param="logit_bias",
                    )
        return value

    @model_validator(mode="after")
    def _coherent(self) -> ChatCompletionRequest:
        check_stream_options(self.stream_options, self.stream)
        if self.top_logprobs is not None and self.logprobs is not True:
            raise openai_error(
                "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
                param="top_logprobs",
            )
        self._check_min_tokens()
        has_tools = bool(self.tools)
        if self.functions is not None and has_tools:
            raise openai_error(
                "Invalid value for 'functions': 'functions' and 'tools' cannot both be "
                "specified. Use 'tools' only.",
                param="functions",
            )
        self._check_tool_choice(has_tools, self._tool_names())
        self._check_function_call()
        if self.parallel_tool_calls is not None and not has_tools:
            raise openai_error(
                "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed "
                "when 'tools' are specified.",
                param="parallel_tool_calls",
            )
        return self

    def _check_min_tokens(self) -> None:
        """``min_tokens`` above the completion budget could never be honoured."""
        budget = self.max_completion_tokens or self.max_tokens
        if self.min_tokens is not None and budget is not None and self.min_tokens > budget:
            name = "max_completion_tokens" if self.max_completion_tokens else "max_tokens"
            raise openai_error(
                f"Invalid 'min_tokens': integer above maximum value. Expected a value <= "
                f"{name} ({budget}), but got {self.min_tokens} instead.",
                code="integer_above_max_value",
                param="min_tokens",
            )

    def _tool_names(self) -> set[tuple[str, str]]:
        """(type, name) of every tool; a name given twice would make calls ambiguous."""
        seen: set[tuple[str, str]] = set()
        for index, tool in enumerate(self.tools or ()):
            if isinstance(tool, FunctionTool):
                key = ("function", tool.function.name)
            else:
                key = ("custom", tool.custom.name)
            if key in seen:
                raise openai_error(
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
            raise openai_error(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                param="tool_choice",
            )
        if isinstance(choice, NamedToolChoice) and ("function", choice.function.name) not in names:
            raise openai_error(
                f"Invalid value for 'tool_choice': no function named '{choice.function.name}' "
                "was specified in the 'tools' parameter.",
                param="tool_choice",
            )
        if isinstance(choice, CustomToolChoice) and ("custom", choice.custom.name) not in names:
            raise openai_error(
                f"Invalid value for 'tool_choice': no custom tool named '{choice.custom.name}' "
                "was specified in the 'tools' parameter.",
                param="tool_choice",
            )

    def _check_function_call(self) -> None:
        choice = self.function_call
        if choice is None:
            return
        if not self.functions:
            raise openai_error(
                "Invalid value for 'function_call': 'function_call' is only allowed when "
                "'functions' are specified.",
                param="function_call",
            )
        if isinstance(choice, FunctionCallOption) and choice.name not in {
            f.name for f in self.functions
        }:
            raise openai_error(
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

# Fields that are not OpenAI's: the sampling knobs local tools send (llama.cpp's and vLLM's
# servers take them on chat requests); docs/engine.md "Sampling extensions".
EXTENSION_FIELDS: frozenset[str] = frozenset({"top_k", "min_p", "repetition_penalty", "min_tokens"})


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Decode and validate a request body; any fault is an OpenAI-worded ``InvalidRequest``."""
    return validate_chat_request(decode_chat_body(body))


def validate_chat_request(data: Any) -> ChatCompletionRequest:
    """Validate already decoded JSON (a dict from ``json.loads``)."""
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise translate_error(exc) from None
    except RecursionError:
        raise InvalidRequest(INVALID_JSON) from None
    except Exception:  # only reachable with non-JSON Python input; still a 400
        raise InvalidRequest("Invalid request: the body is not a JSON object.") from None
    if isinstance(data, dict):
        request._raw = data
    return request

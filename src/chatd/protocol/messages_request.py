"""``POST /v1/messages``'s (and ``count_tokens``'s) request: Anthropic's Messages API
contract, checked the way Anthropic checks it.

Anthropic validates with pydantic too, and its 400s read ``<field path>: <pydantic's
message>`` (``max_tokens: Field required``, ``foo: Extra inputs are not permitted``);
:func:`validate_messages_request` words a fault the same way. Every field the current
SDK and Claude Code send is declared: what the local engine cannot honour is refused
later, by value, naming the field (service/messages/capabilities.py); what has no
effect on a model that does not think or cache explicitly is accepted with its honest
no-op meaning (docs/messages.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.messages_blocks import Block, CacheControl, Model, TextBlock

T = TypeVar("T", bound=BaseModel)

__all__ = [
    "CountTokensRequest",
    "InputMessage",
    "MessagesRequest",
    "ServerTool",
    "ThinkingEnabled",
    "validate_count_tokens_request",
    "validate_messages_request",
]


class InputMessage(Model):
    # "system": a system message in the conversation, as Claude Code sends one with the
    # beta ``mid-conversation-tool-changes-2026-07-01`` (service/messages/conversation.py)
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]

    def blocks(self) -> list[Any]:
        """The content as blocks (a string is one text block)."""
        if isinstance(self.content, str):
            return [TextBlock(type="text", text=self.content)]
        return list(self.content)


class CustomTool(Model):
    """A tool the client runs: its input is constrained by ``input_schema``."""

    type: Literal["custom"] | None = None
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]{1,128}$")]
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: CacheControl | None = None
    strict: bool | None = None
    input_examples: list[dict[str, Any]] | None = None
    defer_loading: bool | None = None
    eager_input_streaming: bool | None = None
    allowed_callers: list[str] | None = None


class ServerTool(BaseModel):
    """A versioned tool Anthropic defines (``web_search_20250305``, ``bash_20250124``,
    ``text_editor_...``, ``code_execution_...``): kept as sent. The local model never
    calls one (no schema of ours to constrain it, nothing to run it)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    # any type but "custom" (which is a CustomTool): said so in /openapi.json too
    type: Annotated[str, Field(json_schema_extra={"not": {"const": "custom"}})]
    name: str


def _tool_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind in (None, "custom") else "server"


Tool = Annotated[
    Annotated[CustomTool, Tag("custom")] | Annotated[ServerTool, Tag("server")],
    Discriminator(_tool_tag),
]


class ToolChoice(Model):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingEnabled(Model):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=1024)]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingOther(Model):
    """``disabled``, ``adaptive`` (the model decides how much to think: a model that
    cannot think decides none), ``between_tools``."""

    type: Literal["disabled", "adaptive", "between_tools"]
    display: Literal["summarized", "omitted"] | None = None


Thinking = Annotated[
    Annotated[ThinkingEnabled, Tag("enabled")] | Annotated[ThinkingOther, Tag("other")],
    Discriminator(
        lambda v: (
            "enabled"
            if (v.get("type") if isinstance(v, dict) else getattr(v, "type", None)) == "enabled"
            else "other"
        )
    ),
]


class JSONOutputFormat(Model):
    type: Literal["json_schema"]
    schema_: Annotated[dict[str, Any], Field(alias="schema")]


class OutputConfig(Model):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONOutputFormat | None = None


class Metadata(Model):
    user_id: str | None = None


class _Permissive(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MessagesRequest(Model):
    model: Annotated[str, Field(min_length=1, max_length=256)]
    messages: list[InputMessage]
    max_tokens: Annotated[int, Field(ge=1)]
    system: str | list[TextBlock] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: Metadata | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    output_format: JSONOutputFormat | None = None  # the structured-outputs beta's name
    service_tier: Literal["auto", "standard_only"] | None = None
    cache_control: CacheControl | None = None  # automatic caching of the whole prompt
    context_management: _Permissive | None = None
    container: str | _Permissive | None = None
    mcp_servers: list[_Permissive] | None = None
    diagnostics: _Permissive | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None
    user_profile_id: str | None = None  # the SDK's; chatd's owner is the key's
    workspace_id: str | None = None

    # The body as the client sent it (a channel speaking the Messages API gets it as it
    # came) and the ``anthropic-beta`` values of its header: set by the API layer.
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    _betas: tuple[str, ...] = PrivateAttr(default=())

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    @property
    def betas(self) -> tuple[str, ...]:
        return self._betas

    def with_betas(self, header: str | None) -> MessagesRequest:
        """The request with the betas of its ``anthropic-beta`` header (comma separated)."""
        self._betas = tuple(b.strip() for b in (header or "").split(",") if b.strip())
        return self

    def is_streaming(self) -> bool:
        return bool(self.stream)

    def custom_tools(self) -> list[CustomTool]:
        return [t for t in self.tools or () if isinstance(t, CustomTool)]

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema the answer must match (``output_config.format``, or the
        beta's ``output_format``), or None for free text."""
        fmt = self.output_config.format if self.output_config is not None else None
        fmt = fmt or self.output_format
        return fmt.schema_ if fmt is not None else None


class CountTokensRequest(MessagesRequest):
    """``count_tokens`` takes the same request without the generation's own fields:
    ``max_tokens`` is not required (and not given, Anthropic's SDK sends none)."""

    max_tokens: Annotated[int, Field(ge=1)] = 1


def validate_messages_request(data: Any) -> MessagesRequest:
    return _validate(MessagesRequest, data)


def validate_count_tokens_request(data: Any) -> CountTokensRequest:
    return _validate(CountTokensRequest, data)


def _validate(model: type[T], data: Any) -> T:
    if not isinstance(data, dict):
        raise InvalidRequest("Input should be a valid dictionary")
    try:
        req = model.model_validate(data)
    except ValidationError as exc:
        raise anthropic_error(exc) from None
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.") from None
    req._raw = data
    return req


def anthropic_error(exc: ValidationError) -> InvalidRequest:
    """The first fault as Anthropic words it: ``path.to.field: message``. Union-branch
    names pydantic adds to the path (``str``, ``list[...]``, a tag that merely repeats
    the block's own ``type``) are left out, as Anthropic's paths show none; the block's
    type stays when it tells which branch was checked (``content.0.text.text``)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    # a "str or list" field given a list: the list branch's error is the useful one
    for e in errors:
        if any(isinstance(p, str) and p.startswith("list[") for p in e["loc"]):
            first = e
            break
    loc = [str(p) for p in first["loc"] if not _branch_name(p)]
    path = ".".join(loc)
    message = first["msg"]
    return InvalidRequest(f"{path}: {message}" if path else message, param=path or None)


def _branch_name(part: Any) -> bool:
    if not isinstance(part, str):
        return False
    return part in ("str", "custom", "server", "other", "enabled", "int", "float") or "[" in part

"""The content blocks of Anthropic's Messages API, as a request carries them: in
``messages[].content``, in ``system``, and inside a ``tool_result``.

Each block type is its own model; every block may carry ``cache_control`` (a caching
hint: chatd's prefix cache reuses what it can anyway). Unknown keys in a block are
refused as Anthropic's own validation refuses them ("Extra inputs are not permitted").
``thinking`` and ``redacted_thinking`` blocks (an earlier assistant turn of a thinking
model, sent back as the API asks) are accepted and dropped: a model that does not think
has no use for another's thoughts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "Block",
    "CacheControl",
    "DocumentBlock",
    "ImageBlock",
    "Model",
    "SearchResultBlock",
    "ServerToolBlock",
    "TextBlock",
    "ToolResultBlock",
    "ToolUseBlock",
    "is_billing_header",
]


class Model(BaseModel):
    """Base of every Messages request object: no coercion, no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CacheControl(Model):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(Model):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class ImageBlock(Model):
    type: Literal["image"]
    source: dict[str, Any]
    cache_control: CacheControl | None = None


class DocumentBlock(Model):
    type: Literal["document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class SearchResultBlock(Model):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlock]
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(Model):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None
    caller: dict[str, Any] | None = None


ResultPart = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[DocumentBlock, Tag("document")]
    | Annotated[SearchResultBlock, Tag("search_result")],
    Discriminator("type"),
]


class ToolResultBlock(Model):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ResultPart] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(Model):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(Model):
    type: Literal["redacted_thinking"]
    data: str


class ServerToolBlock(BaseModel):
    """A server tool's call or result in an earlier assistant turn (``server_tool_use``,
    ``web_search_tool_result``, ``mcp_tool_use``...), as an Anthropic-served answer had
    it: kept as sent (their shapes are Anthropic's to evolve); the local engine refuses
    them by name, since it ran no such tool."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal[
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "mcp_tool_use",
        "mcp_tool_result",
        "container_upload",
        "tool_search_tool_result",
    ]


_SERVER_BLOCKS = get_args(ServerToolBlock.model_fields["type"].annotation)


def _block_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind in _SERVER_BLOCKS:
        return "server"
    return kind if isinstance(kind, str) else None


Block = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[DocumentBlock, Tag("document")]
    | Annotated[SearchResultBlock, Tag("search_result")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[RedactedThinkingBlock, Tag("redacted_thinking")]
    | Annotated[ServerToolBlock, Tag("server")],
    Discriminator(
        _block_tag,
        custom_error_type="invalid_block_type",
        custom_error_message="Input tag does not match any of the expected tags: 'text',"
        " 'image', 'document', 'search_result', 'tool_use', 'tool_result', 'thinking',"
        " 'redacted_thinking', 'server_tool_use'",
    ),
    Field(),
]


def is_billing_header(text: str) -> bool:
    """Whether a ``system`` text block is Claude Code's billing header
    (``x-anthropic-billing-header: cc_version=...; cch=...;``): metadata for Anthropic's
    billing, not instructions for the model, and different in every request (its hashes
    cover the request), so as the prompt's first tokens it would make every request miss
    the prefix cache. It is left out of what the model reads (and of what an
    OpenAI-shaped channel receives), as SGLang's and vLLM-MLX's Messages endpoints do."""
    return text.lstrip().startswith("x-anthropic-billing-header:")

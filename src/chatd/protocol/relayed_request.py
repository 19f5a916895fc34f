"""The request contract for models only upstream channels serve.

Such a request is relayed as each channel allows (upstream/relay_policy.py: the fields
OpenAI's API defines, less those a channel's operator decides; others are dropped), and
the upstream judges their values: a value chatd's own engine would refuse reaches it, and
its answer (or its 400) comes back. chatd checks only the fields it acts on itself:
``model``, ``messages`` (kept for ``store``, and counted when the upstream sends no
usage), ``stream``, ``stream_options.include_usage``, ``store`` and ``metadata``, and
``n`` against OpenAI's own bound (the choices multiply the upstream's cost). The other
limits (messages, characters, tools, schema bytes, body size) are checked before, for
every request alike (protocol/request_limits.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chatd.protocol.shapes import METADATA_MAX_PAIRS, MetadataValue, check_metadata_keys
from chatd.protocol.validation import translate_error

__all__ = ["validate_relayed_request"]


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool | None = None


class RelayedRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int | None = Field(None, ge=1, le=128)  # as ChatCompletionRequest: OpenAI's bound
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    store: bool | None = None
    metadata: dict[str, MetadataValue] | None = Field(None, max_length=METADATA_MAX_PAIRS)

    _raw: dict[str, Any] = {}

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata_keys(value)

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw

    def is_streaming(self) -> bool:
        return self.stream is True

    def prompt_text(self) -> str:
        """The text of the messages, for chatd's own token count."""
        return "\n".join(_text(m.get("content")) for m in self.messages)

    def stored_request(self) -> dict[str, Any]:
        return {k: v for k, v in self._raw.items() if k != "messages"}

    def stored_messages(self) -> list[dict[str, Any]]:
        return self.messages


def validate_relayed_request(data: dict[str, Any]) -> RelayedRequest:
    try:
        request = RelayedRequest.model_validate(data)
    except ValidationError as exc:
        raise translate_error(exc) from None
    request._raw = data
    return request


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""

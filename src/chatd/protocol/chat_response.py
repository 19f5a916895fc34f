"""Builders for the response side of the Chat Completions contract: ``chat.completion``
objects, stream chunks, usage. Plain dicts, shaped exactly as OpenAI's schemas (tests
validate them against the OpenAPI spec); no engine types here."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatd.protocol.ids import completion_id

__all__ = [
    "ChatAnswer",
    "Envelope",
    "delta_choice",
    "logprob_entry",
    "message_choice",
    "usage_dict",
]

_ALPHABET = string.ascii_letters + string.digits
# Each of the 256 byte values to a letter or digit; 256 = 4 x 62 + 8, so the first 8 come up
# 5/256 instead of 4/256: padding only has to be unpredictable, not uniform.
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[i % len(_ALPHABET)]) for i in range(256))


class ChatAnswer(Protocol):
    """A started chat completion, local or relayed: consumed whole (``result``) or as
    chunks (``prime`` first, so a refusal still gets its status code before any byte).
    ``cancel`` (the client left) frees what it holds; calling it after the end is harmless.
    """

    def cancel(self) -> None: ...

    async def prime(self) -> None: ...

    async def result(self) -> dict[str, Any]: ...

    def chunks(self) -> AsyncIterator[dict[str, Any]]: ...


def usage_dict(
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    accepted_prediction_tokens: int = 0,
    rejected_prediction_tokens: int = 0,
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": accepted_prediction_tokens,
            "rejected_prediction_tokens": rejected_prediction_tokens,
        },
    }


def logprob_entry(
    token: str, logprob: float, raw: list[int] | None, top: list[dict[str, Any]]
) -> dict[str, Any]:
    """One token of ``logprobs.content``; ``top`` holds entries without ``top_logprobs``."""
    return {"token": token, "logprob": logprob, "bytes": raw, "top_logprobs": top}


@dataclass
class Envelope:
    """What every object of one completion shares: id, created, model, fingerprint."""

    model: str
    system_fingerprint: str
    service_tier: str | None = None
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=lambda: int(time.time()))

    def _base(self, obj: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
        }
        if self.service_tier is not None:
            body["service_tier"] = self.service_tier
        return body

    def completion(self, choices: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
        body = self._base("chat.completion")
        body["choices"] = choices
        body["usage"] = usage
        return body

    def chunk(
        self,
        choices: list[dict[str, Any]],
        *,
        usage: dict[str, Any] | None = None,
        include_usage: bool = False,
        obfuscate: bool = False,
    ) -> dict[str, Any]:
        body = self._base("chat.completion.chunk")
        body["choices"] = choices
        if include_usage:
            body["usage"] = usage
        if obfuscate:
            body["obfuscation"] = _padding(choices)
        return body


def message_choice(
    index: int,
    content: str | None,
    finish_reason: str,
    logprobs: list[dict[str, Any]] | None,
    **calls: Any,
) -> dict[str, Any]:
    """``calls``: ``tool_calls=[...]`` or the deprecated ``function_call={...}``."""
    message = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    return {
        "index": index,
        "message": {**message, **calls},
        "logprobs": _logprobs(logprobs),
        "finish_reason": finish_reason,
    }


def delta_choice(
    index: int,
    delta: dict[str, Any],
    *,
    logprobs: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "delta": delta,
        "logprobs": _logprobs(logprobs),
        "finish_reason": finish_reason,
    }


def _logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if entries is None:
        return None
    return {"content": entries, "refusal": None}


def _padding(choices: list[dict[str, Any]]) -> str:
    """OpenAI's ``obfuscation``: random characters that blur the size of each event, so
    token lengths cannot be read off encrypted traffic."""
    visible = sum(len(c.get("delta", {}).get("content") or "") for c in choices)
    target = 16 + secrets.randbelow(16)
    n = max(1, target - visible)
    # One read of the system's CSPRNG per event (a secrets.choice per character made this
    # the costliest line of a streamed token, measured under 32 streams).
    return secrets.token_bytes(n).translate(_BYTE_TO_CHAR).decode("ascii")

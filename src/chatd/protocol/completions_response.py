"""The legacy Completions API's answer objects: ``text_completion`` (whole, and each
streamed chunk is one too), its choices, their ``logprobs`` (``tokens``,
``token_logprobs``, ``top_logprobs``, ``text_offset``) and usage. Pure shapes; the
adapter (service/completions/) fills them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from chatd.protocol.ids import text_completion_id

__all__ = ["TextEnvelope", "logprobs_object", "text_choice", "text_usage"]


@dataclass(frozen=True)
class TextEnvelope:
    """What every object of one completion shares: id, created, model, fingerprint."""

    model: str
    system_fingerprint: str | None
    id: str = field(default_factory=text_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))

    def completion(
        self,
        choices: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        *,
        with_usage: bool = True,
    ) -> dict[str, Any]:
        """A ``text_completion``: the whole answer (with usage), or one streamed chunk
        (without: only the last chunk, when asked, has usage)."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
        }
        if with_usage:
            body["usage"] = usage
        return body


def text_choice(
    index: int, text: str, logprobs: dict[str, Any] | None, finish_reason: str | None
) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def logprobs_object(
    tokens: list[str],
    token_logprobs: list[float | None],
    top_logprobs: list[dict[str, float] | None],
    text_offset: list[int],
) -> dict[str, Any]:
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    }


def text_usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }

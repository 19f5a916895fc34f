"""``POST /v1/completions``'s request: OpenAI's legacy Completions API
(``CreateCompletionRequest``), checked the way the chat contract is.

The prompt comes as a string, a list of strings, a list of token ids, or a list of token
id lists; each prompt is one generation, and ``n`` choices (``best_of`` candidates) are
made for each. Ids are checked against the model's vocabulary later, when the model is
known (service/completions/prompts.py), naming ``prompt``.

The live API's rules, kept: ``max_tokens`` defaults to 16 (not the rest of the window)
and may be 0 (nothing generated: with ``echo``, the prompt alone); ``logprobs`` is an
integer of at most 5; ``best_of`` is at least ``n`` and cannot be streamed;
``stream_options`` only with ``stream``. The sampling extensions chat takes (``top_k``,
``min_p``, ``repetition_penalty``, ``min_tokens``: llama.cpp's and vLLM's completions
take them too) are accepted with the same meaning. docs/completions.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from chatd.protocol.chat_request import LogitBiasValue, StopField
from chatd.protocol.errors import InvalidRequest
from chatd.protocol.shapes import INT64_MAX, INT64_MIN, Strict
from chatd.protocol.validation import (
    INVALID_JSON,
    check_stream_options,
    openai_error,
    translate_error,
)

__all__ = [
    "COMPLETIONS_EXTENSIONS",
    "CompletionRequest",
    "validate_completion_request",
]

DEFAULT_MAX_TOKENS = 16  # the live API's default for max_tokens
MAX_LOGPROBS = 5  # the live API's most top tokens per position
_TOKEN_ID_KEY = "0123456789"

# A prompt as the engine takes it: text (tokenized with the model's own tokenizer) or ids.
Prompt = str | list[int]

_PROMPT_SHAPES = (
    "Invalid type for 'prompt': expected a string, an array of strings, an array of"
    " integers (token ids) or an array of arrays of integers."
)


class StreamOptions(Strict):
    """``ChatCompletionStreamOptions``, which the spec shares with chat; a completions
    stream has no obfuscation padding (docs/completions.md)."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class CompletionRequest(Strict):
    """A well-formed ``CreateCompletionRequest``; ``None`` means "not given"."""

    model: str
    prompt: Any = None  # checked by _prompt_shape (the four shapes, in OpenAI's words)
    best_of: int | None = Field(None, ge=1, le=20)
    echo: bool | None = None
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, LogitBiasValue] | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    max_tokens: int | None = Field(None, ge=0)
    n: int | None = Field(None, ge=1, le=128)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    stop: StopField | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    user: str | None = None
    # -- extensions (not OpenAI's): the sampling knobs of llama.cpp's and vLLM's servers ------
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    min_tokens: int | None = Field(None, ge=0)

    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise openai_error(INVALID_JSON, param=None)
        model = data.get("model")
        if model is None or model == "":
            raise openai_error("you must provide a model parameter", param=None)
        if "prompt" not in data:
            raise openai_error(
                "Missing required parameter: 'prompt'.",
                code="missing_required_parameter",
                param="prompt",
            )
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        """String, strings, ids or lists of ids; null is the live API's default, the
        start of a new document (an empty string here)."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise openai_error(_PROMPT_SHAPES, code="invalid_type", param="prompt")
        if not value:
            raise openai_error(
                "Invalid 'prompt': empty array. Expected an array with minimum length 1,"
                " but got an empty array instead.",
                code="empty_array",
                param="prompt",
            )
        if all(isinstance(p, str) for p in value):
            return value
        if all(_is_id(t) for t in value):
            return value
        if all(isinstance(p, list) for p in value):
            for i, ids in enumerate(value):
                if not ids:
                    raise openai_error(
                        f"Invalid 'prompt[{i}]': empty array. Expected an array with minimum"
                        " length 1, but got an empty array instead.",
                        code="empty_array",
                        param="prompt",
                    )
                if not all(_is_id(t) for t in ids):
                    raise openai_error(_PROMPT_SHAPES, code="invalid_type", param="prompt")
            return value
        raise openai_error(_PROMPT_SHAPES, code="invalid_type", param="prompt")

    @field_validator("logit_bias", mode="before")
    @classmethod
    def _logit_bias_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if not (isinstance(key, str) and key and key.strip(_TOKEN_ID_KEY) == ""):
                    raise openai_error(
                        f"Invalid key in 'logit_bias': {key}. You should only be submitting "
                        "non-negative integers.",
                        code="invalid_value",
                        param="logit_bias",
                    )
        return value

    @model_validator(mode="after")
    def _coherent(self) -> CompletionRequest:
        check_stream_options(self.stream_options, self.stream)
        n = self.n or 1
        if self.best_of is not None and self.best_of < n:
            raise openai_error(
                f"best_of must be greater than or equal to n, but got best_of={self.best_of}"
                f" and n={n}.",
                code="invalid_value",
                param="best_of",
            )
        if self.stream is True and (self.best_of or 1) > 1:
            raise openai_error(
                "Cannot stream results with best_of greater than 1.",
                code="invalid_value",
                param="best_of",
            )
        if self.min_tokens is not None and self.min_tokens > self.budget():
            raise openai_error(
                f"min_tokens ({self.min_tokens}) may not exceed max_tokens ({self.budget()}).",
                code="invalid_value",
                param="min_tokens",
            )
        return self

    # -- what the service reads ----------------------------------------------------------

    @property
    def raw(self) -> dict[str, Any]:
        return self._raw if self._raw is not None else self.model_dump(exclude_none=True)

    def prompts(self) -> list[Prompt]:
        """Each prompt, as text or token ids; one generation each."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, str) for x in p):
            return list(p)
        if all(isinstance(x, int) for x in p):
            return [list(p)]
        return [list(ids) for ids in p]

    def budget(self) -> int:
        """The most tokens each choice may generate (the live API's 16 by default)."""
        return DEFAULT_MAX_TOKENS if self.max_tokens is None else self.max_tokens

    def choices_per_prompt(self) -> int:
        return self.n or 1

    def candidates_per_prompt(self) -> int:
        """Choices generated for each prompt: ``best_of`` (the best ``n`` returned)."""
        return max(self.best_of or 1, self.choices_per_prompt())

    def is_streaming(self) -> bool:
        return self.stream is True

    def include_usage(self) -> bool:
        options = self.stream_options
        return self.is_streaming() and options is not None and options.include_usage is True

    def logit_bias_map(self) -> dict[int, int]:
        return {int(token): bias for token, bias in (self.logit_bias or {}).items()}

    def prompt_text(self) -> str:
        """The prompts' text, for chatd's own token count of a relayed request (ids are
        counted as one token each by the caller's estimate: they are written as words)."""
        return "\n".join(p if isinstance(p, str) else " ".join(map(str, p)) for p in self.prompts())


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Fields that are not OpenAI's (never sent to a channel by default, as for chat).
COMPLETIONS_EXTENSIONS: frozenset[str] = frozenset(
    {"top_k", "min_p", "repetition_penalty", "min_tokens"}
)


def validate_completion_request(data: Any) -> CompletionRequest:
    """Validate decoded JSON; any fault is an OpenAI-worded ``InvalidRequest``."""
    try:
        request = CompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise translate_error(exc) from None
    except RecursionError:
        raise InvalidRequest(INVALID_JSON) from None
    except Exception:  # only reachable with non-JSON Python input; still a 400
        raise InvalidRequest("Invalid request: the body is not a JSON object.") from None
    if isinstance(data, dict):
        request._raw = data
    return request

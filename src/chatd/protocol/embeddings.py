"""The contract of ``POST /v1/embeddings`` (OpenAI's Embeddings API): the request as
OpenAI takes it, its 400s in OpenAI's words, and the answer's shape.

``input`` is a string, a list of strings, a list of token ids (one input) or a list of
such lists; none may be empty (OpenAI: "'$.input' is invalid"), at most 2048 inputs and
300,000 tokens in all. ``encoding_format`` is ``float`` (JSON numbers) or ``base64``
(the little-endian float32 bytes, base64: what OpenAI's SDKs ask for by default and
decode). ``dimensions`` and ``user`` are accepted here; what a model can do with
``dimensions`` is the service's to say (service/embeddings.py)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chatd.protocol.errors import InvalidRequest

__all__ = [
    "ENCODING_FORMATS",
    "MAX_INPUTS",
    "MAX_REQUEST_TOKENS",
    "EmbeddingsRequest",
    "embedding_list",
    "too_long",
    "validate_embeddings_request",
]

MAX_INPUTS = 2048  # OpenAI: "must be 2048 dimensions or less" (items of the array)
MAX_REQUEST_TOKENS = 300_000  # OpenAI: summed over all inputs of one request
ENCODING_FORMATS = ("float", "base64")
_FIELDS = frozenset({"input", "model", "encoding_format", "dimensions", "user"})
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference:"
    " https://platform.openai.com/docs/api-reference."
)


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A checked request. ``texts`` or ``tokens`` holds the inputs (one of them, in the
    order given); ``body`` is the request as it came (for a relay)."""

    model: str
    texts: list[str] | None
    tokens: list[list[int]] | None
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None
    body: dict[str, Any] | None = None

    @property
    def n_inputs(self) -> int:
        return len(self.texts if self.texts is not None else self.tokens or [])


def validate_embeddings_request(data: dict[str, Any]) -> EmbeddingsRequest:
    """The request, or an ``InvalidRequest`` naming the field that is wrong."""
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0]
        )
    model = data.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str):
        raise _type("model", "a string", model)
    if "input" not in data or data["input"] is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    texts, tokens = _inputs(data["input"])
    fmt = data.get("encoding_format")
    if fmt is None:
        fmt = "float"
    if fmt not in ENCODING_FORMATS:
        raise InvalidRequest(
            f"Invalid value for 'encoding_format': {fmt!r}. Supported values are: 'float'"
            " and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    dims = data.get("dimensions")
    if dims is not None:
        if not isinstance(dims, int) or isinstance(dims, bool):
            raise _type("dimensions", "an integer", dims)
        if dims < 1:
            raise InvalidRequest(
                f"Invalid 'dimensions': integer below minimum value. Expected a value >= 1,"
                f" but got {dims} instead.",
                param="dimensions",
                code="integer_below_min_value",
            )
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise _type("user", "a string", user)
    return EmbeddingsRequest(model, texts, tokens, fmt, dims, user, data)


def _inputs(value: Any) -> tuple[list[str] | None, list[list[int]] | None]:
    """(texts, None) or (None, token lists): the four shapes OpenAI takes."""
    if isinstance(value, str):
        if not value:
            raise InvalidRequest(_INVALID_INPUT, param="input")
        return [value], None
    if not isinstance(value, list) or not value:
        raise InvalidRequest(_INVALID_INPUT, param="input")
    if all(_is_token(v) for v in value):  # one input's token ids
        return None, [list(value)]
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(
            f"'$.input' is invalid: at most {MAX_INPUTS} inputs may be embedded in one"
            f" request, got {len(value)}.",
            param="input",
        )
    if all(isinstance(v, str) for v in value):
        if not all(value):
            raise InvalidRequest(_INVALID_INPUT, param="input")
        return list(value), None
    if all(isinstance(v, list) and v and all(_is_token(t) for t in v) for v in value):
        return None, [list(v) for v in value]
    raise InvalidRequest(_INVALID_INPUT, param="input")


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _type(param: str, expected: str, got: Any) -> InvalidRequest:
    kind = {bool: "a boolean", int: "an integer", float: "a decimal number", str: "a string",
            list: "an array", dict: "an object"}.get(type(got), "a value")  # fmt: skip
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {kind} instead.",
        param=param,
        code="invalid_type",
    )


def too_long(limit: int, requested: int) -> InvalidRequest:
    """One input longer than the model's context: OpenAI's words, its code."""
    return InvalidRequest(
        f"This model's maximum context length is {limit} tokens, however you requested"
        f" {requested} tokens ({requested} in your prompt; 0 for the completion). Please"
        " reduce your prompt; or completion length.",
        param="input",
        code="context_length_exceeded",
    )


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as the answer carries it: JSON numbers, or base64 of little-endian
    float32 bytes (what OpenAI's SDKs decode with ``np.frombuffer(..., "float32")``)."""
    v = np.asarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(v.tobytes()).decode("ascii")
    return [float(x) for x in v]


def embedding_list(
    vectors: Sequence[np.ndarray], model: str, encoding_format: str, prompt_tokens: int
) -> dict[str, Any]:
    """OpenAI's answer: ``{"object": "list", "data": [embedding...], "model", "usage"}``."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }

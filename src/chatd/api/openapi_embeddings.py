"""``POST /v1/embeddings`` in ``/openapi.json``: its path and schemas (the contract is
protocol/embeddings.py; the fuzzer, tests/service/test_fuzz.py, holds chatd to this)."""

from __future__ import annotations

from typing import Any

from chatd.protocol.embeddings import ENCODING_FORMATS, MAX_INPUTS

__all__ = ["embeddings_schemas"]

Json = dict[str, Any]

_TOKEN = {"type": "integer", "minimum": 0}
_TOKENS = {"type": "array", "items": _TOKEN, "minItems": 1}


def embeddings_schemas() -> dict[str, Json]:
    """The request (every shape ``input`` may take) and the answer."""
    count = {"type": "integer", "minimum": 0}
    return {
        "EmbeddingsRequest": {
            "type": "object",
            "description": "Token ids must be in the model's vocabulary; an input may have"
            " at most the model's context length in tokens (a 400 otherwise). `dimensions`"
            " other than the model's own length is refused for local models.",
            "properties": {
                "model": {"type": "string"},
                "input": {
                    "oneOf": [
                        {"type": "string", "minLength": 1},
                        {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1},
                            "minItems": 1,
                            "maxItems": MAX_INPUTS,
                        },
                        _TOKENS,
                        {
                            "type": "array",
                            "items": _TOKENS,
                            "minItems": 1,
                            "maxItems": MAX_INPUTS,
                        },
                    ]
                },
                "encoding_format": {"enum": [*ENCODING_FORMATS, None]},
                "dimensions": {"type": ["integer", "null"], "minimum": 1},
                "user": {"type": ["string", "null"]},
            },
            "required": ["model", "input"],
            "additionalProperties": False,
        },
        "EmbeddingList": {
            "type": "object",
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "object": {"const": "embedding"},
                            "index": count,
                            "embedding": {
                                "oneOf": [
                                    {"type": "array", "items": {"type": "number"}},
                                    {"type": "string", "contentEncoding": "base64"},
                                ]
                            },
                        },
                        "required": ["object", "index", "embedding"],
                    },
                },
                "model": {"type": "string"},
                "usage": {
                    "type": "object",
                    "properties": {"prompt_tokens": count, "total_tokens": count},
                    "required": ["prompt_tokens", "total_tokens"],
                },
            },
            "required": ["object", "data", "model", "usage"],
        },
    }

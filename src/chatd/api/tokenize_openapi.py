"""``/tokenize`` and ``/detokenize`` in ``/openapi.json``: their paths and schemas, exactly
what protocol/tokenize.py accepts (property-based fuzzing holds the routes to them)."""

from __future__ import annotations

from typing import Any

__all__ = ["tokenize_paths", "tokenize_schemas"]

Json = dict[str, Any]
_REF = "#/components/schemas/"
_BOOL: Json = {"type": ["boolean", "null"]}  # null: as absent (the dialect's default)


def _disagree(a: str, b: str) -> Json:
    """Both flags given with different values (refused: they name one thing)."""
    return {
        "anyOf": [
            {"properties": {a: {"const": x}, b: {"const": not x}}, "required": [a, b]}
            for x in (True, False)
        ]
    }


def _branch(text: str, text_schema: Json, extra: Json | None = None) -> Json:
    props: Json = {
        text: text_schema,
        "add_special_tokens": _BOOL,
        "add_special": _BOOL,
        "with_pieces": _BOOL,
        "return_token_strs": _BOOL,
        **(extra or {}),
    }
    return {
        "type": "object",
        "properties": props,
        "required": [text],
        "additionalProperties": False,
        "not": _disagree("add_special_tokens", "add_special"),
    }


def tokenize_schemas(chat_request: Json, n_vocab: int | None, served: list[str]) -> dict[str, Json]:
    """The request and answer schemas; ``chat_request`` is the chat contract's schema (the
    chat form's ``messages`` and ``tools`` are its own), ``n_vocab`` the smallest local
    vocabulary (token ids past it are refused), ``served`` the local ids (examples)."""
    chat = chat_request["properties"]
    false_only = {"enum": [False, None]}
    messages = _branch(
        "messages",
        chat["messages"],
        {
            "tools": chat["tools"],
            "add_generation_prompt": {"enum": [True, None]},
            "continue_final_message": false_only,
            # the chat template writes the special tokens of a chat request's prompt
            "add_special_tokens": false_only,
            "add_special": false_only,
        },
    )
    token: Json = {"type": "integer", "minimum": 0}
    if n_vocab is not None:
        token["maximum"] = n_vocab - 1
    model: Json = {"type": ["string", "null"], "examples": served}
    request = {
        "description": "vLLM's body (prompt, or messages) or llama.cpp's (content): one of"
        " the three texts. Without 'model', the only local model the key may use.",
        "oneOf": [
            _branch("prompt", {"type": "string"}),
            _branch("content", {"type": "string"}),
            messages,
        ],
    }
    for branch in request["oneOf"]:
        branch["properties"]["model"] = model
    piece: Json = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "piece": {"anyOf": [{"type": "string"}, {"type": "array", "items": token}]},
        },
        "required": ["id", "piece"],
    }
    return {
        "TokenizeRequest": request,
        "Tokenized": {
            "type": "object",
            "properties": {
                "count": {"type": "integer", "minimum": 0},
                "max_model_len": {"type": "integer", "minimum": 1},
                "tokens": {
                    "anyOf": [
                        {"type": "array", "items": {"type": "integer"}},
                        {"type": "array", "items": piece},
                    ]
                },
                "token_strs": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["count", "max_model_len", "tokens"],
        },
        "DetokenizeRequest": {
            "type": "object",
            "properties": {"model": model, "tokens": {"type": "array", "items": token}},
            "required": ["tokens"],
            "additionalProperties": False,
        },
        "Detokenized": {
            "type": "object",
            "properties": {"prompt": {"type": "string"}, "content": {"type": "string"}},
            "required": ["prompt", "content"],
        },
    }


def tokenize_paths(operation: Any, ok: Any) -> dict[str, Json]:
    """The two paths, built with openapi.py's own ``_operation`` and ``_ok``."""
    errors = (400, 401, 404, 413, 415, 429, 503)
    return {
        "/tokenize": {
            "post": operation(
                "tokenize",
                "A text (vLLM's prompt, llama.cpp's content) or a chat request's messages"
                " in a local model's tokens",
                ok("Tokenized"),
                errors,
                body="TokenizeRequest",
            )
        },
        "/detokenize": {
            "post": operation(
                "detokenize",
                "Token ids back to text (vLLM's prompt and llama.cpp's content)",
                ok("Detokenized"),
                errors,
                body="DetokenizeRequest",
            )
        },
    }

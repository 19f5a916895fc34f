"""Bounds on what one request may cost, checked on the decoded body before anything
else reads it: how many messages (or input items), how many characters in all, how
many tools and how many bytes their definitions take. Each limit refused reads as
OpenAI's own 400 for the field it names (``param``, ``code``), so a client sees which
part of its request was too big and by how much.

The limits themselves (``Limits``) are server settings (``chatd serve --max-*``); the
body-size limit is applied while the body is read (api/body.py), and the engine-side
ones (grammar compile time, the KV cache, the wall clock) in service/generation.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chatd.protocol.errors import APIError, InvalidRequest

__all__ = [
    "Limits",
    "RequestTooLarge",
    "check_chat_body",
    "check_completions_body",
    "check_messages_body",
    "check_responses_body",
    "count_chars",
]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-request limits (0 turns a limit off). The defaults let every request an
    8k-token model can answer through, and a gateway's bigger ones, while keeping one
    request's parsing, tokenizing and grammar compiling to a fraction of a second."""

    max_body_bytes: int = 4 * MiB
    max_messages: int = 2048  # messages, or Responses input items (OpenAI's 2048)
    max_chars: int = 1_000_000  # characters of every string of the conversation
    max_tools: int = 128  # OpenAI's own limit
    max_schema_bytes: int = 256 * 1024  # JSON of all tool definitions; of a JSON schema
    grammar_timeout: float = 5.0  # seconds to compile a schema or tools grammar
    request_timeout: float = 600.0  # seconds from submission to the last token


class RequestTooLarge(APIError):
    """413: the body is bigger than the server reads."""

    status = 413

    def __init__(self, limit: int, size: int | None = None) -> None:
        got = f" (got {size} bytes)" if size is not None else ""
        super().__init__(
            f"Request body too large: this server accepts at most {limit} bytes{got}.",
            code="request_too_large",
        )


def count_chars(value: Any, limit: int = 0) -> int:
    """Characters of every string in ``value`` (keys excluded); with ``limit``, counting
    stops soon after it is passed, so a huge body costs no more than the limit."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
            if limit and total > limit:
                return total
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total


def _array_too_long(param: str, limit: int, length: int) -> InvalidRequest:
    # OpenAI's wording for its own array limits (messages: 2048, tools: 128).
    return InvalidRequest(
        f"Invalid '{param}': array too long. Expected an array with maximum length"
        f" {limit}, but got an array with length {length} instead.",
        param=param,
        code="array_above_max_length",
    )


def _check_count(data: dict[str, Any], key: str, limit: int) -> None:
    value = data.get(key)
    if limit and isinstance(value, list) and len(value) > limit:
        raise _array_too_long(key, limit, len(value))


def _check_chars(param: str, parts: list[Any], limit: int) -> None:
    if not limit:
        return
    total = count_chars(parts, limit)
    if total > limit:
        raise InvalidRequest(
            f"Invalid '{param}': the conversation is too long. This server accepts at most"
            f" {limit} characters of text in one request, and this one has more.",
            param=param,
            code="string_above_max_length",
        )


def _check_schema_bytes(param: str, what: str, value: Any, limit: int) -> None:
    if not limit or value is None:
        return
    try:
        size = len(json.dumps(value, ensure_ascii=False).encode())
    except (TypeError, ValueError, RecursionError):
        return  # not JSON-shaped: validation refuses it with its own words
    if size > limit:
        raise InvalidRequest(
            f"Invalid '{param}': {what} take {size} bytes of JSON; this server accepts at"
            f" most {limit}.",
            param=param,
            code="invalid_value",
        )


def check_chat_body(data: dict[str, Any], limits: Limits) -> None:
    """Refuse a Chat Completions body over a limit (400 naming the field)."""
    _check_count(data, "messages", limits.max_messages)
    _check_count(data, "tools", limits.max_tools)
    _check_count(data, "functions", limits.max_tools)
    _check_chars("messages", [data.get("messages")], limits.max_chars)
    _check_schema_bytes("tools", "the tool definitions", data.get("tools"), limits.max_schema_bytes)
    _check_schema_bytes(
        "functions", "the function definitions", data.get("functions"), limits.max_schema_bytes
    )
    _check_schema_bytes(
        "response_format", "the response format", data.get("response_format"),
        limits.max_schema_bytes,
    )  # fmt: skip


def check_completions_body(data: dict[str, Any], limits: Limits) -> None:
    """Refuse a Completions body over a limit (400 naming the field): as many prompts as
    a conversation may have messages (a list of token ids is one prompt), as many
    characters of text."""
    prompt = data.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
        _check_count(data, "prompt", limits.max_messages)
    _check_chars("prompt", [prompt, data.get("suffix")], limits.max_chars)


def check_responses_body(data: dict[str, Any], limits: Limits) -> None:
    """Refuse a Responses body over a limit (400 naming the field)."""
    _check_count(data, "input", limits.max_messages)
    _check_count(data, "tools", limits.max_tools)
    _check_chars("input", [data.get("instructions"), data.get("input")], limits.max_chars)
    _check_schema_bytes("tools", "the tool definitions", data.get("tools"), limits.max_schema_bytes)
    text = data.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    _check_schema_bytes("text.format", "the text format", fmt, limits.max_schema_bytes)


def check_messages_body(data: dict[str, Any], limits: Limits) -> None:
    """Refuse a Messages body over a limit (400 naming the field)."""
    _check_count(data, "messages", limits.max_messages)
    _check_count(data, "tools", limits.max_tools)
    _check_chars("messages", [data.get("system"), data.get("messages")], limits.max_chars)
    _check_schema_bytes("tools", "the tool definitions", data.get("tools"), limits.max_schema_bytes)
    config = data.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    _check_schema_bytes("output_config.format", "the output format", fmt, limits.max_schema_bytes)

"""``response_format``: from Chat Completions' json_object / json_schema to the JSON schema
the engine enforces, with OpenAI's checks first (JSON mode's "json" in the messages, a
valid schema, strict-mode rules)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.errors import InvalidRequest
from chatd.service.structured import checked_schema

__all__ = ["SCHEMA_PARAM", "json_schema_for", "schema_check_for"]

SCHEMA_PARAM = "response_format.json_schema.schema"
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def json_schema_for(req: ChatCompletionRequest) -> dict[str, Any] | None:
    """The schema the output must match, or None for free text. Raises InvalidRequest.
    The schema's own validity is ``schema_check_for``'s: slow on a big schema, it runs
    off the event loop with the grammar's compilation (service/generation.py)."""
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        if not any("json" in m.text().lower() for m in req.messages):
            raise InvalidRequest(
                "'messages' must contain the word 'json' in some form, to use 'response_format'"
                " of type 'json_object'.",
                param="messages",
            )
        return _ANY_OBJECT
    spec = rf.json_schema
    return spec.schema_ if spec.schema_ is not None else _ANY_OBJECT


def schema_check_for(req: ChatCompletionRequest) -> Callable[[], None] | None:
    """The check that a json_schema response format is valid (raises InvalidRequest)."""
    rf = req.response_format
    if rf is None or rf.type != "json_schema":
        return None
    spec = rf.json_schema
    schema = spec.schema_ if spec.schema_ is not None else _ANY_OBJECT
    return partial(checked_schema, spec.name, schema, spec.strict, SCHEMA_PARAM)

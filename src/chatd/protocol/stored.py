"""The contract of the stored-completions endpoints: query parameters and the update
body, with OpenAI-shaped 400s."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.errors import InvalidRequest

_PLACEHOLDER = [{"role": "user", "content": "-"}]


__all__ = ["ListQuery", "parse_list_query", "parse_update"]


@dataclass(frozen=True)
class ListQuery:
    after: str | None
    limit: int
    order: Literal["asc", "desc"]
    model: str | None
    metadata: dict[str, str]


def parse_list_query(params: Mapping[str, str], *, filters: bool) -> ListQuery:
    """``after``, ``limit`` (1..100, default 20), ``order`` (asc|desc, default asc);
    with ``filters`` also ``model`` and ``metadata[key]=value``."""
    known = {"after", "limit", "order"} | ({"model"} if filters else set())
    metadata: dict[str, str] = {}
    for key, value in params.items():
        if filters and key.startswith("metadata[") and key.endswith("]"):
            metadata[key[len("metadata[") : -1]] = value
        elif key not in known:
            raise InvalidRequest(f"Unrecognized query parameter: {key}", param=key)
    raw_limit = params.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise InvalidRequest(
            f"Invalid type for 'limit': expected an integer, but got '{raw_limit}' instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if not 1 <= limit <= 100:
        code = "integer_below_min_value" if limit < 1 else "integer_above_max_value"
        bound = (
            "minimum value. Expected a value >= 1"
            if limit < 1
            else ("maximum value. Expected a value <= 100")
        )
        raise InvalidRequest(
            f"Invalid 'limit': integer {'below' if limit < 1 else 'above'} {bound}, but got"
            f" {limit} instead.",
            param="limit",
            code=code,
        )
    order = params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    return ListQuery(params.get("after"), limit, order, params.get("model"), metadata)  # type: ignore[arg-type]


def parse_update(body: bytes) -> dict[str, str]:
    """The body of ``POST /v1/chat/completions/{id}``: ``{"metadata": {...}}``, validated
    exactly as a request's ``metadata`` (null clears it)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    unknown = [k for k in data if k != "metadata"]
    if unknown:
        raise InvalidRequest(f"Unrecognized request argument supplied: {', '.join(unknown)}")
    if "metadata" not in data:
        raise InvalidRequest(
            "Missing required parameter: 'metadata'.",
            param="metadata",
            code="missing_required_parameter",
        )
    req = validate_chat_request(
        {"model": "-", "messages": _PLACEHOLDER, "metadata": data["metadata"]}
    )
    return dict(req.metadata or {})

"""The contract of the stored-object endpoints: the stored completions' query parameters
and update body, the stored responses' query parameters, with OpenAI-shaped 400s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from pydantic import ValidationError

from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.errors import InvalidRequest, Unsupported
from chatd.protocol.responses_request import IncludeValue
from chatd.protocol.shapes import (
    ITEM_ID_MAX,
    METADATA_MAX_KEY,
    METADATA_MAX_PAIRS,
    METADATA_MAX_VALUE,
    Strict,
)
from chatd.protocol.validation import decode_chat_body, translate_error

_PLACEHOLDER = [{"role": "user", "content": "-"}]


__all__ = [
    "MAX_FILTERS",
    "MAX_ID",
    "MAX_MODEL",
    "list_object",
    "ListQuery",
    "parse_input_items_query",
    "parse_list_query",
    "parse_retrieve_query",
    "parse_update",
]


@dataclass(frozen=True)
class ListQuery:
    after: str | None
    limit: int
    order: Literal["asc", "desc"]
    model: str | None
    metadata: dict[str, str]


# What a list query may hold, so that no query costs more than a request may: as many
# metadata filters as an object may hold pairs, each within a pair's bounds (a filter past
# them could match nothing stored), and strings no longer than the columns they are
# compared with (store/tables.py). Each filter is one more condition of the query: without
# the cap, thousands went past SQLite's expression limit (a 500).
MAX_FILTERS = METADATA_MAX_PAIRS
MAX_ID = ITEM_ID_MAX  # ``after``: the longest id chatd stores (an input item's)
MAX_MODEL = 256  # ``model``: the stored model column


def parse_list_query(params: Mapping[str, str], *, filters: bool) -> ListQuery:
    """``after``, ``limit`` (1..100, default 20), ``order`` (asc|desc, default asc);
    with ``filters`` also ``model`` and ``metadata[key]=value`` (at most 16)."""
    known = {"after", "limit", "order"} | ({"model"} if filters else set())
    metadata: dict[str, str] = {}
    seen: set[str] = set()
    for key, _ in _pairs(params):
        if key in seen:  # which one would count? (metadata[k]=a&metadata[k]=b)
            raise InvalidRequest(f"Duplicate query parameter: {key}", param=key)
        seen.add(key)
    for key, value in params.items():
        name = key[len("metadata[") : -1]
        # metadata[name]=value: a name, without brackets (metadata[][x] names none)
        named = bool(name) and "[" not in name and "]" not in name
        if filters and named and key.startswith("metadata[") and key.endswith("]"):
            metadata[name] = _filter(name, value)
        elif key not in known:
            raise _unrecognized(key)
    if len(metadata) > MAX_FILTERS:
        raise InvalidRequest(
            f"Invalid 'metadata': too many properties. Expected an object with at most"
            f" {MAX_FILTERS} properties, but got an object with {len(metadata)} properties"
            " instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    return ListQuery(
        _bounded(params, "after", MAX_ID),
        _limit(params),
        _order(params, "asc"),
        _bounded(params, "model", MAX_MODEL),
        metadata,
    )


def _filter(name: str, value: str) -> str:
    """One ``metadata[name]=value`` filter, within a metadata pair's bounds."""
    if len(name) > METADATA_MAX_KEY:
        raise InvalidRequest(
            f"Invalid 'metadata': the key '{name[:3]}...{name[-3:]}' is too long. Expected a"
            f" string with maximum length {METADATA_MAX_KEY}, but got a string with length"
            f" {len(name)} instead.",
            param="metadata",
            code="property_name_above_max_length",
        )
    if len(value) > METADATA_MAX_VALUE:
        _too_long(f"metadata[{name}]", value, METADATA_MAX_VALUE)
    return value


def _too_long(param: str, value: str, limit: int) -> NoReturn:
    raise InvalidRequest(
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit},"
        f" but got a string with length {len(value)} instead.",
        param=param,
        code="string_above_max_length",
    )


def _bounded(params: Mapping[str, str], name: str, limit: int) -> str | None:
    value = params.get(name)
    if value is not None and len(value) > limit:
        _too_long(name, value, limit)
    return value


@dataclass(frozen=True)
class InputItemsQuery:
    after: str | None
    limit: int
    order: Literal["asc", "desc"]
    include: tuple[IncludeValue, ...]


@dataclass(frozen=True)
class RetrieveQuery:
    include: tuple[IncludeValue, ...]


def parse_input_items_query(params: Mapping[str, str]) -> InputItemsQuery:
    """``GET /v1/responses/{id}/input_items``: ``after`` (an item id), ``limit`` (1..100,
    default 20), ``order`` (asc|desc, default **desc**, unlike the completions lists) and
    ``include`` (``include[]=`` or ``include=``, repeatable, values of the spec's
    IncludeEnum). ``params`` may be Starlette's ``QueryParams``: its repeated keys count."""
    for key, _ in _pairs(params):
        if key not in {"after", "limit", "order", "include", "include[]"}:
            raise _unrecognized(key)
    return InputItemsQuery(
        _bounded(params, "after", MAX_ID), _limit(params), _order(params, "desc"), _include(params)
    )


def parse_retrieve_query(params: Mapping[str, str]) -> RetrieveQuery:
    """``GET /v1/responses/{id}``: ``include``; ``stream`` (only false: streaming a stored
    response replays a background response, which chatd does not run), ``starting_after``
    and ``include_obfuscation`` (meaningful only when streaming) are checked and ignored."""
    for key, _ in _pairs(params):
        if key not in {"include", "include[]", "stream", "starting_after", "include_obfuscation"}:
            raise _unrecognized(key)
    if _boolean(params, "stream"):
        raise Unsupported("stream", "is only supported for background responses.")
    _boolean(params, "include_obfuscation")
    if "starting_after" in params:
        _integer(params, "starting_after")
    return RetrieveQuery(_include(params))


def _pairs(params: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every (key, value), repeated keys included (a plain Mapping has none)."""
    multi = getattr(params, "multi_items", None)
    return list(multi()) if callable(multi) else list(params.items())


def _unrecognized(key: str) -> InvalidRequest:
    return InvalidRequest(f"Unrecognized query parameter: {key}", param=key)


def _integer(params: Mapping[str, str], name: str) -> int:
    raw = params[name]
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(
            f"Invalid type for '{name}': expected an integer, but got '{raw}' instead.",
            param=name,
            code="invalid_type",
        ) from None


def _boolean(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name, "false")
    if raw not in ("true", "false"):
        raise InvalidRequest(
            f"Invalid type for '{name}': expected a boolean, but got '{raw}' instead.",
            param=name,
            code="invalid_type",
        )
    return raw == "true"


def _limit(params: Mapping[str, str]) -> int:
    """``limit``: 1..100, default 20."""
    limit = _integer(params, "limit") if "limit" in params else 20
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
    return limit


def _order(params: Mapping[str, str], default: str) -> Literal["asc", "desc"]:
    order = params.get("order", default)
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    return order  # type: ignore[return-value]


class _Include(Strict):
    include: list[IncludeValue]


def _include(params: Mapping[str, str]) -> tuple[IncludeValue, ...]:
    """The include values, checked as ``include`` of a request is (same 400s)."""
    values = [v for k, v in _pairs(params) if k in ("include", "include[]")]
    try:
        return tuple(_Include(include=values).include)
    except ValidationError as exc:
        raise translate_error(exc) from None


def parse_update(body: bytes) -> dict[str, str]:
    """The body of ``POST /v1/chat/completions/{id}``: ``{"metadata": {...}}``, validated
    exactly as a request's ``metadata`` (null clears it)."""
    data = decode_chat_body(body)  # JSON too deep included, as every route's body
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


def list_object(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A page of a stored list as OpenAI's list endpoints return it (cursor ids included).
    The spec makes ``first_id``/``last_id`` non-nullable strings: an empty page has ""."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else "",
        "last_id": items[-1]["id"] if items else "",
        "has_more": has_more,
    }

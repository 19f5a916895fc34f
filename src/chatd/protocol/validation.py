"""How a request that fails validation reads: OpenAI's error, not pydantic's.

Every contract chatd checks (the full chat request, and the few fields a relayed request is
checked on) is a pydantic model, and every way of getting one wrong must come back worded like
OpenAI's own 400 (message, ``param`` in ``messages[0].content`` style, ``code``). This module is
that translation, shared by every contract so that a fault reads the same whichever path the
request takes:

- :func:`decode_chat_body`: a raw body to its JSON object, or OpenAI's invalid-JSON 400
  (or a 400 naming the field nested deeper than :data:`MAX_DEPTH`);
- :func:`too_deep`: whether decoded JSON is nested deeper than that;
- :func:`translate_error`: the first error of a pydantic ``ValidationError`` as an
  :class:`InvalidRequest`;
- :func:`openai_error`: for validators that know better than the generic translation, a
  pydantic error that translates to exactly the OpenAI error it carries;
- :data:`TAG`: the prefix of internal union branch tags (see ``protocol/shapes.py``), dropped
  from the error location.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from chatd.protocol.errors import InvalidRequest

__all__ = [
    "INVALID_JSON",
    "MAX_DEPTH",
    "TAG",
    "check_stream_options",
    "decode_chat_body",
    "openai_error",
    "too_deep",
    "translate_error",
]

# Branch tags of our unions start with this; they are internal and never shown in a param.
TAG = "\x00"
# Custom pydantic error type carrying a ready OpenAI error in its context.
_OPENAI_ERROR = "openai_error"

INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)

_AT_LOCATION: Any = object()  # default of ``openai_error(param=...)``: the error's location


def openai_error(
    message: str,
    *,
    code: str | None = None,
    suffix: str = "",
    param: str | None = _AT_LOCATION,
) -> PydanticCustomError:
    """A pydantic error that the translator turns into exactly this OpenAI error.

    ``message`` may contain ``{param}``; the param is the error location plus ``suffix``, unless
    ``param`` is given explicitly (``None`` meaning OpenAI's null).
    """
    ctx: dict[str, Any] = {"oa_message": message, "oa_code": code, "oa_suffix": suffix}
    if param is not _AT_LOCATION:
        ctx["oa_param"] = param
    return PydanticCustomError(_OPENAI_ERROR, "{oa_message}", ctx)


def check_stream_options(stream_options: object, stream: bool | None) -> None:
    """Both APIs allow ``stream_options`` only on a streamed request, in the same words."""
    if stream_options is not None and stream is not True:
        raise openai_error(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )


# --------------------------------------------------------------------------------------------
# Body decoding
# --------------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

# How deep a request's JSON may nest: the body object is level 1, so {"a": [1]} is 2 deep.
# Not a cost limit (--max-body-bytes and the others are) but a guard of the interpreter's
# stack: everything after decoding that walks a value recursively (pydantic, jsonschema's
# meta-check of a schema, json.dumps when storing, the chat template) would otherwise
# meet Python's recursion limit (1000 frames, several per level) and fail with a 500.
# jsonschema, the deepest walker, takes ~7 frames a level: 64 leaves it a wide margin, and
# real requests far less deep (OpenAI's strict schemas stop at 10 levels of objects, ~25
# levels of JSON with the body's own).
MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (decoded JSON) nests deeper than ``limit`` levels; iterative, so
    that the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _nested_too_deeply(param: str | None) -> InvalidRequest:
    where = f"Invalid '{param}': " if param else "Invalid body: "
    return InvalidRequest(
        f"{where}JSON nested too deeply. This server accepts objects and arrays nested at most"
        f" {MAX_DEPTH} levels deep (the body is level 1).",
        param=param,
        code="invalid_value",
    )


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _deep_field(body: bytes) -> str | None:
    """The top-level field of a body too deep for ``json.loads`` itself (it raised
    RecursionError): each field's value is decoded on its own, and the first one that
    overflows is the one named. Only hostile bodies come here; None when the body is no
    object or breaks off before that field is found."""
    try:
        text = body.decode(json.detect_encoding(body))
        decoder = json.JSONDecoder()
        i = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
        if text[i : i + 1] != "{":
            return None
        i += 1
        while True:
            i = _WHITESPACE.match(text, i).end()  # type: ignore[union-attr]
            if text[i : i + 1] != '"':
                return None
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = _WHITESPACE.match(text, i).end()  # type: ignore[union-attr]
            if text[i : i + 1] != ":":
                return None
            i = _WHITESPACE.match(text, i + 1).end()  # type: ignore[union-attr]
            try:
                _, i = decoder.raw_decode(text, i)
            except RecursionError:
                return str(key)
            i = _WHITESPACE.match(text, i).end()  # type: ignore[union-attr]
            if text[i : i + 1] != ",":
                return None
            i += 1
    except (ValueError, UnicodeError, IndexError):
        return None


def _deep_param(data: dict[str, Any]) -> str | None:
    """The first top-level field nested deeper than MAX_DEPTH (None if none is)."""
    for key, value in data.items():
        if isinstance(value, dict | list) and too_deep(value, MAX_DEPTH - 1):
            return str(key)
    return None


def decode_chat_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body; anything else is OpenAI's invalid-JSON 400, and
    JSON nested deeper than MAX_DEPTH a 400 naming the top-level field that holds it."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise _nested_too_deeply(_deep_field(body)) from None
    except (ValueError, TypeError, UnicodeError):
        raise InvalidRequest(INVALID_JSON) from None
    if not isinstance(data, dict):
        raise InvalidRequest(INVALID_JSON)
    if too_deep(data):
        raise _nested_too_deeply(_deep_param(data))
    # A lone surrogate escape decodes to a str that cannot be encoded back to UTF-8.
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeError:
            raise InvalidRequest(INVALID_JSON) from None
    return data


# --------------------------------------------------------------------------------------------
# Error translation
# --------------------------------------------------------------------------------------------


def translate_error(exc: ValidationError) -> InvalidRequest:
    """A validation failure as OpenAI words it (its first error)."""
    try:
        return _translate(exc.errors(include_url=False)[0])
    except Exception:  # a translation bug must still read as a 400, not escape as a 500
        return InvalidRequest(f"Invalid request: {exc.errors()[0].get('msg', 'invalid value')}.")


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(TAG):
            continue
        else:
            out += f".{part}" if out else part
    return out


def _pattern(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    return tuple(
        "*" if isinstance(p, int) else p for p in loc if isinstance(p, int) or not p.startswith(TAG)
    )


# What OpenAI says it expected, where the generic word is not what it says (top-level fields
# of the chat request, whichever contract checks them).
_EXPECTED_OVERRIDES: dict[tuple[str, ...], str] = {
    ("functions",): "an array of function definitions",
    ("metadata",): "a metadata object",
    ("modalities",): "an array of strings",
}
_EXPECTED_BY_ERROR = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a decimal",
    "bool_type": "a boolean",
    "list_type": "an array of objects",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "an unsupported value"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _quoted_list(values: list[str], conjunction: str, oxford: bool = True) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 1:
        return "".join(quoted)
    if len(quoted) == 2:
        return f"{quoted[0]} {conjunction} {quoted[1]}"
    comma = "," if oxford else ""
    return f"{', '.join(quoted[:-1])}{comma} {conjunction} {quoted[-1]}"


def _literal_values(ctx: dict[str, Any]) -> list[str]:
    return re.findall(r"'((?:[^'\\]|\\.)*)'", str(ctx.get("expected", "")))


# pydantic's error type -> (its context key, above the maximum?, the comparison OpenAI names)
_BOUNDS = {
    "greater_than_equal": ("ge", False, ">="),
    "less_than_equal": ("le", True, "<="),
    "greater_than": ("gt", False, ">"),  # an open lower bound (repetition_penalty > 0)
}


def _bound_error(etype: str, param: str | None, ctx: Any, value: Any) -> InvalidRequest:
    key, above, op = _BOUNDS[etype]
    bound = ctx[key]
    kind = "decimal" if isinstance(bound, float) else "integer"
    side = "above maximum" if above else "below minimum"
    return InvalidRequest(
        f"Invalid '{param}': {kind} {side} value. Expected a value "
        f"{op} {_number(bound)}, but got {_number(value)} instead.",
        param=param,
        code=f"{kind}_{'above_max' if above else 'below_min'}_value",
    )


def _translate(error: Any) -> InvalidRequest:
    """One pydantic error, in OpenAI's words."""
    etype: str = error["type"]
    loc: tuple[int | str, ...] = tuple(error["loc"])
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    param = _param(loc)

    if etype == _OPENAI_ERROR:
        target = ctx["oa_param"] if "oa_param" in ctx else param + ctx.get("oa_suffix", "")
        message = str(ctx["oa_message"]).replace("{param}", str(target))
        return InvalidRequest(message, param=target, code=ctx.get("oa_code"))
    if etype == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if etype == "extra_forbidden":
        return InvalidRequest(
            f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
        )
    if etype == "literal_error":
        values = _literal_values(ctx)
        if isinstance(value, str):
            return InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: {_quoted_list(values, 'and')}.",
                param=param,
                code="invalid_value",
            )
        expected = f"one of {_quoted_list(values, 'or')}"
        return _invalid_type(param, expected, value)
    if etype == "invalid_type":  # a union's discriminator: the message names what was expected
        return _invalid_type(param, str(error["msg"]), value)
    if etype == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return InvalidRequest(
            f"Invalid '{param}': decimal above maximum value. The number is too large.",
            param=param,
            code="decimal_above_max_value",
        )
    if etype in _EXPECTED_BY_ERROR:
        expected = _EXPECTED_OVERRIDES.get(_pattern(loc), _EXPECTED_BY_ERROR[etype])
        return _invalid_type(param, expected, value)
    if etype in _BOUNDS:
        return _bound_error(etype, param, ctx, value)
    if etype in ("too_short", "too_long"):
        return _length_error(etype, param, ctx, value)
    if etype == "string_too_short":
        minimum = ctx.get("min_length", 1)
        if not value:
            return InvalidRequest(
                f"Invalid '{param}': empty string. Expected a string with minimum length "
                f"{minimum}, but got an empty string instead.",
                param=param,
                code="empty_string",
            )
        return InvalidRequest(
            f"Invalid '{param}': string too short. Expected a string with minimum length "
            f"{minimum}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_below_min_length",
        )
    if etype == "string_too_long":
        return InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{ctx.get('max_length')}, but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    if etype == "string_pattern_mismatch":
        return InvalidRequest(
            f"Invalid '{param}': string does not match pattern. Expected a string that "
            f"matches the pattern '{ctx.get('pattern')}'.",
            param=param,
            code="invalid_value",
        )
    return InvalidRequest(
        f"Invalid value for '{param}': {error.get('msg', 'invalid value')}.",
        param=param or None,
        code="invalid_value",
    )


def _invalid_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_kind_of(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _length_error(etype: str, param: str, ctx: dict[str, Any], value: Any) -> InvalidRequest:
    length = len(value) if hasattr(value, "__len__") else ctx.get("actual_length")
    if isinstance(value, dict):
        limit = ctx.get("max_length")
        return InvalidRequest(
            f"Invalid '{param}': too many properties. Expected an object with at most {limit} "
            f"properties, but got an object with {length} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    if etype == "too_short":
        minimum = ctx.get("min_length")
        if not length:
            return InvalidRequest(
                f"Invalid '{param}': empty array. Expected an array with minimum length "
                f"{minimum}, but got an empty array instead.",
                param=param,
                code="empty_array",
            )
        return InvalidRequest(
            f"Invalid '{param}': array too short. Expected an array with minimum length "
            f"{minimum}, but got an array with length {length} instead.",
            param=param,
            code="array_below_min_length",
        )
    return InvalidRequest(
        f"Invalid '{param}': array too long. Expected an array with maximum length "
        f"{ctx.get('max_length')}, but got an array with length {length} instead.",
        param=param,
        code="array_above_max_length",
    )

"""The building blocks of OpenAI's request objects, shared by every contract module.

OpenAI reports faults in its own terms, and pydantic's defaults would not: a coerced ``"1"``,
an unknown key silently kept, a union whose every branch complains. These blocks make the models
fail the way OpenAI does, so that ``protocol/validation.py`` can word the first failure:

- :class:`Strict`: no coercion (a bool is not a number, ``1.0`` is not an integer), no unknown
  keys, no mutation;
- :func:`discriminator` and :func:`tag`: unions dispatched on the JSON type of the value and,
  for objects, on a field (``type``, ``role``); branch tags start with ``validation.TAG`` so
  that they never show in a ``param``, and a value of no branch is an ``invalid_type`` naming
  what was expected;
- :func:`bad_tag_model`: the branch (tagged :data:`BAD`) taken when the discriminating field is
  missing or unknown, which can only fail, with OpenAI's list of supported values;
- the name, integer and metadata shapes OpenAI uses in several places.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from chatd.protocol.validation import TAG, openai_error

__all__ = [
    "ANY_OBJECT",
    "BAD",
    "INT64_MAX",
    "INT64_MIN",
    "ITEM_ID_MAX",
    "METADATA_MAX_KEY",
    "METADATA_MAX_PAIRS",
    "METADATA_MAX_VALUE",
    "STRING_OR_PARTS",
    "CallId",
    "FunctionName",
    "ItemId",
    "JSONObject",
    "MetadataValue",
    "ParticipantName",
    "ResponseId",
    "Strict",
    "bad_tag_model",
    "check_metadata_keys",
    "discriminator",
    "tag",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# OpenAI's pattern for function, schema and participant names.
NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"
FunctionName = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]
ParticipantName = Annotated[str, Field(pattern=NAME_PATTERN)]
JSONObject = dict[str, Any]

# Ids a client sends back, capped so that none can overflow the column it is stored or
# looked up in (store/tables.py): a response's id and the previous_response_id that
# names one are 64 characters (chatd's are 53, OpenAI's alike), an item's id 256 (the
# item_id column: items of other servers keep their own ids; OpenAI's are ~50), a call's
# id 64 (OpenAI's cap on function_call_output.call_id; chatd's are 29).
RESPONSE_ID_MAX = 64
ITEM_ID_MAX = 256
ResponseId = Annotated[str, Field(max_length=RESPONSE_ID_MAX)]
ItemId = Annotated[str, Field(max_length=ITEM_ID_MAX)]
CallId = Annotated[str, Field(max_length=64)]

# What a union's discriminator says it expected, in OpenAI's words.
ANY_OBJECT = "an object"
STRING_OR_PARTS = "one of a string or array of objects"


class Strict(BaseModel):
    """Base of every request object: no coercion, no unknown keys, no mutation."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Union dispatch
# --------------------------------------------------------------------------------------------


def tag(name: str) -> Tag:
    """The tag of a union branch: internal, dropped from error locations."""
    return Tag(TAG + name)


BAD = "?"  # tag of the branch that explains a missing or unknown discriminator value


def _dispatch(
    *,
    field: str | None = None,
    values: Iterable[str] = (),
    string: bool = False,
    array: bool = False,
    obj: bool = False,
) -> Callable[[Any], str | None]:
    """Pick a union branch from the JSON type of the value and, for objects, from ``field``.

    Returning ``None`` makes pydantic raise the discriminator's custom ``invalid_type`` error.
    Model instances (seen when serializing) are dispatched on their own ``field``.
    """
    known = frozenset(values)

    def pick(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            return TAG + (getattr(value, field) if field else "obj")
        if isinstance(value, str):
            return TAG + "str" if string else None
        if isinstance(value, list):
            return TAG + "list" if array else None
        if isinstance(value, dict):
            if field is None:
                return TAG + "obj" if obj else None
            found = value.get(field)
            if isinstance(found, str) and found in known:
                return TAG + found
            return TAG + BAD
        return None

    return pick


def discriminator(
    expected: str,
    *,
    field: str | None = None,
    values: Iterable[str] = (),
    string: bool = False,
    array: bool = False,
    obj: bool = False,
) -> Discriminator:
    """A union's discriminator (see ``_dispatch``); ``expected`` names what a misfit lacks."""
    return Discriminator(
        _dispatch(field=field, values=values, string=string, array=array, obj=obj),
        custom_error_type="invalid_type",
        custom_error_message=expected,
    )


def bad_tag_model(name: str, field: str, supported: tuple[str, ...]) -> type[BaseModel]:
    """The branch taken when ``field`` is missing or unknown: it can only fail, and says why.

    ``supported`` is listed in the order OpenAI lists it in its ``invalid_value`` message.
    """
    namespace = {
        "__annotations__": {field: Literal[supported]},  # type: ignore[valid-type]
        "model_config": ConfigDict(strict=True, extra="allow", frozen=True),
        "__doc__": f"Never valid: explains a missing or unknown '{field}'.",
    }
    return type(name, (BaseModel,), namespace)


# --------------------------------------------------------------------------------------------
# Metadata, as both the full contract and a relayed request check it
# --------------------------------------------------------------------------------------------

# OpenAI's bounds on a metadata object: 16 pairs, keys of 64 characters, values of 512
# (also the stored tags' columns, store/tables.py).
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512
MetadataValue = Annotated[str, Field(max_length=METADATA_MAX_VALUE)]


def check_metadata_keys(value: dict[str, str] | None) -> dict[str, str] | None:
    """Metadata keys are at most 64 characters (values are checked by ``MetadataValue``)."""
    for key in value or ():
        if len(key) > METADATA_MAX_KEY:
            shown = f"{key[:3]}...{key[-3:]}"
            raise openai_error(
                f"Invalid property name in 'metadata': '{shown}' is too long. Expected a "
                f"string with maximum length {METADATA_MAX_KEY}, but got a string with length "
                f"{len(key)} instead.",
                code="property_name_above_max_length",
                suffix=f".{key}",
            )
    return value

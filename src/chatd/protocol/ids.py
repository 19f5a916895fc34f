"""The random ids OpenAI's objects carry (``chatcmpl-...``, ``call_...``): letters and
digits from the system's CSPRNG, one read per id. The Responses API's ids (``resp_``,
``msg_``, ``fc_``) are 48 lowercase hex digits in OpenAI's examples, so they are too."""

from __future__ import annotations

import secrets
import string

__all__ = [
    "custom_tool_call_item_id",
    "call_id",
    "completion_id",
    "function_call_item_id",
    "function_call_output_item_id",
    "message_item_id",
    "other_item_id",
    "response_id",
    "anthropic_message_id",
    "text_completion_id",
    "tool_use_id",
]

_ALPHABET = string.ascii_letters + string.digits


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def completion_id() -> str:
    return _random_id("chatcmpl-", 29)


def text_completion_id() -> str:
    """A legacy Completions API answer's id (``cmpl-``, as the live API's)."""
    return _random_id("cmpl-", 29)


def call_id() -> str:
    return _random_id("call_", 24)


def _hex_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def response_id() -> str:
    return _hex_id("resp_")


def message_item_id() -> str:
    return _hex_id("msg_")


def function_call_item_id() -> str:
    return _hex_id("fc_")


def custom_tool_call_item_id() -> str:
    return _hex_id("ctc_")


def function_call_output_item_id() -> str:
    """A ``function_call_output`` input item's id, given when the client sent none (OpenAI
    shows one on every listed input item); the prefix is chatd's choice."""
    return _hex_id("fco_")


def other_item_id() -> str:
    """The id of an input item of a type chatd does not act on (kept for a channel that
    may), given when the client sent none: stored and listed items all have one."""
    return _hex_id("item_")


def anthropic_message_id() -> str:
    """A Messages API message's id: ``msg_`` and 24 letters and digits, as Anthropic's
    (``msg_013Zva2CMHLNnXjNJJKqJ2EF``)."""
    return _random_id("msg_", 24)


def tool_use_id() -> str:
    """A ``tool_use`` block's id, shaped as Anthropic's (``toolu_01A09q90qw90lq917835``)."""
    return _random_id("toolu_", 24)

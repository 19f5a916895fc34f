"""The random ids OpenAI's objects carry (``chatcmpl-...``, ``call_...``): letters and
digits from the system's CSPRNG, one read per id."""

from __future__ import annotations

import secrets
import string

__all__ = ["call_id", "completion_id"]

_ALPHABET = string.ascii_letters + string.digits


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def completion_id() -> str:
    return _random_id("chatcmpl-", 29)


def call_id() -> str:
    return _random_id("call_", 24)

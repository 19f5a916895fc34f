"""What one channel is sent of a relayed request: its allow-list of fields and the values
of the operator's it writes in the client's place (docs/gateway.md "Relay hygiene").

A channel's settings (``chatd.toml``):

- ``chat_fields`` / ``responses_fields`` / ``messages_fields`` / ``completions_fields``
  (the legacy Completions API): the fields sent to it in each API (the entry
  ``"default"`` stands for ``protocol/relay_fields.py``'s defaults: the API's fields
  without the mapped and costly ones). What the relay needs is always sent.
  ``messages_fields`` applies to Messages requests to an ``api = "anthropic"`` channel;
  a chat or Responses request to one is filtered by ``chat_fields`` first, then
  translated (protocol/chat_as_messages.py).
- ``store``: absent, Chat Completions requests carry no ``store`` (the API's default,
  false) and Responses requests ``store: false`` (chatd keeps the state; the API's
  default would store). true or false: sent as is, on every request.
- ``metadata``: absent, none is sent; a table of strings: sent on every request.
- ``user`` / ``safety_identifier``: absent, none is sent; a string: sent on every
  request, ``{owner}`` in it replaced by a digest of the caller's key owner (the same
  caller always gets the same value on one channel, and the owner id itself never
  leaves chatd).

- ``max_tokens`` (``api = "anthropic"`` channels): the answer's limit sent when a chat or
  Responses request names none (Anthropic requires one; absent: 4096).
- ``anthropic_betas``: the ``anthropic-beta`` values of a Messages request passed on to
  the channel (absent: all the client sent; a list: only those, since a beta may change
  what the operator pays, e.g. a longer context).

A client's ``prompt_cache_key`` is sent as a digest of the caller's key owner and the key
(``cache_key_tag``): the upstream's cache routing stays within one caller's requests, so
no caller can aim its requests at the cache another's key routes to (the prompt-caching
side channel, docs/acceptance.md), and the same caller's key keeps its meaning.

The client's own ``store``, ``metadata``, ``user`` and ``safety_identifier`` are never
sent: chatd stores (``store``) and filters (``metadata``) for the client itself. An
Anthropic channel has no ``store`` and a ``metadata`` of ``user_id`` alone: it is sent the
channel's ``user`` (else ``safety_identifier``) as ``metadata.user_id``, the operator's
``metadata`` table is not sent to it, and ``store`` means nothing there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatd.protocol.chat_as_messages import DEFAULT_MAX_TOKENS
from chatd.protocol.relay_fields import (
    CHAT_ALWAYS,
    CHAT_DEFAULT,
    COMPLETIONS_ALWAYS,
    COMPLETIONS_DEFAULT,
    MAPPED,
    MESSAGES_ALWAYS,
    MESSAGES_DEFAULT,
    NEVER_RELAYED,
    RESPONSES_ALWAYS,
    RESPONSES_DEFAULT,
)

__all__ = ["OWNER", "POLICY_KEYS", "RelayPolicy", "cache_key_tag", "owner_tag", "relay_policy"]

POLICY_KEYS = frozenset(
    {
        "chat_fields", "responses_fields", "messages_fields", "store", "metadata", "user",
        "safety_identifier", "max_tokens", "anthropic_betas", "completions_fields",
    }
)  # fmt: skip
OWNER = "{owner}"
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Longest value sent (OpenAI's limit for safety_identifier is 64 characters).
_MAX_ID = {"user": 256, "safety_identifier": 64}
_BETA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def owner_tag(owner: str, salt: str) -> str:
    """A caller's stable pseudonym on one channel: 32 hex digits of a digest of its key
    owner and the channel, so channels cannot tell that their users are the same."""
    return hashlib.sha256(f"chatd-owner\0{salt}\0{owner}".encode()).hexdigest()[:32]


def cache_key_tag(owner: str, salt: str, key: str) -> str:
    """The ``prompt_cache_key`` a channel is sent: the client's key within its owner's
    own space (two callers' equal keys differ upstream; one caller's stay equal)."""
    return hashlib.sha256(f"chatd-cache\0{salt}\0{owner}\0{key}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RelayPolicy:
    chat_fields: frozenset[str] = CHAT_DEFAULT
    responses_fields: frozenset[str] = RESPONSES_DEFAULT
    store: bool | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)
    user: str | None = None
    safety_identifier: str | None = None
    messages_fields: frozenset[str] = MESSAGES_DEFAULT
    max_tokens: int = DEFAULT_MAX_TOKENS
    anthropic_betas: frozenset[str] | None = None  # None: the client's, all passed on
    completions_fields: frozenset[str] = COMPLETIONS_DEFAULT  # the legacy Completions API

    def chat_body(self, body: Mapping[str, Any], owner: str, salt: str) -> dict[str, Any]:
        """The Chat Completions body a channel is sent (``model`` still the client's)."""
        allowed = self.chat_fields
        out = {k: v for k, v in body.items() if k in CHAT_ALWAYS or k in allowed}
        if self.store is not None:
            out["store"] = self.store
        self._identity(out, owner, salt)
        return out

    def completions_body(self, body: Mapping[str, Any], owner: str, salt: str) -> dict[str, Any]:
        """The legacy Completions body a channel is sent (``model`` still the client's)."""
        allowed = self.completions_fields
        out = {k: v for k, v in body.items() if k in COMPLETIONS_ALWAYS or k in allowed}
        self._identity(out, owner, salt)
        return out

    def responses_body(self, body: Mapping[str, Any], owner: str, salt: str) -> dict[str, Any]:
        """The Responses body a channel is sent: never stored upstream unless the channel
        says so (the API's default would store it)."""
        allowed = self.responses_fields
        out = {k: v for k, v in body.items() if k in RESPONSES_ALWAYS or k in allowed}
        out["store"] = bool(self.store)
        self._identity(out, owner, salt)
        return out

    def messages_body(self, body: Mapping[str, Any], owner: str, salt: str) -> dict[str, Any]:
        """The Messages body an Anthropic channel is sent of a Messages request: the
        allowed fields, and the channel's pseudonym of the caller as ``metadata.user_id``
        (never the client's)."""
        allowed = self.messages_fields
        out = {k: v for k, v in body.items() if k in MESSAGES_ALWAYS or k in allowed}
        metadata = self.anthropic_metadata(owner, salt)
        if metadata is not None:
            out["metadata"] = metadata
        return out

    def anthropic_metadata(self, owner: str, salt: str) -> dict[str, str] | None:
        """What an Anthropic channel is told of the caller: Anthropic's metadata holds only
        ``user_id`` (an opaque id of the end user, for its abuse detection), the twin of
        OpenAI's ``user`` and ``safety_identifier``: the channel's ``user`` setting, else
        its ``safety_identifier``, ``{owner}`` made the caller's pseudonym."""
        for name in ("user", "safety_identifier"):
            template = getattr(self, name)
            if template is not None:
                return {"user_id": _filled(template, owner, salt)}
        return None

    def betas(self, asked: list[str]) -> list[str]:
        """The client's ``anthropic-beta`` values the channel is passed."""
        if self.anthropic_betas is None:
            return list(asked)
        return [b for b in asked if b in self.anthropic_betas]

    def _identity(self, out: dict[str, Any], owner: str, salt: str) -> None:
        key = out.get("prompt_cache_key")
        if isinstance(key, str):
            out["prompt_cache_key"] = cache_key_tag(owner, salt, key)
        if self.metadata is not None:
            out["metadata"] = dict(self.metadata)
        for name in ("user", "safety_identifier"):
            template = getattr(self, name)
            if template is not None:
                out[name] = _filled(template, owner, salt)


def _filled(template: str, owner: str, salt: str) -> str:
    return template.replace(OWNER, owner_tag(owner, salt)) if OWNER in template else template


def relay_policy(table: Mapping[str, Any]) -> RelayPolicy:
    """A channel's policy from its ``chatd.toml`` table; ``ValueError`` naming the key
    (``"user: ..."``) for a setting that is wrong."""
    kw: dict[str, Any] = {}
    for key, default in (
        ("chat_fields", CHAT_DEFAULT),
        ("responses_fields", RESPONSES_DEFAULT),
        ("messages_fields", MESSAGES_DEFAULT),
        ("completions_fields", COMPLETIONS_DEFAULT),
    ):
        if key in table:
            kw[key] = _fields(key, table[key], default)
    if "max_tokens" in table:
        value = table["max_tokens"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError("max_tokens: a positive integer is required")
        kw["max_tokens"] = value
    if "anthropic_betas" in table:
        betas = table["anthropic_betas"]
        if not isinstance(betas, list) or not all(
            isinstance(b, str) and _BETA.match(b) for b in betas
        ):
            raise ValueError("anthropic_betas: a list of beta names is required")
        kw["anthropic_betas"] = frozenset(betas)
    if "store" in table:
        if not isinstance(table["store"], bool):
            raise ValueError("store: true or false is required (absent: not stored upstream)")
        kw["store"] = table["store"]
    if "metadata" in table:
        kw["metadata"] = _metadata(table["metadata"])
    for key, longest in _MAX_ID.items():
        if key in table:
            kw[key] = _identity_template(key, table[key], longest)
    return RelayPolicy(**kw)


def _fields(key: str, value: Any, default: frozenset[str]) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'{key}: a list of field names is required ("default": the defaults)')
    names: set[str] = set()
    for name in value:
        if name == "default":
            names |= default
        elif not _FIELD.match(name):
            raise ValueError(f"{key}: {name!r} is not a field name")
        elif name in NEVER_RELAYED:
            raise ValueError(
                f"{key}: {name!r} is never relayed (it picks a model or provider at a"
                " router, under the operator's key)"
            )
        elif name in MAPPED:
            raise ValueError(
                f"{key}: {name!r} is the channel's own setting (`{name} = ...`), never the"
                " client's value"
            )
        else:
            names.add(name)
    return frozenset(names)


def _metadata(value: Any) -> dict[str, str]:
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in value.items())
    ):
        raise ValueError(
            "metadata: a table of at most 16 strings is required (keys up to 64"
            " characters, values up to 512)"
        )
    return dict(value)


def _identity_template(key: str, value: Any, longest: int) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: a string is required ({OWNER} in it: the caller's pseudonym)")
    if re.search(r"[{}]", value.replace(OWNER, "")):
        raise ValueError(f"{key}: only {OWNER} may be in braces")
    length = len(value.replace(OWNER, "x" * 32))
    if length > longest:
        raise ValueError(f"{key}: at most {longest} characters ({OWNER} counts 32)")
    return value

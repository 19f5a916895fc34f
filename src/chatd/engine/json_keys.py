"""Unique keys in constrained JSON. llguidance enforces each declared property once, but
keys admitted by ``additionalProperties`` / ``patternProperties`` (and so every key of a
bare ``{"type": "object"}``, as JSON mode asks) may repeat: a small model then writes
``"description"`` again and again until ``max_tokens``, and a strict parser rejects the
answer. No context-free grammar can forbid repeating unbounded keys, so two measures:

- ``closed_for_grammar``: an object that declares properties but leaves
  ``additionalProperties`` open is closed, for the grammar only (the user's schema is
  untouched): the output is still valid against it, and its keys are the declared ones,
  each at most once.
- ``KeyGuard``: for the objects that stay open, the mask loses, at each step inside a key,
  the tokens that would complete a key the object already has (however it is spelled:
  ``"a"`` and ``"\\u0061"`` are the same key). Only a token with a ``"`` in it can
  complete a key: 163 of the 49152 of SmolLM2's vocabulary, so the check is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["GRAMMAR_OPTIONS", "KeyGuard", "closed_for_grammar"]

# Options for llguidance's JSON compiler that win over a schema's own "x-guidance": the
# standard separators (KeyGuard reads them, and a strict parser needs them). Not
# json_allowed_escapes without "u" (one spelling per key): llguidance 1.9.1 then silently
# drops from a const the characters it cannot spell ({"const": "0\x1f"} yields "0").
GRAMMAR_OPTIONS: dict[str, Any] = {"item_separator": ",", "key_separator": ":"}

_COMBINATORS = ("allOf", "oneOf", "anyOf", "$ref", "not", "if", "dependentSchemas")


def closed_for_grammar(schema: Any) -> Any:
    """``schema`` with every object that declares properties, leaves
    ``additionalProperties`` open (absent or true) and is not combined with other
    schemas closed (``additionalProperties: false``). Schemas with ``allOf`` anywhere are
    returned as they are: closing a branch of an intersection would empty it."""
    if '"allOf"' in json.dumps(schema):  # conservative: a description may say it too
        return schema
    return _closed(schema)


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
            "propertyNames", "unevaluatedProperties", "unevaluatedItems")  # fmt: skip


def _closed(node: Any) -> Any:
    if not isinstance(node, dict):
        return node  # true / false
    out = dict(node)
    for k in _SCHEMA_MAPS:
        if isinstance(node.get(k), dict):
            out[k] = {name: _closed(sub) for name, sub in node[k].items()}
    for k in _SCHEMA_LISTS:
        if isinstance(node.get(k), list):
            out[k] = [_closed(sub) for sub in node[k]]
    for k in _SCHEMAS:
        if k in node:
            out[k] = _closed(node[k])
    props = node.get("properties")
    if (
        isinstance(props, dict)
        and props
        and node.get("additionalProperties", True) is True
        and "patternProperties" not in node
        and not any(k in node for k in _COMBINATORS)
        and set(node.get("required", [])) <= set(props)
    ):
        out["additionalProperties"] = False
    return out


# An object's keys so far and whether a key comes next; None: an array. Immutable, so a
# scan copies cheaply (a list of references) to try a token out.
_Frame = tuple[frozenset[str], bool] | None


class _Scan:
    """Where in the JSON text the output is: the open containers, and the string being
    written (``key``: its raw text, when it is a key)."""

    __slots__ = ("escaped", "in_string", "key", "stack")

    def __init__(self) -> None:
        self.stack: list[_Frame] = []
        self.in_string = False
        self.escaped = False
        self.key: bytearray | None = None

    def copy(self) -> _Scan:
        c = _Scan()
        c.stack = list(self.stack)
        c.in_string, c.escaped = self.in_string, self.escaped
        c.key = None if self.key is None else bytearray(self.key)
        return c

    def feed(self, data: bytes) -> bool:
        """Advance over ``data``; whether it completed a key its object already had."""
        repeated = False
        for b in data:
            if self.in_string:
                repeated |= self._string_byte(b)
                continue
            top = self.stack[-1] if self.stack else None
            if b == 0x22:  # "
                self.in_string = True
                if top is not None and top[1]:
                    self.stack[-1] = (top[0], False)
                    self.key = bytearray()
            elif b == 0x7B:  # {
                self.stack.append((frozenset(), True))
            elif b == 0x5B:  # [
                self.stack.append(None)
            elif b in (0x7D, 0x5D) and self.stack:  # } ]
                self.stack.pop()
            elif b == 0x2C and top is not None:  # ,
                self.stack[-1] = (top[0], True)
        return repeated

    def _string_byte(self, b: int) -> bool:
        if self.escaped:
            self.escaped = False
        elif b == 0x5C:  # backslash
            self.escaped = True
        elif b == 0x22:
            self.in_string = False
            if self.key is None:
                return False
            raw, self.key = bytes(self.key), None
            try:
                key = json.loads(b'"' + raw + b'"')
            except ValueError:  # not a JSON string: the grammar does not allow it
                return False
            top = self.stack[-1]
            assert top is not None
            self.stack[-1] = (top[0] | {key}, top[1])
            return key in top[0]
        if self.key is not None:
            self.key.append(b)
        return False


class KeyGuard:
    """Follows the JSON an output writes and forbids completing a key twice in an object.

    ``quoted``: the tokens with a ``"`` in them. ``json_after``: the text before which
    nothing is JSON (a tool-call grammar's free text is not); the guard follows the output
    only once it begins with it.
    """

    def __init__(
        self, token_bytes: Sequence[bytes], quoted: np.ndarray, json_after: str = ""
    ) -> None:
        self._token_bytes = token_bytes
        self._quoted = quoted
        self._gate: bytes | None = json_after.encode()  # None: the output is free text
        self._seen = b""  # the output so far, while it may still begin with the gate
        self._scan = _Scan()

    def consume(self, token: int) -> None:
        data = self._token_bytes[token]
        if self._gate:
            self._seen += data
            n = len(self._gate)
            if self._seen[:n] != self._gate[: len(self._seen)]:
                self._gate = None
            if len(self._seen) < n or self._gate is None:
                return
            data, self._gate, self._seen = self._seen[n:], b"", b""
        if self._gate is not None:
            self._scan.feed(data)

    def restrict(self, allowed: np.ndarray) -> None:
        """Remove from ``allowed`` the tokens that would complete a key already in its
        object (a token may open and close a key: ``""``, ``","``), unless nothing would
        be left (the grammar, say a pattern on property names, admits no other key: it
        wins)."""
        if self._gate != b"":
            return  # not in JSON (yet)
        scan = self._scan
        banned = [
            t for t in self._quoted[allowed[self._quoted]] if scan.copy().feed(self._token_bytes[t])
        ]
        if not banned:
            return
        allowed[banned] = False
        if not allowed.any():
            allowed[banned] = True

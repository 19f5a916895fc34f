"""Bearer API keys. Keys are kept only as SHA-256 digests and compared in constant time.

The check returns the caller's owner id, which scopes stored completions: a key's
digest prefix (never the key), or "anonymous" on an open server."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from chatd.protocol.errors import AuthenticationError


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyChecker:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [digest(k) for k in keys if k]

    @staticmethod
    def owner_of(d: bytes) -> str:
        return "key_" + d.hex()[:24]

    @property
    def open(self) -> bool:
        return not self._digests

    def __call__(self, request: Request) -> str:
        if self.open:
            return "anonymous"
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationError(
                "You didn't provide an API key. You need to provide your API key in an"
                " Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        d = digest(key)
        if not any(hmac.compare_digest(d, known) for known in self._digests):
            raise AuthenticationError(
                f"Incorrect API key provided: {_redact(key)}.", code="invalid_api_key"
            )
        return self.owner_of(d)


def _redact(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * 8}{key[-4:]}"

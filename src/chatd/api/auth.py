"""Bearer API keys. Keys are kept only as SHA-256 digests and compared in constant time."""

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

    @property
    def open(self) -> bool:
        return not self._digests

    def __call__(self, request: Request) -> None:
        if self.open:
            return
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


def _redact(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * 8}{key[-4:]}"

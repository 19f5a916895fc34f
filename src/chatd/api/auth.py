"""Bearer API keys: static ones from the command line (kept as SHA-256 digests, compared
in constant time) and the database's keys (``chatd keys``), which can be limited to some
models, expire, or be revoked.

The check returns the ``Caller``: its owner id scopes stored completions and usage (a
database key's id, a static key's digest prefix, never the key), and the models it may
use. A server with no key at all is open: every caller is "anonymous"."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import Request

from chatd import request_log
from chatd.protocol.errors import AuthenticationError
from chatd.store.keys import KeyStore, key_digest


@dataclass(frozen=True)
class Caller:
    owner: str
    models: frozenset[str] | None = None  # None: every model
    operator: bool = False  # a static --api-key, or anyone on an open server
    rpm: int | None = None  # rate limits (None: unlimited)
    tpm: int | None = None
    # per public model id: (rpm, tpm), on top of the key-wide ones
    model_limits: Mapping[str, tuple[int | None, int | None]] = field(
        default_factory=dict, hash=False
    )
    # the key's own in-flight limit and storage quota (None: the server's; 0: none)
    max_in_flight: int | None = None
    max_stored_bytes: int | None = None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def limits_for(self, model: str) -> tuple[int | None, int | None]:
        """This model's (rpm, tpm); (None, None) when the key does not limit it."""
        return self.model_limits.get(model, (None, None))


_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization"
    " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


class KeyChecker:
    def __init__(self, keys: list[str], store: KeyStore | None = None) -> None:
        self._digests = [key_digest(k) for k in keys if k]
        self._store = store
        self._db_keys_seen_at = 0.0
        self._db_has_keys = False

    async def _open(self, fresh: bool = False) -> bool:
        """Open only while no key exists anywhere (database keys checked every 2 s, or
        now when ``fresh``: a key presented and not found may be one just created)."""
        if self._digests:
            return False
        if self._store is None:
            return True
        now = time.monotonic()
        if not self._db_has_keys and (fresh or now - self._db_keys_seen_at > 2.0):
            self._db_has_keys = await self._store.any()
            self._db_keys_seen_at = now
        return not self._db_has_keys

    async def __call__(self, request: Request) -> Caller:
        caller = await self._check(request)
        record = request_log.current()
        if record is not None:  # the request's log line names the owner, never the key
            record.owner = caller.owner
        return caller

    async def _check(self, request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            if await self._open():
                return Caller("anonymous", operator=True)
            raise AuthenticationError(_MISSING)
        d = key_digest(key)
        if any(hmac.compare_digest(d, known) for known in self._digests):
            return Caller("key_" + d[:24], operator=True)
        record = await self._store.find(key) if self._store is not None else None
        if record is None:
            if await self._open(fresh=True):
                return Caller("anonymous", operator=True)
            raise AuthenticationError(
                f"Incorrect API key provided: {_redact(key)}.", code="invalid_api_key"
            )
        state = record.state()
        if state != "active":
            raise AuthenticationError(
                f"The API key {record.id} has been {state}.", code="invalid_api_key"
            )
        models = frozenset(record.models) if record.models else None
        limits = record.model_limits or {}
        per_model = {m: (v.get("rpm"), v.get("tpm")) for m, v in limits.items()}
        return Caller(
            record.id,
            models,
            rpm=record.rpm,
            tpm=record.tpm,
            model_limits=per_model,
            max_in_flight=record.max_in_flight,
            max_stored_bytes=record.max_stored_bytes,
        )


def _redact(key: str) -> str:
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * 8}{key[-4:]}"

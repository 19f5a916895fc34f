"""API keys (``Authorization: Bearer``, or Anthropic's ``x-api-key``): static ones from
the command line (kept as SHA-256 digests, compared in constant time) and the database's
keys (``chatd keys``), which can be limited to some
models, expire, or be revoked.

The check returns the ``Caller``: its owner id scopes stored completions and usage (a
database key's id; for a static key, an HMAC of its digest keyed by the database's
secret, store/owners.py; never the key), and the models it may use. A server with no key
at all is open: every caller is "anonymous"."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fastapi import Request

from chatd import request_log
from chatd.protocol.errors import AuthenticationError
from chatd.store.keys import KeyStore, key_digest
from chatd.store.owners import legacy_owner_id, move_owner, owner_secret, static_owner_id

log = logging.getLogger("chatd.api")


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

    def limits_for(
        self, model: str, canonical: Callable[[str], str] = str
    ) -> tuple[int | None, int | None]:
        """The (rpm, tpm) of the model ``model`` stands for ((None, None) when the key
        does not limit it): a limit given under any public id of the same model (an
        alias, ``canonical`` says which) applies, the strictest when there are several."""
        target = canonical(model)
        rpm: int | None = None
        tpm: int | None = None
        for limited, (r, t) in self.model_limits.items():
            if canonical(limited) == target:
                rpm = r if rpm is None else rpm if r is None else min(rpm, r)
                tpm = t if tpm is None else tpm if t is None else min(tpm, t)
        return rpm, tpm


# Everyone on an open server (no key at all): one caller, the operator, and not held to
# the per-key limit on requests in flight (service/in_flight.py): there are no keys to
# share the server between, and queueing is the engine's (docs/limits.md).
_OPEN = Caller("anonymous", operator=True, max_in_flight=0)

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization"
    " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an x-api-key"
    " header."
)


def presented_key(request: Request) -> str:
    """The key the request presents: ``Authorization: Bearer`` (OpenAI's SDKs), else
    ``x-api-key`` (Anthropic's SDKs and Claude Code), on every route; "" for none."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    return request.headers.get("x-api-key", "").strip()


class KeyChecker:
    def __init__(
        self, keys: list[str], store: KeyStore | None = None, secret: bytes | None = None
    ) -> None:
        """``secret``: the owner-id secret, when known now; else ``start`` reads it from
        the store's database."""
        self._digests = [key_digest(k) for k in keys if k]
        self._owners = [static_owner_id(secret, d) for d in self._digests] if secret else []
        self._store = store
        self._db_keys_seen_at = 0.0
        self._db_has_keys = False

    async def start(self) -> None:
        """At start, after the migrations: the static keys' owner ids, from the database's
        secret (made now on a new database), and their records moved from the owner ids
        of before the secret (store/owners.py)."""
        if self._owners or not self._digests or self._store is None:
            return
        db = self._store.db
        secret, made = await owner_secret(db)
        if made:
            log.info("made the database's owner-id secret (owner ids of static API keys)")
        self._owners = [static_owner_id(secret, d) for d in self._digests]
        for n, (digest, owner) in enumerate(zip(self._digests, self._owners, strict=True), 1):
            moved = await move_owner(db, legacy_owner_id(digest), owner)
            if moved:
                log.info(
                    "static API key #%d: %d stored completions, %d stored responses and %d"
                    " usage rows moved from its owner id of before the owner-id secret",
                    *(n, moved.completions, moved.responses, moved.usage_rows),
                )
            log.info("static API key #%d: owner id %s", n, owner)

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

    async def optional(self, request: Request) -> Caller | None:
        """The caller for a route anyone may reach (``/health``): None where a key is
        required and none valid is presented (no key, a wrong, revoked or expired one),
        rather than a 401: such a route answers them with what it shows everyone. So
        when the key store fails (the database down): liveness is not the database's."""
        try:
            return await self(request)
        except Exception:  # AuthenticationError, or the store's own failure
            return None

    async def _check(self, request: Request) -> Caller:
        key = presented_key(request)
        if not key:
            if await self._open():
                return _OPEN
            raise AuthenticationError(_MISSING)
        d = key_digest(key)
        # every static digest compared, in constant time: which one matched says nothing
        matched = [hmac.compare_digest(d, known) for known in self._digests]
        if any(matched):
            if not self._owners:
                raise RuntimeError("KeyChecker.start() was not awaited: no owner ids yet")
            return Caller(self._owners[matched.index(True)], operator=True)
        record = await self._store.find(key) if self._store is not None else None
        if record is None:
            if await self._open(fresh=True):
                return _OPEN
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

"""API keys kept in the database: only their SHA-256 digest is stored; the key itself
is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from chatd.store.db import Database
from chatd.store.tables import api_keys


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    models: list[str] | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    rpm: int | None = None
    tpm: int | None = None
    # {public model id: {"rpm": int | None, "tpm": int | None}}, on top of rpm/tpm
    model_limits: dict[str, dict[str, int | None]] | None = None
    # requests in flight at once; bytes of stored records (None: the server's default;
    # 0: unlimited)
    max_in_flight: int | None = None
    max_stored_bytes: int | None = None

    def state(self, now: float | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and (now or time.time()) >= self.expires_at:
            return "expired"
        return "active"


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        name: str,
        models: list[str] | None = None,
        expires_at: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        model_limits: dict[str, dict[str, int | None]] | None = None,
        max_in_flight: int | None = None,
        max_stored_bytes: int | None = None,
    ) -> tuple[KeyRecord, str]:
        """Returns the record and the key, which is never stored."""
        key = "sk-chatd-" + secrets.token_urlsafe(32)
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            name=name,
            models=models,
            created_at=int(time.time()),
            expires_at=expires_at,
            revoked_at=None,
            rpm=rpm,
            tpm=tpm,
            model_limits=model_limits or None,
            max_in_flight=max_in_flight,
            max_stored_bytes=max_stored_bytes,
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(api_keys.insert().values(digest=key_digest(key), **record.__dict__))
        return record, key

    async def find(self, key: str) -> KeyRecord | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(api_keys).where(api_keys.c.digest == key_digest(key)))
            ).first()
        return _record(row) if row else None

    async def all(self) -> list[KeyRecord]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_at))).all()
        return [_record(r) for r in rows]

    async def any(self) -> bool:
        async with self.db.engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(api_keys))).scalar_one()
        return n > 0

    async def revoke(self, key_id: str) -> bool:
        async with self.db.engine.begin() as conn:
            done = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=int(time.time()))
            )
        return done.rowcount > 0


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        models=row.models,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        rpm=row.rpm,
        tpm=row.tpm,
        model_limits=row.model_limits,
        max_in_flight=row.max_in_flight,
        max_stored_bytes=row.max_stored_bytes,
    )

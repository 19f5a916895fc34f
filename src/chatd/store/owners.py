"""Owner ids of static API keys (``--api-key``): an HMAC-SHA256 of the key's digest
keyed by a random secret of the database, so that an owner id, written on every request
log line, says nothing about the key (an unsalted digest prefix let a weak key be
guessed offline from a log).

The secret lives in the database (table ``server_secrets``), made by the first start
that finds none: replicas sharing a PostgreSQL database derive the same owner id from
the same key, as they must, since the owner id scopes the records they share. It is as
secret as the database (SQLite: chatd.db, 0600) and never leaves it.

Before this, a static key's owner id was ``key_`` + the first 24 hex digits of its
SHA-256 digest. At start, knowing the keys, chatd moves that old id's records (stored
completions, stored responses and their items, usage) to the new one: exact, and cheap
(each owner column is indexed)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatd.store.db import Database
from chatd.store.tables import completions, response_items, responses, server_secrets, usage
from chatd.store.usage import UsageRow, add_usage

__all__ = ["Moved", "legacy_owner_id", "move_owner", "owner_secret", "static_owner_id"]

_SECRET = "owner_ids"


async def owner_secret(db: Database) -> tuple[bytes, bool]:
    """The database's owner-id secret (32 random bytes), and whether this call made it.
    Made at most once: replicas starting together insert-or-keep, then all read the
    one that won."""
    insert = sqlite_insert if db.is_sqlite else pg_insert
    made = secrets.token_hex(32)
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(server_secrets)
            .values(name=_SECRET, value=made)
            .on_conflict_do_nothing(index_elements=[server_secrets.c.name])
        )
        value = (
            await conn.execute(
                select(server_secrets.c.value).where(server_secrets.c.name == _SECRET)
            )
        ).scalar_one()
    return bytes.fromhex(value), value == made


def static_owner_id(secret: bytes, digest: str) -> str:
    """A static key's owner id, from its SHA-256 digest (hex): ``key_`` + 24 hex digits
    (96 bits) of HMAC-SHA256(secret, digest). Database keys' ids are ``key_`` + 16."""
    return "key_" + hmac.new(secret, digest.encode(), hashlib.sha256).hexdigest()[:24]


def legacy_owner_id(digest: str) -> str:
    """A static key's owner id before the secret (before schema revision 0008)."""
    return "key_" + digest[:24]


@dataclass(frozen=True)
class Moved:
    completions: int
    responses: int
    usage_rows: int

    def __bool__(self) -> bool:
        return bool(self.completions or self.responses or self.usage_rows)


async def move_owner(db: Database, old: str, new: str) -> Moved:
    """Give ``old``'s records to ``new``, in one transaction. Usage rows are added to
    ``new``'s of the same model and day: deleted first (``RETURNING``), so that two
    replicas doing this at once cannot count a row twice (the second finds it gone)."""
    async with db.engine.begin() as conn:
        done = await conn.execute(
            update(completions).where(completions.c.owner == old).values(owner=new)
        )
        stored = await conn.execute(
            update(responses).where(responses.c.owner == old).values(owner=new)
        )
        await conn.execute(
            update(response_items).where(response_items.c.owner == old).values(owner=new)
        )
        rows = (
            await conn.execute(usage.delete().where(usage.c.owner == old).returning(*usage.c))
        ).all()
        for r in rows:
            await conn.execute(add_usage(db, UsageRow(**{**r._mapping, "owner": new})))
    return Moved(done.rowcount, stored.rowcount, len(rows))

"""How long stored completions and responses are kept, and what an owner's take.

``Retention`` dates every stored record (its ``created_ns``) and decides which are
expired: an expired record is invisible to every read at once (each query of the stores
filters on ``created_ns``), and deleted later by the periodic purge
(service/storage.py). Both stores share one, so one clock dates and ages all records;
tests give it their own clock instead of sleeping.

``stored_bytes`` is what an owner's stored records take: the sum of their ``size``
column (the bytes of their JSON, computed when stored), read from an index."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, true

from chatd.store.db import Database
from chatd.store.tables import completions, responses

__all__ = ["NS_PER_DAY", "Retention", "json_size", "purge_before", "stored_bytes"]

NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Retention:
    """``days`` 0: kept until deleted. ``clock``: nanoseconds since the epoch."""

    days: float = 0.0
    clock: Callable[[], int] = field(default=time.time_ns)

    def now(self) -> int:
        return self.clock()

    def cutoff(self) -> int | None:
        """Records created before this are expired; None when nothing expires."""
        if self.days <= 0:
            return None
        return self.clock() - int(self.days * NS_PER_DAY)

    def visible(self, created_ns: Any) -> Any:
        """A query condition: the record is not expired (true when nothing expires)."""
        cutoff = self.cutoff()
        return created_ns >= cutoff if cutoff is not None else true()


def json_size(value: Any) -> int:
    """Bytes of ``value``'s JSON as the database holds it (SQLAlchemy's JSON type writes
    ``json.dumps(value)``: ASCII, so characters are bytes): what a record is counted as."""
    return len(json.dumps(value))


async def stored_bytes(db: Database, owner: str, retention: Retention) -> int:
    """Bytes of this owner's stored completions and responses not expired, in one query."""
    parts = [
        select(func.coalesce(func.sum(t.c.size), 0))
        .where(t.c.owner == owner, retention.visible(t.c.created_ns))
        .scalar_subquery()
        for t in (completions, responses)
    ]
    async with db.engine.connect() as conn:
        return int((await conn.execute(select(parts[0] + parts[1]))).scalar_one())


async def purge_before(db: Database, table: Any, cutoff: int, batch: int) -> int:
    """Delete ``table``'s rows created before ``cutoff`` (what depends on them goes with
    them: ON DELETE CASCADE), ``batch`` per transaction so that no write waits long for
    a big purge; how many."""
    c = table.c
    total = 0
    while True:
        ids = select(c.id).where(c.created_ns < cutoff).limit(batch).scalar_subquery()
        async with db.engine.begin() as conn:
            done = (await conn.execute(delete(table).where(c.id.in_(ids)))).rowcount
        total += done
        if done < batch:
            return total

"""Usage accounting: requests and tokens per owner (key), model and UTC day, for every
request, stored or not. One upsert per request, atomic on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatd.store.db import Database
from chatd.store.tables import usage


@dataclass(frozen=True)
class UsageRow:
    owner: str
    model: str
    day: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


class UsageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, owner: str, model: str, prompt: int, completion: int) -> None:
        day = dt.datetime.now(dt.UTC).date().isoformat()
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        stmt = insert(usage).values(
            owner=owner,
            model=model,
            day=day,
            requests=1,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[usage.c.owner, usage.c.model, usage.c.day],
            set_={
                "requests": usage.c.requests + 1,
                "prompt_tokens": usage.c.prompt_tokens + prompt,
                "completion_tokens": usage.c.completion_tokens + completion,
            },
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(stmt)

    async def rows(self, owner: str | None = None, since: str | None = None) -> list[UsageRow]:
        q = select(usage).order_by(usage.c.day, usage.c.owner, usage.c.model)
        if owner is not None:
            q = q.where(usage.c.owner == owner)
        if since is not None:
            q = q.where(usage.c.day >= since)
        async with self.db.engine.connect() as conn:
            return [UsageRow(**r._mapping) for r in (await conn.execute(q)).all()]

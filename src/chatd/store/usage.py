"""Usage accounting: requests and tokens per owner (key), model and UTC day, for every
request, stored or not. One upsert per request, atomic on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatd.store.db import Database
from chatd.store.tables import usage

log = logging.getLogger("chatd.store")


@dataclass(frozen=True)
class UsageRow:
    owner: str
    model: str
    day: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    estimated_requests: int = 0


def add_usage(db: Database, row: UsageRow) -> Any:
    """The statement adding ``row``'s counts to its (owner, model, day): one atomic
    upsert on SQLite and PostgreSQL."""
    insert = sqlite_insert if db.is_sqlite else pg_insert
    stmt = insert(usage).values(**row.__dict__)
    return stmt.on_conflict_do_update(
        index_elements=[usage.c.owner, usage.c.model, usage.c.day],
        set_={
            "requests": usage.c.requests + row.requests,
            "prompt_tokens": usage.c.prompt_tokens + row.prompt_tokens,
            "completion_tokens": usage.c.completion_tokens + row.completion_tokens,
            "estimated_requests": usage.c.estimated_requests + row.estimated_requests,
        },
    )


class UsageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        owner: str,
        model: str,
        prompt: int,
        completion: int,
        requests: int = 1,
        estimated: int = 0,
    ) -> None:
        day = dt.datetime.now(dt.UTC).date().isoformat()
        row = UsageRow(owner, model, day, requests, prompt, completion, estimated)
        async with self.db.engine.begin() as conn:
            await conn.execute(add_usage(self.db, row))

    async def rows(self, owner: str | None = None, since: str | None = None) -> list[UsageRow]:
        q = select(usage).order_by(usage.c.day, usage.c.owner, usage.c.model)
        if owner is not None:
            q = q.where(usage.c.owner == owner)
        if since is not None:
            q = q.where(usage.c.day >= since)
        async with self.db.engine.connect() as conn:
            return [UsageRow(**r._mapping) for r in (await conn.execute(q)).all()]


class UsageBuffer:
    """Adds usage up in memory and writes it once a second: one upsert per (owner,
    model, day) per second instead of one per request (a synchronous SQLite commit per
    request capped a gateway at ~150 requests/s). A crash loses at most the last
    second's counts; ``close`` flushes."""

    def __init__(self, store: UsageStore, interval: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self._pending: dict[tuple[str, str], list[int]] = {}
        self._task: asyncio.Task[None] | None = None
        # model -> [requests, prompt, completion] since the process started, for metrics.
        self.totals: dict[str, list[int]] = {}

    def add(
        self, owner: str, model: str, prompt: int, completion: int, estimated: bool = False
    ) -> None:
        total = self.totals.setdefault(model, [0, 0, 0])
        total[0] += 1
        total[1] += prompt
        total[2] += completion
        counts = self._pending.setdefault((owner, model), [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += prompt
        counts[2] += completion
        counts[3] += int(estimated)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        # Counts added while a flush is writing are picked up by the next round.
        while self._pending:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (owner, model), (requests, prompt, completion, estimated) in pending.items():
            try:
                await self.store.record(
                    owner, model, prompt, completion, requests=requests, estimated=estimated
                )
            except Exception:
                log.exception("usage accounting failed for %s / %s", owner, model)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.flush()

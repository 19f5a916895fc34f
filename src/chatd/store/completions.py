"""Stored chat completions: every query is scoped to the owner (the API key) that
created the record; another owner sees nothing, as if it did not exist. An expired
completion (``Retention``, store/retention.py) is absent to every query at once, and
deleted by ``purge_expired``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, delete, exists, or_, select, update

from chatd.store.db import Database
from chatd.store.retention import Retention, json_size, purge_before
from chatd.store.tables import completion_tags, completions, messages

Order = Literal["asc", "desc"]


@dataclass
class Page:
    items: list[dict[str, Any]]
    has_more: bool


class CompletionStore:
    def __init__(self, db: Database, retention: Retention | None = None) -> None:
        self.db = db
        self.retention = retention or Retention()

    def _mine(self, owner: str, cid: Any = None) -> Any:
        """The condition of every read: this owner's (this id's), not expired."""
        c = completions.c
        found = and_(c.owner == owner, self.retention.visible(c.created_ns))
        return found if cid is None else and_(c.id == cid, found)

    async def save(
        self,
        owner: str,
        body: dict[str, Any],
        request: dict[str, Any],
        input_messages: list[dict[str, Any]],
        metadata: dict[str, str],
    ) -> None:
        """One transaction: the completion, its metadata and its messages, or nothing. Its
        size (what counts against the owner's quota) is the bytes of its body, request
        and messages as JSON; metadata (at most 16 short pairs) is not counted."""
        cid = body["id"]
        size = json_size(body) + json_size(request) + sum(json_size(m) for m in input_messages)
        async with self.db.engine.begin() as conn:
            await conn.execute(
                completions.insert().values(
                    id=cid,
                    owner=owner,
                    model=body["model"],
                    created_ns=self.retention.now(),
                    body=body,
                    request=request,
                    metadata=metadata,
                    size=size,
                )
            )
            if metadata:
                await conn.execute(
                    completion_tags.insert(),
                    [{"completion_id": cid, "key": k, "value": v} for k, v in metadata.items()],
                )
            if input_messages:
                await conn.execute(
                    messages.insert(),
                    [
                        {"completion_id": cid, "position": i, "message": m}
                        for i, m in enumerate(input_messages)
                    ],
                )

    async def get(self, owner: str, cid: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(completions.c.body, completions.c.metadata).where(self._mine(owner, cid))
                )
            ).first()
        return _public(row.body, row.metadata) if row else None

    async def list(
        self,
        owner: str,
        *,
        model: str | None,
        metadata: dict[str, str],
        after: str | None,
        limit: int,
        order: Order,
    ) -> Page | None:
        """None when ``after`` names no completion of this owner."""
        c = completions.c
        query = select(c.body, c.metadata).where(self._mine(owner))
        if model is not None:
            query = query.where(c.model == model)
        for key, value in metadata.items():
            t = completion_tags.c
            query = query.where(
                exists().where(t.completion_id == c.id, t.key == key, t.value == value)
            )
        async with self.db.engine.connect() as conn:
            if after is not None:
                anchor = (
                    await conn.execute(select(c.created_ns, c.id).where(self._mine(owner, after)))
                ).first()
                if anchor is None:
                    return None
                query = query.where(_beyond(c.created_ns, c.id, anchor, order))
            keys = (c.created_ns, c.id) if order == "asc" else (c.created_ns.desc(), c.id.desc())
            rows = (await conn.execute(query.order_by(*keys).limit(limit + 1))).all()
        items = [_public(r.body, r.metadata) for r in rows[:limit]]
        return Page(items, len(rows) > limit)

    async def update_metadata(
        self, owner: str, cid: str, metadata: dict[str, str]
    ) -> dict[str, Any] | None:
        async with self.db.engine.begin() as conn:
            found = await conn.execute(
                update(completions).where(self._mine(owner, cid)).values(metadata=metadata)
            )
            if found.rowcount == 0:
                return None
            await conn.execute(
                delete(completion_tags).where(completion_tags.c.completion_id == cid)
            )
            if metadata:
                await conn.execute(
                    completion_tags.insert(),
                    [{"completion_id": cid, "key": k, "value": v} for k, v in metadata.items()],
                )
        return await self.get(owner, cid)

    async def delete(self, owner: str, cid: str) -> bool:
        async with self.db.engine.begin() as conn:
            if not await self._owned(conn, owner, cid):
                return False
            await conn.execute(delete(messages).where(messages.c.completion_id == cid))
            await conn.execute(
                delete(completion_tags).where(completion_tags.c.completion_id == cid)
            )
            await conn.execute(delete(completions).where(completions.c.id == cid))
        return True

    async def messages(
        self, owner: str, cid: str, *, after: str | None, limit: int, order: Order
    ) -> Page | None:
        """Input messages with ids ``<completion id>-<position>``; None if not owned."""
        m = messages.c
        async with self.db.engine.connect() as conn:
            if not await self._owned(conn, owner, cid):
                return None
            query = select(m.position, m.message).where(m.completion_id == cid)
            if after is not None:
                prefix = f"{cid}-"
                if not after.startswith(prefix) or not after[len(prefix) :].isdigit():
                    return Page([], False)
                pos = int(after[len(prefix) :])
                query = query.where(m.position > pos if order == "asc" else m.position < pos)
            key = m.position if order == "asc" else m.position.desc()
            rows = (await conn.execute(query.order_by(key).limit(limit + 1))).all()
        items = [{"id": f"{cid}-{r.position}", **r.message} for r in rows[:limit]]
        return Page(items, len(rows) > limit)

    async def _owned(self, conn: Any, owner: str, cid: str) -> bool:
        q = select(completions.c.id).where(self._mine(owner, cid))
        return (await conn.execute(q)).first() is not None

    async def purge_expired(self, batch: int = 500) -> int:
        """Delete expired completions (their messages and metadata with them: ON DELETE
        CASCADE), ``batch`` per transaction so that no write waits long; how many."""
        cutoff = self.retention.cutoff()
        if cutoff is None:
            return 0
        return await purge_before(self.db, completions, cutoff, batch)


def _beyond(created: Any, cid: Any, anchor: Any, order: Order) -> Any:
    if order == "asc":
        return or_(created > anchor.created_ns, and_(created == anchor.created_ns, cid > anchor.id))
    return or_(created < anchor.created_ns, and_(created == anchor.created_ns, cid < anchor.id))


def _public(body: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
    return {**body, "metadata": metadata}

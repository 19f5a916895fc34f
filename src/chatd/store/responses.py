"""Stored Responses API responses (``store: true``): the response object as returned, the
input items of its request and its output items, so that a later request can continue it
(``previous_response_id``) or point at one of its items (``item_reference``).

Every query is scoped to the owner (the API key) that created the record; another owner
sees nothing, as if it did not exist. A response is written in one transaction with all
its items: a reader sees all of it or none of it. An expired response (``Retention``,
store/retention.py) is absent to every query at once (a chain through it is broken, as
by a delete), and deleted by ``purge_expired``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, select

from chatd.store.completions import Order, Page
from chatd.store.db import Database
from chatd.store.retention import Retention, json_size, purge_before
from chatd.store.tables import response_items, responses

__all__ = ["MissingResponse", "ResponseStore"]


class MissingResponse(LookupError):
    """A conversation cannot be continued: ``response_id`` is not stored for this owner
    (never stored, deleted, or another owner's). ``chained_from`` is the stored response
    whose ``previous_response_id`` names it, None when it is the id the request gave."""

    def __init__(self, response_id: str, chained_from: str | None) -> None:
        via = f" (previous response of '{chained_from}')" if chained_from else ""
        super().__init__(f"Response '{response_id}' is not stored{via}.")
        self.response_id = response_id
        self.chained_from = chained_from


class ResponseStore:
    def __init__(self, db: Database, retention: Retention | None = None) -> None:
        self.db = db
        self.retention = retention or Retention()

    def _mine(self, owner: str, rid: Any = None) -> Any:
        """The condition of every read: this owner's (this id's), not expired."""
        r = responses.c
        found = and_(r.owner == owner, self.retention.visible(r.created_ns))
        return found if rid is None else and_(r.id == rid, found)

    async def save(
        self,
        owner: str,
        body: dict[str, Any],
        input_items: list[dict[str, Any]],
        previous_response_id: str | None,
    ) -> None:
        """One transaction: the response, its input items, its output items
        (``body["output"]``), or nothing. Durable once it returns. Its size (what counts
        against the owner's quota) is the bytes of its body and items as JSON."""
        rid = body["id"]
        rows = [
            {
                "response_id": rid,
                "output": output,
                "position": i,
                "owner": owner,
                "item_id": item["id"],
                "item": item,
            }
            for output, items in ((False, input_items), (True, body.get("output") or []))
            for i, item in enumerate(items)
        ]
        size = json_size(body) + sum(json_size(row["item"]) for row in rows)
        async with self.db.engine.begin() as conn:
            await conn.execute(
                responses.insert().values(
                    id=rid,
                    owner=owner,
                    model=body["model"],
                    created_ns=self.retention.now(),
                    previous_response_id=previous_response_id,
                    body=body,
                    size=size,
                )
            )
            if rows:
                await conn.execute(response_items.insert(), rows)

    async def get(self, owner: str, rid: str) -> dict[str, Any] | None:
        """The response object as it was returned; None if this owner has no such id."""
        r = responses.c
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(r.body).where(self._mine(owner, rid)))).first()
        return row.body if row else None

    async def delete(self, owner: str, rid: str) -> bool:
        """Delete the response (its items go with it: ON DELETE CASCADE); False if this
        owner has no such id. Responses continuing it keep their ``previous_response_id``."""
        async with self.db.engine.begin() as conn:
            done = await conn.execute(delete(responses).where(self._mine(owner, rid)))
        return bool(done.rowcount)

    async def input_items(
        self, owner: str, rid: str, *, after: str | None, limit: int, order: Order
    ) -> Page | None:
        """The request's input items (asc: as given); None if not owned. ``after`` is an
        item id of this list; one it does not hold gives an empty page."""
        i = response_items.c
        async with self.db.engine.connect() as conn:
            if not await self._owned(conn, owner, rid):
                return None
            query = select(i.item).where(i.response_id == rid, i.output.is_(False))
            if after is not None:
                anchor = (
                    await conn.execute(
                        select(i.position)
                        .where(i.response_id == rid, i.output.is_(False), i.item_id == after)
                        .order_by(i.position)
                        .limit(1)
                    )
                ).first()
                if anchor is None:
                    return Page([], False)
                pos = anchor.position
                query = query.where(i.position > pos if order == "asc" else i.position < pos)
            key = i.position if order == "asc" else i.position.desc()
            rows = (await conn.execute(query.order_by(key).limit(limit + 1))).all()
        return Page([r.item for r in rows[:limit]], len(rows) > limit)

    async def history(self, owner: str, rid: str) -> list[dict[str, Any]]:
        """The conversation a request with ``previous_response_id=rid`` continues: from the
        root of the chain to ``rid``, each response's input items then its output items.

        One query: a recursive CTE walks the ``previous_response_id`` links (UNION, not
        UNION ALL, so even a cyclic chain ends) joined to the items. The chain stops at the
        first link this owner does not hold, which raises :class:`MissingResponse`.
        """
        r, i = responses.c, response_items.c
        chain = (
            select(r.id, r.previous_response_id.label("prev"))
            .where(self._mine(owner, rid))
            .cte("chain", recursive=True)
        )
        chain = chain.union(
            select(r.id, r.previous_response_id)
            .join(chain, r.id == chain.c.prev)
            .where(self._mine(owner))
        )
        query = select(chain.c.id, chain.c.prev, i.output, i.position, i.item).outerjoin(
            response_items, i.response_id == chain.c.id
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        previous: dict[str, str | None] = {}
        items: dict[str, list[tuple[bool, int, dict[str, Any]]]] = {}
        for row in rows:
            previous[row.id] = row.prev
            if row.item is not None:
                items.setdefault(row.id, []).append((row.output, row.position, row.item))
        order: list[str] = []
        seen: set[str] = set()
        cur: str | None = rid
        child: str | None = None
        while cur is not None:
            if cur not in previous:
                raise MissingResponse(cur, child)
            if cur in seen:  # a cycle (never written by chatd): the chain has no root
                break
            seen.add(cur)
            order.append(cur)
            child, cur = cur, previous[cur]
        history: list[dict[str, Any]] = []
        for response in reversed(order):
            history.extend(item for *_, item in sorted(items.get(response, []), key=_key))
        return history

    async def items_by_id(self, owner: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """This owner's stored items (input or output) with these ids, for ``item_reference``
        inputs; an id found nowhere is absent. An id stored more than once (an output item
        sent back as input) resolves to its first occurrence: the original."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        r, i = responses.c, response_items.c
        query = (
            select(i.item_id, i.item)
            .join(responses, r.id == i.response_id)
            .where(i.owner == owner, i.item_id.in_(wanted), self._mine(owner))
            .order_by(r.created_ns.desc(), r.id.desc(), i.output.desc(), i.position.desc())
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        # newest first, so the oldest occurrence is written last and wins
        return {row.item_id: row.item for row in rows}

    async def _owned(self, conn: Any, owner: str, rid: str) -> bool:
        return (
            await conn.execute(select(responses.c.id).where(self._mine(owner, rid)))
        ).first() is not None

    async def purge_expired(self, batch: int = 500) -> int:
        """Delete expired responses (their items with them: ON DELETE CASCADE), ``batch``
        per transaction; how many."""
        cutoff = self.retention.cutoff()
        if cutoff is None:
            return 0
        return await purge_before(self.db, responses, cutoff, batch)


def _key(entry: tuple[bool, int, dict[str, Any]]) -> tuple[bool, int]:
    return entry[0], entry[1]

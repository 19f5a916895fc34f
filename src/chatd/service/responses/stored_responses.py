"""Stored responses as the API shows them (``GET``/``DELETE /v1/responses/{id}``, ``GET
/v1/responses/{id}/input_items``): the spec's objects, and 404 for what the caller does not
own, as if absent. The routes hand over the raw query parameters; their contract is
``protocol/stored.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatd.protocol.errors import NotFound
from chatd.protocol.stored import list_object, parse_input_items_query, parse_retrieve_query
from chatd.store.responses import ResponseStore

__all__ = ["CLIENT_METADATA", "StoredResponses"]

# A request's ``client_metadata`` (Codex's thread and turn ids) is kept in the stored body
# under this key and left out of the object the API shows: OpenAI's Response has no such
# field (docs/acceptance.md).
CLIENT_METADATA = "client_metadata"


def _missing(rid: str) -> NotFound:
    return NotFound(f"Response with id '{rid}' not found.", param="response_id")


class StoredResponses:
    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def get(
        self, owner: str, rid: str, query: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The response object as it was returned when created. ``include`` is checked but
        adds nothing: what was included at creation is what was stored."""
        parse_retrieve_query(query or {})
        found = await self.store.get(owner, rid)
        if found is None:
            raise _missing(rid)
        found.pop(CLIENT_METADATA, None)
        return found

    async def delete(self, owner: str, rid: str) -> dict[str, Any]:
        if not await self.store.delete(owner, rid):
            raise _missing(rid)
        return {"id": rid, "object": "response", "deleted": True}

    async def input_items(
        self, owner: str, rid: str, query: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """A ``ResponseItemList`` of the request's input items (default order: newest
        first). The query is checked before the lookup, so a bad one is a 400 either way."""
        q = parse_input_items_query(query or {})
        page = await self.store.input_items(owner, rid, after=q.after, limit=q.limit, order=q.order)
        if page is None:
            raise _missing(rid)
        return list_object(page.items, page.has_more)

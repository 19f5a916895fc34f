"""Chat's stored view: a completion stored when its request says ``store: true``
(``CompletionSaver``), and stored completions as the API shows them (``StoredCompletions``):
lists with cursors, 404 for what the caller does not own (as if absent)."""

from __future__ import annotations

import logging
from typing import Any

from chatd.protocol.errors import NotFound, NotYetSupported, ServerError
from chatd.protocol.stored import ListQuery, list_object
from chatd.store.completions import CompletionStore, Page

__all__ = ["CompletionSaver", "StoredCompletions"]

log = logging.getLogger("chatd.service")


def _missing(cid: str) -> NotFound:
    return NotFound(f"No chat completion found with id '{cid}'.", param="completion_id")


def _list(page: Page) -> dict[str, Any]:
    return list_object(page.items, page.has_more)


def _message_item(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored input message in the shape of the messages list: text ``content``, the
    original parts in ``content_parts`` when parts were sent."""
    content = stored.get("content")
    parts = content if isinstance(content, list) else None
    if parts is not None:
        content = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
    item = {
        "id": stored["id"],
        "role": stored["role"],
        "content": content,
        "refusal": stored.get("refusal"),
        "name": stored.get("name"),
        "content_parts": parts,
    }
    for key in ("tool_calls", "function_call", "tool_call_id"):
        if key in stored:
            item[key] = stored[key]
    return item


class StoredCompletions:
    def __init__(self, store: CompletionStore) -> None:
        self.store = store

    async def list(self, owner: str, q: ListQuery) -> dict[str, Any]:
        page = await self.store.list(
            owner,
            model=q.model,
            metadata=q.metadata,
            after=q.after,
            limit=q.limit,
            order=q.order,
        )
        if page is None:
            raise NotFound(f"No chat completion found with id '{q.after}'.", param="after")
        return _list(page)

    async def get(self, owner: str, cid: str) -> dict[str, Any]:
        found = await self.store.get(owner, cid)
        if found is None:
            raise _missing(cid)
        return found

    async def update(self, owner: str, cid: str, metadata: dict[str, str]) -> dict[str, Any]:
        found = await self.store.update_metadata(owner, cid, metadata)
        if found is None:
            raise _missing(cid)
        return found

    async def delete(self, owner: str, cid: str) -> dict[str, Any]:
        if not await self.store.delete(owner, cid):
            raise _missing(cid)
        return {"object": "chat.completion.deleted", "id": cid, "deleted": True}

    async def messages(self, owner: str, cid: str, q: ListQuery) -> dict[str, Any]:
        page = await self.store.messages(owner, cid, after=q.after, limit=q.limit, order=q.order)
        if page is None:
            raise _missing(cid)
        return _list(Page([_message_item(m) for m in page.items], page.has_more))


class CompletionSaver:
    """Persists one completion for its owner; a failure is an error, never swallowed.

    ``request`` and ``messages`` are the request as stored (its parameters, its input
    messages); ``metadata`` the caller's tags."""

    def __init__(
        self,
        store: CompletionStore | None,
        owner: str,
        request: dict[str, Any],
        messages: list[dict[str, Any]],
        metadata: dict[str, str],
    ) -> None:
        if store is None:
            raise NotYetSupported("store (this server has no database)")
        self.store = store
        self.owner = owner
        self.request = request
        self.messages = messages
        self.metadata = metadata

    async def save(self, body: dict[str, Any]) -> None:
        try:
            await self.store.save(self.owner, body, self.request, self.messages, self.metadata)
        except Exception:
            log.exception("storing completion %s failed", body.get("id"))
            raise ServerError("The completion could not be stored.") from None

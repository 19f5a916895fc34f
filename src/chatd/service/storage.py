"""What one owner may keep stored, and for how long (docs/storage.md).

The quota is in bytes: the stored completions' and responses' JSON (bodies, requests,
messages, items), what fills a disk. A ``store: true`` request whose owner's records,
plus this request's body, would be over the quota is refused before anything is
generated, with a 400 naming ``store``: the promise to store cannot be kept, and
answering without storing would break it silently. Admitted requests may take their
owner past the quota by the size of their answers (several at once, up to the key's
in-flight limit, as OpenAI's token windows overshoot by the requests in flight); the
next one is refused.

Retention: expired records are invisible at once (store/retention.py), and ``Purger``
deletes them in the background, once at start and then every ``interval`` seconds."""

from __future__ import annotations

import asyncio
import logging

from chatd.protocol.errors import InvalidRequest
from chatd.service.quotas import PURGE_INTERVAL
from chatd.store.completions import CompletionStore
from chatd.store.db import Database
from chatd.store.responses import ResponseStore
from chatd.store.retention import Retention, stored_bytes
from chatd.tasks import spawn, stop

__all__ = ["Purger", "StorageQuota", "StorageQuotaExceeded"]

log = logging.getLogger("chatd.service")


class StorageQuotaExceeded(InvalidRequest):
    def __init__(self, quota: int, used: int, incoming: int) -> None:
        super().__init__(
            f"Cannot store this answer: this key's stored completions and responses take"
            f" {used} bytes of its {quota}-byte storage quota, and this request ({incoming}"
            " bytes) would not fit. Delete stored completions or responses, or send"
            " store: false.",
            param="store",
            code="storage_quota_exceeded",
        )


class StorageQuota:
    """Bytes an owner may keep stored: its key's own quota, else the server's; 0 is none."""

    def __init__(self, db: Database, retention: Retention, default: int = 0) -> None:
        self.db = db
        self.retention = retention  # expired records, invisible, count no more
        self.default = default

    async def check(self, owner: str, own_quota: int | None, incoming: int) -> None:
        """Raise StorageQuotaExceeded if ``owner``'s stored bytes plus ``incoming`` (the
        request's body) are over its quota. No query when there is no quota."""
        quota = self.default if own_quota is None else own_quota
        if quota <= 0:
            return
        used = await stored_bytes(self.db, owner, self.retention)
        if used + incoming > quota:
            raise StorageQuotaExceeded(quota, used, incoming)


class Purger:
    """Deletes expired stored completions and responses in the background. A failure
    (the database away) is logged and tried again at the next interval."""

    def __init__(
        self,
        completions: CompletionStore,
        responses: ResponseStore,
        interval: float = PURGE_INTERVAL,
    ) -> None:
        self.completions = completions
        self.responses = responses
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.completions.retention.cutoff() is not None

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = spawn(self._run())

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def purge(self) -> int:
        """One pass: how many records were deleted."""
        n = await self.completions.purge_expired() + await self.responses.purge_expired()
        if n:
            log.info("retention: deleted %d expired stored completion(s) and response(s)", n)
        return n

    async def _run(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception as e:  # never the server's end: the next pass retries
                log.warning("retention: purging expired records failed (%s)", e)
            await asyncio.sleep(self.interval)

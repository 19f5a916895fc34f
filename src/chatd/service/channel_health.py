"""Channel health shared by replicas through Redis (``--redis-url``): a cooldown one
replica learns is skipped by the others without failures of their own, and a recovery
(a success of a channel that was cooling) clears it for all.

One key per channel, ``chatd:channel-health:{name}@{base_url}``, exists while it cools
down: set with the cooldown as its TTL, its remaining TTL (PTTL) is the shared
cooldown, so replicas' clocks need not agree; its value names the replica that set it.
One background task per replica publishes this replica's news (at once: the channel
wakes it) and refreshes its view of every channel every ``interval`` seconds, in one
pipelined round trip. Routing reads only the channels' own fields: no request waits on
Redis, and the view is at most ``interval`` (plus a round trip) old.

Redis unavailable never breaks a request: each channel keeps its own health as without
Redis, the outage is logged once (and its end), and unpublished news is kept (newest per
channel) and published when Redis is back, if still current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from redis.exceptions import RedisError

from chatd.tasks import stop
from chatd.upstream.channels import Channel

__all__ = ["KEY_PREFIX", "SharedChannelHealth"]

log = logging.getLogger("chatd.service")

KEY_PREFIX = "chatd:channel-health:"


class SharedChannelHealth:
    """The ``HealthBoard`` of every channel of this replica, backed by Redis."""

    def __init__(self, redis: Any, channels: list[Channel], interval: float = 0.5) -> None:
        self._redis = redis
        self._channels = list(channels)
        self.interval = interval
        self.replica = uuid.uuid4().hex[:12]
        # channel key -> (channel, cooling?): the newest news per channel, to publish
        self._pending: dict[str, tuple[Channel, bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.available = True  # whether the last sync reached Redis
        self.refreshes = 0  # views read (tests wait on this, not on time)
        for c in self._channels:
            c.board = self

    @classmethod
    def from_url(
        cls, url: str, channels: list[Channel], interval: float = 0.5
    ) -> SharedChannelHealth:
        import redis.asyncio as redis

        # Short socket timeouts: an unreachable Redis only delays this task, never a request.
        client = redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        return cls(client, channels, interval)

    @staticmethod
    def key(channel: Channel) -> str:
        return KEY_PREFIX + channel.key

    # HealthBoard: called by the channels on the event loop; publishing is the task's.
    def cooled(self, channel: Channel) -> None:
        self._pending[channel.key] = (channel, True)
        self._wake.set()

    def recovered(self, channel: Channel) -> None:
        self._pending[channel.key] = (channel, False)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="channel-health")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
        for c in self._channels:
            c.board = None
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.sync()

    async def sync(self) -> None:
        """Publish this replica's news, then read what every replica published. Never
        raises: without Redis, the channels keep their own view."""
        try:
            await self._publish()
            await self._refresh()
        except Exception as e:  # RedisError, OSError, TimeoutError; anything else too:
            # the background task must outlive it, and requests never depend on it
            if self.available:
                log.warning(
                    "shared channel health: Redis unavailable (%s: %s); channel health is"
                    " this replica's own until it is back",
                    type(e).__name__,
                    e,
                    exc_info=not isinstance(e, RedisError | OSError | TimeoutError),
                )
            self.available = False
            return
        if not self.available:
            log.warning("shared channel health: Redis is back")
        self.available = True

    async def _publish(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        now = time.monotonic()
        pipe = self._redis.pipeline(transaction=False)
        for channel, cooling in batch.values():
            if not cooling:
                pipe.delete(self.key(channel))
                continue
            ms = int((channel.cooling_until - now) * 1000)
            if ms > 0:  # else it ended while unpublished: nothing to tell
                pipe.set(self.key(channel), self.replica, px=ms)
        try:
            await pipe.execute()
        except BaseException:
            for k, news in batch.items():  # keep it, unless newer news came meanwhile
                self._pending.setdefault(k, news)
            raise

    async def _refresh(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for c in self._channels:
            pipe.pttl(self.key(c))
            pipe.get(self.key(c))
        replies = await pipe.execute()
        now = time.monotonic()
        for i, c in enumerate(self._channels):
            ms, by = replies[2 * i], replies[2 * i + 1]
            # -2: no key (not cooling); -1 (no TTL) is not ours to honour
            elsewhere = by is not None and by.decode(errors="replace") != self.replica
            c.shared(ms / 1000 if ms > 0 else None, now, elsewhere)
        self.refreshes += 1

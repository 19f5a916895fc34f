"""Per-key rate limits: requests and tokens per minute, in fixed one-minute windows.

Counted in this process by default; with ``--redis-url`` the counters live in Redis and
every chatd replica shares them. A request is refused (429, OpenAI's body, Retry-After
to the next window) when the key's window is already full; its tokens are added when
it ends, so the tokens window may overshoot by one request, as OpenAI's does."""

from __future__ import annotations

import time
from typing import Any, Protocol

from chatd.protocol.errors import APIError


class RateLimited(APIError):
    status = 429

    def __init__(self, kind: str, limit: int, used: int, retry_after: int) -> None:
        unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
        super().__init__(
            f"Rate limit reached on {unit}: Limit {limit}, Used {used}. Please try again in"
            f" {retry_after}s.",
            type=kind,
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after)},
        )


class Counters(Protocol):
    async def incr(self, key: str, amount: int) -> int: ...
    async def get(self, key: str) -> int: ...


class LocalCounters:
    def __init__(self) -> None:
        self._values: dict[str, tuple[int, float]] = {}

    async def incr(self, key: str, amount: int) -> int:
        now = time.time()
        value, expires = self._values.get(key, (0, now + 120))
        if expires < now:
            value, expires = 0, now + 120
        self._values[key] = (value + amount, expires)
        if len(self._values) > 100_000:  # drop stale windows
            self._values = {k: v for k, v in self._values.items() if v[1] >= now}
        return value + amount

    async def get(self, key: str) -> int:
        value, expires = self._values.get(key, (0, 0.0))
        return value if expires >= time.time() else 0


class RedisCounters:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)

    async def incr(self, key: str, amount: int) -> int:
        pipe = self._redis.pipeline()
        pipe.incrby(key, amount)
        pipe.expire(key, 120)
        value, _ = await pipe.execute()
        return int(value)

    async def get(self, key: str) -> int:
        value = await self._redis.get(key)
        return int(value or 0)


class RateLimiter:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    @staticmethod
    def _window() -> tuple[int, int]:
        now = time.time()
        minute = int(now // 60)
        return minute, max(1, int((minute + 1) * 60 - now + 0.999))

    async def admit(self, owner: str, rpm: int | None, tpm: int | None) -> None:
        """Count the request; raise RateLimited if a window is already full."""
        if rpm is None and tpm is None:
            return
        minute, retry = self._window()
        if tpm is not None:
            used = await self.counters.get(f"chatd:rl:{owner}:{minute}:tok")
            if used >= tpm:
                raise RateLimited("tokens", tpm, used, retry)
        if rpm is not None:
            n = await self.counters.incr(f"chatd:rl:{owner}:{minute}:req", 1)
            if n > rpm:
                raise RateLimited("requests", rpm, n - 1, retry)

    async def add_tokens(self, owner: str, tokens: int) -> None:
        minute, _ = self._window()
        await self.counters.incr(f"chatd:rl:{owner}:{minute}:tok", tokens)

"""Per-key rate limits: requests and tokens per minute, in fixed one-minute windows.

Counted in this process by default; with ``--redis-url`` the counters live in Redis and
every chatd replica shares them. A request is refused (429, OpenAI's body, Retry-After
to the next window) when the key's window is already full; its tokens are added when
it ends, so the tokens window may overshoot by one request, as OpenAI's does.

A key may also limit some models. A model is counted by its canonical id (a local
model's own id, whichever of its aliases or routed ids the client sends: no alias is a
way around the model's limit), and a limit given under an alias applies to the model.
Such a request must fit both its model's window and the key-wide one. The
token windows are only read at admission, so the order only matters for requests, which
are counted with an atomic increment-then-compare (a read-then-increment would let
replicas race past the limit). The model's window is counted first, so a refusal by
the per-model limit never touches the key-wide counter; a refusal by the key-wide limit
takes back the model's count, and a refused request takes back its own: refused
requests count in no window (and "Used" stays the real number). Between an increment
and its take-back a concurrent request may see one count too many and be refused: the
limits err towards refusing, never towards admitting over a limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chatd.protocol.errors import APIError

log = logging.getLogger("chatd.service")


class RateLimited(APIError):
    status = 429

    def __init__(
        self, kind: str, limit: int, used: int, retry_after: int, model: str | None = None
    ) -> None:
        unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
        scope = f" for {model}" if model is not None else ""  # None: the key-wide limit
        super().__init__(
            f"Rate limit reached{scope} on {unit}: Limit {limit}, Used {used}. Please try"
            f" again in {retry_after}s.",
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
    """Counters in Redis, shared by every replica. Redis being down never fails a request:
    the counters then fall back to this process's own (each replica limits alone, as
    without ``--redis-url``), Redis is tried again every ``retry_seconds``, and the outage
    and the recovery are logged once each."""

    def __init__(self, url: str, retry_seconds: float = 5.0) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._local = LocalCounters()
        self._retry_seconds = retry_seconds
        self._down_until = 0.0  # monotonic time before which Redis is not tried

    async def incr(self, key: str, amount: int) -> int:
        async def shared() -> int:
            pipe = self._redis.pipeline()
            pipe.incrby(key, amount)
            pipe.expire(key, 120)
            value, _ = await pipe.execute()
            return int(value)

        return await self._either(shared, lambda: self._local.incr(key, amount))

    async def get(self, key: str) -> int:
        async def shared() -> int:
            return int(await self._redis.get(key) or 0)

        return await self._either(shared, lambda: self._local.get(key))

    async def _either(
        self, shared: Callable[[], Awaitable[int]], local: Callable[[], Awaitable[int]]
    ) -> int:
        if time.monotonic() < self._down_until:
            return await local()
        try:
            value = await shared()
        except Exception as e:  # any Redis or connection error: never the request's
            if self._down_until == 0.0:
                log.warning("Redis unavailable for rate limits (%s); counting locally", e)
            self._down_until = time.monotonic() + self._retry_seconds
            return await local()
        if self._down_until:
            log.warning("Redis is back for rate limits; counting in Redis again")
            self._down_until = 0.0
        return value


class RateLimiter:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    @staticmethod
    def _window() -> tuple[int, int]:
        now = time.time()
        minute = int(now // 60)
        return minute, max(1, int((minute + 1) * 60 - now + 0.999))

    async def admit(
        self,
        owner: str,
        rpm: int | None,
        tpm: int | None,
        model: str = "",
        model_rpm: int | None = None,
        model_tpm: int | None = None,
        shown: str | None = None,
    ) -> Admission:
        """Count the request in the key's window and, if the key limits ``model`` (a
        canonical id), in that model's; raise RateLimited, counting nothing, if a window
        is already full. The 429 names ``shown`` (the id the client sent), or ``model``."""
        admission = Admission(self, owner, model, tpm is not None, model_tpm is not None)
        # (counter prefix, rpm, tpm, model named in the 429): the model's window first
        windows: list[tuple[str, int | None, int | None, str | None]] = []
        if model_rpm is not None or model_tpm is not None:
            windows.append((_prefix(owner, model), model_rpm, model_tpm, shown or model))
        if rpm is not None or tpm is not None:
            windows.append((_prefix(owner, None), rpm, tpm, None))
        if not windows:
            return admission
        minute, retry = self._window()
        for prefix, _, limit, name in windows:
            if limit is not None:
                used = await self.counters.get(f"{prefix}:{minute}:tok")
                if used >= limit:
                    raise RateLimited("tokens", limit, used, retry, name)
        counted: list[str] = []
        for prefix, limit, _, name in windows:
            if limit is not None:
                key = f"{prefix}:{minute}:req"
                n = await self.counters.incr(key, 1)
                if n > limit:
                    for k in (*counted, key):
                        await self.counters.incr(k, -1)
                    raise RateLimited("requests", limit, n - 1, retry, name)
                counted.append(key)
        return admission

    async def add_tokens(
        self, owner: str, tokens: int, model: str | None = None, key_wide: bool = True
    ) -> None:
        """Add a finished request's tokens to the key's window and to its model's."""
        minute, _ = self._window()
        if key_wide:
            await self.counters.incr(f"{_prefix(owner, None)}:{minute}:tok", tokens)
        if model is not None:
            await self.counters.incr(f"{_prefix(owner, model)}:{minute}:tok", tokens)


@dataclass(frozen=True)
class Admission:
    """An admitted request's token windows: only the windows a limit reads are counted,
    so a key without token limits costs no counter write when its requests end."""

    limiter: RateLimiter
    owner: str
    model: str
    key_tpm: bool
    model_tpm: bool

    @property
    def counts_tokens(self) -> bool:
        return self.key_tpm or self.model_tpm

    async def add_tokens(self, tokens: int) -> None:
        if self.counts_tokens:
            model = self.model if self.model_tpm else None
            await self.limiter.add_tokens(self.owner, tokens, model, key_wide=self.key_tpm)


def _prefix(owner: str, model: str | None) -> str:
    """Counter keys: chatd:rl:{owner}[:{model}]:{minute}:req|tok. Owners have no ':' and
    minutes are numbers, so a model's keys never collide with the key-wide ones."""
    return f"chatd:rl:{owner}" if model is None else f"chatd:rl:{owner}:{model}"

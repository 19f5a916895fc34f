"""Upstream channels: OpenAI-compatible servers that serve some public model ids, with
their health. A channel that fails repeatedly cools down (skipped), then is probed
again by real traffic once the cooldown has passed."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, TypeVar

import aiohttp


@dataclass
class Channel:
    name: str
    base_url: str  # ends with /v1
    models: dict[str, str]  # public id -> upstream id
    api_key: str | None = None  # resolved from the environment, never from the file
    priority: int = 0  # lower first
    weight: float = 1.0
    connect_timeout: float = 5.0
    first_token_timeout: float = 60.0  # no first byte of the answer within: try the next
    read_timeout: float = 300.0
    failures_before_cooldown: int = 3
    cooldown_seconds: float = 30.0
    # The API the channel is spoken to in: "chat" (Chat Completions; a Responses request
    # is translated) or "responses" (the channel serves the Responses API itself).
    api: str = "chat"
    failures: int = field(default=0, init=False)
    cooling_until: float = field(default=0.0, init=False)
    # Process-lifetime counts, read by the metrics collector (plain ints: no prometheus here).
    successes_total: int = field(default=0, init=False)
    failures_total: int = field(default=0, init=False)
    cooldowns_total: int = field(default=0, init=False)

    def healthy(self, now: float | None = None) -> bool:
        return (now or time.monotonic()) >= self.cooling_until

    @cached_property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @cached_property
    def responses_url(self) -> str:
        return self.base_url.rstrip("/") + "/responses"

    @cached_property
    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    @cached_property
    def timeouts(self) -> aiohttp.ClientTimeout:
        """No overall limit (a stream may be long); a connect limit, and a limit on
        silence: no byte for read_timeout seconds."""
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
        )

    def succeeded(self) -> None:
        self.successes_total += 1
        self.failures = 0
        self.cooling_until = 0.0

    def failed(self) -> None:
        self.failures += 1
        self.failures_total += 1
        if self.failures >= self.failures_before_cooldown:
            now = time.monotonic()
            if self.healthy(now):  # a failure while already cooling extends, not re-enters
                self.cooldowns_total += 1
            self.cooling_until = now + self.cooldown_seconds

    def state(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "name": self.name,
            "healthy": self.healthy(now),
            "failures": self.failures,
            "cooling_seconds_left": max(0.0, round(self.cooling_until - now, 1)),
        }


class Routable(Protocol):
    """Anything a public model id can be routed to: a channel, or the local engine."""

    priority: int
    weight: float

    def healthy(self, now: float | None = None) -> bool: ...


R = TypeVar("R", bound=Routable)
_rng = random.Random()


def route(routes: list[R], rng: random.Random | None = None) -> list[R]:
    """The order to try routes in: healthy ones only, lowest priority number first,
    weighted random within a priority."""
    rng = rng or _rng
    healthy = [c for c in routes if c.healthy()]
    order: list[R] = []
    for priority in sorted({c.priority for c in healthy}):
        group = [c for c in healthy if c.priority == priority]
        while group:
            pick = rng.choices(group, weights=[max(c.weight, 1e-9) for c in group])[0]
            order.append(pick)
            group.remove(pick)
    return order

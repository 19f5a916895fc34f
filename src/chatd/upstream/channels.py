"""Upstream channels: OpenAI-compatible servers that serve some public model ids, with
their health. A channel that fails repeatedly cools down (skipped), then is probed
again by real traffic once the cooldown has passed.

Health may be shared between replicas: a ``HealthBoard`` (injected; the service's
Redis one is ``service/channel_health.py``) hears of this replica's cooldowns and
recoveries, and tells the channel what the others saw (``shared``). Routing only ever
reads the channel's own fields: sharing costs the hot path nothing."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, TypeVar

import aiohttp

from chatd.upstream.relay_policy import RelayPolicy

# A shared cooldown that disappears this long before its end was cleared by a replica
# that saw the channel answer, not expired (the view is refreshed with some delay).
RECOVERY_MARGIN = 0.25


class HealthBoard(Protocol):
    """Where a replica publishes what it learns of a channel's health. Both calls are
    made on the event loop, from the relay, and must not block: publish later."""

    def cooled(self, channel: Channel) -> None: ...
    def recovered(self, channel: Channel) -> None: ...


# The Messages API version chatd speaks to an Anthropic channel (the one its SDK sends).
ANTHROPIC_VERSION = "2023-06-01"


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
    # The API the channel is spoken to in: "chat" (Chat Completions; a Responses or
    # Messages request is translated), "responses" (the channel serves the Responses API
    # itself) or "anthropic" (Anthropic's Messages API: a Messages request goes as it
    # came, Chat Completions and Responses requests are translated).
    api: str = "chat"
    # What it is sent of a request: its allowed fields, the operator's store, metadata,
    # user and safety_identifier (upstream/relay_policy.py).
    relay: RelayPolicy = field(default_factory=RelayPolicy)
    # Public ids this channel serves as embedding models (a model entry's ``api =
    # "embeddings"``): relayed to its /embeddings, never sent a generation request.
    embeddings: frozenset[str] = frozenset()
    failures: int = field(default=0, init=False)
    cooling_until: float = field(default=0.0, init=False)
    # Process-lifetime counts, read by the metrics collector (plain ints: no prometheus here).
    successes_total: int = field(default=0, init=False)
    failures_total: int = field(default=0, init=False)
    cooldowns_total: int = field(default=0, init=False)
    # Another replica's cooldown of this channel (monotonic, as ours), and where to
    # publish ours: both set by the service when health is shared.
    shared_until: float = field(default=0.0, init=False)
    shared_elsewhere: bool = field(default=False, init=False)  # set by another replica
    board: HealthBoard | None = field(default=None, init=False, repr=False, compare=False)

    def healthy(self, now: float | None = None) -> bool:
        now = now or time.monotonic()
        return now >= self.cooling_until and now >= self.shared_until

    @property
    def key(self) -> str:
        """What names this channel among replicas: its name and where it points."""
        return f"{self.name}@{self.base_url}"

    @cached_property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @cached_property
    def completions_url(self) -> str:
        return self.base_url.rstrip("/") + "/completions"

    @cached_property
    def responses_url(self) -> str:
        return self.base_url.rstrip("/") + "/responses"

    @cached_property
    def messages_url(self) -> str:
        return self.base_url.rstrip("/") + "/messages"

    @cached_property
    def headers(self) -> dict[str, str]:
        """Anthropic takes its key as ``x-api-key`` and needs ``anthropic-version``; the
        OpenAI APIs take a Bearer token."""
        headers = {"content-type": "application/json"}
        if self.api == "anthropic":
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if self.api_key:
                headers["x-api-key"] = self.api_key
        elif self.api_key:
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
        recovering = self.cooling_until or self.shared_until  # else: nothing to tell
        self.failures = 0
        self.cooling_until = self.shared_until = 0.0
        self.shared_elsewhere = False
        if recovering and self.board is not None:
            self.board.recovered(self)

    def failed(self) -> None:
        self.failures += 1
        self.failures_total += 1
        if self.failures >= self.failures_before_cooldown:
            now = time.monotonic()
            if self.healthy(now):  # a failure while already cooling extends, not re-enters
                self.cooldowns_total += 1
            self.cooling_until = now + self.cooldown_seconds
            if self.board is not None:
                self.board.cooled(self)

    def shared(
        self, remaining: float | None, now: float | None = None, elsewhere: bool = True
    ) -> None:
        """What the replicas say: cooling for ``remaining`` more seconds (last set by
        another replica, or by this one), or (None) not cooling. A shared cooldown gone
        well before its end was cleared by a replica the channel answered: this
        replica's own cooldown and failures end with it."""
        now = now or time.monotonic()
        if remaining is not None and remaining > 0:
            self.shared_until, self.shared_elsewhere = now + remaining, elsewhere
            return
        if self.shared_until > now + RECOVERY_MARGIN:
            self.failures = 0
            self.cooling_until = 0.0
        self.shared_until, self.shared_elsewhere = 0.0, False

    def cooling_left(self, now: float | None = None) -> float:
        """Seconds until this channel is routed to again (this replica's or a shared
        cooldown, whichever ends last)."""
        now = now or time.monotonic()
        return max(0.0, self.cooling_until - now, self.shared_until - now)

    def state(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "name": self.name,
            "healthy": self.healthy(now),
            "failures": self.failures,
            "cooling_seconds_left": round(self.cooling_left(now), 1),
            # cooling because another replica saw it fail (this one may have seen nothing)
            "cooled_elsewhere": self.shared_elsewhere
            and self.shared_until > now >= self.cooling_until,
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

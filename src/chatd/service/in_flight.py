"""Per-key limits on requests in flight: one key cannot hold more than its share of the
server at once, so a burst from one key waits (429) instead of filling the engine's
queue (a 503 for everyone) or a relay's connections.

A request holds a ``Slot`` from its admission until its answer has ended, a stream's
last byte included; the slot is given back however it ends (finished, refused later,
failed, cut by the drain, its client gone). The counts live in this process: with
several replicas a key may hold up to the limit on each. Sharing them through Redis
would need leases that expire (a replica that dies holding slots must not keep them
forever) for a limit that a load balancer already spreads; not done.

A key's limit is its own (``chatd keys create --max-in-flight``) or the server's
(``--max-in-flight-per-key``); 0 is no limit."""

from __future__ import annotations

from chatd.protocol.errors import APIError
from chatd.service.quotas import DEFAULT_MAX_IN_FLIGHT

__all__ = ["InFlight", "Slot", "TooManyInFlight"]

RETRY_AFTER = 1  # seconds: a slot frees when one of the key's own requests ends


class TooManyInFlight(APIError):
    """429 as OpenAI's rate limits are (code ``rate_limit_exceeded``, so clients back
    off as they do for those), saying which limit and what frees it."""

    status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"Rate limit reached on requests in flight: Limit {limit}, Used {limit}. This key"
            f" already has {limit} requests running; retry when one has ended (in"
            f" {RETRY_AFTER}s).",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(RETRY_AFTER)},
        )


class Slot:
    """One admitted request's place; ``release`` is idempotent, so every path that ends
    a request may call it."""

    __slots__ = ("_counter", "_owner")

    def __init__(self, counter: InFlight | None, owner: str) -> None:
        self._counter = counter
        self._owner = owner

    def release(self) -> None:
        counter, self._counter = self._counter, None
        if counter is not None:
            counter._release(self._owner)


class InFlight:
    """Requests in flight per owner, in this process."""

    def __init__(self, default: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self.default = default
        self._counts: dict[str, int] = {}

    def limit_for(self, own: int | None) -> int:
        """A key's limit: its own, else the server's; 0 is none."""
        return self.default if own is None else own

    def acquire(self, owner: str, own_limit: int | None = None) -> Slot:
        """A slot for one more request of ``owner``, or TooManyInFlight. Synchronous: no
        other request can take the last slot between the check and the count."""
        limit = self.limit_for(own_limit)
        n = self._counts.get(owner, 0)
        if limit > 0 and n >= limit:
            raise TooManyInFlight(limit)
        self._counts[owner] = n + 1
        return Slot(self, owner)

    def count(self, owner: str) -> int:
        return self._counts.get(owner, 0)

    def _release(self, owner: str) -> None:
        n = self._counts.get(owner, 0) - 1
        if n > 0:
            self._counts[owner] = n
        else:  # owners with nothing in flight take no memory
            self._counts.pop(owner, None)

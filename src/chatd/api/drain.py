"""A graceful drain before the process exits (SIGTERM, api/shutdown.py): /health turns
503 at once so a load balancer stops sending; a new request is refused with 503
``server_shutting_down`` and ``Retry-After``; requests already running finish until the
drain's deadline, and those still running then are cut: a whole answer becomes that 503,
a stream ends with an error event and never a ``[DONE]`` (api/sse.py). Only then does
the server stop, and the lifespan flush usage and close the database (api/app.py).

The listening socket stays open while draining: a refused request gets a clear answer
at once rather than a connection refused, and every refusal closes its connection so a
client's keep-alive pool reconnects elsewhere."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from chatd.api.errors import error_response
from chatd.protocol.errors import ShuttingDown

__all__ = ["DEFAULT_DRAIN_SECONDS", "Drain", "DrainMiddleware"]

log = logging.getLogger("chatd.api")

DEFAULT_DRAIN_SECONDS = 30.0
HEALTH_PATH = "/health"


class Drain:
    """The process's drain state: read by the middleware (refusals, requests in flight),
    /health, and every answer's work (``cut``, awaited beside it: no cost per chunk)."""

    def __init__(self, seconds: float = DEFAULT_DRAIN_SECONDS, grace: float = 5.0) -> None:
        self.seconds = seconds
        # After the cut, how long a request that cannot see it (e.g. still waiting for a
        # channel's first byte) may take to end before the server stops anyway.
        self.grace = grace
        self.draining = False
        self.in_flight = 0
        self.started_at: float | None = None
        self._cut: asyncio.Future[None] | None = None
        self._idle: asyncio.Future[None] | None = None

    @property
    def cut(self) -> asyncio.Future[None]:
        """Done when the requests still running must stop (the deadline has passed)."""
        if self._cut is None:
            self._cut = asyncio.get_running_loop().create_future()
        return self._cut

    def begin(self) -> None:
        """From now on /health is 503 and new requests are refused."""
        if not self.draining:
            self.draining = True
            self.started_at = time.monotonic()
            log.info(
                "draining: %d request(s) in flight, %gs to finish; new requests get 503",
                self.in_flight,
                self.seconds,
            )

    def cut_now(self) -> None:
        """Stop the requests still running (the deadline, or an impatient second signal)."""
        self.begin()
        if not self.cut.done():
            log.warning("drain: cutting %d running request(s)", self.in_flight)
            self.cut.set_result(None)

    async def run(self) -> float:
        """The whole drain: begin, wait for running requests until the deadline (or a
        ``cut_now``), cut what is left, give it ``grace`` to end. Returns its duration."""
        self.begin()
        if not await self._settled(self.seconds, or_cut=True):
            self.cut_now()
            if not await self._settled(self.grace, or_cut=False):
                log.warning("drain: %d request(s) did not end after the cut", self.in_flight)
        elapsed = time.monotonic() - (self.started_at or time.monotonic())
        log.info("drained in %.2fs", elapsed)
        return elapsed

    async def _settled(self, timeout: float, *, or_cut: bool) -> bool:
        """Whether no request is in flight, waiting up to ``timeout`` (or, ``or_cut``,
        until the cut)."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.get_running_loop().create_future()
        waiters: set[asyncio.Future[None]] = {self._idle}
        if or_cut:
            waiters.add(self.cut)
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return self.in_flight == 0

    def _ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)


class DrainMiddleware:
    """Counts the requests in flight and, while draining, refuses new ones (all but
    /health, whose route says it is draining)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain
        if scope["path"] == HEALTH_PATH:  # answered at once, draining or not: not counted
            await self.app(scope, receive, send)
            return
        if drain.draining:
            refusal = ShuttingDown("The server is shutting down and takes no new requests.")
            await error_response(refusal)(scope, receive, send)
            return
        drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            drain._ended()

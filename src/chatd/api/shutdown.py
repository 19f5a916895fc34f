"""uvicorn, stopped by a drain (api/drain.py) rather than uvicorn's own shutdown.

uvicorn 0.55 meets SIGTERM by closing its listening socket at once (a load balancer's
health check then fails with a refused connection, not a 503, and a new request is not
told to retry), waits for connections, cancels what outlives
``timeout_graceful_shutdown`` (a stream then just stops, without an error event), and
finally raises the signal again, so the process dies of SIGTERM (exit status 143).
Here the first SIGTERM or SIGINT starts the drain; uvicorn's shutdown runs only after
it, with nothing left to wait for; the process then exits 0. A second signal cuts the
running requests at once; a third forces uvicorn out (no lifespan shutdown, no flush)."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType

import uvicorn

from chatd.api.connections import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    fit_file_limit,
    guarded_protocol,
)
from chatd.api.drain import Drain
from chatd.tasks import spawn

__all__ = ["DrainingServer", "serve"]

log = logging.getLogger("chatd.api")

STARTUP_FAILURE = 3  # uvicorn's exit status when the app's startup fails


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self.signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal handler (main thread, between two bytecodes): the work is handed to
        the event loop. The signal is not recorded for uvicorn to raise again."""
        if self._loop is None or not self.started:
            self.should_exit = True  # still starting: nothing to drain
            return
        self._loop.call_soon_threadsafe(self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self.signals += 1
        log.info("received %s (%d)", signal.Signals(sig).name, self.signals)
        if self.signals == 1:
            spawn(self._drain_then_exit())
        elif self.signals == 2:
            self.drain.cut_now()
        else:
            self.force_exit = self.should_exit = True

    async def _drain_then_exit(self) -> None:
        try:
            await self.drain.run()
        finally:
            self.should_exit = True  # uvicorn's main loop sees it within 0.1 s


def serve(
    app: object,
    drain: Drain,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    **options: object,
) -> int:
    """Serve ``app`` until a signal has drained it: 0, or uvicorn's status for an app
    that failed to start. Each connection must send its request headers within
    ``header_timeout`` seconds; at most ``max_connections`` are open (api/connections.py)."""
    fit_file_limit(max_connections)
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=guarded_protocol(header_timeout, max_connections),
        # uvicorn's own limit, once the drain is over (a connection stuck writing to a
        # client that does not read): its tasks are cancelled after this.
        timeout_graceful_shutdown=max(1, int(drain.grace)),
        **options,  # type: ignore[arg-type]
    )
    server = DrainingServer(config, drain)
    server.run()
    if not server.started:
        return STARTUP_FAILURE
    return 0

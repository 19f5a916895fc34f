"""A client that goes away frees what its request holds: the work answering it is
cancelled (the engine slot is freed at the next step, an upstream stream is closed).
So does the server's drain deadline (api/drain.py), and then the client is told."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

from chatd.protocol.errors import ShuttingDown

__all__ = ["until_disconnect"]

T = TypeVar("T")

CUT_MESSAGE = "The server shut down before this answer was complete; retry the request."


async def until_disconnect(
    receive: Receive, work: Awaitable[T], cut: asyncio.Future[None] | None = None
) -> T | None:
    """Run ``work`` unless the client disconnects first: then cancel it, return None.
    If ``cut`` is done first (the drain's deadline passed), cancel it and raise
    ``ShuttingDown``. ``work``'s own errors propagate."""
    if cut is not None and cut.done():  # admitted just before the cut: not even started
        if inspect.iscoroutine(work):
            work.close()
        raise ShuttingDown(CUT_MESSAGE)
    # The watcher first: tasks start in the order they were made, so a client already
    # gone (it left while the request was being prepared) is seen before the work's
    # first step sends anything, and the request is logged as never answered (499).
    watcher = asyncio.ensure_future(_disconnected(receive))
    task = asyncio.ensure_future(work)
    waiters: set[asyncio.Future[object]] = {task, watcher}
    if cut is not None:
        waiters.add(cut)  # shared by every request: never cancelled here
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        if cut is not None and cut.done() and not _gone(watcher):
            raise ShuttingDown(CUT_MESSAGE)
        return None
    return task.result()


def _gone(watcher: asyncio.Future[None]) -> bool:
    return watcher.done() and not watcher.cancelled() and watcher.exception() is None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass

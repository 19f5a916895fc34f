"""A client that goes away frees what its request holds: the work answering it is
cancelled (the engine slot is freed at the next step, an upstream stream is closed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

__all__ = ["until_disconnect"]

T = TypeVar("T")


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T | None:
    """Run ``work`` unless the client disconnects first: then cancel it, return None.
    ``work``'s own errors propagate."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return None
    return task.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass

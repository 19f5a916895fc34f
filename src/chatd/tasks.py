"""Fire-and-forget work (rate-limit token counts, draining an upstream body): asyncio keeps
only weak references to tasks, so one set holds them until they end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["spawn", "stop"]

_running: set[asyncio.Task[Any]] = set()


def spawn(work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``work`` on the current loop without awaiting it; it cannot be collected early."""
    task = asyncio.get_running_loop().create_task(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background loop (``None``: never started) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

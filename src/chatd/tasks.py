"""Fire-and-forget work (rate-limit token counts, draining an upstream body): asyncio keeps
only weak references to tasks, so one set holds them until they end."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["spawn"]

_running: set[asyncio.Task[Any]] = set()


def spawn(work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``work`` on the current loop without awaiting it; it cannot be collected early."""
    task = asyncio.get_running_loop().create_task(work)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task

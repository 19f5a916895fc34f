"""Waiting for a condition, never for a time: the suite's one rule about speed.

No test's verdict depends on how fast the machine is. A test that needs something to
have happened waits for it (``wait_until`` / ``until``) under a deadline that only
guards against a hang: generous (``DEADLINE``), failing with a message that names what
never happened, never reached on a busy machine. A test that needs something NOT to
have happened waits for a later thing that can be seen and checks the order, or reads
a fake clock (a test seam), rather than sleeping and looking.

Shared by tests/unit/, tests/service/ and tests/e2e/ (tests/ is on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["DEADLINE", "until", "wait_until"]

DEADLINE = 120.0  # seconds: a hang fails after this; a slow machine never reaches it


def wait_until(
    condition: Callable[[], object],
    what: str,
    deadline: float = DEADLINE,
    interval: float = 0.01,
) -> None:
    """Poll ``condition`` (from a thread or a synchronous test) until it is true; fail
    naming ``what`` (what should have happened) after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"never happened within {deadline:.0f} s: {what}"
        time.sleep(interval)


async def until(
    condition: Callable[[], object | Awaitable[object]],
    what: str,
    deadline: float = DEADLINE,
    interval: float = 0.005,
) -> None:
    """``wait_until`` for async tests: yields to the event loop between polls, so the
    app or task under test runs; ``condition`` may be a coroutine function."""
    end = time.monotonic() + deadline
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert time.monotonic() < end, f"never happened within {deadline:.0f} s: {what}"
        await asyncio.sleep(interval)

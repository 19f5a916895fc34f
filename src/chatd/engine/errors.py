"""What the engine tells its callers when it cannot take or finish a request."""

from __future__ import annotations

__all__ = ["EngineFailure", "QueueFull"]


class QueueFull(Exception):
    """Too many requests are waiting; the caller should retry later."""


class EngineFailure(RuntimeError):
    """The engine could not complete a request."""

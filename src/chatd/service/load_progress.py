"""A model load's progress, shown only when the load is slow enough to wonder about.

llama.cpp reports the fraction of the model read many times a second; a small model
loads in well under a second and needs no progress at all. Past ``after`` seconds, one
log line is written each time the load crosses a quarter (25, 50, 75 and 100 %), so an
operator watching the log of a big model's start (or of a request waiting for one) sees
it move, and the log stays a handful of lines whatever the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LoadProgress"]

log = logging.getLogger("chatd.models")


class LoadProgress:
    """Called with the fraction loaded (0..1), from the loading thread."""

    def __init__(
        self,
        model_id: str,
        after: float = 1.0,
        steps: int = 4,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.model_id = model_id
        self.after = after
        self.steps = steps
        self.clock = clock
        self.write = write or log.info
        self.started = clock()
        self.shown = 0  # the last step shown (1..steps), 0: none yet

    def update(self, fraction: float) -> None:
        step = int(min(max(fraction, 0.0), 1.0) * self.steps + 1e-9)
        if step <= self.shown:
            return
        elapsed = self.clock() - self.started
        if elapsed < self.after:
            return  # a fast load shows nothing; a slow one's next step is shown
        self.shown = step
        percent = 100 * step // self.steps
        self.write(f"loading model {self.model_id}: {percent}% ({elapsed:.1f} s)")

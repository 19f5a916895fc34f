"""Embedding requests on the engine thread, interleaved with generation.

An ``EmbedJob`` is token lists in, one vector per list out: no API field names here. The
``Embedder`` keeps the jobs in arrival order and, each time the engine loop calls
``turn`` (after every generation step), computes one bounded pass of their tokens in
the embedding context (``embed_context.py``):

* while generation has work, at most ``busy_tokens`` tokens a pass (default 64, about
  one 64-row pass: a running stream's step grows by about that, never by a whole
  batch of documents);
* when nothing generates, up to ``idle_tokens`` (the context's batch).

Many small inputs share one pass (each its own sequence); a long input is split over
several passes when the model is pooled here (a chat model: mean over its tokens, its
earlier tokens' cells kept between passes). With the model's own pooling llama.cpp
needs each input whole in one pass: a pass then takes whole inputs, and an input longer
than the busy budget goes alone.

Pooling and normalization: a mean is the average of the tokens' final hidden states
(float64 sums); every vector is scaled to unit length (L2), as OpenAI's are, so a dot
product is the cosine similarity. A zero vector stays zero.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

log = logging.getLogger("chatd.engine")

__all__ = ["EmbedJob", "Embedder", "EmbedderConfig", "l2_normalize", "mean_pool"]


class ContextLike(Protocol):
    """What the embedder needs of ``EmbedContext`` (the unit tests give a fake)."""

    own_pooling: bool
    n_ctx: int
    n_batch: int
    n_seq: int

    def run(self, pieces: list[tuple[int, list[int], int]]) -> np.ndarray | list[np.ndarray]: ...

    def forget(self, seq: int) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EmbedderConfig:
    busy_tokens: int = 64  # tokens a pass while generation has work
    idle_tokens: int = 256  # tokens a pass when nothing generates (<= the context's batch)


def mean_pool(rows: np.ndarray) -> np.ndarray:
    """The average of token rows, summed in float64."""
    return rows.sum(axis=0, dtype=np.float64) / max(1, len(rows))


def l2_normalize(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1 (float64 norm); a zero vector is returned as is."""
    v = np.asarray(vector, dtype=np.float64)
    norm = float(np.sqrt(np.dot(v, v)))
    return v / norm if norm > 0 else v


class EmbedJob:
    """One request's token lists. ``done`` is called once, from the engine thread, with
    the vectors (float32, one per list, in order) or the exception that failed it."""

    def __init__(
        self,
        inputs: list[list[int]],
        done: Callable[[list[np.ndarray] | BaseException], None],
        normalize: bool = True,
    ) -> None:
        if not inputs or any(not t for t in inputs):
            raise ValueError("every input needs at least one token")
        self.inputs = inputs
        self.normalize = normalize
        self.vectors: list[np.ndarray | None] = [None] * len(inputs)
        self.left = len(inputs)
        self.cancelled = False
        self.finished = False
        self._done = done

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.inputs)

    def _set(self, index: int, vector: np.ndarray) -> None:
        if self.normalize:
            vector = l2_normalize(vector)
        self.vectors[index] = np.asarray(vector, dtype=np.float32)
        self.left -= 1
        if self.left == 0 and not self.finished:
            self.finished = True
            self._done([v for v in self.vectors if v is not None])

    def _fail(self, error: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self._done(error)


@dataclass(eq=False)
class _Input:
    job: EmbedJob
    index: int
    tokens: list[int]
    seq: int = -1  # its sequence while in flight
    done: int = 0  # tokens computed so far
    total: np.ndarray | None = field(default=None, repr=False)  # sum of their rows


class Embedder:
    """The embedding jobs of one engine; ``turn`` runs on the engine thread only,
    ``submit``/``cancel`` from any thread. ``make_context`` builds the llama.cpp context
    on the first job (no memory is spent on a server that never embeds); ``wake`` is
    the engine loop's condition, notified when a job arrives."""

    def __init__(
        self,
        make_context: Callable[[], ContextLike],
        wake: threading.Condition,
        config: EmbedderConfig = EmbedderConfig(),
    ) -> None:
        self._make = make_context
        self._wake = wake
        self.config = config
        self.ctx: ContextLike | None = None
        self._incoming: list[EmbedJob] = []
        self._lock = threading.Lock()
        self._queue: deque[_Input] = deque()  # not yet started, in arrival order
        self._flying: list[_Input] = []  # started (pooled here: some tokens computed)
        self._free: list[int] = []
        self._cells = 0  # cells reserved by inputs in flight (their whole length)
        self.tokens_total = 0  # computed, for metrics
        self.passes_total = 0

    # --- any thread ---------------------------------------------------------------------
    def submit(self, job: EmbedJob) -> None:
        with self._lock:
            self._incoming.append(job)
        with self._wake:
            self._wake.notify()

    def cancel(self, job: EmbedJob) -> None:
        job.cancelled = True
        with self._wake:
            self._wake.notify()

    def has_work(self) -> bool:
        return bool(self._incoming or self._queue or self._flying)

    # --- engine thread ------------------------------------------------------------------
    def turn(self, busy: bool) -> bool:
        """One pass of embedding work (bounded by ``busy``: generation has work); False
        when there was none."""
        self._take_incoming()
        self._drop_cancelled()
        if not self._queue and not self._flying:
            return False
        try:
            ctx = self._context()
            pieces, inputs = self._plan(ctx, busy)
            out = ctx.run(pieces)
        except Exception as e:  # the jobs fail; the engine goes on
            log.exception("embedding pass failed")
            self._fail_all(e)
            return True
        self.passes_total += 1
        self.tokens_total += sum(len(t) for _, t, _ in pieces)
        if ctx.own_pooling:
            assert isinstance(out, list)
            for inp, vector in zip(inputs, out, strict=True):
                self._finish(inp, vector)
            ctx.clear()
            return True
        assert isinstance(out, np.ndarray)
        row = 0
        for inp, (_, tokens, _) in zip(inputs, pieces, strict=True):
            part = out[row : row + len(tokens)]
            row += len(tokens)
            total = part.sum(axis=0, dtype=np.float64)
            inp.total = total if inp.total is None else inp.total + total
            inp.done += len(tokens)
            if inp.done == len(inp.tokens):
                self._flying.remove(inp)
                self._release(ctx, inp)
                self._finish(inp, inp.total / len(inp.tokens))
        return True

    def close(self) -> None:
        self._fail_all(RuntimeError("the engine stopped"))
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None

    def _context(self) -> ContextLike:
        if self.ctx is None:
            self.ctx = self._make()
            self._free = list(range(self.ctx.n_seq - 1, -1, -1))
        return self.ctx

    def _take_incoming(self) -> None:
        with self._lock:
            jobs, self._incoming = self._incoming, []
        for job in jobs:
            self._queue.extend(_Input(job, i, t) for i, t in enumerate(job.inputs))

    def _drop_cancelled(self) -> None:
        if any(i.job.cancelled for i in self._queue):
            self._queue = deque(i for i in self._queue if not i.job.cancelled)
        for inp in [i for i in self._flying if i.job.cancelled]:
            self._flying.remove(inp)
            if self.ctx is not None:
                self._release(self.ctx, inp)

    def _plan(
        self, ctx: ContextLike, busy: bool
    ) -> tuple[list[tuple[int, list[int], int]], list[_Input]]:
        """This pass's pieces (seq id, tokens, first position) and their inputs."""
        budget = min(self.config.busy_tokens if busy else self.config.idle_tokens, ctx.n_batch)
        pieces: list[tuple[int, list[int], int]] = []
        inputs: list[_Input] = []
        if ctx.own_pooling:  # whole inputs; one longer than the budget goes alone
            while self._queue and len(pieces) < ctx.n_seq:
                n = len(self._queue[0].tokens)
                if pieces and n > budget:
                    break
                inp = self._queue.popleft()
                budget -= n
                pieces.append((len(pieces), inp.tokens, 0))
                inputs.append(inp)
            return pieces, inputs
        for inp in self._flying:  # inputs already started go on first
            if budget <= 0:
                break
            take = inp.tokens[inp.done : inp.done + budget]
            pieces.append((inp.seq, take, inp.done))
            inputs.append(inp)
            budget -= len(take)
        while budget > 0 and self._queue and self._free:
            n = len(self._queue[0].tokens)
            if self._cells + n > ctx.n_ctx:
                if self._flying:
                    break  # wait for cells
                raise RuntimeError(f"an input of {n} tokens exceeds the {ctx.n_ctx} cells")
            inp = self._queue.popleft()
            inp.seq = self._free.pop()
            self._cells += n
            self._flying.append(inp)
            take = inp.tokens[:budget]
            pieces.append((inp.seq, take, 0))
            inputs.append(inp)
            budget -= len(take)
        return pieces, inputs

    def _release(self, ctx: ContextLike, inp: _Input) -> None:
        ctx.forget(inp.seq)
        self._free.append(inp.seq)
        self._cells -= len(inp.tokens)
        inp.seq = -1

    def _finish(self, inp: _Input, vector: np.ndarray) -> None:
        if not inp.job.cancelled:
            inp.job._set(inp.index, vector)

    def _fail_all(self, error: BaseException) -> None:
        jobs = {id(i.job): i.job for i in [*self._queue, *self._flying]}
        with self._lock:
            jobs.update({id(j): j for j in self._incoming})
            self._incoming.clear()
        for job in jobs.values():
            job._fail(error)
        self._queue.clear()
        self._flying.clear()
        self._cells = 0
        if self.ctx is not None:
            self._free = list(range(self.ctx.n_seq - 1, -1, -1))
            try:
                self.ctx.clear()
            except Exception:  # noqa: BLE001 - a context that cannot clear is closed later
                log.exception("embedding context could not be cleared")

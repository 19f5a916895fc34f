"""The engine's embedding scheduler (engine/embedding.py) over a fake context: mean
pooling over passes, L2 normalization, many inputs in one pass, a long input split
over passes within the busy budget, the model's own pooling (whole inputs), cells and
sequence ids given back, cancellation, and a failing pass failing only its jobs."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from chatd.engine.embedding import (
    Embedder,
    EmbedderConfig,
    EmbedJob,
    l2_normalize,
    mean_pool,
)

DIM = 4


def _row(token: int) -> np.ndarray:
    return np.random.default_rng(token).standard_normal(DIM).astype(np.float32)


class FakeContext:
    """Rows are a fixed vector per token id (what a causal model's state is not, but
    pooling and bookkeeping do not care); records every pass and freed sequence."""

    def __init__(self, own_pooling: bool = False, n_ctx: int = 1000, n_batch: int = 256) -> None:
        self.own_pooling = own_pooling
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_seq = 8
        self.passes: list[list[tuple[int, list[int], int]]] = []
        self.forgotten: list[int] = []
        self.fail = False
        self.closed = False

    def run(self, pieces: list[tuple[int, list[int], int]]) -> Any:
        if self.fail:
            raise RuntimeError("decode failed")
        self.passes.append(pieces)
        if self.own_pooling:
            return [np.sum([_row(t) for t in tokens], axis=0) * 3 for _, tokens, _ in pieces]
        return np.array([_row(t) for _, tokens, _ in pieces for t in tokens])

    def forget(self, seq: int) -> None:
        self.forgotten.append(seq)

    def clear(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _embedder(ctx: FakeContext, busy: int = 4, idle: int = 256) -> Embedder:
    return Embedder(lambda: ctx, threading.Condition(), EmbedderConfig(busy, idle))


def _job(inputs: list[list[int]]) -> tuple[EmbedJob, list[Any]]:
    out: list[Any] = []
    return EmbedJob(inputs, out.append), out


def _expected(tokens: list[int]) -> np.ndarray:
    return l2_normalize(mean_pool(np.array([_row(t) for t in tokens]))).astype(np.float32)


def test_mean_pool_and_normalize() -> None:
    rows = np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32)
    assert mean_pool(rows).tolist() == [2.0, 4.0]
    v = l2_normalize(np.array([3.0, 4.0]))
    assert v.tolist() == [0.6, 0.8]
    assert l2_normalize(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_small_inputs_share_one_pass_and_are_mean_pooled() -> None:
    ctx = FakeContext()
    e = _embedder(ctx)
    job, out = _job([[1, 2], [3], [4, 5, 6]])
    e.submit(job)
    assert e.turn(busy=False)
    assert len(ctx.passes) == 1 and len(ctx.passes[0]) == 3
    [vectors] = out
    for got, tokens in zip(vectors, job.inputs, strict=True):
        np.testing.assert_allclose(got, _expected(tokens), rtol=1e-6)
        assert abs(float(np.linalg.norm(got)) - 1) < 1e-6
    assert sorted(ctx.forgotten) == sorted({s for s, _, _ in ctx.passes[0]})
    assert not e.has_work() and not e.turn(busy=False)


def test_a_long_input_is_split_within_the_busy_budget() -> None:
    ctx = FakeContext()
    e = _embedder(ctx, busy=4)
    tokens = list(range(10, 21))  # 11 tokens: passes of 4, 4, 3 while generation runs
    job, out = _job([tokens])
    e.submit(job)
    while e.turn(busy=True):
        pass
    assert [[len(t) for _, t, _ in p] for p in ctx.passes] == [[4], [4], [3]]
    assert [p[0][2] for p in ctx.passes] == [0, 4, 8]  # positions continue
    np.testing.assert_allclose(out[0][0], _expected(tokens), rtol=1e-5)


def test_the_models_own_pooling_takes_whole_inputs() -> None:
    ctx = FakeContext(own_pooling=True)
    e = _embedder(ctx, busy=4)
    job, out = _job([[1, 2, 3, 4, 5, 6], [7], [8, 9]])
    e.submit(job)
    while e.turn(busy=True):
        pass
    # a 6-token input goes alone (it cannot be split), the next two share a pass
    assert [[t for _, t, _ in p] for p in ctx.passes] == [[[1, 2, 3, 4, 5, 6]], [[7], [8, 9]]]
    for got, tokens in zip(out[0], job.inputs, strict=True):
        expected = l2_normalize(np.sum([_row(t) for t in tokens], axis=0))
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_inputs_wait_for_cells() -> None:
    ctx = FakeContext(n_ctx=10)
    e = _embedder(ctx, busy=100, idle=100)
    job, out = _job([[1] * 6, [2] * 6])  # both do not fit at once
    e.submit(job)
    e.turn(busy=False)
    assert [len(t) for _, t, _ in ctx.passes[0]] == [6]
    e.turn(busy=False)
    assert len(out) == 1 and len(out[0]) == 2


def test_jobs_finish_in_order_and_a_batch_equals_singles() -> None:
    ctx = FakeContext()
    e = _embedder(ctx, busy=3)
    first, out1 = _job([[1, 2, 3, 4, 5]])
    second, out2 = _job([[6, 7]])
    e.submit(first)
    e.submit(second)
    while e.turn(busy=True):
        pass
    np.testing.assert_allclose(out1[0][0], _expected([1, 2, 3, 4, 5]), rtol=1e-5)
    np.testing.assert_allclose(out2[0][0], _expected([6, 7]), rtol=1e-5)


def test_cancelled_jobs_are_dropped() -> None:
    ctx = FakeContext()
    e = _embedder(ctx, busy=2)
    job, out = _job([[1, 2, 3, 4, 5, 6]])
    e.submit(job)
    e.turn(busy=True)
    e.cancel(job)
    assert not e.turn(busy=True)
    assert out == [] and ctx.forgotten  # its cells were given back


def test_a_failing_pass_fails_its_jobs_and_the_embedder_goes_on() -> None:
    ctx = FakeContext()
    e = _embedder(ctx)
    job, out = _job([[1, 2]])
    e.submit(job)
    ctx.fail = True
    e.turn(busy=False)
    assert isinstance(out[0], RuntimeError)
    ctx.fail = False
    again, out2 = _job([[1, 2]])
    e.submit(again)
    e.turn(busy=False)
    np.testing.assert_allclose(out2[0][0], _expected([1, 2]), rtol=1e-6)


def test_close_fails_waiting_jobs() -> None:
    ctx = FakeContext()
    e = _embedder(ctx)
    job, out = _job([[1]])
    e.submit(job)
    e.close()
    assert isinstance(out[0], RuntimeError)


def test_empty_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        EmbedJob([[1], []], lambda _: None)
    with pytest.raises(ValueError):
        EmbedJob([], lambda _: None)

"""The engine's KV handling on the real model, without HTTP: a repack under load, a hit
restored from host memory and one read back from disk after a restart all give the
bit-identical tokens and logprobs of a cold computation (docs/engine.md, "Prefix cache"
and "Determinism")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatd.config import embedded_model_path
from chatd.engine.engine import Engine, EngineConfig
from chatd.engine.model_runner import RunnerConfig
from chatd.engine.params import SamplingParams
from chatd.engine.scheduler import SchedulerConfig

STORY = "Tell me a long story about a lighthouse keeper and the sea, with many details. "


def engine(tmp: Path | None = None, **sched: object) -> Engine:
    e = Engine(
        EngineConfig(
            RunnerConfig(embedded_model_path(), n_ctx=4096, n_seq_max=17, prefill_ctx=2048),
            SchedulerConfig(n_ctx_seq=2048, **sched),  # type: ignore[arg-type]
            prefix_cache_dir=tmp,
        )
    )
    e.start()
    return e


@pytest.fixture(scope="module")
def cold() -> Iterator[Engine]:
    e = engine(prefix_cache_bytes=0)
    yield e
    e.stop()


def prompt(e: Engine, text: str) -> list[int]:
    return e.render_chat([{"role": "user", "content": text}])


async def answer(e: Engine, tokens: list[int], n: int = 40) -> tuple[str, list[float], int]:
    params = SamplingParams(temperature=0, max_new_tokens=n, logprobs=True)
    gen = e.submit(tokens, params)
    text, logprobs = "", []
    async for deltas in gen:
        for d in deltas:
            text += d.text
            logprobs += [lp.logprob for lp in d.logprobs]
    return text, logprobs, gen.cached_tokens


def test_a_repack_under_load_changes_no_result(cold: Engine) -> None:
    long = prompt(cold, STORY * 12)
    alone = asyncio.run(answer(cold, long, 80))
    e = engine(repack_min_cells=64)
    try:

        async def beside_short_ones() -> tuple[str, list[float], int]:
            main = asyncio.ensure_future(answer(e, long, 80))
            for i in range(12):  # short requests finish and retire cells while it runs
                await answer(e, prompt(e, f"Say the number {i}."), 6)
            return await main

        loaded = asyncio.run(beside_short_ones())
        assert e.scheduler.repacks > 0
    finally:
        e.stop()
    assert loaded[:2] == alone[:2]


def test_a_hit_restored_from_memory_is_the_cold_answer(cold: Engine) -> None:
    first = prompt(cold, STORY * 8 + "Who is the keeper?")
    second = prompt(cold, STORY * 8 + "What colour is the sea?")
    e = engine()
    try:
        asyncio.run(answer(e, first))
        hit = asyncio.run(answer(e, second))
    finally:
        e.stop()
    assert hit[2] > 64
    assert hit[:2] == asyncio.run(answer(cold, second))[:2]


def test_a_restarted_engine_hits_its_disk_tier(cold: Engine, tmp_path: Path) -> None:
    first = prompt(cold, STORY * 8 + "Who is the keeper?")
    second = prompt(cold, STORY * 8 + "What colour is the sea?")
    e = engine(tmp_path)
    try:
        asyncio.run(answer(e, first))
    finally:
        e.stop()  # flushes the disk tier
    again = engine(tmp_path)
    try:
        hit = asyncio.run(answer(again, second))
    finally:
        again.stop()
    assert hit[2] > 64
    assert hit[:2] == asyncio.run(answer(cold, second))[:2]


def test_sessions_coming_back_together_get_the_cold_answers(cold: Engine) -> None:
    """Two sessions' next turns at once: one restores its history, the other shares the
    system prompt's segments with it and restores only its own rest (kv_cache.CacheHit)."""
    system = STORY * 40  # ~700 tokens: more than one 512-token segment
    first = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in
             ("Who is the keeper?", "What colour is the sea?")]  # fmt: skip
    e = engine()
    try:
        answers = [asyncio.run(answer(e, e.render_chat(m), 12))[0] for m in first]
        turns = [
            e.render_chat(
                [*m, {"role": "assistant", "content": a}, {"role": "user", "content": "Why?"}]
            )
            for m, a in zip(first, answers, strict=True)
        ]

        async def together() -> list[tuple[str, list[float], int]]:
            return list(await asyncio.gather(*(answer(e, t) for t in turns)))

        hits = asyncio.run(together())
    finally:
        e.stop()
    assert all(h[2] > 512 for h in hits), [h[2] for h in hits]
    for t, h in zip(turns, hits, strict=True):
        assert h[:2] == asyncio.run(answer(cold, t))[:2]

"""Embeddings beside generation, on the engine itself (no HTTP): how long decoding
streams stall while a batch of documents is embedded, against the same streams alone,
and how long the embedding job takes alone and beside them.

    .venv/bin/python benchmarks/embeddings.py [--streams 4] [--docs 16] [--doc-tokens 200]

Figures: the streams' mean and worst gap between two steps' deltas (ms), the embedding
job's wall time (s). The blocking alternative (the whole batch in one pass before the
next step) would stall every stream for the job's whole time alone."""

from __future__ import annotations

import argparse
import asyncio
import time

from chatd.config import embedded_model_path
from chatd.engine.engine import Engine, EngineConfig
from chatd.engine.model_runner import RunnerConfig
from chatd.engine.params import SamplingParams
from chatd.engine.scheduler import SchedulerConfig


async def _stream(engine: Engine, prompt: list[int], tokens: int) -> list[float]:
    """Gaps (s) between consecutive deltas of one greedy stream."""
    gen = engine.submit(prompt, SamplingParams(max_new_tokens=tokens, temperature=0.0))
    gaps, last = [], None
    async for _ in gen:
        now = time.perf_counter()
        if last is not None:
            gaps.append(now - last)
        last = now
    return gaps


async def _run(engine: Engine, args: argparse.Namespace, embed: bool) -> tuple[list[float], float]:
    prompt = engine.render_chat([{"role": "user", "content": "Tell me a long story."}])
    docs = [[(i * 131 + k) % 30000 + 100 for k in range(args.doc_tokens)] for i in range(args.docs)]
    streams = [
        asyncio.create_task(_stream(engine, prompt, args.tokens)) for _ in range(args.streams)
    ]
    embed_s = 0.0
    if embed:
        await asyncio.sleep(1.0)  # the streams are decoding
        t = time.perf_counter()
        await engine.embed(docs).vectors()
        embed_s = time.perf_counter() - t
    gaps = [g for s in await asyncio.gather(*streams) for g in s]
    return gaps, embed_s


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--tokens", type=int, default=96)
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--doc-tokens", type=int, default=200)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    runner = RunnerConfig(embedded_model_path(), n_ctx=8192, n_seq_max=32, n_threads=args.threads)
    engine = Engine(EngineConfig(runner, SchedulerConfig(n_ctx_seq=4096)))
    engine.start()
    try:
        docs = [[k % 30000 + 100 for k in range(args.doc_tokens)] for _ in range(args.docs)]
        t = time.perf_counter()
        await engine.embed(docs).vectors()  # also makes the context
        t = time.perf_counter()
        await engine.embed(docs).vectors()
        alone = time.perf_counter() - t
        total = args.docs * args.doc_tokens
        print(f"embedding {args.docs} x {args.doc_tokens} tokens alone: {alone:.2f} s"
              f" ({total / alone:.0f} tok/s)", flush=True)  # fmt: skip
        _report("streams alone", (await _run(engine, args, embed=False))[0])
        mixed, embed_s = await _run(engine, args, embed=True)
        print(f"the same embedding beside {args.streams} streams: {embed_s:.2f} s")
        _report("streams + embedding", mixed)
    finally:
        engine.stop()


def _report(name: str, gaps: list[float]) -> None:
    gaps.sort()
    mean, p95 = sum(gaps) / len(gaps), gaps[int(len(gaps) * 0.95)]
    print(f"{name}: step gap mean {mean * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms,"
          f" max {gaps[-1] * 1000:.0f} ms", flush=True)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())

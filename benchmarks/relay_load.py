"""The load generator of ``relay.py``: streamed requests in a closed loop, and what a level
measured.

Its own client, not ``client.py``'s: the load generator's CPU per request is a reported figure
(for scale next to the gateways'), so it keeps only what the relay tables need (times in ms
to the first content and to ``[DONE]``, counts for the checks) and stops timing at
``[DONE]``, before the response is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import harness
import httpx


@dataclass
class Result:
    ok: bool
    ttft: float = 0.0  # ms to the first non-empty content delta
    total: float = 0.0  # ms to [DONE]
    content_chunks: int = 0
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Level:
    mode: str
    path: str
    run: int
    wall: float
    results: list[Result]
    gateway_cpu: float | None = None  # CPU seconds of the gateway during the level
    stub_cpu: float = 0.0
    client_cpu: float = 0.0  # this script (the load generator)
    other: float = 0.0  # cores used by other processes
    attempts: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def good(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    @property
    def rps(self) -> float:
        return len(self.good) / self.wall

    def pct(self, what: str, q: float) -> float:
        return harness.percentile([getattr(r, what) for r in self.good], q)

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.gateway_cpu is None or not self.results:
            return None
        return self.gateway_cpu * 1000 / len(self.results)


def body(mode: str) -> dict[str, Any]:
    return {
        "model": mode,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def stream_one(
    client: httpx.AsyncClient, mode: str, keep: list[dict[str, Any]] | None = None
) -> Result:
    """One streamed request; ``keep`` collects every parsed chunk (for the fidelity check)."""
    res = Result(ok=False)
    start = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body(mode)) as r:
            if r.status_code != 200:
                res.error = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return res
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    res.total = (time.perf_counter() - start) * 1000
                    res.ok = True
                    break
                chunk = json.loads(data)
                if keep is not None:
                    keep.append(chunk)
                if "error" in chunk:
                    res.error = f"error event: {json.dumps(chunk['error'])[:200]}"
                    return res
                if chunk.get("usage"):
                    res.usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        if not res.content_chunks:
                            res.ttft = (time.perf_counter() - start) * 1000
                        res.content_chunks += 1
                    if choice.get("finish_reason"):
                        res.finish_reason = choice["finish_reason"]
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        res.error = f"{type(e).__name__}: {e}"
        return res
    if not res.ok:
        res.error = "stream ended without [DONE]"
    return res


async def run_level(
    client: httpx.AsyncClient, mode: str, concurrency: int, total: int, stagger: float = 0.0
) -> tuple[list[Result], float]:
    """Closed loop: ``concurrency`` workers send ``total`` requests, each when its last ended.
    Worker i starts after i x ``stagger`` seconds, so that streams of a fixed length do not
    run in lockstep (all starting, and all chunks arriving, at the same instants)."""
    left = total
    results: list[Result] = []

    async def worker(i: int) -> None:
        nonlocal left
        await asyncio.sleep(i * stagger)
        while left > 0:
            left -= 1
            results.append(await stream_one(client, mode))

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return results, time.perf_counter() - start


def stream_seconds(args: argparse.Namespace) -> float:
    """How long the stub takes for one paced answer."""
    return (args.ttft_ms + (args.chunks - 1) * args.interval_ms) / 1000


def check(level: Level, chunks: int) -> list[str]:
    """Failures and streams that are not what the stub sent (each kind reported once)."""
    tag = f"{level.path} {level.mode} run {level.run}"
    kinds: dict[str, int] = {}
    for r in level.results:
        problem = None
        if not r.ok:
            problem = f"failed: {r.error}"
        elif r.content_chunks != chunks:
            problem = f"{r.content_chunks} content chunks, expected {chunks}"
        elif r.finish_reason != "stop":
            problem = f"finish_reason {r.finish_reason!r}"
        elif r.usage is None:
            problem = "no usage chunk"
        elif r.usage.get("completion_tokens") != chunks:
            problem = f"usage {r.usage}"
        if problem:
            kinds[problem] = kinds.get(problem, 0) + 1
    return [f"{tag}: {n} requests {p}" for p, n in kinds.items()]

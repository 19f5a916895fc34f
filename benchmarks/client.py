"""The HTTP client of the model benchmarks: streamed and plain chat completions, and what a
level of concurrent streams reports (tok/s, TTFT and ITL percentiles).

``throughput.py`` and ``serving.py`` measure servers with this one client, so that their
numbers count the same things: TTFT is the time from sending a request to its first non-empty
content delta, tokens are ``usage.completion_tokens`` of the final chunk (content chunks when a
server sends no usage), and tok/s is a level's tokens over its wall time. (``relay.py`` keeps
its own leaner client: there the load generator's own CPU per request is a reported figure.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import harness
import httpx

REQUEST_TIMEOUT_S = 900.0  # a 32-stream level on two cores can take minutes


def base_url(url: str) -> str:
    """A server's root from a URL given on the command line, with or without ``/v1``."""
    return url.rstrip("/").removesuffix("/v1")


def open_client(base: str, api_key: str | None, connections: int) -> httpx.AsyncClient:
    """A client for one server, with enough connections for the largest level, so that no
    request of a level waits in the client's pool instead of the server's queue."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(
        base_url=base,
        headers=headers,
        limits=httpx.Limits(max_connections=connections),
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0),
    )


@dataclass
class Reply:
    """One request: streamed (chunk arrival times kept for TTFT and ITL) or not."""

    ok: bool = False
    error: str | None = None
    status: int | None = None
    ttft: float | None = None  # seconds to the first non-empty content (or tool call) delta
    duration: float = 0.0
    chunk_times: list[float] = field(default_factory=list)  # content chunks, since the start
    text: str = ""
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    tool_call_chunks: int = 0  # chunks with a ``tool_calls`` delta (requests with tools)

    @property
    def usage_tokens(self) -> int | None:
        """``usage.completion_tokens``; None when the server sent no usage."""
        return None if not self.usage else self.usage.get("completion_tokens")

    @property
    def content_chunks(self) -> int:
        return len(self.chunk_times)

    @property
    def tokens(self) -> int:
        """Completion tokens from usage; content chunks only when a server sends no usage."""
        if self.usage_tokens is not None:
            return int(self.usage_tokens)
        return self.content_chunks

    @property
    def prompt_tokens(self) -> int | None:
        return None if not self.usage else self.usage.get("prompt_tokens")

    @property
    def cached_tokens(self) -> int | None:
        details = (self.usage or {}).get("prompt_tokens_details") or {}
        return details.get("cached_tokens")

    @property
    def max_gap(self) -> float:
        """The longest silence between two content chunks (a stalled stream shows here)."""
        ts = self.chunk_times
        return max((b - a for a, b in zip(ts, ts[1:], strict=False)), default=0.0)

    def itl(self) -> list[float]:
        """Per-token inter-token latencies: each gap between two content chunks, divided by
        the stream's mean tokens per chunk (usage tokens / chunks). Both servers send one
        token per chunk almost always, and then this is just the gaps; a chunk holding
        several tokens (held-back stop text, split UTF-8) spreads its gap over them."""
        if len(self.chunk_times) < 2 or self.tokens <= 0:
            return []
        scale = len(self.chunk_times) / self.tokens
        ts = self.chunk_times
        return [(b - a) * scale for a, b in zip(ts, ts[1:], strict=False)]


async def stream(client: httpx.AsyncClient, body: dict[str, Any]) -> Reply:
    """A streamed chat completion, with the arrival time of every content chunk."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    res = Reply()
    start = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            res.status = resp.status_code
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                res.error = f"HTTP {resp.status_code}: {text[:300]}"
                return res
            saw_done = False
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments / pings (": ping ...")
                data = line[5:].strip()
                if data == "[DONE]":
                    saw_done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    res.error = f"error event: {json.dumps(chunk['error'])[:300]}"
                    return res
                if chunk.get("usage"):
                    res.usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if delta.get("tool_calls"):
                        res.tool_call_chunks += 1
                    if content or delta.get("tool_calls"):  # a tool call is output too
                        now = time.perf_counter() - start
                        if res.ttft is None:
                            res.ttft = now
                        res.chunk_times.append(now)
                        res.text += content or ""
                    if choice.get("finish_reason"):
                        res.finish_reason = choice["finish_reason"]
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        res.error = f"{type(e).__name__}: {e}"
        return res
    finally:
        res.duration = time.perf_counter() - start
    if not saw_done:
        res.error = "stream ended without [DONE]"
        return res
    res.ok = True
    return res


async def complete(client: httpx.AsyncClient, body: dict[str, Any]) -> Reply:
    """A non-streamed chat completion: wall time, text and usage."""
    res = Reply()
    start = time.perf_counter()
    try:
        resp = await client.post("/v1/chat/completions", json={**body, "stream": False})
        res.status = resp.status_code
        if resp.status_code != 200:
            res.error = f"HTTP {resp.status_code}: {resp.text[:300]}"
            return res
        data = resp.json()
        choice = data["choices"][0]
        res.text = choice["message"].get("content") or ""
        res.finish_reason = choice.get("finish_reason")
        res.usage = data.get("usage")
        res.ok = True
    except (httpx.HTTPError, json.JSONDecodeError, KeyError, IndexError) as e:
        res.error = f"{type(e).__name__}: {e}"
    finally:
        res.duration = time.perf_counter() - start
    return res


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` percentile, or None without values (shown as "-", written as null)."""
    return harness.percentile(values, q) if values else None


@dataclass
class Level:
    """The replies of one level of concurrent streams and its wall time."""

    replies: list[Reply]
    wall: float

    @property
    def good(self) -> list[Reply]:
        return [r for r in self.replies if r.ok]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.good)

    @property
    def tok_s(self) -> float:
        """All completion tokens of the level over its wall time: aggregate throughput."""
        return self.tokens / self.wall if self.wall > 0 else 0.0

    def ttft(self, q: float) -> float | None:
        """Seconds; None when no stream delivered content."""
        return pct([r.ttft for r in self.good if r.ttft is not None], q)

    def itl(self, q: float) -> float | None:
        """Seconds per token, over the inter-token gaps of all streams pooled."""
        return pct([x for r in self.good for x in r.itl()], q)

    def summary(self) -> dict[str, Any]:
        """What a level reports in ``serving.py``'s results (times in ms)."""
        good = self.good
        chunks = sum(len(r.chunk_times) for r in good)

        def ms(x: float | None) -> float | None:
            return None if x is None else x * 1000

        return {
            "requests": len(self.replies),
            "failed": len(self.replies) - len(good),
            "errors": [r.error for r in self.replies if not r.ok][:5],
            "wall_s": self.wall,
            "tokens": self.tokens,
            "tok_s": self.tok_s,
            "ttft_p50_ms": ms(self.ttft(0.5)),
            "ttft_p95_ms": ms(self.ttft(0.95)),
            "itl_p50_ms": ms(self.itl(0.5)),
            "itl_p95_ms": ms(self.itl(0.95)),
            "tokens_per_chunk": self.tokens / chunks if chunks else None,
            "cached_tokens_p50": pct(
                [float(r.cached_tokens) for r in good if r.cached_tokens is not None], 0.5
            ),
            "counted_from": "usage" if good and all(r.usage for r in good) else "chunks",
            "finish_reasons": sorted({str(r.finish_reason) for r in good}),
        }


async def run_level(
    client: httpx.AsyncClient,
    concurrency: int,
    body: Callable[[], dict[str, Any]],
    rounds: int = 1,
) -> Level:
    """``concurrency`` workers start together, each streaming ``rounds`` requests back to back,
    each request with a new ``body()``; tok/s is over the wall time of the whole level."""

    async def worker() -> list[Reply]:
        return [await stream(client, body()) for _ in range(rounds)]

    start = time.perf_counter()
    per_worker = await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return Level([r for rs in per_worker for r in rs], wall)

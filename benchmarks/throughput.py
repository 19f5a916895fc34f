#!/usr/bin/env python
"""Streaming throughput of chatd vs. llama-cpp-python's own OpenAI server (same GGUF).

For each server and each concurrency level C, C workers each send ``--rounds`` streaming chat
completions back to back, all asking for exactly ``--max-tokens`` new tokens. Reported per
(server, C): aggregate completion tokens/s (all tokens / wall time of the level), TTFT (time
from sending the request to the first non-empty content delta) p50 and p90, request count.

Every request really generates ``max_tokens`` tokens: ``logit_bias`` {0, 2, 4: -100} bans the
model's end-of-generation tokens (SmolLM2: 0 ``<|endoftext|>``, 2 ``<|im_end|>``,
4 ``<reponame>``, the tokens llama.cpp flags as EOG), so no stream stops early.
Tokens are counted from the final usage chunk (``stream_options.include_usage``); a server
that sends none (llama-cpp-python 0.3.36 ignores ``stream_options``) is counted by its
content chunks, one per token, and the table says so.

Every prompt is new to the server (a request number leads the user message), so no server
answers one from the KV of an identical earlier prompt; they share only the chat template's
default system prompt. Each server gets one warm-up request before measuring.

Levels are interleaved (chatd c=1, peer c=1, chatd c=4, ...): the idle server uses no CPU, and
a slow drift of the machine hits both alike. On a shared machine other processes disturb a run
badly (llama.cpp's threads spin on barriers; two cores are easily oversubscribed), so before
each level the script waits (``--wait-quiet``) until the rest of the machine is idle, measures
the CPU the rest of the machine used during the level (column "other CPU", from /proc), and
re-measures a disturbed level (``--retries``), reporting the least disturbed attempt
(not for a server given by URL: its CPU cannot be told apart from the rest).

By default the script starts both servers itself on free ports and kills them at the end,
also on Ctrl-C / SIGTERM:

* chatd: ``chatd serve --port P`` (the console script next to ``sys.executable``);
* peer: ``python -m llama_cpp.server --model <gguf> --port Q --n_ctx 8192 --n_threads T
  --n_threads_batch T --interrupt_requests False --model_alias smollm2-135m-instruct``.
  It formats prompts with the GGUF's own chat template (the same ChatML template chatd uses).
  ``--interrupt_requests False`` is required: by default a new request cuts off the one being
  streamed. ``--n_threads`` defaults to half the cores there; it is set to all cores, as chatd
  uses. The peer serves one request at a time (a global lock); others wait in line.
  Needs the server extras: ``pip install sse-starlette starlette-context pydantic-settings``.

Usage::

    .venv/bin/python benchmarks/throughput.py [--concurrency 1,4,16] [--max-tokens 128]
        [--rounds 1] [--chatd-url URL] [--peer-url URL] [--no-peer]
        [--wait-quiet 120] [--retries 3] [--temperature 0.7] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx

MODEL_ID = "smollm2-135m-instruct"
EOG_BIAS = {"0": -100, "2": -100, "4": -100}
TOPICS = [
    "a lighthouse keeper",
    "a lost robot",
    "the first snow of winter",
    "a dragon who cannot fly",
    "a bakery at midnight",
    "an old map",
    "a talking cat",
    "a journey to the moon",
    "a forgotten library",
    "a storm at sea",
    "a garden on Mars",
    "a clockmaker's apprentice",
    "a haunted train station",
    "a friendly ghost",
    "a desert caravan",
    "a city under the ocean",
]
REQUEST_TIMEOUT_S = 900.0


# ---------------------------------------------------------------- measurement


@dataclass
class RequestResult:
    ok: bool
    ttft: float | None = None  # seconds to the first non-empty content delta
    duration: float = 0.0
    usage_tokens: int | None = None  # usage.completion_tokens of the final chunk
    content_chunks: int = 0  # chunks whose delta carried non-empty content
    finish_reason: str | None = None
    saw_done: bool = False
    max_gap: float = 0.0  # longest silence between two content chunks
    error: str | None = None

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.content_chunks


@dataclass
class LevelResult:
    server: str
    concurrency: int
    wall: float
    results: list[RequestResult] = field(default_factory=list)

    @property
    def good(self) -> list[RequestResult]:
        return [r for r in self.results if r.ok]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.good)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall if self.wall > 0 else 0.0

    def ttft(self, q: float) -> float | None:
        values = [r.ttft for r in self.good if r.ttft is not None]
        return harness.percentile(values, q) if values else None

    @property
    def count_source(self) -> str:
        good = self.good
        if good and all(r.usage_tokens is not None for r in good):
            return "usage"
        if good and all(r.usage_tokens is None for r in good):
            return "chunks"
        return "mixed"


_request_ids = itertools.count()


def request_body(max_tokens: int, temperature: float) -> dict[str, Any]:
    """A prompt never sent before in this run (number first), so no server can answer it
    from a cached KV of an identical earlier prompt; what all prompts share is the chat
    template's default system prompt, as real traffic would."""
    n = next(_request_ids)
    topic = TOPICS[n % len(TOPICS)]
    return {
        "model": MODEL_ID,
        "messages": [
            {"role": "user", "content": f"Story {n}: write a long, detailed story about {topic}."},
        ],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": EOG_BIAS,
    }


async def stream_one(client: httpx.AsyncClient, body: dict[str, Any]) -> RequestResult:
    res = RequestResult(ok=False)
    start = time.perf_counter()
    last_content: float | None = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")
                res.error = f"HTTP {resp.status_code}: {text[:200]}"
                return res
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments / pings (": ping ...")
                data = line[5:].strip()
                if data == "[DONE]":
                    res.saw_done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    res.error = f"error event: {json.dumps(chunk['error'])[:200]}"
                    return res
                if chunk.get("usage"):
                    res.usage_tokens = chunk["usage"].get("completion_tokens")
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        now = time.perf_counter()
                        if res.ttft is None:
                            res.ttft = now - start
                        else:
                            assert last_content is not None
                            res.max_gap = max(res.max_gap, now - last_content)
                        last_content = now
                        res.content_chunks += 1
                    if choice.get("finish_reason"):
                        res.finish_reason = choice["finish_reason"]
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        res.error = f"{type(e).__name__}: {e}"
        return res
    finally:
        res.duration = time.perf_counter() - start
    if not res.saw_done:
        res.error = "stream ended without [DONE]"
        return res
    res.ok = True
    return res


async def run_level(
    client: httpx.AsyncClient,
    server: str,
    concurrency: int,
    rounds: int,
    max_tokens: int,
    temperature: float,
) -> LevelResult:
    async def worker() -> list[RequestResult]:
        return [
            await stream_one(client, request_body(max_tokens, temperature)) for _ in range(rounds)
        ]

    start = time.perf_counter()
    per_worker = await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return LevelResult(server, concurrency, wall, [r for rs in per_worker for r in rs])


def anomalies(level: LevelResult, max_tokens: int) -> list[str]:
    """Things worth a look: failures, short streams, usage != streamed chunks, stalls."""
    notes: list[str] = []
    tag = f"{level.server} c={level.concurrency}"
    for i, r in enumerate(level.results):
        if not r.ok:
            notes.append(f"{tag} req {i}: FAILED after {r.duration:.1f}s: {r.error}")
            continue
        if r.tokens != max_tokens:
            notes.append(f"{tag} req {i}: {r.tokens} tokens, expected {max_tokens}")
        if r.finish_reason != "length":
            notes.append(f"{tag} req {i}: finish_reason={r.finish_reason!r}, expected 'length'")
        if r.usage_tokens is not None and r.usage_tokens != r.content_chunks:
            notes.append(
                f"{tag} req {i}: usage.completion_tokens={r.usage_tokens} but "
                f"{r.content_chunks} content chunks (ok if some tokens were partial UTF-8)"
            )
        if r.ttft is None:
            notes.append(f"{tag} req {i}: no content at all")
    gaps = [r.max_gap for r in level.good]
    if gaps and max(gaps) > 2.0:
        notes.append(f"{tag}: longest silence inside a stream {max(gaps):.2f}s")
    return notes


# ---------------------------------------------------------------- servers


def gguf_path() -> Path:
    from chatd.config import embedded_model_path

    return embedded_model_path()


def start_chatd() -> harness.Managed:
    port = harness.free_port()
    exe = Path(sys.executable).parent / "chatd"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "chatd.cli"]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port)]
    return harness.Managed("chatd", cmd, port, "/health", env=harness.chatd_env())


def peer_missing_modules() -> list[str]:
    needed = ["llama_cpp", "sse_starlette", "starlette_context", "pydantic_settings", "uvicorn"]
    return [m for m in needed if importlib.util.find_spec(m) is None]


def start_peer() -> harness.Managed:
    missing = peer_missing_modules()
    if missing:
        raise RuntimeError(
            f"llama_cpp.server needs {', '.join(missing)}: "
            f"{sys.executable} -m pip install sse-starlette starlette-context pydantic-settings"
        )
    port = harness.free_port()
    threads = str(os.cpu_count() or 1)
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path()),
        "--model_alias",
        MODEL_ID,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "8192",
        "--n_threads",
        threads,
        "--n_threads_batch",
        threads,
        "--interrupt_requests",
        "False",
    ]
    return harness.Managed("peer", cmd, port, "/v1/models", env=harness.chatd_env())


# ---------------------------------------------------------------- driver


@dataclass
class Target:
    name: str
    url: str | None  # None: start it ourselves
    server: harness.Managed | None = None
    client: httpx.AsyncClient | None = None


async def bring_up(target: Target, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    """Start the server (unless given a URL), wait until healthy, open a client, warm up."""
    if target.url is None:
        target.server = start_chatd() if target.name == "chatd" else start_peer()
        stack.callback(target.server.stop)
        print(f"[{target.name}] starting: {' '.join(target.server.cmd)}", flush=True)
        t0 = time.perf_counter()
        await target.server.wait_healthy()
        print(f"[{target.name}] healthy after {time.perf_counter() - t0:.1f}s", flush=True)
        base_url = target.server.base_url
    else:
        base_url = target.url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=max(args.concurrency) + 4)
    target.client = httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        limits=limits,
        timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0),
    )
    warm = await stream_one(target.client, request_body(args.max_tokens, args.temperature))
    if not warm.ok:
        await target.client.aclose()
        target.client = None
        raise RuntimeError(f"warm-up request failed: {warm.error}")
    print(
        f"[{target.name}] warm-up: {warm.tokens} tokens in {warm.duration:.2f}s "
        f"(TTFT {warm.ttft or 0:.3f}s)",
        flush=True,
    )


async def measure_level(
    target: Target, c: int, args: argparse.Namespace
) -> tuple[LevelResult, float | None, list[str]]:
    """One level on one server. A level disturbed by other processes (more than
    ``DISTURBED_CORES`` of CPU) is measured again, up to ``--retries`` times; the least
    disturbed attempt is kept. Failures of any attempt are reported."""
    assert target.client is not None
    # a server given by URL is not ours to watch: its CPU would count as "other"
    watched = [target.server] if target.server is not None and harness.HAS_PROC else []
    attempts: list[tuple[LevelResult, float | None]] = []
    attempt_notes: list[list[str]] = []
    notes: list[str] = []
    for _ in range(1 + args.retries):
        await harness.wait_quiet([], args.wait_quiet)
        before = harness.CpuSample.take(watched) if watched else None
        level = await run_level(
            target.client, target.name, c, args.rounds, args.max_tokens, args.temperature
        )
        bg = (
            harness.CpuSample.take(watched).other_cores(before, level.wall)
            if before is not None
            else None
        )
        attempts.append((level, bg))
        failed = len(level.results) - len(level.good)
        print(
            f"[{target.name}] c={c}: {level.tokens} tokens in {level.wall:.2f}s = "
            f"{level.tokens_per_s:.1f} tok/s, {failed} failed"
            + ("" if bg is None else f", other processes used {bg:.2f} cores"),
            flush=True,
        )
        attempt_notes.append(anomalies(level, args.max_tokens))
        if bg is None or bg < harness.DISTURBED_CORES:
            break
    kept = min(range(len(attempts)), key=lambda i: attempts[i][1] or 0.0)
    level, bg = attempts[kept]
    for i, found in enumerate(attempt_notes):
        prefix = "" if i == kept else f"(discarded attempt {i + 1}) "
        notes += [prefix + n for n in found]
    if len(attempts) > 1:
        tried = ", ".join(f"{a.tokens_per_s:.1f} tok/s @ {b or 0:.2f}" for a, b in attempts)
        notes.append(
            f"{target.name} c={c}: disturbed, measured {len(attempts)} times "
            f"(tok/s @ other cores: {tried}); kept the least disturbed"
        )
    return level, bg, notes


def server_log_notes(target: Target) -> list[str]:
    if target.server is None:
        return []
    words = ("ERROR", "Traceback", "CRITICAL", "Exception")
    return [
        f"{target.name} log: {line.strip()[:200]}"
        for line in target.server.log_text().splitlines()
        if any(w in line for w in words)
    ]


async def amain(args: argparse.Namespace) -> int:
    levels: list[int] = args.concurrency
    targets = [Target("chatd", args.chatd_url)]
    if not args.no_peer:
        targets.append(Target("peer", args.peer_url))
    all_levels: list[LevelResult] = []
    background: dict[tuple[str, int], float | None] = {}
    notes: list[str] = []
    status = 0
    with contextlib.ExitStack() as stack:
        live: list[Target] = []
        for target in targets:
            try:
                await bring_up(target, args, stack)
            except (RuntimeError, OSError, httpx.HTTPError) as e:
                print(f"\n[{target.name}] not measured: {e}\n", file=sys.stderr, flush=True)
                notes.append(f"{target.name} not measured: {str(e).splitlines()[0]}")
                if target.name == "chatd":
                    status = 1
                continue
            live.append(target)
        try:
            # Interleaved (chatd c=1, peer c=1, chatd c=4, ...): the idle server uses no CPU,
            # and a disturbance from elsewhere on the machine hits both sides alike.
            for c in levels:
                for target in live:
                    level, bg, level_notes = await measure_level(target, c, args)
                    all_levels.append(level)
                    background[(target.name, c)] = bg
                    notes += level_notes
        finally:
            for target in live:
                if target.client is not None:
                    await target.client.aclose()
        for target in live:
            notes += server_log_notes(target)
    print()
    print(
        f"max_tokens={args.max_tokens}, rounds={args.rounds}, temperature={args.temperature}, "
        f"logit_bias={EOG_BIAS}, cpus={os.cpu_count()}"
    )
    print(render_table(all_levels, levels, background))
    harness.print_notes(notes)
    if any(len(lv.good) < len(lv.results) for lv in all_levels):
        status = 1
    return status


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def render_table(
    all_levels: list[LevelResult],
    levels: list[int],
    background: dict[tuple[str, int], float | None],
) -> str:
    header = [
        "server",
        "conc",
        "requests",
        "failed",
        "tokens",
        "wall s",
        "tok/s",
        "TTFT p50 ms",
        "TTFT p90 ms",
        "counted from",
        "other CPU",
    ]
    by_key = {(lv.server, lv.concurrency): lv for lv in all_levels}
    rows: list[list[str]] = []
    for c in levels:
        for server in ("chatd", "peer"):
            lv = by_key.get((server, c))
            if lv is None:
                continue
            bg = background.get((server, c))
            rows.append(
                [
                    server,
                    str(c),
                    str(len(lv.results)),
                    str(len(lv.results) - len(lv.good)),
                    str(lv.tokens),
                    f"{lv.wall:.2f}",
                    f"{lv.tokens_per_s:.1f}",
                    fmt_ms(lv.ttft(0.5)),
                    fmt_ms(lv.ttft(0.9)),
                    lv.count_source,
                    "-" if bg is None else f"{bg:.2f} cores",
                ]
            )
        ours, peer = by_key.get(("chatd", c)), by_key.get(("peer", c))
        if ours and peer and peer.tokens_per_s > 0:
            ratio = f"{ours.tokens_per_s / peer.tokens_per_s:.2f}x"
            p50_ours, p50_peer = ours.ttft(0.5), peer.ttft(0.5)
            ttft = f"{p50_ours / p50_peer:.2f}x" if p50_ours is not None and p50_peer else "-"
            rows.append(["chatd / peer", str(c), "", "", "", "", ratio, ttft, "", "", ""])
    return harness.table(header, rows)


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from e
    if not levels or any(c < 1 for c in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=parse_levels, default=[1, 4, 16], help="e.g. 1,4,16")
    p.add_argument("--max-tokens", type=int, default=128, help="new tokens per request")
    p.add_argument("--rounds", type=int, default=1, help="requests per concurrent worker")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--chatd-url", help="measure this running chatd instead of starting one")
    p.add_argument("--peer-url", help="measure this running peer instead of starting one")
    p.add_argument("--no-peer", action="store_true", help="measure chatd only")
    harness.add_quiet_options(p, retries=3)
    p.add_argument("--api-key", help="Bearer key sent to both servers (for --*-url servers)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.max_tokens < 1:
        p.error("--rounds and --max-tokens must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return harness.run_main(lambda: amain(args))


if __name__ == "__main__":
    sys.exit(main())

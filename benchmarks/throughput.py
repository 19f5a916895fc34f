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
import contextlib
import functools
import importlib.util
import os
import sys
import time
from dataclasses import dataclass

import harness
import httpx
from client import Level, base_url, open_client, stream
from client import run_level as run_streams
from prompts import EOG_BIAS, MODEL_ID, story_body

# ---------------------------------------------------------------- measurement


@dataclass
class LevelResult(Level):
    """One level of one server: ``client.Level`` and where it was measured."""

    server: str = ""
    concurrency: int = 0

    @property
    def count_source(self) -> str:
        """Where the tokens were counted: the usage chunk, or content chunks without one."""
        good = self.good
        if good and all(r.usage_tokens is not None for r in good):
            return "usage"
        if good and all(r.usage_tokens is None for r in good):
            return "chunks"
        return "mixed"


async def run_level(
    client: httpx.AsyncClient,
    server: str,
    concurrency: int,
    rounds: int,
    max_tokens: int,
    temperature: float,
) -> LevelResult:
    """``concurrency`` workers start together, each sending ``rounds`` requests back to back,
    every one a story prompt new to the server."""
    level = await run_streams(
        client, concurrency, functools.partial(story_body, max_tokens, temperature), rounds
    )
    return LevelResult(level.replies, level.wall, server, concurrency)


def anomalies(level: LevelResult, max_tokens: int) -> list[str]:
    """Things worth a look: failures, short streams, usage != streamed chunks, stalls."""
    notes: list[str] = []
    tag = f"{level.server} c={level.concurrency}"
    for i, r in enumerate(level.replies):
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
        str(harness.gguf_path()),
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
        target.server = harness.start_chatd() if target.name == "chatd" else start_peer()
        stack.callback(target.server.stop)
        print(f"[{target.name}] starting: {' '.join(target.server.cmd)}", flush=True)
        t0 = time.perf_counter()
        await target.server.wait_healthy()
        print(f"[{target.name}] healthy after {time.perf_counter() - t0:.1f}s", flush=True)
        base = target.server.base_url
    else:
        base = base_url(target.url)
    target.client = open_client(base, args.api_key, max(args.concurrency) + 4)
    warm = await stream(target.client, story_body(args.max_tokens, args.temperature))
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
        failed = len(level.replies) - len(level.good)
        print(
            f"[{target.name}] c={c}: {level.tokens} tokens in {level.wall:.2f}s = "
            f"{level.tok_s:.1f} tok/s, {failed} failed"
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
        tried = ", ".join(f"{a.tok_s:.1f} tok/s @ {b or 0:.2f}" for a, b in attempts)
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
    if any(len(lv.good) < len(lv.replies) for lv in all_levels):
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
                    str(len(lv.replies)),
                    str(len(lv.replies) - len(lv.good)),
                    str(lv.tokens),
                    f"{lv.wall:.2f}",
                    f"{lv.tok_s:.1f}",
                    fmt_ms(lv.ttft(0.5)),
                    fmt_ms(lv.ttft(0.9)),
                    lv.count_source,
                    "-" if bg is None else f"{bg:.2f} cores",
                ]
            )
        ours, peer = by_key.get(("chatd", c)), by_key.get(("peer", c))
        if ours and peer and peer.tok_s > 0:
            ratio = f"{ours.tok_s / peer.tok_s:.2f}x"
            p50_ours, p50_peer = ours.ttft(0.5), peer.ttft(0.5)
            ttft = f"{p50_ours / p50_peer:.2f}x" if p50_ours is not None and p50_peer else "-"
            rows.append(["chatd / peer", str(c), "", "", "", "", ratio, ttft, "", "", ""])
    return harness.table(header, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--concurrency", type=harness.parse_levels, default=[1, 4, 16], help="e.g. 1,4,16"
    )
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

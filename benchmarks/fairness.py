#!/usr/bin/env python
"""Fairness between keys: how much one key's burst slows another key's requests.

The script starts ``chatd serve`` (the embedded model, its defaults, a temporary data
directory) with two database keys, A and B, made with ``chatd keys create``, and measures:

1. **alone**: key B sends ``--requests`` (10) streamed chat completions of ``--max-tokens``
   (16) tokens one after another (end-of-generation tokens banned, so each generates all
   16); the latency of each is from sending it to its ``[DONE]``.
2. **during A's burst**: ``--burst`` (120) workers of key A each stream the same kind of
   request back to back; a 429 or 503 waits its ``Retry-After`` before the next try, as
   the OpenAI SDKs do. Once every worker has had its first answer (a stream started, or
   a refusal), B sends its ``--requests`` again, one after another, and A stops when B
   is done.

It prints one Markdown table: B's latency p50 / p90 / max in each phase and its ratio to
B alone, then what A's burst got (streams finished, 429s, 503s, other errors). With the
engine's queue first come, first served, B's requests wait behind A's whole queue; with
per-key limits (``--max-in-flight-per-key``, default chatd's 64) A holds at most that many
places, and with a queue fair across keys B's requests are scheduled beside A's.

    .venv/bin/python benchmarks/fairness.py [--burst 120] [--requests 10] [--max-tokens 16]
        [--max-in-flight-per-key N] [--wait-quiet 120]

``--max-in-flight-per-key 0`` shows the server without the per-key limit. The server and
its data directory are removed at the end, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import harness
import httpx
from client import Reply, open_client, stream
from prompts import story_body


@dataclass
class Burst:
    """What key A's workers got."""

    finished: int = 0
    refused_429: int = 0
    refused_503: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    answered: set[int] = field(default_factory=set)  # workers with a first answer


def make_key(data_dir: Path, name: str) -> str:
    out = subprocess.run(
        [*harness.chatd_command(), "keys", "create", "--name", name, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=harness.chatd_env(),
    ).stdout
    found = re.search(r"key:\s+(\S+)", out)
    if not found:
        raise RuntimeError(f"chatd keys create printed no key:\n{out}")
    return found.group(1)


def body(max_tokens: int) -> dict[str, object]:
    return story_body(max_tokens, 0.7)


async def key_b(client: httpx.AsyncClient, n: int, max_tokens: int) -> list[Reply]:
    """B's requests, one after another."""
    replies = []
    for i in range(n):
        reply = await stream(client, body(max_tokens))
        if not reply.ok:
            raise RuntimeError(f"key B's request failed: {reply.error}")
        harness.log(f"  B {i + 1}/{n}: {reply.duration:.2f} s")
        replies.append(reply)
    return replies


async def a_worker(client: httpx.AsyncClient, i: int, max_tokens: int, burst: Burst) -> None:
    """Streams back to back until cancelled; a refusal waits its Retry-After."""
    while True:
        reply = await stream(client, body(max_tokens))
        burst.answered.add(i)
        if reply.ok:
            burst.finished += 1
            continue
        if reply.status in (429, 503):
            if reply.status == 429:
                burst.refused_429 += 1
            else:
                burst.refused_503 += 1
            await asyncio.sleep(1.0)  # chatd's Retry-After for both
            continue
        burst.errors += 1
        if len(burst.first_errors) < 3:
            burst.first_errors.append(str(reply.error))
        await asyncio.sleep(0.5)


async def during_burst(
    a: httpx.AsyncClient, b: httpx.AsyncClient, args: argparse.Namespace
) -> tuple[list[Reply], Burst, float]:
    burst = Burst()
    workers = [
        asyncio.ensure_future(a_worker(a, i, args.max_tokens, burst)) for i in range(args.burst)
    ]
    started = time.monotonic()
    try:
        while len(burst.answered) < args.burst:  # every A worker is in or refused
            if time.monotonic() - started > 600:
                raise RuntimeError("key A's burst never got going")
            await asyncio.sleep(0.05)
        replies = await key_b(b, args.requests, args.max_tokens)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return replies, burst, time.monotonic() - started


@dataclass
class Phase:
    replies: list[Reply]
    other_cores: float  # used by other processes of the machine meanwhile


async def measured(server: harness.Managed, work: Awaitable[list[Reply]]) -> Phase:
    start, t0 = harness.CpuSample.take([server]), time.monotonic()
    replies = await work
    wall = time.monotonic() - t0
    return Phase(replies, harness.CpuSample.take([server]).other_cores(start, wall))


def row(name: str, phase: Phase, alone_p50: float) -> list[str]:
    latencies = [r.duration for r in phase.replies]
    p50 = harness.percentile(latencies, 0.5)
    return [
        name,
        f"{p50:.2f}",
        f"{harness.percentile(latencies, 0.9):.2f}",
        f"{max(latencies):.2f}",
        f"{p50 / alone_p50:.1f}x",
        f"{phase.other_cores:.2f}",
    ]


async def amain(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="chatd-fairness-") as tmp:
        data_dir = Path(tmp)
        key_a, key_b_ = make_key(data_dir, "A"), make_key(data_dir, "B")
        extra = ["--data-dir", str(data_dir), "--log-level", "warning"]
        if args.max_in_flight_per_key is not None:
            extra += ["--max-in-flight-per-key", str(args.max_in_flight_per_key)]
        else:  # chatd's own default, not the harness's "no limit"
            from chatd.service.quotas import DEFAULT_MAX_IN_FLIGHT

            extra += ["--max-in-flight-per-key", str(DEFAULT_MAX_IN_FLIGHT)]
        server = harness.start_chatd(*extra)
        await server.wait_healthy()
        base = server.base_url
        a = open_client(base, key_a, args.burst + 8)
        b = open_client(base, key_b_, 4)
        try:
            harness.log("warming up")
            await key_b(b, 2, args.max_tokens)
            await harness.wait_quiet([server], args.wait_quiet)
            harness.log(f"key B alone: {args.requests} requests")
            alone = await measured(server, key_b(b, args.requests, args.max_tokens))
            await harness.wait_quiet([server], args.wait_quiet)
            harness.log(f"key B during key A's burst of {args.burst} streams")
            result: list[tuple[list[Reply], Burst, float]] = []

            async def burst_phase() -> list[Reply]:
                result.append(await during_burst(a, b, args))
                return result[0][0]

            busy = await measured(server, burst_phase())
            _, burst, wall = result[0]
        finally:
            await a.aclose()
            await b.aclose()
            server.stop()
    alone_p50 = harness.percentile([r.duration for r in alone.replies], 0.5)
    limit = args.max_in_flight_per_key
    print(
        f"## Fairness: key B's {args.max_tokens}-token streams, alone and during key A's burst"
        f" of {args.burst}\n\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC,"
        f" cpus={os.cpu_count()}, --max-in-flight-per-key"
        f" {'default' if limit is None else limit}\n"
    )
    header = ["key B", "p50 s", "p90 s", "max s", "p50 vs alone", "other cores"]
    rows = [
        row("alone", alone, alone_p50),
        row(f"during A's burst ({args.burst})", busy, alone_p50),
    ]
    print(harness.table(header, rows))
    print(
        f"\nKey A during the {wall:.1f} s: {burst.finished} streams finished, {burst.refused_429}"
        f" refused 429 (its in-flight limit), {burst.refused_503} refused 503 (queue full),"
        f" {burst.errors} other errors."
    )
    notes = [f"an error of key A: {e}" for e in burst.first_errors]
    notes.append(
        "other cores: CPU used meanwhile by the rest of the machine (not this script or the"
        " server); above ~0.3 the latencies measure the machine as much as chatd"
    )
    harness.print_notes(notes)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--burst", type=int, default=120, help="key A's concurrent streams")
    p.add_argument("--requests", type=int, default=10, help="key B's requests per phase")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens of every request")
    p.add_argument(
        "--max-in-flight-per-key",
        type=int,
        default=None,
        help="passed to chatd serve (default: chatd's own; 0: no limit)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="before each phase wait up to this long for other processes to use < 0.2 cores"
        " (0: don't wait)",
    )
    args = p.parse_args()
    if min(args.burst, args.requests, args.max_tokens) < 1:
        p.error("--burst, --requests and --max-tokens must be >= 1")
    return harness.run_main(lambda: amain(args))


if __name__ == "__main__":
    sys.exit(main())

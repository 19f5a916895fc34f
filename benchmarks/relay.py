"""What chatd adds as a gateway: latency p50/p99 and requests/s of streamed requests sent
directly to an upstream vs through chatd, same upstream, same run.

The upstream is an instant OpenAI-compatible stub (started here, in its own process):
it streams a fixed 20-chunk answer with no generation time, so the difference between
the two rows is chatd's relay cost alone. Target: under 2 ms added at p50 with 32
concurrent streams.

    python benchmarks/relay.py [--concurrency 32] [--requests 640]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

STUB = r"""
import json, sys, time
import uvicorn
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

def chunk(delta, finish=None):
    return ("data: " + json.dumps({"id": "chatcmpl-stub", "object": "chat.completion.chunk",
        "created": int(time.time()), "model": "stub", "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish}]}) + "\n\n").encode()

USAGE = ("data: " + json.dumps({"id": "chatcmpl-stub", "object": "chat.completion.chunk",
    "created": 0, "model": "stub", "choices": [], "usage": {"prompt_tokens": 5,
    "completion_tokens": 20, "total_tokens": 25}}) + "\n\n").encode()

async def completions(request):
    await request.body()
    async def events():
        yield chunk({"role": "assistant", "content": ""})
        for i in range(20):
            yield chunk({"content": f" word{i}"})
        yield chunk({}, "stop")
        yield USAGE
        yield b"data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")

app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str) -> None:
    for _ in range(300):
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    stub_port, chatd_port = _port(), _port()
    tmp = Path(tempfile.mkdtemp(prefix="chatd-relay-"))
    config = tmp / "chatd.toml"
    config.write_text(
        f'[[channels]]\nname = "stub"\nbase_url = "http://127.0.0.1:{stub_port}/v1"\n'
        'models = ["stub"]\n'
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", STUB, str(stub_port)]),
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "chatd"),
                "serve",
                "--port",
                str(chatd_port),
                "--config",
                str(config),
                "--data-dir",
                str(tmp),
                "--log-level",
                "warning",
            ],
            env=os.environ.copy(),
        ),
    ]
    try:
        _wait(f"http://127.0.0.1:{stub_port}/")
        _wait(f"http://127.0.0.1:{chatd_port}/health")
        yield f"http://127.0.0.1:{stub_port}", f"http://127.0.0.1:{chatd_port}"
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=15)


async def run(base: str, concurrency: int, total: int) -> tuple[list[float], float]:
    body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                t = time.perf_counter()
                async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if line == "data: [DONE]":
                            break
                    else:
                        raise RuntimeError("stream ended without [DONE]")
                latencies.append((time.perf_counter() - t) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        return latencies, total / (time.perf_counter() - start)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=640)
    args = p.parse_args()
    with servers() as (stub, chatd):
        await run(stub, 4, 40)  # warm-up both paths
        await run(chatd, 4, 40)
        rows = []
        for name, base in (
            ("direct", stub),
            ("via chatd", chatd),
            ("direct", stub),
            ("via chatd", chatd),
        ):
            lat, rps = await run(base, args.concurrency, args.requests)
            rows.append((name, pct(lat, 50), pct(lat, 99), rps))
    print(json.dumps({"concurrency": args.concurrency, "requests": args.requests}))
    print(f"{'path':<10} | {'p50 ms':>7} | {'p99 ms':>7} | {'req/s':>7}")
    print("-" * 42)
    for name, p50, p99, rps in rows:
        print(f"{name:<10} | {p50:>7.2f} | {p99:>7.2f} | {rps:>7.1f}")
    direct = statistics.median([r[1] for r in rows if r[0] == "direct"])
    via = statistics.median([r[1] for r in rows if r[0] == "via chatd"])
    print(f"chatd adds {via - direct:.2f} ms at p50 (target: < 2 ms)")


if __name__ == "__main__":
    asyncio.run(main())

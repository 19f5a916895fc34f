#!/usr/bin/env python
"""Soak: a long mixed load on one chatd, to show it does not degrade or leak.

chatd serves the embedded model and relays one model id to the fake upstream
(tests/fakes/upstream.py, its own process). ``--concurrency`` workers (16) send, in a closed
loop for ``--minutes`` (10), a mix of requests: streamed and whole chat completions, ``n=2``,
a tool call, a ``json_schema`` answer, stored completions, Responses API requests (streamed,
and continued by ``previous_response_id``), and relayed streams. Every answer is checked
(status 200, a well-formed body or a stream that reached its end).

Printed: requests and errors per kind; chatd's resident memory (RSS of its process) after
warm-up (the first ``--warmup`` seconds) and at the end, and the growth between them; and
the engine's state once the load stops (it must come back to 0 running sequences).

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--concurrency 16] [--warmup 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness
import httpx

MODEL = "smollm2-135m-instruct"
RELAYED = "instant"  # the fake upstream's id that answers at once
STUB = Path(__file__).resolve().parent.parent / "tests" / "fakes" / "upstream.py"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
PERSON = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
}


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 32,
        **fields,
    }


async def _stream_ok(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> bool:
    """A stream is whole when it ends as its protocol says: ``[DONE]`` for chat, a final
    ``response.completed``/``.incomplete`` event for responses."""
    last = ""
    async with http.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            return False
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                last = line[6:]
    if path.endswith("/responses"):
        return json.loads(last).get("type") in ("response.completed", "response.incomplete")
    return last == "[DONE]"


async def one(http: httpx.AsyncClient, kind: str, rng: random.Random) -> bool:
    """Send one request of ``kind``; True when its answer is whole and well formed."""
    topic = rng.choice(["the sea", "a cat", "bread", "rain", "trains"])
    if kind == "chat stream":
        return await _stream_ok(http, "/v1/chat/completions", chat(topic, stream=True))
    if kind == "responses stream":
        body = {"model": MODEL, "input": topic, "max_output_tokens": 32, "stream": True}
        return await _stream_ok(http, "/v1/responses", body)
    if kind == "relayed stream":
        body = {**chat(topic, stream=True), "model": RELAYED}
        return await _stream_ok(http, "/v1/chat/completions", body)
    if kind == "responses chain":
        first = await http.post("/v1/responses", json={"model": MODEL, "input": topic,
                                                        "max_output_tokens": 16})  # fmt: skip
        if first.status_code != 200:
            return False
        body = {"model": MODEL, "input": "And more?", "max_output_tokens": 16,
                "previous_response_id": first.json()["id"]}  # fmt: skip
        return (await http.post("/v1/responses", json=body)).status_code == 200
    bodies = {
        "chat": chat(topic),
        "n=2": chat(topic, n=2),
        "tool call": chat(f"Weather in {topic}?", tools=[WEATHER], tool_choice="required"),
        "json_schema": chat(f"A person who likes {topic}.", response_format=PERSON),
        "stored": chat(topic, store=True, metadata={"soak": "1"}),
    }
    r = await http.post("/v1/chat/completions", json=bodies[kind])
    if r.status_code != 200:
        return False
    if kind == "json_schema":
        content = r.json()["choices"][0]
        if content["finish_reason"] == "stop":
            json.loads(content["message"]["content"])  # valid by construction
    return True


KINDS = [
    "chat",
    "chat stream",
    "n=2",
    "tool call",
    "json_schema",
    "stored",
    "responses stream",
    "responses chain",
    "relayed stream",
]


def rss_mib(pid: int) -> float:
    """Resident memory of the process, from /proc (VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def worker(
    http: httpx.AsyncClient, seed: int, until: float, done: Counter[str], errors: Counter[str]
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        kind = rng.choice(KINDS)
        try:
            ok = await one(http, kind, rng)
        except (httpx.HTTPError, ValueError, KeyError) as e:
            ok = False
            harness.log(f"{kind}: {type(e).__name__}: {e}")
        done[kind] += 1
        if not ok:
            errors[kind] += 1


async def amain() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS is taken")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chatd-soak-"))
    port = harness.free_port()
    stub = harness.Managed(
        "stub", [sys.executable, str(STUB), str(port), "0", "0", "20"], port, "/health",
        log_dir=tmp,
    )  # fmt: skip
    await stub.wait_healthy()
    config = tmp / "chatd.toml"
    config.write_text(
        f'[[channels]]\nname = "stub"\nbase_url = "{stub.base_url}/v1"\nmodels = ["{RELAYED}"]\n'
    )
    chatd_port = harness.free_port()
    exe = Path(sys.executable).parent / "chatd"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "chatd.cli"]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(chatd_port), "--config", str(config)]
    cmd += ["--data-dir", str(tmp / "data"), "--log-level", "warning"]
    chatd = harness.Managed(
        "chatd", cmd, chatd_port, "/health", log_dir=tmp, env=harness.chatd_env()
    )
    await chatd.wait_healthy()
    done: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    start = time.monotonic()
    until = start + args.minutes * 60
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    async with httpx.AsyncClient(base_url=chatd.base_url, timeout=120, limits=limits) as http:
        workers = [
            asyncio.ensure_future(worker(http, i, until, done, errors))
            for i in range(args.concurrency)
        ]
        await asyncio.sleep(min(args.warmup, args.minutes * 60))
        rss_warm = rss_mib(chatd.proc.pid)
        harness.log(f"after warm-up: {rss_warm:.0f} MiB, {sum(done.values())} requests")
        await asyncio.gather(*workers)
        rss_end = rss_mib(chatd.proc.pid)
        await asyncio.sleep(2)  # let the engine rest
        health = (await http.get("/health")).json()["models"][MODEL]
    elapsed = time.monotonic() - start
    rows = [[k, str(done[k]), str(errors[k])] for k in KINDS]
    rows.append(["all", str(sum(done.values())), str(sum(errors.values()))])
    print(harness.table(["kind", "requests", "errors"], rows))
    growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else 0.0
    print(
        harness.table(
            ["minutes", "concurrency", "RSS warm MiB", "RSS end MiB", "growth %"],
            [[f"{elapsed / 60:.1f}", str(args.concurrency), f"{rss_warm:.0f}",
              f"{rss_end:.0f}", f"{growth:+.1f}"]],
        )
    )  # fmt: skip
    print(
        f"at rest: running_sequences={health['running_sequences']},"
        f" waiting_requests={health['waiting_requests']}, kv_cells_used={health['kv_cells_used']}"
    )
    return 1 if sum(errors.values()) or health["running_sequences"] else 0


if __name__ == "__main__":
    sys.exit(harness.run_main(amain))

"""Cost of constrained decoding: tokens/s with a json_schema constraint vs unconstrained,
same prompt, same server, same run (target: at most 15% overhead).

Both variants are made to generate exactly --max-tokens tokens: unconstrained requests
ban the end-of-generation tokens with logit_bias; the schema demands at least 60 array
items, more than fit in the budget, so every constrained answer ends with "length".

    python benchmarks/constrained.py [--chatd-url URL] [--concurrency 1,8] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

MODEL = "smollm2-135m-instruct"
EOG_BIAS = {"0": -100, "2": -100, "4": -100}
SCHEMA = {
    "type": "object",
    "properties": {
        "cities": {"type": "array", "items": {"type": "string"}, "minItems": 60},
    },
    "required": ["cities"],
    "additionalProperties": False,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def chatd_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    port = _free_port()
    exe = Path(sys.executable).parent / "chatd"
    log = open(f"/tmp/bench-constrained-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def body(i: int, constrained: bool, max_tokens: int) -> dict[str, Any]:
    b: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"({i}) List many cities of the world as JSON."}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
    }
    if constrained:
        b["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "cities", "schema": SCHEMA, "strict": True},
        }
    else:
        b["logit_bias"] = EOG_BIAS
    return b


async def level(base: str, conc: int, constrained: bool, max_tokens: int, seq: int) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=600) as c:

        async def one(i: int) -> int:
            r = await c.post(
                "/v1/chat/completions", json=body(seq * 1000 + i, constrained, max_tokens)
            )
            r.raise_for_status()
            data = r.json()
            assert data["choices"][0]["finish_reason"] == "length", data["choices"][0]
            return data["usage"]["completion_tokens"]

        t = time.perf_counter()
        tokens = await asyncio.gather(*[one(i) for i in range(conc)])
        return sum(tokens) / (time.perf_counter() - t)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chatd-url")
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per level")
    args = p.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    with chatd_server(args.chatd_url) as base:
        await level(base, 1, True, 16, 0)  # warm-up (and the grammar tokenizer)
        rows = []
        for conc in levels:
            free, bound = [], []
            for r in range(args.rounds):  # alternate so drift hits both alike
                free.append(await level(base, conc, False, args.max_tokens, 2 * r + 1))
                bound.append(await level(base, conc, True, args.max_tokens, 2 * r + 2))
            rows.append((conc, statistics.median(free), statistics.median(bound)))
    print(
        f"{'concurrency':>11} | {'unconstrained tok/s':>19} | {'json_schema tok/s':>17} |"
        f" {'ratio':>5} | overhead"
    )
    print("-" * 72)
    for conc, f, b in rows:
        print(f"{conc:>11} | {f:>19.1f} | {b:>17.1f} | {b / f:>5.2f} | {100 * (1 - b / f):5.1f}%")


if __name__ == "__main__":
    asyncio.run(main())

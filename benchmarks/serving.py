#!/usr/bin/env python
"""Serving benchmark: chatd vs. llama.cpp's own ``llama-server`` on the same GGUF.

Why a second peer besides ``throughput.py``'s llama-cpp-python server: ``llama-server`` is the
serving stack llama.cpp itself ships (slots, continuous batching, prompt cache, grammar), so it
is the bar chatd has to clear. Both run the same GGUF and get identical workloads; only one
server runs at a time (the machine has few cores), and before every measurement the script
waits for the rest of the machine to be quiet and re-measures a disturbed one (``harness``).

Workloads (``--only``):

* ``streams``: C concurrent streamed requests (C in ``--concurrency``), 128 tokens each,
  temperature 0.7, EOG tokens banned so each generates exactly 128, every prompt unique.
  Aggregate tok/s, TTFT p50/p95, ITL p50/p95.
* ``long``: a cold ~1000-token prompt (new text), TTFT with ``max_tokens`` 16.
* ``prefix``: one ~1000-token system prompt: a cold request, then N sequential requests with
  it and a different short user message each. TTFT of hits / TTFT of the cold one, and the
  ``usage.prompt_tokens_details.cached_tokens`` each server reports.
* ``json``: streamed requests with ``response_format`` json_schema (strict) vs. the same
  requests unconstrained, at C = 1 and 4: constrained / unconstrained tok/s and TTFT.
* ``edit``: rewrite a ~400-token Python file with one line changed, temperature 0, with and
  without ``prediction`` (OpenAI predicted outputs): wall time, speed-up, accepted/rejected
  prediction tokens, whether the texts agree. llama-server has no ``prediction`` field (its
  speculative decoding is configured per server), so it gets the request without one.

Peer: ``llama-server`` built once from the llama.cpp sources vendored in the llama-cpp-python
0.3.36 sdist, cached in ``~/.cache/chatd-bench/`` (AMX kernels off: they crash on this CPU).
It runs as ``-np 32 -c 16384`` for ``streams``/``json`` and ``-np 1 -c 4096`` for
``long``/``prefix``/``edit``, with its shipped defaults otherwise (``cache_prompt`` on,
``--cache-reuse`` 0, unified KV off, 8 GiB host prompt cache).

Output: progress on stderr, one Markdown table on stdout (chatd, peer, chatd/peer, target),
and everything as JSON in ``benchmarks/results/serving-YYYYMMDD-HHMMSS.json``, compared with
the most recent earlier JSON of the same mode (``--quick`` or not): a figure more than 10%
worse is flagged.

Usage::

    .venv/bin/python benchmarks/serving.py [--only streams,long,prefix,json,edit]
        [--concurrency 1,4,16,32] [--no-peer] [--chatd-url URL] [--quick]
        [--wait-quiet 120] [--retries 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import harness
import httpx
import throughput
from throughput import EOG_BIAS, MODEL_ID

T = TypeVar("T")

LLAMA_CPP_PYTHON = "0.3.36"
CACHE = Path.home() / ".cache" / "chatd-bench"
RESULTS = Path(__file__).resolve().parent / "results"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    # this machine's Intel CPU has AMX, and llama.cpp's AMX mat-mul crashes on it
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
]
WORKLOADS = ("streams", "long", "prefix", "json", "edit")
PEER_WIDE = ("streams", "json")  # served by the -np 32 peer; the rest by the -np 1 peer
REQUEST_TIMEOUT_S = 900.0
REGRESSION = 0.10  # a figure this much worse than the previous run's is flagged


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout holds only the final table."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- building the peer


def source_dir() -> Path:
    return CACHE / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp"


def build_dir() -> Path:
    return CACHE / f"build-{LLAMA_CPP_PYTHON}"


def peer_binary() -> Path:
    return build_dir() / "bin" / "llama-server"


def run_logged(cmd: list[str], log_path: Path, what: str) -> None:
    """Run a long command in its own session with its output in ``log_path``; say every 30 s
    how far it got (the last "[ NN%]" line of a build), and stop the whole group when we are
    interrupted, so no compiler is left running."""
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            told = time.monotonic()
            while proc.poll() is None:
                time.sleep(1.0)
                if time.monotonic() - told >= 30:
                    told = time.monotonic()
                    lines = log_path.read_text(errors="replace").splitlines()
                    done = [ln for ln in lines if ln.startswith("[")]
                    log(f"  {what}: {done[-1][:90] if done else '...'}")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            proc.wait()
            raise
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}), log {log_path}:\n{tail}")


def ensure_llama_server() -> Path:
    """The cached llama-server, built first if missing: the sdist is downloaded with pip (not
    the wheel: the wheel has no server), extracted, configured and built (``-j2``, ~6 min)."""
    binary = peer_binary()
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    build_log = CACHE / f"build-{LLAMA_CPP_PYTHON}.log"
    if not (source_dir() / "CMakeLists.txt").exists():
        sdist = CACHE / "sdist"
        log(f"[build] downloading the llama-cpp-python {LLAMA_CPP_PYTHON} sdist to {sdist}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}"]
            + ["--no-binary", ":all:", "--no-deps", "-d", str(sdist)],
            check=True,
            stdout=sys.stderr,
        )
        archive = next(sdist.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE, filter="data")
    t0 = time.monotonic()
    log(f"[build] configuring llama.cpp in {build_dir()} (log {build_log})")
    run_logged(
        ["cmake", "-S", str(source_dir()), "-B", str(build_dir()), *CMAKE_FLAGS],
        build_log,
        "cmake configure",
    )
    log("[build] building llama-server (-j2, about 6 minutes)")
    run_logged(
        ["cmake", "--build", str(build_dir()), "--target", "llama-server", "-j2"],
        build_log,
        "build",
    )
    log(f"[build] done in {time.monotonic() - t0:.0f}s: {binary}")
    return binary


def start_peer(binary: Path, parallel: int, ctx: int) -> harness.Managed:
    """llama-server with its shipped defaults but for slots, context and threads (all cores,
    as chatd uses; 2 here)."""
    port = harness.free_port()
    cmd = [str(binary), "-m", str(throughput.gguf_path()), "--alias", MODEL_ID]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "-np", str(parallel), "-c", str(ctx)]
    # --no-repack: no extra buffer types, as chatd loads the model. The build is -march=native
    # (GGML_NATIVE), which compiles the AMX kernels in despite GGML_AMX_*=OFF; with them the
    # server dies at warm-up (SIGSEGV / SIGILL) on this VM's AMX CPU.
    cmd += ["-t", str(os.cpu_count() or 2), "--jinja", "--no-repack"]
    return harness.Managed(f"peer-np{parallel}", cmd, port, "/health", env=harness.chatd_env())


# ---------------------------------------------------------------- client


@dataclass
class Reply:
    """One request: streamed (chunk arrival times kept for TTFT and ITL) or not."""

    ok: bool = False
    error: str | None = None
    status: int | None = None
    ttft: float | None = None  # seconds to the first non-empty content delta
    duration: float = 0.0
    chunk_times: list[float] = field(default_factory=list)  # content chunks, since the start
    text: str = ""
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None

    @property
    def tokens(self) -> int:
        """Completion tokens from usage; content chunks only when a server sends no usage."""
        if self.usage and self.usage.get("completion_tokens") is not None:
            return int(self.usage["completion_tokens"])
        return len(self.chunk_times)

    @property
    def prompt_tokens(self) -> int | None:
        return None if not self.usage else self.usage.get("prompt_tokens")

    @property
    def cached_tokens(self) -> int | None:
        details = (self.usage or {}).get("prompt_tokens_details") or {}
        return details.get("cached_tokens")

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
                    continue
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
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        now = time.perf_counter() - start
                        if res.ttft is None:
                            res.ttft = now
                        res.chunk_times.append(now)
                        res.text += content
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


def p(values: list[float], q: float) -> float | None:
    return harness.percentile(values, q) if values else None


def level_summary(replies: list[Reply], wall: float) -> dict[str, Any]:
    """What a level of concurrent streams reports (times in ms)."""
    good = [r for r in replies if r.ok]
    tokens = sum(r.tokens for r in good)
    ttfts = [r.ttft for r in good if r.ttft is not None]
    itls = [x for r in good for x in r.itl()]
    chunks = sum(len(r.chunk_times) for r in good)

    def ms(x: float | None) -> float | None:
        return None if x is None else x * 1000

    return {
        "requests": len(replies),
        "failed": len(replies) - len(good),
        "errors": [r.error for r in replies if not r.ok][:5],
        "wall_s": wall,
        "tokens": tokens,
        "tok_s": tokens / wall if wall > 0 else 0.0,
        "ttft_p50_ms": ms(p(ttfts, 0.5)),
        "ttft_p95_ms": ms(p(ttfts, 0.95)),
        "itl_p50_ms": ms(p(itls, 0.5)),
        "itl_p95_ms": ms(p(itls, 0.95)),
        "tokens_per_chunk": tokens / chunks if chunks else None,
        "counted_from": "usage" if good and all(r.usage for r in good) else "chunks",
        "finish_reasons": sorted({str(r.finish_reason) for r in good}),
    }


async def level(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """All bodies streamed at once; tok/s over the wall time of the whole level."""
    start = time.perf_counter()
    replies = await asyncio.gather(*(stream(client, b) for b in bodies))
    return level_summary(list(replies), time.perf_counter() - start)


# ---------------------------------------------------------------- prompts

_nonce = random.Random()  # unseeded: every run's texts are new to a server's caches too
NOUNS = ["crate", "lantern", "barrel", "compass", "anchor", "kettle", "ledger", "rope", "sail"]
ADJS = ["red", "old", "heavy", "small", "brass", "wooden", "cracked", "polished", "spare"]
PLACES = ["the dock", "the attic", "the north shed", "the galley", "the cellar", "the pier"]
_tokenizer: Any = None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C libraries write there directly, past ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def count_tokens(text: str) -> int:
    """Tokens of ``text`` with the GGUF's own vocabulary (llama_cpp, vocab only), so that
    prompts are sized like chatd counts them; ~4 characters a token without llama_cpp."""
    global _tokenizer
    if _tokenizer is None:
        try:
            import llama_cpp

            with quiet_stderr():  # llama.cpp logs to fd 2 even with verbose=False
                _tokenizer = llama_cpp.Llama(
                    str(throughput.gguf_path()), vocab_only=True, verbose=False
                )
        except Exception:  # noqa: BLE001 - any failure: fall back to the estimate
            _tokenizer = False
    if _tokenizer is False:
        return len(text) // 4
    return len(_tokenizer.tokenize(text.encode(), add_bos=False, special=False))


def filler(n_tokens: int) -> str:
    """About ``n_tokens`` of text never sent before: numbered inventory lines with random
    words and weights, led by a random tag so that no prefix of it is in any cache."""
    rng = random.Random(_nonce.getrandbits(64))
    lines = [f"Inventory {rng.getrandbits(40):010x}."]
    total = count_tokens(lines[0])
    i = 0
    while total < n_tokens:
        i += 1
        line = (
            f"Item {i}: the {rng.choice(ADJS)} {rng.choice(NOUNS)} in {rng.choice(PLACES)} "
            f"weighs {rng.randint(2, 9999)} grams and was checked on day {rng.randint(1, 365)}."
        )
        lines.append(line)
        total += count_tokens("\n" + line)
    return "\n".join(lines)


def short_body(content: str, max_tokens: int, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": content})
    return {"model": MODEL_ID, "messages": messages, "max_tokens": max_tokens, "temperature": 0}


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        # more items than fit in the token budget: every constrained answer runs to "length",
        # so both variants generate the same number of tokens
        "cities": {"type": "array", "items": {"type": "string"}, "minItems": 60},
    },
    "required": ["title", "cities"],
    "additionalProperties": False,
}


def json_bodies(n: int, max_tokens: int, constrained: bool) -> list[dict[str, Any]]:
    bodies = []
    for _ in range(n):
        tag = _nonce.getrandbits(32)
        body: dict[str, Any] = {
            "model": MODEL_ID,
            "messages": [
                {
                    "role": "user",
                    "content": f"Request {tag:08x}: list sixty cities of the world as JSON, "
                    'an object with a "title" and a "cities" array of names.',
                }
            ],
            "max_tokens": max_tokens,
            "temperature": 0.7,
            "logit_bias": EOG_BIAS,
        }
        if constrained:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "cities", "strict": True, "schema": JSON_SCHEMA},
            }
        bodies.append(body)
    return bodies


EDIT_SOURCE = '''"""Nightly inventory report: totals per warehouse, mailed to the team."""

import csv
import smtplib
from collections import defaultdict
from email.message import EmailMessage
from pathlib import Path

MAX_RETRIES = 3
REPORT_DIR = Path("/var/reports")
SENDER = "inventory@example.com"


def load_rows(path: Path) -> list[dict[str, str]]:
    """Read the day's export; skip rows without a warehouse."""
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("warehouse")]


def totals(rows: list[dict[str, str]]) -> dict[str, float]:
    """Sum the stock value per warehouse."""
    result: dict[str, float] = defaultdict(float)
    for row in rows:
        result[row["warehouse"]] += float(row["quantity"]) * float(row["unit_price"])
    return dict(result)


def render(summary: dict[str, float]) -> str:
    lines = [f"{name:<20} {value:>12.2f}" for name, value in sorted(summary.items())]
    lines.append(f"{'total':<20} {sum(summary.values()):>12.2f}")
    return "\\n".join(lines)


def send(body: str, recipients: list[str]) -> None:
    msg = EmailMessage()
    msg["Subject"] = "Inventory report"
    msg["From"] = SENDER
    msg["To"] = ", ".join(recipients)
    msg.set_content(body)
    for attempt in range(MAX_RETRIES):
        try:
            with smtplib.SMTP("localhost") as server:
                server.send_message(msg)
            return
        except OSError:
            if attempt == MAX_RETRIES - 1:
                raise


if __name__ == "__main__":
    rows = load_rows(REPORT_DIR / "export.csv")
    send(render(totals(rows)), ["team@example.com"])
'''
EDIT_PROMPT = (
    "Here is a Python file:\n\n```python\n{code}```\n\n"
    "Rewrite the whole file with exactly one change: `MAX_RETRIES = 3` becomes "
    "`MAX_RETRIES = 5`. Keep every other line exactly as it is. Reply with the complete file "
    "in one ```python code block and nothing else."
)


def edit_body(max_tokens: int, prediction: bool) -> dict[str, Any]:
    body = short_body(EDIT_PROMPT.format(code=EDIT_SOURCE), max_tokens)
    if prediction:
        # the original file, as a client would send it, in the fence the reply is asked for
        body["prediction"] = {"type": "content", "content": f"```python\n{EDIT_SOURCE}```"}
    return body


# ---------------------------------------------------------------- measuring


@dataclass
class Server:
    """One server for a set of workloads: started here (``start``) or given by URL."""

    name: str  # "chatd" or "peer" (the column it reports in)
    workloads: list[str]
    start: Callable[[], harness.Managed] | None = None
    url: str | None = None
    proc: harness.Managed | None = None
    client: httpx.AsyncClient | None = None


async def measured(
    srv: Server, what: str, args: argparse.Namespace, fn: Callable[[], Awaitable[T]]
) -> tuple[T, float | None]:
    """Run ``fn`` on a quiet machine; when other processes used more than
    ``harness.DISTURBED_CORES`` during it, run it again (``--retries``) and keep the least
    disturbed attempt. Returns the result and the other processes' cores (None: unknown, for a
    server given by URL whose CPU cannot be told apart)."""
    watched = [srv.proc] if srv.proc is not None and harness.HAS_PROC else []
    attempts: list[tuple[T, float | None]] = []
    for attempt in range(1 + args.retries):
        with contextlib.redirect_stdout(sys.stderr):  # harness prints its waiting to stdout
            await harness.wait_quiet(watched, args.wait_quiet)
        before = harness.CpuSample.take(watched) if watched else None
        t0 = time.perf_counter()
        result = await fn()
        wall = time.perf_counter() - t0
        bg = harness.CpuSample.take(watched).other_cores(before, wall) if before else None
        attempts.append((result, bg))
        if bg is None or bg < harness.DISTURBED_CORES:
            break
        log(f"  [{srv.name}] {what}: other processes used {bg:.2f} cores (attempt {attempt + 1})")
    return min(attempts, key=lambda a: a[1] or 0.0)


async def run_streams(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    assert srv.client is not None
    out: dict[str, Any] = {}
    for c in args.concurrency:

        async def go(c: int = c) -> dict[str, Any]:
            bodies = [throughput.request_body(args.max_tokens, 0.7) for _ in range(c)]
            return await level(srv.client, bodies)  # type: ignore[arg-type]

        summary, bg = await measured(srv, f"streams c={c}", args, go)
        summary["other_cores"] = bg
        out[str(c)] = summary
        log(
            f"  [{srv.name}] streams c={c}: {summary['tok_s']:.1f} tok/s, TTFT p50 "
            f"{summary['ttft_p50_ms'] or 0:.0f} ms, ITL p50 {summary['itl_p50_ms'] or 0:.1f} ms"
            f", {summary['failed']} failed"
        )
    return out


async def run_long(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    assert srv.client is not None
    client = srv.client
    replies: list[Reply] = []
    for _ in range(args.cold_runs):

        async def go() -> Reply:
            text = "Read these notes, then say which item is the heaviest.\n\n" + filler(935)
            return await stream(client, short_body(text, 16))

        reply, _bg = await measured(srv, "long", args, go)
        replies.append(reply)
        log(
            f"  [{srv.name}] cold prompt: {reply.prompt_tokens} prompt tokens, TTFT "
            f"{(reply.ttft or 0) * 1000:.0f} ms, cached {reply.cached_tokens}"
            + ("" if reply.ok else f" FAILED: {reply.error}")
        )
    good = [r for r in replies if r.ok and r.ttft is not None]
    return {
        "runs": len(replies),
        "failed": len(replies) - len(good),
        "errors": [r.error for r in replies if not r.ok],
        "prompt_tokens": [r.prompt_tokens for r in good],
        "cached_tokens": [r.cached_tokens for r in good],
        "ttft_ms": [r.ttft * 1000 for r in good if r.ttft is not None],
        "ttft_p50_ms": p([r.ttft * 1000 for r in good if r.ttft is not None], 0.5),
    }


async def run_prefix(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    assert srv.client is not None
    client = srv.client

    async def go() -> tuple[Reply, list[Reply]]:
        system = "You answer questions about these notes.\n\n" + filler(955)
        cold = await stream(
            client, short_body("Question 0: which item is the heaviest?", 16, system)
        )
        hits = []
        for i in range(1, args.prefix_hits + 1):  # sequential: each hit finds the prefix idle
            q = f"Question {i}: when was item {i} checked, and where is it?"
            hits.append(await stream(client, short_body(q, 16, system)))
        return cold, hits

    (cold, hits), bg = await measured(srv, "prefix", args, go)
    good = [h for h in hits if h.ok and h.ttft is not None]
    hit_ms = [h.ttft * 1000 for h in good if h.ttft is not None]
    cold_ms = cold.ttft * 1000 if cold.ok and cold.ttft is not None else None
    hit_p50 = p(hit_ms, 0.5)
    out = {
        "hits": len(hits),
        "failed": len(hits) - len(good) + (0 if cold.ok else 1),
        "errors": [r.error for r in [cold, *hits] if not r.ok][:5],
        "cold_prompt_tokens": cold.prompt_tokens,
        "cold_cached_tokens": cold.cached_tokens,
        "cold_ttft_ms": cold_ms,
        "hit_ttft_ms": hit_ms,
        "hit_ttft_p50_ms": hit_p50,
        "hit_cold_ratio": hit_p50 / cold_ms if hit_p50 is not None and cold_ms else None,
        "hit_prompt_tokens": [h.prompt_tokens for h in good],
        "hit_cached_tokens": [h.cached_tokens for h in good],
        "other_cores": bg,
    }
    cached = [c for c in out["hit_cached_tokens"] if c is not None]
    log(
        f"  [{srv.name}] prefix: cold {cold_ms or 0:.0f} ms ({cold.prompt_tokens} tokens, cached "
        f"{cold.cached_tokens}), hits p50 {hit_p50 or 0:.0f} ms, hit cached_tokens "
        f"{min(cached) if cached else None}..{max(cached) if cached else None}"
    )
    return out


async def run_json(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    assert srv.client is not None
    client = srv.client
    out: dict[str, Any] = {}
    for c in args.json_concurrency:
        row: dict[str, Any] = {}
        for mode in ("unconstrained", "constrained"):

            async def go(c: int = c, mode: str = mode) -> dict[str, Any]:
                bodies = json_bodies(c, args.max_tokens, mode == "constrained")
                return await level(client, bodies)

            summary, bg = await measured(srv, f"json {mode} c={c}", args, go)
            summary["other_cores"] = bg
            row[mode] = summary
        unc, con = row["unconstrained"], row["constrained"]
        row["tok_s_ratio"] = con["tok_s"] / unc["tok_s"] if unc["tok_s"] else None
        u, k = unc["ttft_p50_ms"], con["ttft_p50_ms"]
        row["ttft_ratio"] = k / u if u and k is not None else None
        out[str(c)] = row
        log(
            f"  [{srv.name}] json c={c}: {con['tok_s']:.1f} vs {unc['tok_s']:.1f} tok/s, "
            f"TTFT {k or 0:.0f} vs {u or 0:.0f} ms ({con['failed'] + unc['failed']} failed)"
        )
    return out


async def run_edit(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Without and with ``prediction``, alternating, after one request that puts the prompt
    in the server's prompt cache: both variants then start from the same cached prompt, and
    the difference is decoding alone."""
    assert srv.client is not None
    client = srv.client
    await complete(client, edit_body(1, prediction=False))
    with_pred = srv.name == "chatd"  # llama-server has no `prediction` field
    runs: dict[str, list[Reply]] = {"without": [], "with": []}
    for _ in range(args.edit_runs):
        for variant in ("without", "with") if with_pred else ("without",):

            async def go(variant: str = variant) -> Reply:
                body = edit_body(args.edit_max_tokens, prediction=variant == "with")
                return await complete(client, body)

            reply, _bg = await measured(srv, f"edit {variant}", args, go)
            runs[variant].append(reply)
            det = ((reply.usage or {}).get("completion_tokens_details")) or {}
            log(
                f"  [{srv.name}] edit {variant} prediction: "
                + (
                    f"{reply.duration:.2f}s, {reply.tokens} tokens, accepted "
                    f"{det.get('accepted_prediction_tokens')}, rejected "
                    f"{det.get('rejected_prediction_tokens')}"
                    if reply.ok
                    else f"FAILED: {reply.error}"
                )
            )

    def summary(replies: list[Reply]) -> dict[str, Any]:
        good = [r for r in replies if r.ok]
        dets = [((r.usage or {}).get("completion_tokens_details")) or {} for r in good]
        return {
            "runs": len(replies),
            "status": [r.status for r in replies],
            "errors": [r.error for r in replies if not r.ok][:3],
            "wall_s": [r.duration for r in good],
            "wall_p50_s": p([r.duration for r in good], 0.5),
            "completion_tokens": [r.tokens for r in good],
            "accepted": [d.get("accepted_prediction_tokens") for d in dets],
            "rejected": [d.get("rejected_prediction_tokens") for d in dets],
            "finish_reasons": [r.finish_reason for r in good],
            "text": good[0].text if good else None,
        }

    out: dict[str, Any] = {"without": summary(runs["without"])}
    if with_pred:
        w = out["with"] = summary(runs["with"])
        if not w["wall_s"] and any(s == 400 for s in w["status"]):
            w["unsupported"] = True
        texts = {r.text for r in runs["without"] + runs["with"] if r.ok}
        out["identical"] = len(texts) == 1 if w["wall_s"] else None
    out["edit_applied"] = "MAX_RETRIES = 5" in (out["without"]["text"] or "")
    return out


RUNNERS: dict[str, Callable[[Server, argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "streams": run_streams,
    "long": run_long,
    "prefix": run_prefix,
    "json": run_json,
    "edit": run_edit,
}


async def serve_and_run(srv: Server, args: argparse.Namespace, info: dict[str, Any]) -> dict:
    """Start the server (unless given by URL), warm it up, run its workloads, stop it."""
    results: dict[str, Any] = {}
    try:
        if srv.start is not None:
            srv.proc = srv.start()
            info["command"] = srv.proc.cmd
            info["log"] = str(srv.proc.log_path)
            log(f"[{srv.proc.name}] starting: {' '.join(srv.proc.cmd)}")
            t0 = time.perf_counter()
            await srv.proc.wait_healthy()
            log(f"[{srv.proc.name}] healthy after {time.perf_counter() - t0:.1f}s")
            base = srv.proc.base_url
        else:
            assert srv.url is not None
            base = srv.url.rstrip("/").removesuffix("/v1")
            info["url"] = base
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        srv.client = httpx.AsyncClient(
            base_url=base,
            headers=headers,
            limits=httpx.Limits(max_connections=max(args.concurrency) + 8),
            timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0),
        )
        warm = await stream(srv.client, short_body("Say hello.", 8))
        if not warm.ok:
            raise RuntimeError(f"warm-up request failed: {warm.error}")
        for w in srv.workloads:
            log(f"[{srv.name}] {w}")
            results[w] = await RUNNERS[w](srv, args)
    finally:
        if srv.client is not None:
            await srv.client.aclose()
        if srv.proc is not None:
            info["log_errors"] = [
                line.strip()[:200]
                for line in srv.proc.log_text().splitlines()
                if any(word in line for word in ("ERROR", "error:", "Traceback", "Exception"))
            ][:10]
            srv.proc.stop()
    return results


# ---------------------------------------------------------------- figures and table


@dataclass
class Figure:
    """One row of the table: a value per server, the chatd/peer ratio, a target if any."""

    key: str  # stable name, for comparing runs
    label: str
    unit: str  # "tok/s", "ms", "s", "%", "x", "tokens", ""
    better: str  # "higher", "lower", or "" (not compared between runs)
    chatd: Any = None
    peer: Any = None
    target: str = ""  # e.g. ">=1.20x chatd/peer" or "<=3% chatd"
    ratio_ok: bool = True  # whether chatd/peer is meaningful

    @property
    def ratio(self) -> float | None:
        if not self.ratio_ok:
            return None
        a, b = self.chatd, self.peer
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            return float(a) / float(b)
        return None

    def met(self) -> str:
        """Whether the target holds: on the ratio ("chatd/peer") or on chatd's value."""
        if not self.target:
            return ""
        op, rest = self.target[:2], self.target[2:]
        number, _, on = rest.partition(" ")
        value = self.ratio if on == "chatd/peer" else self.chatd
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "?"
        percent = number.endswith("%")
        limit = float(number[:-1]) / 100 if percent else float(number.rstrip("x"))
        ok = value >= limit if op == ">=" else value <= limit
        return "yes" if ok else "NO"


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "tok/s":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.1f}"
    return str(value)


def median(values: list[Any]) -> float | None:
    xs = [v for v in values if isinstance(v, int | float)]
    return statistics.median(xs) if xs else None


def figures(res: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[Figure]:
    """The table's rows from both servers' raw results (missing ones stay "-")."""
    rows: list[Figure] = []

    def add(f: Figure, get: Callable[[dict[str, Any]], Any]) -> None:
        for name in ("chatd", "peer"):
            with contextlib.suppress(KeyError, TypeError, IndexError):
                setattr(f, name, get(res.get(name, {})))
        rows.append(f)

    stream_tok_targets = {1: ">=1.0x chatd/peer", 16: ">=1.2x chatd/peer", 32: ">=1.25x chatd/peer"}
    for c in args.concurrency:
        k = str(c)
        add(
            Figure(f"streams.{c}.tok_s", f"streams c={c}: tok/s", "tok/s", "higher",
                   target=stream_tok_targets.get(c, "")),
            lambda r, k=k: r["streams"][k]["tok_s"],
        )  # fmt: skip
        for q in ("p50", "p95"):
            add(
                Figure(f"streams.{c}.ttft_{q}", f"streams c={c}: TTFT {q}", "ms", "lower",
                       target="<=1.0x chatd/peer" if c == 1 and q == "p50" else ""),
                lambda r, k=k, q=q: r["streams"][k][f"ttft_{q}_ms"],
            )  # fmt: skip
        for q in ("p50", "p95"):
            add(
                Figure(f"streams.{c}.itl_{q}", f"streams c={c}: ITL {q}", "ms", "lower"),
                lambda r, k=k, q=q: r["streams"][k][f"itl_{q}_ms"],
            )
    add(
        Figure("long.prompt_tokens", "cold prompt: prompt tokens", "tokens", "", ratio_ok=False),
        lambda r: median(r["long"]["prompt_tokens"]),
    )
    add(
        Figure("long.ttft", "cold ~1000-token prompt: TTFT", "ms", "lower",
               target="<=1.0x chatd/peer"),
        lambda r: r["long"]["ttft_p50_ms"],
    )  # fmt: skip
    add(
        Figure("prefix.cold_ttft", "shared prefix: cold TTFT", "ms", "lower"),
        lambda r: r["prefix"]["cold_ttft_ms"],
    )
    add(
        Figure("prefix.hit_ttft", f"shared prefix: hit TTFT p50 ({args.prefix_hits} seq.)", "ms",
               "lower"),
        lambda r: r["prefix"]["hit_ttft_p50_ms"],
    )  # fmt: skip
    add(
        Figure("prefix.hit_cold", "shared prefix: hit / cold TTFT", "%", "lower",
               target="<=3% chatd"),
        lambda r: r["prefix"]["hit_cold_ratio"],
    )  # fmt: skip
    add(
        Figure("prefix.cold_cached", "shared prefix: cached_tokens, cold", "tokens", "",
               ratio_ok=False),
        lambda r: r["prefix"]["cold_cached_tokens"],
    )  # fmt: skip
    add(
        Figure("prefix.hit_cached", "shared prefix: cached_tokens, hits (median)", "tokens", "",
               ratio_ok=False),
        lambda r: median(r["prefix"]["hit_cached_tokens"]),
    )  # fmt: skip
    for c in args.json_concurrency:
        k = str(c)
        for mode in ("unconstrained", "constrained"):
            add(
                Figure(f"json.{c}.{mode}.tok_s", f"json c={c}: {mode} tok/s", "tok/s", "higher"),
                lambda r, k=k, m=mode: r["json"][k][m]["tok_s"],
            )
        add(
            Figure(f"json.{c}.tok_s_ratio", f"json c={c}: tok/s constrained / unconstr.", "x",
                   "higher", target=">=0.9x chatd"),
            lambda r, k=k: r["json"][k]["tok_s_ratio"],
        )  # fmt: skip
        add(
            Figure(f"json.{c}.ttft_ratio", f"json c={c}: TTFT constrained / unconstr.", "x",
                   "lower", target="<=1.2x chatd"),
            lambda r, k=k: r["json"][k]["ttft_ratio"],
        )  # fmt: skip

    def with_pred(r: dict[str, Any], get: Callable[[dict[str, Any]], Any]) -> Any:
        if "with" not in r["edit"]:
            return "n/a"
        w = r["edit"]["with"]
        return "unsupported (400)" if w.get("unsupported") else get(w)

    add(
        Figure("edit.without", "edit: wall, without prediction", "s", "lower"),
        lambda r: r["edit"]["without"]["wall_p50_s"],
    )
    add(
        Figure("edit.with", "edit: wall, with prediction", "s", "lower"),
        lambda r: with_pred(r, lambda w: w["wall_p50_s"]),
    )

    def speedup(r: dict[str, Any]) -> Any:
        def get(w: dict[str, Any]) -> Any:
            a, b = r["edit"]["without"]["wall_p50_s"], w["wall_p50_s"]
            return a / b if a and b else None

        return with_pred(r, get)

    add(
        Figure("edit.speedup", "edit: without / with prediction", "x", "higher",
               target=">=2.5x chatd", ratio_ok=False),
        speedup,
    )  # fmt: skip
    for kind in ("accepted", "rejected"):
        add(
            Figure(f"edit.{kind}", f"edit: {kind}_prediction_tokens", "tokens", "",
                   ratio_ok=False),
            lambda r, kind=kind: with_pred(r, lambda w: median(w[kind])),
        )  # fmt: skip
    add(
        Figure("edit.completion_tokens", "edit: completion tokens (without)", "tokens", "",
               ratio_ok=False),
        lambda r: median(r["edit"]["without"]["completion_tokens"]),
    )  # fmt: skip
    add(
        Figure("edit.identical", "edit: texts with = without prediction", "", "", ratio_ok=False),
        lambda r: "n/a" if r["edit"].get("identical") is None else r["edit"]["identical"],
    )
    add(
        Figure("edit.applied", "edit: the one-line change made", "", "", ratio_ok=False),
        lambda r: r["edit"]["edit_applied"],
    )
    wanted = set(args.only)
    return [f for f in rows if f.key.split(".")[0] in wanted]


def render(rows: list[Figure]) -> str:
    header = ["figure", "chatd", "peer", "chatd/peer", "target", "met"]
    body = [
        [f.label, fmt(f.chatd, f.unit), fmt(f.peer, f.unit), fmt(f.ratio, "x"), f.target, f.met()]
        for f in rows
    ]
    return harness.table(header, body)


def previous_run(args: argparse.Namespace, exclude: Path) -> Path | None:
    """The most recent earlier results file of a comparable run: same mode (a --quick run
    has shorter streams and fewer samples than a full one), workloads and stream levels, so
    that an ``--only edit`` run in between does not hide the last full comparison."""
    for path in sorted(RESULTS.glob("serving-*.json"), reverse=True):
        if path == exclude:
            continue
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(path.read_text()).get("args", {})
            if (old.get("quick"), old.get("only"), old.get("concurrency")) == (
                args.quick,
                args.only,
                args.concurrency,
            ):
                return path
    return None


def regressions(rows: list[Figure], previous: dict[str, Any]) -> list[str]:
    """Figures more than ``REGRESSION`` worse than in ``previous`` (per server)."""
    old = {f["key"]: f for f in previous.get("figures", [])}
    found = []
    for f in rows:
        if not f.better or f.key not in old:
            continue
        for name in ("chatd", "peer"):
            new_v, old_v = getattr(f, name), old[f.key].get(name)
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in (new_v, old_v)
            ):
                continue
            if old_v <= 0:
                continue
            worse = new_v < old_v * (1 - REGRESSION) if f.better == "higher" else (
                new_v > old_v * (1 + REGRESSION)
            )  # fmt: skip
            if worse:
                found.append(
                    f"{name} {f.label}: {fmt(new_v, f.unit)} (was {fmt(old_v, f.unit)}, "
                    f"{(new_v / old_v - 1) * 100:+.0f}%)"
                )
    return found


def notes_for(res: dict[str, dict[str, Any]], info: dict[str, dict[str, Any]]) -> list[str]:
    """Failures, odd token counts, disturbed measurements, server log errors."""
    notes: list[str] = []
    for name, r in res.items():
        for c, s in (r.get("streams") or {}).items():
            if s["failed"]:
                notes.append(f"{name} streams c={c}: {s['failed']} failed: {s['errors'][:2]}")
            if s["counted_from"] != "usage":
                notes.append(f"{name} streams c={c}: no usage chunk, tokens counted as chunks")
            if s["tokens_per_chunk"] and abs(s["tokens_per_chunk"] - 1) > 0.01:
                notes.append(
                    f"{name} streams c={c}: {s['tokens_per_chunk']:.2f} tokens per content "
                    "chunk (ITL spreads each gap over them)"
                )
            if s["finish_reasons"] != ["length"]:
                notes.append(f"{name} streams c={c}: finish reasons {s['finish_reasons']}")
            if (s.get("other_cores") or 0) >= harness.DISTURBED_CORES:
                notes.append(f"{name} streams c={c}: disturbed ({s['other_cores']:.2f} cores)")
        for c, row in (r.get("json") or {}).items():
            for mode in ("unconstrained", "constrained"):
                if row[mode]["failed"]:
                    notes.append(f"{name} json {mode} c={c}: {row[mode]['errors'][:2]}")
        for w in ("long", "prefix"):
            if (r.get(w) or {}).get("failed"):
                notes.append(f"{name} {w}: {r[w]['failed']} failed: {r[w]['errors'][:2]}")
        edit = r.get("edit") or {}
        for variant in ("without", "with"):
            e = edit.get(variant) or {}
            if e.get("errors"):
                notes.append(f"{name} edit {variant} prediction: {e['errors'][0]}")
    for inst, i in info.items():
        if i.get("error"):
            notes.append(f"{inst} not measured: {i['error']}")
        for line in i.get("log_errors") or []:
            notes.append(f"{inst} log: {line}")
    return notes


# ---------------------------------------------------------------- driver


def environment() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "commit": commit,
        "gguf": str(throughput.gguf_path()),
        "llama_cpp_python_sdist": LLAMA_CPP_PYTHON,
    }


async def amain(args: argparse.Namespace) -> int:
    started = datetime.now()
    log(f"serving benchmark: {', '.join(args.only)}" + (" (quick)" if args.quick else ""))
    servers = [
        Server(
            "chatd",
            list(args.only),
            start=None if args.chatd_url else throughput.start_chatd,
            url=args.chatd_url,
        )
    ]
    info: dict[str, dict[str, Any]] = {}
    if not args.no_peer:
        wide = [w for w in args.only if w in PEER_WIDE]
        narrow = [w for w in args.only if w not in PEER_WIDE]
        try:
            binary = ensure_llama_server()
            version = subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, check=False
            )
            first = (version.stderr.strip() or version.stdout.strip()).splitlines()
            info["peer-build"] = {"binary": str(binary), "version": first[0] if first else "?"}
            if wide:
                servers.append(Server("peer", wide, start=lambda: start_peer(binary, 32, 16384)))
            if narrow:
                servers.append(Server("peer", narrow, start=lambda: start_peer(binary, 1, 4096)))
        except (RuntimeError, OSError, subprocess.CalledProcessError, StopIteration) as e:
            log(f"[peer] not measured: {e}")
            info["peer-build"] = {"error": str(e).splitlines()[0]}
    res: dict[str, dict[str, Any]] = {}
    status = 0
    for srv in servers:  # one server at a time
        inst = (
            "chatd"
            if srv.name == "chatd"
            else ("peer-np32" if srv.workloads[0] in PEER_WIDE else "peer-np1")
        )
        info[inst] = {"workloads": srv.workloads}
        try:
            res.setdefault(srv.name, {}).update(await serve_and_run(srv, args, info[inst]))
        except (RuntimeError, OSError, httpx.HTTPError) as e:
            log(f"[{inst}] not measured: {e}")
            info[inst]["error"] = str(e).splitlines()[0]
            if srv.name == "chatd":
                status = 1
    rows = figures(res, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = RESULTS / f"serving-{started:%Y%m%d-%H%M%S}.json"
    prev_path = previous_run(args, out_path)
    regressed: list[str] = []
    if prev_path is not None:
        with contextlib.suppress(OSError, ValueError):
            regressed = regressions(rows, json.loads(prev_path.read_text()))
    notes = notes_for(res, info)
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "args": {k: v for k, v in vars(args).items() if k != "api_key"},
        "environment": environment(),
        "servers": info,
        "results": res,
        "figures": [
            {
                "key": f.key,
                "label": f.label,
                "unit": f.unit,
                "better": f.better,
                "chatd": f.chatd,
                "peer": f.peer,
                "ratio": f.ratio,
                "target": f.target,
                "met": f.met(),
            }
            for f in rows
        ],  # fmt: skip
        "previous": str(prev_path) if prev_path else None,
        "regressions": regressed,
        "notes": notes,
    }
    out_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    log(f"results: {out_path}")
    env = doc["environment"]
    print(
        f"\nchatd vs llama-server ({info.get('peer-build', {}).get('version', 'n/a')!s:.60}), "
        f"{env['cpus']} cpus, {'quick' if args.quick else 'full'} run, "
        f"streams max_tokens={args.max_tokens}, {started:%Y-%m-%d %H:%M}"
    )
    print(render(rows))
    if prev_path is not None:
        print(
            f"\nCompared with {prev_path.name}: "
            + ("no regressions > 10%" if not regressed else "")
        )
        for r in regressed:
            print(f"- REGRESSED: {r}")
    harness.print_notes(notes)
    return status


def parse_only(text: str) -> list[str]:
    names = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in names if w not in WORKLOADS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {bad}; choose from {WORKLOADS}")
    return [w for w in WORKLOADS if w in names]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", type=parse_only, default=list(WORKLOADS), help=",".join(WORKLOADS))
    p.add_argument("--concurrency", type=throughput.parse_levels, default=None,
                   help="stream levels (default 1,4,16,32; --quick: 1,4)")  # fmt: skip
    p.add_argument("--no-peer", action="store_true", help="measure chatd only")
    p.add_argument("--chatd-url", help="measure this running chatd instead of starting one")
    p.add_argument("--api-key", help="Bearer key for a --chatd-url server")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 32-token streams, c=1,4, 1 cold run, 4 prefix hits, "
                   "1 edit run, no retries, at most 20 s waiting for quiet")  # fmt: skip
    harness.add_quiet_options(p, retries=1)
    args = p.parse_args(argv)
    if args.quick:  # shorter defaults; flags given explicitly still win
        p.set_defaults(wait_quiet=20.0, retries=0)
        args = p.parse_args(argv)
    q = args.quick
    args.concurrency = args.concurrency or ([1, 4] if q else [1, 4, 16, 32])
    args.max_tokens = 32 if q else 128
    args.json_concurrency = [1, 4]
    args.cold_runs = 1 if q else 3
    args.prefix_hits = 4 if q else 16
    args.edit_runs = 1 if q else 3
    args.edit_max_tokens = 600
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return harness.run_main(lambda: amain(args))


if __name__ == "__main__":
    sys.exit(main())

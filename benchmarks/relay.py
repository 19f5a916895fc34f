#!/usr/bin/env python
"""What chatd adds as a gateway: latency and requests/s of streamed chat completions sent
directly to an upstream vs through chatd (and, with ``--litellm``, through LiteLLM's proxy),
same upstream, same run.

The upstream is an OpenAI-compatible stub (one process, started here) with two modes, chosen
per request by the model name (``paced`` / ``instant``) or a ``?mode=`` query parameter:

* ``paced``, like a real model: the first content chunk after ``--ttft-ms`` (100), then one
  chunk every ``--interval-ms`` (20) up to ``--chunks`` (20), then the finish chunk, the usage
  chunk (when asked) and ``[DONE]``. Chunk times are fixed from the request's arrival, so
  the direct row is ~TTFT + 19 x interval and a gateway's row shows only what it adds.
  This is the target: chatd adds under 2 ms at p50 with 32 concurrent streams.
* ``instant``: the same stream with no waiting. A closed loop of C workers then measures
  saturation (capacity, req/s), not the latency a relay adds.

Load: a closed loop of ``--concurrency`` workers (httpx, one process), each sending its next
request when the last one ended, ``--requests`` per level. In paced levels worker i starts
i x (stream length / C) late: streams of a fixed length would otherwise run in lockstep (32
requests, then 32 chunks, arriving at the same instant), which a direct path keeps but a relay
breaks up, making a relay look faster than direct.

A third paced row, "direct, held", asks the stub to hold its response headers until its first
event (``?hold=1``): what a client sees from any gateway that fails over before the first
byte, since it cannot answer before an upstream has. A client handles the headers during the
wait when they come early, and inside the TTFT when they come with the first event; the row
measures that share of a gateway's added TTFT, which is not the gateway's work.

Rows are interleaved (paced: direct, held, chatd, LiteLLM; instant: direct, chatd, LiteLLM)
and the whole round is measured twice. For every gateway level the script reads the
gateway's CPU time (utime + stime of every process in its session, from /proc) before and
after: "CPU ms per relayed request" does not depend on the load generator. Before each level
it waits until the rest of the machine is quiet (``--wait-quiet``) and measures a level again
when other processes used more than 0.3 cores during it (``--retries``), keeping the least
disturbed.

    .venv/bin/python benchmarks/relay.py [--concurrency 32] [--requests 640]
        [--litellm /tmp/litellm-venv/bin/litellm] [--wait-quiet 120] [--retries 2]

LiteLLM (``--litellm EXE``, installed in its own venv, never in chatd's) is started with
``--num_workers 1`` and a generated config: one ``model_list`` entry per mode
(``openai/<mode>``, ``api_base`` the stub, ``api_key`` "x"), no master key, no database, no
cache, no callbacks, no telemetry, logging at WARNING (``LITELLM_LOG``), the bundled cost map
(``LITELLM_LOCAL_MODEL_COST_MAP``). If it cannot start, the script says why and goes on.

Every process the script starts runs in its own session and is stopped at the end, also on
Ctrl-C and SIGTERM; configs, logs and chatd's database live in a temporary directory that is
removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import httpx

MODES = ("paced", "instant")

STUB = r"""
import asyncio, json, sys, time
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

PORT, N = int(sys.argv[1]), int(sys.argv[4])
TTFT, INTERVAL = float(sys.argv[2]) / 1e3, float(sys.argv[3]) / 1e3
USAGE = {"prompt_tokens": 5, "completion_tokens": N, "total_tokens": N + 5}

def event(obj):
    return ("data: " + json.dumps(obj) + "\n\n").encode()

def chunk(model, delta, finish=None):
    return event({"id": "chatcmpl-stub", "object": "chat.completion.chunk",
        "created": int(time.time()), "model": model, "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

async def completions(request):
    arrived = time.monotonic()
    body = json.loads(await request.body())
    model = body.get("model", "")
    mode = request.query_params.get("mode") or ("instant" if "instant" in model else "paced")
    paced = mode == "paced"
    hold = request.query_params.get("hold") == "1"  # headers go with the first event
    usage = (body.get("stream_options") or {}).get("include_usage") is True
    if not body.get("stream"):
        if paced:
            await asyncio.sleep(TTFT + (N - 1) * INTERVAL)
        text = "".join(f" word{i}" for i in range(N))
        return JSONResponse({"id": "chatcmpl-stub", "object": "chat.completion",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": "stop"}], "usage": USAGE})

    async def events():
        for i in range(N):
            if paced:  # fixed schedule from arrival: no drift, the same for every path
                await asyncio.sleep(max(0.0, arrived + TTFT + i * INTERVAL - time.monotonic()))
            delta = {"content": f" word{i}"}
            yield chunk(model, {"role": "assistant", **delta} if i == 0 else delta)
        yield chunk(model, {}, "stop")
        if usage:
            yield event({"id": "chatcmpl-stub", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model, "system_fingerprint": "fp_stub",
                "choices": [], "usage": USAGE})
        yield b"data: [DONE]\n\n"
    if hold and paced:
        await asyncio.sleep(max(0.0, arrived + TTFT - time.monotonic()))
    return StreamingResponse(events(), media_type="text/event-stream")

async def health(request):
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                        Route("/health", health)])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
"""


# ---------------------------------------------------------------- processes


def start_stub(args: argparse.Namespace, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    cmd = [sys.executable, "-c", STUB, str(port)]
    cmd += [str(args.ttft_ms), str(args.interval_ms), str(args.chunks)]
    return harness.Managed("stub", cmd, port, "/health", log_dir=tmp)


def start_chatd(stub: harness.Managed, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    config = tmp / "chatd.toml"
    config.write_text(
        f'[[channels]]\nname = "stub"\nbase_url = "{stub.base_url}/v1"\n'
        f"models = {json.dumps(list(MODES))}\n"
    )
    exe = Path(sys.executable).parent / "chatd"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "chatd.cli"]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]
    cmd += ["--data-dir", str(tmp / "chatd-data"), "--log-level", "warning"]
    return harness.Managed("chatd", cmd, port, "/health", log_dir=tmp, env=harness.chatd_env())


LITELLM_CONFIG = """\
model_list:
{models}
litellm_settings:
  telemetry: false        # no usage reports
  cache: false            # no response cache
  callbacks: []           # no logging / observability integrations
  success_callback: []
  failure_callback: []
general_settings:
  dangerously_permit_weak_or_unset_master_key: true  # no key, as chatd without --api-key
  disable_spend_logs: true          # no spend rows (there is no database anyway)
  background_health_checks: false   # no periodic calls to the upstream
"""


def litellm_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LITELLM_", "DATABASE_", "OPENAI_", "REDIS_"))
        and k not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    env.update(
        LITELLM_LOG="WARNING",  # logging at warning; also uvicorn's (no access log lines)
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the cost map from GitHub at start
    )
    return env


def start_litellm(exe: str, stub: harness.Managed, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    models = "".join(
        f"  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n"
        f"      api_base: {stub.base_url}/v1\n      api_key: x\n"
        for m in MODES
    )
    config = tmp / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(models=models.rstrip("\n")))
    cmd = [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    return harness.Managed(
        "litellm", cmd, port, "/health/liveliness", log_dir=tmp, env=litellm_env()
    )


def litellm_version(exe: str) -> str:
    python = Path(exe).parent / "python"
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# ---------------------------------------------------------------- load


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


# ---------------------------------------------------------------- driver


@dataclass
class Route:
    """One way to reach the stub: directly or through a gateway this script started."""

    name: str
    client: httpx.AsyncClient
    server: harness.Managed | None = None  # the gateway (None: direct)


async def measure(
    path: Route,
    mode: str,
    run: int,
    servers: list[harness.Managed],
    args: argparse.Namespace,
) -> Level:
    """One level; re-measured when disturbed (the least disturbed attempt is kept)."""
    kept: Level | None = None
    for attempt in range(1 + args.retries):
        await harness.wait_quiet(servers, args.wait_quiet)
        before = harness.CpuSample.take(servers)
        # paced: one stream's length spread over the workers, as arrivals of real traffic are
        stagger = stream_seconds(args) / args.concurrency if mode == "paced" else 0.0
        results, wall = await run_level(path.client, mode, args.concurrency, args.requests, stagger)
        after = harness.CpuSample.take(servers)
        level = Level(mode, path.name, run, wall, results)
        if path.server is not None:
            level.gateway_cpu = after.ours[path.server.name] - before.ours[path.server.name]
        level.stub_cpu = after.ours["stub"] - before.ours["stub"]
        level.client_cpu = after.own - before.own
        level.other = after.other_cores(before, wall)
        cpu = level.cpu_ms_per_request
        print(
            f"[{path.name} {mode} run {run}] {len(level.good)}/{len(results)} ok, "
            f"{level.rps:.1f} req/s, TTFT p50 {level.pct('ttft', 0.5):.1f} ms, "
            f"total p50 {level.pct('total', 0.5):.1f} ms"
            + ("" if cpu is None else f", {cpu:.2f} CPU ms/req")
            + f", other processes {level.other:.2f} cores",
            flush=True,
        )
        if kept is None or level.other < kept.other:
            kept = level
        kept.attempts = attempt + 1
        if level.other < harness.DISTURBED_CORES:
            break
    assert kept is not None
    kept.notes = check(kept, args.chunks)
    return kept


async def fidelity(paths: list[Route]) -> list[str]:
    """One paced request per path: how each gateway's chunks differ from the stub's own."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for p in paths:
        chunks: list[dict[str, Any]] = []
        await stream_one(p.client, "paced", chunks)
        seen[p.name] = chunks
    direct = seen["direct"]
    notes: list[str] = []
    for name, chunks in seen.items():
        if name == "direct":
            continue
        diffs: dict[str, int] = {}
        if len(chunks) != len(direct):
            diffs[f"{len(chunks)} chunks (the stub sent {len(direct)})"] = 1
        for a, b in zip(direct, chunks, strict=False):
            fa, fb = flatten(a), flatten(b)
            for k in sorted(fa.keys() | fb.keys()):
                if k == "created":
                    continue
                if k not in fb:
                    d = f"drops {k}={json.dumps(fa[k])[:40]}"
                elif k not in fa:
                    d = f"adds {k}={json.dumps(fb[k])[:60]}"
                elif fa[k] != fb[k]:
                    d = f"{k}: {json.dumps(fa[k])[:40]} -> {json.dumps(fb[k])[:40]}"
                else:
                    continue
                diffs[d] = diffs.get(d, 0) + 1
        if diffs:
            shown = [f"{d} (x{n})" if n > 1 else d for d, n in list(diffs.items())[:12]]
            more = f"; {len(diffs) - 12} more" if len(diffs) > 12 else ""
            notes.append(f"{name} vs the stub's stream: " + "; ".join(shown) + more)
        else:
            notes.append(f"{name}: chunks identical to the stub's (but `created`)")
    return notes


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [2]} -> {"a.b": 1, "c[0]": 2}."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
    elif isinstance(obj, list):
        if not obj:
            out[prefix] = []
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


async def bring_up(name: str, server: harness.Managed) -> float:
    print(f"[{name}] starting: {' '.join(server.cmd[:2] + ['...'])}", flush=True)
    t0 = time.perf_counter()
    await server.wait_healthy()
    return time.perf_counter() - t0


async def warm_up(path: Route, concurrency: int) -> None:
    for mode in MODES:
        results, _ = await run_level(path.client, mode, min(concurrency, 8), 16)
        bad = [r for r in results if not r.ok]
        if bad:
            raise RuntimeError(f"warm-up {mode} request failed: {bad[0].error}")
    await run_level(path.client, "instant", concurrency, 2 * concurrency)


def client(
    base_url: str, concurrency: int, params: dict[str, str] | None = None
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits, params=params)


async def amain(args: argparse.Namespace, tmp: Path) -> int:
    notes: list[str] = []
    stub = start_stub(args, tmp)
    await bring_up("stub", stub)
    servers = [stub]
    paths = [Route("direct", client(stub.base_url, args.concurrency))]
    # The stub again, its headers held until its first event: what a client sees from any
    # gateway that fails over before the first byte (it cannot answer before that).
    held = Route("held", client(stub.base_url, args.concurrency, {"hold": "1"}))
    gateways: list[tuple[str, Callable[[], harness.Managed]]] = [
        ("chatd", lambda: start_chatd(stub, tmp))
    ]
    peer_version = None
    if args.litellm:
        peer_version = litellm_version(args.litellm)
        gateways.append(("litellm", lambda: start_litellm(args.litellm, stub, tmp)))
    for name, start in gateways:
        server: harness.Managed | None = None
        try:
            server = start()
            took = await bring_up(name, server)
            print(f"[{name}] healthy after {took:.1f}s", flush=True)
            path = Route(name, client(server.base_url, args.concurrency), server)
            await warm_up(path, args.concurrency)
        except (RuntimeError, OSError, httpx.HTTPError) as e:
            print(f"\n[{name}] not measured: {e}\n", file=sys.stderr, flush=True)
            notes.append(f"{name} not measured: {str(e).splitlines()[0]}")
            if server is not None:
                server.stop()
            if name == "chatd":
                return 1
            continue
        servers.append(server)
        paths.append(path)
    await warm_up(paths[0], args.concurrency)

    # idle cost: what each gateway burns with no traffic
    before = harness.CpuSample.take(servers)
    await asyncio.sleep(5.0)
    after = harness.CpuSample.take(servers)
    for s in servers[1:]:
        idle = (after.ours[s.name] - before.ours[s.name]) / 5.0 * 1000
        notes.append(f"{s.name} idle: {idle:.0f} CPU ms/s with no traffic (+-2: clock ticks)")

    notes += await fidelity(paths)
    paths.insert(1, held)
    run_start = harness.CpuSample.take(servers)
    started = datetime.datetime.now(datetime.UTC)
    levels: list[Level] = []
    try:
        for run in (1, 2):
            for mode in MODES:
                for path in paths:
                    if path.name == "held" and mode != "paced":
                        continue
                    levels.append(await measure(path, mode, run, servers, args))
    finally:
        for p in paths:
            await p.client.aclose()
    run_end = harness.CpuSample.take(servers)
    for s in servers:
        for line in s.log_tail(400).splitlines():
            if "LITELLM_MASTER_KEY is not set" in line:
                continue  # on purpose: both gateways run without keys
            if any(w in line for w in ("ERROR", "Traceback", "CRITICAL")):
                notes.append(f"{s.name} log: {line.strip()[:200]}")
    for lv in levels:
        notes += lv.notes
        if lv.attempts > 1:
            notes.append(
                f"{lv.path} {lv.mode} run {lv.run}: disturbed, measured {lv.attempts} times, "
                f"kept the least disturbed ({lv.other:.2f} other cores)"
            )

    print()
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, cpus={os.cpu_count()}, concurrency={args.concurrency}, "
        f"requests/level={args.requests}, paced: TTFT {args.ttft_ms:g} ms + "
        f"{args.chunks} chunks {args.interval_ms:g} ms apart"
        + (f", LiteLLM {peer_version}" if any(p.name == "litellm" for p in paths) else "")
    )
    print()
    print(render_paced(levels))
    print()
    print(render_instant(levels))
    print()
    for line in summary(levels):
        print(line)
    print()
    print(
        "Busiest other processes during the measured levels (CPU s): " + busiest(run_start, run_end)
    )
    harness.print_notes(notes)
    return 1 if any(len(lv.good) < len(lv.results) for lv in levels if lv.path == "chatd") else 0


def busiest(start: harness.CpuSample, end: harness.CpuSample, n: int = 5) -> str:
    """The ``n`` other processes that used the most CPU between the two samples."""
    ours = harness.started_sessions()
    used: list[tuple[float, str]] = []
    for pid, (sid, cpu, _, name) in end.procs.items():
        if pid == os.getpid() or sid in ours:
            continue
        prev = start.procs.get(pid)
        delta = cpu - (prev.cpu if prev and prev.name == name else 0.0)
        if delta > 0.05:
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                name = " ".join(cmd.split()[:3])[:70] or name
            used.append((delta, f"{pid} `{name}`"))
    used.sort(reverse=True)
    return ", ".join(f"{name} {cpu:.1f}" for cpu, name in used[:n]) or "none"


def pooled(levels: list[Level], mode: str, path: str) -> Level | None:
    """Both runs of one (mode, path) as one sample."""
    chosen = [lv for lv in levels if lv.mode == mode and lv.path == path]
    if not chosen:
        return None
    cpu = [lv.gateway_cpu for lv in chosen]
    return Level(
        mode,
        path,
        0,
        sum(lv.wall for lv in chosen),
        [r for lv in chosen for r in lv.results],
        None if None in cpu else sum(c for c in cpu if c is not None),
        other=max(lv.other for lv in chosen),
    )


def _label(path: str) -> str:
    labels = {"direct": "direct", "held": "direct, held", "chatd": "via chatd"}
    return labels.get(path, "via LiteLLM")


def _rows(levels: list[Level], mode: str) -> list[tuple[str, Level, Level | None]]:
    """(run label, level, the direct level of the same run) in table order, pooled last."""
    out: list[tuple[str, Level, Level | None]] = []
    for run in (1, 2, 0):
        if run:
            group = [lv for lv in levels if lv.mode == mode and lv.run == run]
        else:
            group = [
                p
                for path in ("direct", "held", "chatd", "litellm")
                if (p := pooled(levels, mode, path))
            ]
        direct = next((lv for lv in group if lv.path == "direct"), None)
        out += [(str(run) if run else "both", lv, direct) for lv in group]
    return out


def _cpu(lv: Level) -> str:
    cpu = lv.cpu_ms_per_request
    return "-" if cpu is None else f"{cpu:.2f}"


def render_paced(levels: list[Level]) -> str:
    header = ["paced", "run", "TTFT p50", "TTFT p99", "total p50", "total p99", "req/s"]
    header += ["adds TTFT p50", "adds total p50", "gw CPU ms/req", "other cores"]
    rows = []
    for run, lv, direct in _rows(levels, "paced"):
        adds = ["-", "-"]
        if lv.path != "direct" and direct is not None:
            adds = [f"{lv.pct(w, 0.5) - direct.pct(w, 0.5):+.2f}" for w in ("ttft", "total")]
        rows.append(
            [
                _label(lv.path),
                run,
                f"{lv.pct('ttft', 0.5):.1f}",
                f"{lv.pct('ttft', 0.99):.1f}",
                f"{lv.pct('total', 0.5):.1f}",
                f"{lv.pct('total', 0.99):.1f}",
                f"{lv.rps:.1f}",
                *adds,
                _cpu(lv),
                f"{lv.other:.2f}",
            ]
        )
    return "Paced upstream (the target; ms):\n" + harness.table(header, rows)


def render_instant(levels: list[Level]) -> str:
    header = ["instant", "run", "req/s", "of direct", "total p50 ms", "gw CPU ms/req"]
    header += ["other cores"]
    rows = []
    for run, lv, direct in _rows(levels, "instant"):
        share = "-" if lv.path == "direct" or direct is None else f"{lv.rps / direct.rps:.0%}"
        rows.append(
            [
                _label(lv.path),
                run,
                f"{lv.rps:.1f}",
                share,
                f"{lv.pct('total', 0.5):.1f}",
                _cpu(lv),
                f"{lv.other:.2f}",
            ]
        )
    return "Instant upstream (capacity, saturated closed loop; not the target):\n" + harness.table(
        header, rows
    )


def summary(levels: list[Level]) -> list[str]:
    """The target line, the peer comparison, the CPU cost per relayed request."""
    lines: list[str] = []
    direct = pooled(levels, "paced", "direct")
    assert direct is not None
    added: dict[str, tuple[float, float]] = {}
    for gw in ("chatd", "litellm"):
        lv = pooled(levels, "paced", gw)
        if lv is None:
            continue
        added[gw] = (
            lv.pct("ttft", 0.5) - direct.pct("ttft", 0.5),
            lv.pct("total", 0.5) - direct.pct("total", 0.5),
        )
    ttft, total = added["chatd"]
    verdict = "met" if max(ttft, total) < 2.0 else "NOT met"
    lines.append(
        f"chatd adds {ttft:+.2f} ms TTFT, {total:+.2f} ms total at p50 (both runs pooled; "
        f"target < 2 ms: {verdict})"
    )
    held = pooled(levels, "paced", "held")
    if held is not None:
        floor = held.pct("ttft", 0.5) - direct.pct("ttft", 0.5)
        lines.append(
            f"the stub with its headers held until its first event (what any gateway that fails"
            f" over before the first byte shows) adds {floor:+.2f} ms TTFT by itself; chatd"
            f" beyond that: {ttft - floor:+.2f} ms"
        )
    if "litellm" in added:
        p_ttft, p_total = added["litellm"]
        lines.append(f"LiteLLM adds {p_ttft:+.2f} ms TTFT, {p_total:+.2f} ms total at p50")
        lines.append(
            f"added latency chatd / LiteLLM: TTFT {ratio(ttft, p_ttft)}, "
            f"total {ratio(total, p_total)}"
        )
    cpu: dict[tuple[str, str], float] = {}
    for mode in MODES:
        for gw in ("chatd", "litellm", "direct"):
            lv = pooled(levels, mode, gw)
            if lv is None:
                continue
            if gw == "direct":
                same = [x for x in levels if x.mode == mode and x.path == gw]
                cpu[(mode, "stub")] = sum(x.stub_cpu for x in same) * 1000 / len(lv.results)
                cpu[(mode, "client")] = sum(x.client_cpu for x in same) * 1000 / len(lv.results)
            elif lv.cpu_ms_per_request is not None:
                cpu[(mode, gw)] = lv.cpu_ms_per_request
    for mode in MODES:
        parts = [f"chatd {cpu[(mode, 'chatd')]:.2f}"]
        if (mode, "litellm") in cpu:
            parts.append(f"LiteLLM {cpu[(mode, 'litellm')]:.2f}")
            parts.append(f"chatd / LiteLLM {ratio(cpu[(mode, 'chatd')], cpu[(mode, 'litellm')])}")
        parts.append(f"for scale, direct: the stub {cpu[(mode, 'stub')]:.2f}")
        parts.append(f"the load generator {cpu[(mode, 'client')]:.2f}")
        lines.append(f"gateway CPU ms per relayed request, {mode}: " + ", ".join(parts))
    return lines


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a > 0 and b > 0 else "-"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--concurrency", type=int, default=32, help="concurrent streams")
    p.add_argument("--requests", type=int, default=640, help="requests per level")
    p.add_argument("--ttft-ms", type=float, default=100.0, help="paced: time to first chunk")
    p.add_argument("--interval-ms", type=float, default=20.0, help="paced: between chunks")
    p.add_argument("--chunks", type=int, default=20, help="content chunks per answer")
    p.add_argument(
        "--litellm",
        metavar="EXE",
        help="also measure LiteLLM's proxy, started from this `litellm` executable "
        "(installed in its own venv, e.g. /tmp/litellm-venv/bin/litellm)",
    )
    harness.add_quiet_options(p, retries=2)
    args = p.parse_args(argv)
    if min(args.concurrency, args.requests, args.chunks) < 1:
        p.error("--concurrency, --requests and --chunks must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="chatd-relay-"))  # configs, logs, chatd's database
    try:
        return harness.run_main(lambda: amain(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Serving benchmark: chatd vs. llama.cpp's own ``llama-server`` on the same GGUF.

Why a second peer besides ``throughput.py``'s llama-cpp-python server: ``llama-server`` is the
serving stack llama.cpp itself ships (slots, continuous batching, prompt cache, grammar), so it
is the bar chatd has to clear. Both run the same GGUF and get identical workloads; only one
server runs at a time (the machine has few cores), and before every measurement the script
waits for the rest of the machine to be quiet and re-measures a disturbed one (``harness``).

Workloads (``--only``), in the order they run on each server:

* ``rss``: resident memory (VmRSS of the server's processes) at rest, and its peak during a
  level of 32 streams.
* ``streams``: a few sequential warm-up requests (the prefix cache then holds entries), then
  C concurrent streamed requests (C in ``--concurrency``), 128 tokens each,
  temperature 0.7, EOG tokens banned so each generates exactly 128, every prompt unique.
  Aggregate tok/s, TTFT p50/p95, ITL p50/p95.
* ``long``: cold ~1000- and ~6000-token prompts (new text), TTFT with ``max_tokens`` 16.
* ``longctx``: one stream whose prompt is a ~6000-token conversation: ITL at long context.
* ``prefix``: one ~1000-token system prompt: a cold request, then N sequential requests with
  it and a different short user message each. TTFT of hits / TTFT of the cold one, and the
  ``usage.prompt_tokens_details.cached_tokens`` each server reports.
* ``json``: streamed requests with ``response_format`` json_schema (strict) vs. the same
  requests unconstrained, at C = 1 and 4: constrained / unconstrained tok/s and TTFT.
* ``edit``: rewrite a ~400-token Python file with one line changed, temperature 0, with and
  without ``prediction`` (OpenAI predicted outputs): wall time, speed-up, accepted/rejected
  prediction tokens, whether the texts agree. llama-server has no ``prediction`` field (its
  speculative decoding is configured per server), so it gets the request without one.
* ``agent``: 4 concurrent sessions on one ~5,000-token system prompt with 6 tools, 6 turns
  each resending the whole conversation, 48-token answers (``agent.py``).
* ``restart`` (chatd only): the agent's prompt before and after a restart of chatd with
  ``--prefix-cache-dir`` (``restart.py``).

Peer: ``llama-server`` built once from the llama.cpp sources vendored in the llama-cpp-python
0.3.36 sdist, cached in ``~/.cache/chatd-bench/`` (AMX kernels off: they crash on this CPU).
It runs as ``-np 32 -c 16384`` for ``rss``/``streams``/``json``, ``-np 1 -c 8192`` for
``long``/``longctx``/``prefix``/``edit`` and ``-np 4 -c 32768`` for ``agent`` (``PEERS``),
with its shipped defaults otherwise (``cache_prompt`` on, ``--cache-reuse`` 0, unified KV
off, 8 GiB host prompt cache).

Output: progress on stderr, one Markdown table on stdout (chatd, peer, chatd/peer, target),
and everything as JSON in ``benchmarks/results/serving-YYYYMMDD-HHMMSS.json``, compared with
the most recent earlier JSON of the same mode (``--quick`` or not): a figure more than 10%
worse is flagged.

Usage::

    .venv/bin/python benchmarks/serving.py
        [--only rss,streams,long,longctx,prefix,json,edit,agent,restart]
        [--concurrency 1,4,16,32] [--no-peer] [--chatd-url URL] [--quick]
        [--wait-quiet 120] [--retries 1]

The parts: ``peer.py`` builds and starts llama-server, ``prompts.py`` holds what is sent,
``workloads.py`` (with ``agent.py``, ``memory.py``, ``restart.py``, all measuring through
``measure.py``) runs and times each workload through ``client.py`` (the streaming client
``throughput.py`` uses too), ``report.py`` turns the results into the table; this file is the
command line and the order of things.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import harness
import httpx
import peer
import report
from client import base_url, open_client, stream
from harness import log
from memory import RSS_STREAMS
from prompts import short_body
from restart import run_restart
from workloads import RUNNERS, WORKLOADS, Server

# the peer's instances: slots, context, and the workloads each serves (one at a time)
PEERS = {
    "peer-np32": (32, 16384, ("rss", "streams", "json")),
    "peer-np1": (1, 8192, ("long", "longctx", "prefix", "edit")),
    "peer-np4": (4, 32768, ("agent",)),
}
CHATD_ONLY = ("restart",)  # run on chatd alone, which they start themselves


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
        "gguf": str(harness.gguf_path()),
        "llama_cpp_python_sdist": peer.LLAMA_CPP_PYTHON,
    }


async def serve_and_run(srv: Server, args: argparse.Namespace, info: dict[str, Any]) -> dict:
    """Start the server (unless given by URL), warm it up, run its workloads, stop it."""
    results: dict[str, Any] = {}
    try:
        if srv.start is not None:
            srv.proc = srv.start()
            info["command"] = srv.proc.cmd
            info["log"] = str(srv.proc.log_path)
            log(f"[{srv.instance}] starting: {' '.join(srv.proc.cmd)}")
            t0 = time.perf_counter()
            await srv.proc.wait_healthy()
            log(f"[{srv.instance}] healthy after {time.perf_counter() - t0:.1f}s")
            base = srv.proc.base_url
        else:
            assert srv.url is not None
            base = base_url(srv.url)
            info["url"] = base
        connections = max(*args.concurrency, RSS_STREAMS, args.agent_sessions) + 8
        srv.client = open_client(base, args.api_key, connections)
        warm = await stream(srv.client, short_body("Say hello.", 8))
        if not warm.ok:
            raise RuntimeError(f"warm-up request failed: {warm.error}")
        for w in srv.workloads:
            log(f"[{srv.instance}] {w}")
            try:
                results[w] = await RUNNERS[w](srv, args)
            except (RuntimeError, OSError, httpx.HTTPError) as e:  # the others still run
                log(f"[{srv.instance}] {w} failed: {e}")
                results[w] = {"error": str(e).splitlines()[0]}
    finally:
        if srv.client is not None:
            await srv.client.aclose()
        if srv.proc is not None:
            info["log_errors"] = [
                line.strip()[:200]
                for line in srv.proc.log_text().splitlines()
                if any(word in line for word in ("ERROR", "error:", "Traceback", "Exception"))
                and " INFO " not in line  # chatd's "INFO uvicorn.error:" lines
            ][:10]
            srv.proc.stop()
    return results


# chatd with the KV cells of the peer's streams instance (-c 16384), so that neither speed
# nor memory is bought with a larger cache (chatd's own default is 32,768).
CHATD_ARGS = ("--n-ctx", "16384")


def plan(args: argparse.Namespace, info: dict[str, dict[str, Any]]) -> list[Server]:
    """The servers in the order they run: chatd for everything, then each peer instance
    for its workloads (the peer is built first when missing)."""
    servers = [
        Server(
            "chatd",
            [w for w in args.only if w not in CHATD_ONLY],
            start=None if args.chatd_url else functools.partial(harness.start_chatd, *CHATD_ARGS),
            url=args.chatd_url,
            instance="chatd",
        )
    ]
    wanted = {inst: [w for w in args.only if w in ws] for inst, (_, _, ws) in PEERS.items()}
    if args.no_peer or not any(wanted.values()):
        return servers
    try:
        binary = peer.ensure_llama_server()
        info["peer-build"] = {"binary": str(binary), "version": peer.peer_version(binary)}
    except (RuntimeError, OSError, subprocess.CalledProcessError, StopIteration) as e:
        log(f"[peer] not measured: {e}")
        info["peer-build"] = {"error": str(e).splitlines()[0]}
        return servers
    for inst, (slots, ctx, _) in PEERS.items():
        if wanted[inst]:
            start = functools.partial(peer.start_peer, binary, slots, ctx)
            servers.append(Server("peer", wanted[inst], start=start, instance=inst))
    return servers


async def amain(args: argparse.Namespace) -> int:
    started = datetime.now()
    log(f"serving benchmark: {', '.join(args.only)}" + (" (quick)" if args.quick else ""))
    info: dict[str, dict[str, Any]] = {}
    res: dict[str, dict[str, Any]] = {}
    status = 0
    for srv in plan(args, info):  # one server at a time
        if not srv.workloads:
            continue
        info[srv.instance] = {"workloads": srv.workloads}
        try:
            res.setdefault(srv.name, {}).update(await serve_and_run(srv, args, info[srv.instance]))
        except (RuntimeError, OSError, httpx.HTTPError) as e:
            log(f"[{srv.instance}] not measured: {e}")
            info[srv.instance]["error"] = str(e).splitlines()[0]
            if srv.name == "chatd":
                status = 1
    if "restart" in args.only:
        info["chatd-restart"] = {"workloads": ["restart"]}
        if args.chatd_url:
            res.setdefault("chatd", {})["restart"] = {"error": "not with --chatd-url"}
        else:
            log("[chatd-restart] restart")
            try:
                restart = await run_restart(args, info["chatd-restart"])
            except (RuntimeError, OSError, httpx.HTTPError) as e:
                restart = {"error": str(e).splitlines()[0]}
            res.setdefault("chatd", {})["restart"] = restart
    rows = report.figures(res, args)
    report.RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = report.RESULTS / f"serving-{started:%Y%m%d-%H%M%S}.json"
    prev_path = report.previous_run(args, out_path)
    regressed: list[str] = []
    if prev_path is not None:
        with contextlib.suppress(OSError, ValueError):
            regressed = report.regressions(rows, json.loads(prev_path.read_text()))
    notes = report.notes_for(res, info)
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "args": {k: v for k, v in vars(args).items() if k != "api_key"},
        "environment": environment(),
        "servers": info,
        "results": res,
        "figures": [f.as_dict() for f in rows],
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
    print(report.render(rows))
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
    p.add_argument("--concurrency", type=harness.parse_levels, default=None,
                   help="stream levels (default 1,4,16,32; --quick: 1,4)")  # fmt: skip
    p.add_argument("--no-peer", action="store_true", help="measure chatd only")
    p.add_argument("--chatd-url", help="measure this running chatd instead of starting one")
    p.add_argument("--api-key", help="Bearer key for a --chatd-url server")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 32-token streams, c=1,4, 1 cold run per size, 4 prefix "
                   "hits, 1 edit run, 2 agent turns, no retries, at most 20 s waiting for "
                   "quiet")  # fmt: skip
    harness.add_quiet_options(p, retries=1)
    args = p.parse_args(argv)
    if args.quick:  # shorter defaults; flags given explicitly still win
        p.set_defaults(wait_quiet=20.0, retries=0)
        args = p.parse_args(argv)
    q = args.quick
    args.concurrency = args.concurrency or ([1, 4] if q else [1, 4, 16, 32])
    args.max_tokens = 32 if q else 128
    args.warm_requests = 4 if q else 8  # before the stream levels: the prefix cache warm
    args.json_concurrency = [1, 4]
    args.cold_runs = 1 if q else 3
    args.cold_sizes = [1000, 6000]
    args.longctx_tokens = 6000
    args.prefix_hits = 4 if q else 16
    args.edit_runs = 1 if q else 3
    args.edit_max_tokens = 600
    args.agent_sessions = 4
    args.agent_turns = 2 if q else 6
    args.agent_max_tokens = 48
    args.agent_system_tokens = 5000  # the instructions; chatd renders the tools in ~880 more
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return harness.run_main(lambda: amain(args))


if __name__ == "__main__":
    sys.exit(main())

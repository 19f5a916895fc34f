"""The ``restart`` workload of ``serving.py`` (chatd only): does the prefix cache survive a
restart when chatd keeps it on disk (``--prefix-cache-dir``)?

chatd is started with an empty cache directory, sent the agent's long system prompt with
tools once (cold TTFT), stopped (SIGTERM: a normal shutdown, which is when the cache is
written), started again on the same directory and sent the same system prompt with a
different last user message. TTFT after the restart / cold TTFT is the figure (target
<= 5%): near 1 when nothing was kept. llama-server has no such option (its slots' caches
go with the process), so its column is n/a. A chatd that does not know the flag refuses
to start with it: the figure then reads "unsupported" instead of failing the run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import harness
from client import Reply, open_client, stream
from harness import log
from measure import Server, measured
from prompts import agent_body, agent_system, short_body

FLAG = "--prefix-cache-dir"


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


async def serve_once(
    cache_dir: Path, args: argparse.Namespace, info: dict[str, Any], body: dict[str, Any]
) -> tuple[Reply | None, str | None]:
    """Start chatd on ``cache_dir``, warm it up with an unrelated short request, send
    ``body`` on a quiet machine, stop chatd. Returns the reply, or None and why chatd did
    not start ("unsupported" when it does not know the flag)."""
    proc = harness.start_chatd(FLAG, str(cache_dir))
    info.setdefault("commands", []).append(proc.cmd)
    info.setdefault("logs", []).append(str(proc.log_path))
    srv = Server("chatd", ["restart"], proc=proc, instance="chatd-restart")
    try:
        try:
            await proc.wait_healthy()
        except RuntimeError as e:
            text = proc.log_text()
            if any(f"{word} {FLAG}" in text for word in ("arguments:", "option")):
                return None, "unsupported"
            return None, str(e).splitlines()[0]
        srv.client = open_client(proc.base_url, None, 4)
        warm = await stream(srv.client, short_body("Say hello.", 8))
        if not warm.ok:
            return None, f"warm-up failed: {warm.error}"

        async def go() -> Reply:
            assert srv.client is not None
            return await stream(srv.client, body)

        reply, _bg = await measured(srv, "restart", args, go)
        return reply, None
    finally:
        if srv.client is not None:
            await srv.client.aclose()
        proc.stop()  # SIGTERM first: chatd writes its prefix cache as it shuts down


async def run_restart(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """Cold request, restart, the same system prompt again: the TTFT ratio and the
    ``cached_tokens`` after the restart."""
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-prefix-cache-"))
    try:
        system = agent_system(args.agent_system_tokens)

        def body(question: str) -> dict[str, Any]:
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ]
            return agent_body(messages, 16)

        cold, why = await serve_once(cache_dir, args, info, body("Which tools can you use?"))
        if cold is None or not cold.ok:
            return failed("cold", why, cold)
        kept = dir_mib(cache_dir)
        after, why = await serve_once(
            cache_dir, args, info, body("Which file would you read first?")
        )
        if after is None or not after.ok:
            return failed("after restart", why, after)
        assert cold.ttft is not None and after.ttft is not None
        out = {
            "cold_ttft_ms": cold.ttft * 1000,
            "cold_prompt_tokens": cold.prompt_tokens,
            "cold_cached_tokens": cold.cached_tokens,
            "dir_mib": kept,
            "after_ttft_ms": after.ttft * 1000,
            "after_prompt_tokens": after.prompt_tokens,
            "after_cached_tokens": after.cached_tokens,
            "ratio": after.ttft / cold.ttft,
        }
        log(
            f"  [chatd] restart: cold {out['cold_ttft_ms']:.0f} ms ({cold.prompt_tokens} "
            f"tokens), {kept:.1f} MiB kept, after restart {out['after_ttft_ms']:.0f} ms "
            f"(cached {after.cached_tokens}): {out['ratio'] * 100:.1f}%"
        )
        return out
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def failed(step: str, why: str | None, reply: Reply | None) -> dict[str, Any]:
    """The result of a restart run that did not get both figures."""
    if why == "unsupported":
        log(f"  [chatd] restart: chatd does not know {FLAG}: unsupported")
        return {"unsupported": True}
    error = why or (reply.error if reply is not None else "no reply")
    log(f"  [chatd] restart: {step} failed: {error}")
    return {"error": f"{step}: {error}"}

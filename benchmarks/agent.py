"""The ``agent`` workload of ``serving.py``: concurrent agent sessions that share one long
system prompt with tools and resend their growing conversation every turn.

This is how coding agents use a local server: every session opens with the same
instructions and tool definitions (~5,500 tokens), and every turn sends the whole
conversation again plus one new message. A server that computes the shared prefix once
and keeps each session's history in its prefix cache answers the later turns from cache;
one that does neither computes thousands of tokens per turn. What it reports: the total
wall time of all sessions, the first turns' TTFT (the 4 sessions start together on a cold
prompt), the later turns' TTFT, and the ``cached_tokens`` each server reports.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from client import Reply, pct, stream
from harness import log
from measure import Server, measured
from prompts import agent_body, agent_question, agent_system


async def agent_session(
    srv: Server, args: argparse.Namespace, system: str, session: int
) -> list[Reply]:
    """One session's turns, one after another: each resends the conversation so far (the
    system prompt, earlier questions and the answers as streamed) and one new question."""
    assert srv.client is not None
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    replies: list[Reply] = []
    for turn in range(1, args.agent_turns + 1):
        messages.append({"role": "user", "content": agent_question(session, turn)})
        reply = await stream(srv.client, agent_body(list(messages), args.agent_max_tokens))
        replies.append(reply)
        if not reply.ok:
            break
        # a tool call streams no content: the turn is then resent as an empty answer
        messages.append({"role": "assistant", "content": reply.text})
    return replies


async def run_agent(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    """``args.agent_sessions`` sessions started together, ``args.agent_turns`` turns each,
    on a system prompt new to the server (a new one for each attempt of ``measured``)."""

    async def go() -> tuple[list[list[Reply]], float]:
        system = agent_system(args.agent_system_tokens)
        t0 = time.perf_counter()
        sessions = await asyncio.gather(
            *(agent_session(srv, args, system, s) for s in range(args.agent_sessions))
        )
        return list(sessions), time.perf_counter() - t0

    (sessions, wall), bg = await measured(srv, "agent", args, go)
    out = summarize(sessions, wall)
    out["other_cores"] = bg
    log(
        f"  [{srv.name}] agent: wall {wall:.1f} s, turn 1 TTFT p50 "
        f"{out['turn1_ttft_p50_ms'] or 0:.0f} / max {out['turn1_ttft_max_ms'] or 0:.0f} ms "
        f"(cached {out['turn1_cached_tokens']}), later turns TTFT p50 "
        f"{out['later_ttft_p50_ms'] or 0:.0f} / p95 {out['later_ttft_p95_ms'] or 0:.0f} ms, "
        f"prompt tokens {out['turn1_prompt_tokens']}..{out['last_prompt_tokens']}, "
        f"{out['failed']} failed"
    )
    return out


def summarize(sessions: list[list[Reply]], wall: float) -> dict[str, Any]:
    """The figures of one run of all sessions; a failed turn ends its session (its later
    turns are missing, and counted as failed)."""
    first = [s[0] for s in sessions if s]
    later = [r for s in sessions for r in s[1:]]
    every = [r for s in sessions for r in s]
    good = [r for r in every if r.ok]

    def ttfts(replies: list[Reply]) -> list[float]:
        return [r.ttft * 1000 for r in replies if r.ok and r.ttft is not None]

    turns = max((len(s) for s in sessions), default=0)
    last = [s[-1] for s in sessions if s and s[-1].ok]
    return {
        "sessions": len(sessions),
        "turns": turns,
        "wall_s": wall,
        "failed": sum(not r.ok for r in every),
        "errors": [r.error for r in every if not r.ok][:3],
        "turn1_ttft_ms": ttfts(first),
        "turn1_ttft_p50_ms": pct(ttfts(first), 0.5),
        "turn1_ttft_max_ms": max(ttfts(first), default=None),
        "turn1_cached_tokens": [r.cached_tokens for r in first],
        "turn1_prompt_tokens": pct([float(r.prompt_tokens or 0) for r in first if r.ok], 0.5),
        "later_ttft_ms": ttfts(later),
        "later_ttft_p50_ms": pct(ttfts(later), 0.5),
        "later_ttft_p95_ms": pct(ttfts(later), 0.95),
        "later_cached_tokens": [r.cached_tokens for r in later],
        "later_prompt_tokens": [r.prompt_tokens for r in later],
        "last_prompt_tokens": max((r.prompt_tokens or 0 for r in last), default=None),
        "completion_tokens": [r.tokens for r in good],
        "tool_call_turns": sum(r.tool_call_chunks > 0 for r in good),
        "finish_reasons": sorted({str(r.finish_reason) for r in good}),
    }

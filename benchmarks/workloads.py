"""The workloads of ``serving.py``: what each one sends, how it is timed, what it reports.

Each ``run_<workload>`` measures one server and returns a plain dict, written as is to the
results JSON (and read back by ``report.figures``), so both servers' results have the same
keys. Every measurement runs through ``measured``: on a quiet machine, again when disturbed.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from agent import run_agent
from client import Reply, complete, pct, stream
from harness import log
from measure import Server, measured, measured_level
from memory import run_rss
from prompts import (
    EOG_BIAS,
    MODEL_ID,
    edit_body,
    filler,
    history_messages,
    json_body,
    short_body,
    story_body,
)

__all__ = ["RUNNERS", "WORKLOADS", "Server"]

# in the order they run on a server; "restart" runs after the others, on chatd alone
# (restart.py: it starts and stops chatd itself)
WORKLOADS = ("rss", "streams", "long", "longctx", "prefix", "json", "edit", "agent", "restart")


async def run_streams(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    """The levels of concurrent streams, after ``args.warm_requests`` story requests one
    after another (16 tokens each): every level then runs with the prefix cache warm, holding
    finished sequences whose prompts share the chat template's system prompt with the
    levels' prompts, whatever workloads ran before (``--only streams`` included)."""
    assert srv.client is not None
    warm = [await stream(srv.client, story_body(16, 0.7)) for _ in range(args.warm_requests)]
    out: dict[str, Any] = {
        "warm_up": {
            "requests": len(warm),
            "failed": sum(not r.ok for r in warm),
            "cached_tokens": [r.cached_tokens for r in warm],
        }
    }
    for c in args.concurrency:
        body = functools.partial(story_body, args.max_tokens, 0.7)
        summary = await measured_level(srv, f"streams c={c}", args, c, body)
        out[str(c)] = summary
        log(
            f"  [{srv.name}] streams c={c}: {summary['tok_s']:.1f} tok/s, TTFT p50 "
            f"{summary['ttft_p50_ms'] or 0:.0f} ms, ITL p50 {summary['itl_p50_ms'] or 0:.1f} ms"
            f", {summary['failed']} failed"
        )
    return out


async def run_long(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Cold prompts of each size in ``args.cold_sizes`` (~1000 and ~6000 tokens): new text
    every time, so TTFT is the whole prompt's prefill."""
    return {str(n): await cold_prompts(srv, args, n) for n in args.cold_sizes}


async def cold_prompts(srv: Server, args: argparse.Namespace, size: int) -> dict[str, Any]:
    assert srv.client is not None
    client = srv.client
    replies: list[Reply] = []
    for _ in range(args.cold_runs):

        async def go() -> Reply:
            text = "Read these notes, then say which item is the heaviest.\n\n" + filler(size - 65)
            return await stream(client, short_body(text, 16))

        reply, _bg = await measured(srv, f"long {size}", args, go)
        replies.append(reply)
        log(
            f"  [{srv.name}] cold prompt ~{size}: {reply.prompt_tokens} prompt tokens, TTFT "
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
        "ttft_p50_ms": pct([r.ttft * 1000 for r in good if r.ttft is not None], 0.5),
    }


async def run_longctx(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Decoding at long context: one stream whose prompt is a ~6000-token conversation
    (``prompts.history_messages``), ``args.max_tokens`` tokens with the EOG tokens banned.
    Its ITL is the cost of a decode step attending over the whole history."""
    assert srv.client is not None
    client = srv.client

    async def go() -> Reply:
        body = {
            "model": MODEL_ID,
            "messages": history_messages(args.longctx_tokens),
            "max_tokens": args.max_tokens,
            "temperature": 0.7,
            "logit_bias": EOG_BIAS,
        }
        return await stream(client, body)

    reply, bg = await measured(srv, "longctx", args, go)
    itl = [x * 1000 for x in reply.itl()] if reply.ok else []
    out = {
        "failed": 0 if reply.ok else 1,
        "errors": [] if reply.ok else [reply.error],
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.tokens if reply.ok else None,
        "finish_reason": reply.finish_reason,
        "ttft_ms": reply.ttft * 1000 if reply.ok and reply.ttft is not None else None,
        "itl_p50_ms": pct(itl, 0.5),
        "itl_p95_ms": pct(itl, 0.95),
        "other_cores": bg,
    }
    log(
        f"  [{srv.name}] longctx: {reply.prompt_tokens} prompt tokens, TTFT "
        f"{out['ttft_ms'] or 0:.0f} ms, ITL p50 {out['itl_p50_ms'] or 0:.1f} ms, "
        f"{out['completion_tokens']} tokens" + ("" if reply.ok else f" FAILED: {reply.error}")
    )
    return out


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
    hit_p50 = pct(hit_ms, 0.5)
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
    out: dict[str, Any] = {}
    for c in args.json_concurrency:
        row: dict[str, Any] = {}
        for mode in ("unconstrained", "constrained"):
            body = functools.partial(json_body, args.max_tokens, mode == "constrained")
            row[mode] = await measured_level(srv, f"json {mode} c={c}", args, c, body)
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
            "wall_p50_s": pct([r.duration for r in good], 0.5),
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
    "rss": run_rss,
    "streams": run_streams,
    "long": run_long,
    "longctx": run_longctx,
    "prefix": run_prefix,
    "json": run_json,
    "edit": run_edit,
    "agent": run_agent,
}

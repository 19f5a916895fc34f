"""The rows of ``serving.py``'s table for the workloads added for issue 23 (``longctx``,
``agent``, ``restart``, ``rss``): each function adds its workload's rows through
``report.figures``' ``add``, so their keys, labels and targets sit next to each other.
"""

from __future__ import annotations

import argparse
from typing import Any

from figure import Add, Figure, median


def longctx_rows(add: Add) -> None:
    add(
        Figure("longctx.prompt_tokens", "long context: prompt tokens", "tokens", "",
               ratio_ok=False),
        lambda r: r["longctx"]["prompt_tokens"],
    )  # fmt: skip
    add(
        Figure("longctx.ttft", "long context: TTFT", "ms", "lower"),
        lambda r: r["longctx"]["ttft_ms"],
    )
    add(
        Figure("longctx.itl_p50", "long context: ITL p50, 1 stream", "ms", "lower",
               target="<=1.0x chatd/peer"),
        lambda r: r["longctx"]["itl_p50_ms"],
    )  # fmt: skip
    add(
        Figure("longctx.itl_p95", "long context: ITL p95, 1 stream", "ms", "lower"),
        lambda r: r["longctx"]["itl_p95_ms"],
    )


def agent_rows(add: Add, args: argparse.Namespace) -> None:
    shape = f"{args.agent_sessions} sessions x {args.agent_turns} turns"
    later = "turn 2" if args.agent_turns == 2 else f"turns 2-{args.agent_turns}"
    add(
        Figure("agent.prompt_tokens", "agent: prompt tokens, turn 1 / last turn", "", "",
               ratio_ok=False),
        lambda r: f"{r['agent']['turn1_prompt_tokens']:.0f} / {r['agent']['last_prompt_tokens']}",
    )  # fmt: skip
    add(
        Figure("agent.wall", f"agent: total wall, {shape}", "s", "lower",
               target="<=0.5x chatd/peer"),
        lambda r: r["agent"]["wall_s"],
    )  # fmt: skip
    add(
        Figure("agent.turn1_ttft_p50", "agent: TTFT turn 1 p50", "ms", "lower"),
        lambda r: r["agent"]["turn1_ttft_p50_ms"],
    )
    add(
        Figure("agent.turn1_ttft_max", "agent: TTFT turn 1 max", "ms", "lower",
               target="<=0.4x chatd/peer"),
        lambda r: r["agent"]["turn1_ttft_max_ms"],
    )  # fmt: skip
    for q in ("p50", "p95"):
        add(
            Figure(f"agent.later_ttft_{q}", f"agent: TTFT {later} {q}", "ms", "lower",
                   target="<=1.0x chatd/peer"),
            lambda r, q=q: r["agent"][f"later_ttft_{q}_ms"],
        )  # fmt: skip
    add(
        Figure("agent.turn1_cached", "agent: cached_tokens, turn 1 of each session", "", "",
               ratio_ok=False),
        lambda r: ", ".join(str(c) for c in r["agent"]["turn1_cached_tokens"]),
    )  # fmt: skip
    add(
        Figure("agent.later_cached", f"agent: cached_tokens, {later} (median)", "tokens", "",
               ratio_ok=False),
        lambda r: median(r["agent"]["later_cached_tokens"]),
    )  # fmt: skip
    add(
        Figure("agent.completion_tokens", "agent: completion tokens per turn (min-max)", "",
               "", ratio_ok=False),
        lambda r: spread(r["agent"]["completion_tokens"]),
    )  # fmt: skip


def spread(values: list[Any]) -> str:
    xs = [v for v in values if isinstance(v, int | float)]
    if not xs:
        return "-"
    return f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}-{max(xs)}"


def restart_rows(add: Add) -> None:
    """chatd only: the peer column says n/a (llama-server keeps no cache across restarts)."""

    def get(key: str) -> Any:
        def read(r: dict[str, Any]) -> Any:
            rs = r["restart"]
            if rs.get("unsupported"):
                return "unsupported"
            return rs.get("error", "failed")[:40] if "error" in rs else rs[key]

        return read

    rows = [
        ("restart.cold_ttft", "restart: cold TTFT, the agent's prompt", "ms", "", "cold_ttft_ms"),
        ("restart.after_ttft", "restart: TTFT after restart", "ms", "", "after_ttft_ms"),
        ("restart.ratio", "restart: after / cold TTFT", "%", "<=5% chatd", "ratio"),
        ("restart.after_cached", "restart: cached_tokens after restart", "tokens", "",
         "after_cached_tokens"),
        ("restart.dir_mib", "restart: prefix cache dir after stop", "MiB", "", "dir_mib"),
    ]  # fmt: skip
    for key, label, unit, target, field in rows:
        better = "lower" if unit in ("ms", "%") else ""
        add(
            Figure(key, label, unit, better, peer="n/a", target=target, ratio_ok=False),
            get(field),
        )


def rss_rows(add: Add) -> None:
    add(
        Figure("rss.rest", "RSS at rest", "MiB", "lower", target="<=1.5x chatd/peer"),
        lambda r: r["rss"]["rest_mib"],
    )
    add(
        Figure("rss.load", "RSS under 32 streams (max)", "MiB", "lower",
               target="<=1.5x chatd/peer"),
        lambda r: r["rss"]["load_max_mib"],
    )  # fmt: skip

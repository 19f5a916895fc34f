"""The report of ``serving.py``: the table's rows from both servers' results, the targets,
the comparison with the previous comparable run, and the notes under the table.

Each row is a ``Figure`` with a stable key, so that runs can be compared figure by figure
(``regressions``) from the JSON alone, also after labels or the table change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
from figure import Figure, fmt, median
from report_rows import agent_rows, longctx_rows, restart_rows, rss_rows

RESULTS = Path(__file__).resolve().parent / "results"
REGRESSION = 0.10  # a figure this much worse than the previous run's is flagged


def figures(res: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[Figure]:
    """The table's rows from both servers' raw results (missing ones stay "-")."""
    rows: list[Figure] = []

    def add(f: Figure, get: Callable[[dict[str, Any]], Any]) -> None:  # an ``Add``
        for name in ("chatd", "peer"):
            with contextlib.suppress(KeyError, TypeError, IndexError):
                setattr(f, name, get(res.get(name, {})))
        rows.append(f)

    stream_tok_targets = {
        1: ">=1.0x chatd/peer",
        4: ">=1.1x chatd/peer",
        16: ">=1.2x chatd/peer",
        32: ">=1.25x chatd/peer",
    }
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
                Figure(f"streams.{c}.itl_{q}", f"streams c={c}: ITL {q}", "ms", "lower",
                       target="<=1.0x chatd/peer" if c == 1 and q == "p50" else ""),
                lambda r, k=k, q=q: r["streams"][k][f"itl_{q}_ms"],
            )  # fmt: skip
        add(
            Figure(f"streams.{c}.cached", f"streams c={c}: cached_tokens (median)", "tokens",
                   "", ratio_ok=False),
            lambda r, k=k: r["streams"][k]["cached_tokens_p50"],
        )  # fmt: skip
    for n in args.cold_sizes:
        key = "long" if n == 1000 else f"long.{n}"  # the 1000 row keeps its old key
        add(
            Figure(f"{key}.prompt_tokens", f"cold ~{n}-token prompt: prompt tokens", "tokens",
                   "", ratio_ok=False),
            lambda r, n=n: median(r["long"][str(n)]["prompt_tokens"]),
        )  # fmt: skip
        add(
            Figure(f"{key}.ttft", f"cold ~{n}-token prompt: TTFT", "ms", "lower",
                   target="<=1.0x chatd/peer"),
            lambda r, n=n: r["long"][str(n)]["ttft_p50_ms"],
        )  # fmt: skip
    longctx_rows(add)
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
               ratio_ok=False),
        speedup,
    )  # fmt: skip
    add(  # the peer has no prediction: its one variant is the bar for chatd's with
        Figure("edit.vs_peer", "edit: wall, chatd with prediction vs peer", "s", "lower",
               target="<=0.5x chatd/peer"),
        lambda r: with_pred(r, lambda w: w["wall_p50_s"])
        if "with" in r["edit"]
        else r["edit"]["without"]["wall_p50_s"],
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
        Figure("edit.identical", "edit: texts with = without prediction", "", "",
               target="yes chatd", ratio_ok=False),
        lambda r: "n/a" if r["edit"].get("identical") is None else r["edit"]["identical"],
    )  # fmt: skip
    add(
        Figure("edit.applied", "edit: the one-line change made", "", "", ratio_ok=False),
        lambda r: r["edit"]["edit_applied"],
    )
    agent_rows(add, args)
    restart_rows(add)
    rss_rows(add)
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
    has shorter streams and fewer samples than a full one) and stream levels, covering all
    of this run's workloads, so that an ``--only edit`` run in between does not hide the
    last full comparison. Without one, the file sharing the most workloads with this run
    (the most recent of those): a run with a workload added since is still compared on the
    rows both have."""
    best: tuple[int, Path] | None = None
    for path in sorted(RESULTS.glob("serving-*.json"), reverse=True):
        if path == exclude:
            continue
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(path.read_text()).get("args", {})
            if (old.get("quick"), old.get("concurrency")) != (args.quick, args.concurrency):
                continue
            shared = len(set(old.get("only") or []) & set(args.only))
            if shared == len(args.only):
                return path
            if shared and (best is None or shared > best[0]):
                best = (shared, path)
    return best[1] if best else None


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
        r = {w: out for w, out in r.items() if w == "restart" or not _failed(out)}
        for c, s in (r.get("streams") or {}).items():
            if c != "warm_up":
                notes += _stream_notes(f"{name} streams c={c}", s)
            elif s["failed"]:
                notes.append(f"{name} streams warm-up: {s['failed']} failed")
        if r.get("rss"):
            notes += _stream_notes(f"{name} rss c={r['rss']['streams']}", r["rss"]["level"])
        notes += _failure_notes(name, r) + _other_notes(name, r)
    notes += _agent_prompt_note(res)
    for name, r in res.items():
        for w, out in r.items():
            if w != "restart" and _failed(out):
                notes.append(f"{name} {w} not measured: {out['error']}")
    for inst, i in info.items():
        if i.get("error"):
            notes.append(f"{inst} not measured: {i['error']}")
        for line in i.get("log_errors") or []:
            notes.append(f"{inst} log: {line}")
    return notes


def _failure_notes(name: str, r: dict[str, Any]) -> list[str]:
    """Failed requests of the workloads other than the stream levels."""
    notes = []
    for c, row in (r.get("json") or {}).items():
        for mode in ("unconstrained", "constrained"):
            if row[mode]["failed"]:
                notes.append(f"{name} json {mode} c={c}: {row[mode]['errors'][:2]}")
    for size, cold in (r.get("long") or {}).items():
        if cold.get("failed"):
            notes.append(f"{name} long ~{size}: {cold['failed']} failed: {cold['errors'][:2]}")
    for w in ("prefix", "longctx", "agent"):
        if (r.get(w) or {}).get("failed"):
            notes.append(f"{name} {w}: {r[w]['failed']} failed: {r[w]['errors'][:2]}")
    edit = r.get("edit") or {}
    for variant in ("without", "with"):
        e = edit.get(variant) or {}
        if e.get("errors"):
            notes.append(f"{name} edit {variant} prediction: {e['errors'][0]}")
    return notes


def _stream_notes(where: str, s: dict[str, Any]) -> list[str]:
    notes = []
    if s["failed"]:
        notes.append(f"{where}: {s['failed']} failed: {s['errors'][:2]}")
    if s["counted_from"] != "usage":
        notes.append(f"{where}: no usage chunk, tokens counted as chunks")
    if s["tokens_per_chunk"] and abs(s["tokens_per_chunk"] - 1) > 0.01:
        notes.append(
            f"{where}: {s['tokens_per_chunk']:.2f} tokens per content "
            "chunk (ITL spreads each gap over them)"
        )
    if s["finish_reasons"] != ["length"]:
        notes.append(f"{where}: finish reasons {s['finish_reasons']}")
    if (s.get("other_cores") or 0) >= harness.DISTURBED_CORES:
        notes.append(f"{where}: disturbed ({s['other_cores']:.2f} cores)")
    return notes


def _other_notes(name: str, r: dict[str, Any]) -> list[str]:
    """Answers of another length than asked for (the servers then did different work), tool
    calls in the agent's answers, disturbed single measurements, a failed restart run."""
    notes = []
    agent = r.get("agent") or {}
    lengths = set(agent.get("completion_tokens") or [])
    if lengths - {48}:
        notes.append(f"{name} agent: answers of {sorted(lengths)} tokens (not all 48)")
    if agent.get("tool_call_turns"):
        notes.append(f"{name} agent: {agent['tool_call_turns']} answers called a tool")
    for w in ("longctx", "prefix", "agent"):
        if ((r.get(w) or {}).get("other_cores") or 0) >= harness.DISTURBED_CORES:
            notes.append(f"{name} {w}: disturbed ({r[w]['other_cores']:.2f} cores)")
    longctx = r.get("longctx") or {}
    if longctx.get("finish_reason") not in (None, "length"):
        notes.append(f"{name} longctx: finish reason {longctx['finish_reason']}")
    if (r.get("restart") or {}).get("error"):
        notes.append(f"{name} restart: {r['restart']['error']}")
    return notes


def _agent_prompt_note(res: dict[str, dict[str, Any]]) -> list[str]:
    """The agent's prompts are the same requests, but each server renders the ``tools`` its
    own way (llama-server's Jinja template for SmolLM2 drops them): say when the prompt
    token counts differ, since the servers then compute different amounts."""
    counts = {n: (r.get("agent") or {}).get("turn1_prompt_tokens") for n, r in res.items()}
    a, b = counts.get("chatd"), counts.get("peer")
    if not a or not b or abs(a / b - 1) <= 0.05:
        return []
    return [
        f"agent: turn-1 prompt tokens differ, chatd {a:.0f} vs peer {b:.0f}: the servers "
        "render the same messages and tools differently (the tools are in chatd's prompt, "
        "llama-server's template for this model leaves them out)"
    ]


def _failed(out: Any) -> bool:
    """A workload that raised: its result is only the error (serving.serve_and_run)."""
    return isinstance(out, dict) and set(out) == {"error"}

"""The report of ``serving.py``: the table's rows from both servers' results, the targets,
the comparison with the previous comparable run, and the notes under the table.

Each row is a ``Figure`` with a stable key, so that runs can be compared figure by figure
(``regressions``) from the JSON alone, also after labels or the table change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

RESULTS = Path(__file__).resolve().parent / "results"
REGRESSION = 0.10  # a figure this much worse than the previous run's is flagged


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

    def as_dict(self) -> dict[str, Any]:
        """The row as written to the results file (read back by ``regressions``)."""
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "better": self.better,
            "chatd": self.chatd,
            "peer": self.peer,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met(),
        }


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
            notes += _stream_notes(f"{name} streams c={c}", s)
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

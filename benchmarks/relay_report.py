"""The tables and summary lines of ``relay.py``: per run and pooled, each gateway against
the direct path of the same run, and the CPU each one spends per relayed request.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import harness
from relay_load import Level
from relay_servers import MODES


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

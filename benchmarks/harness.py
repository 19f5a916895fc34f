"""Process and measurement harness shared by the benchmark scripts.

The scripts start servers, measure them under load on a machine that may be shared, and must
leave nothing running behind them: this module holds the parts that do that the same way for
every script (free ports, managed processes, starting chatd, CPU accounting from /proc,
waiting for quiet, signal handling, common options, tables). The scripts run as
``python benchmarks/<name>.py``, so ``import harness`` (and every other module here) is found
next to them by its bare name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import httpx

STARTUP_TIMEOUT_S = 180.0
DISTURBED_CORES = 0.3  # other processes' CPU during a level beyond which it is measured again
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
HAS_PROC = Path("/proc/stat").exists()  # CPU accounting needs Linux /proc


# ---------------------------------------------------------------- processes


def free_port() -> int:
    """A port free right now, so that servers of one run never collide with anything."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chatd_env() -> dict[str, str]:
    """This environment without ``CHATD_API_KEYS``: a started server needs no key."""
    return {k: v for k, v in os.environ.items() if k != "CHATD_API_KEYS"}


def gguf_path() -> Path:
    """The GGUF chatd serves by default: every peer is started on this same file."""
    from chatd.config import embedded_model_path  # only when needed: --help works without

    return embedded_model_path()


class Managed:
    """A process a script started, in its own session; stopped (the whole group) on exit.

    It is registered for ``stop_all`` as soon as it exists, so Ctrl-C at any point stops it.
    The log goes to ``log_dir`` (removed by the caller) or else to a kept temporary file.
    """

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        health: str,
        *,
        log_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.cmd, self.health = name, cmd, health
        self.base_url = f"http://127.0.0.1:{port}"
        if log_dir is None:
            fd, log = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(log)
        else:
            self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env if env is not None else os.environ.copy(),
            start_new_session=True,  # Ctrl-C reaches only us; we stop it ourselves
        )
        _running.append(self)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def wait_healthy(self) -> None:
        """Poll the health path; fail early with the log when the process has exited."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.health)).status_code == 200:
                        return
                await asyncio.sleep(0.25)
        raise RuntimeError(f"{self.name} not healthy after {STARTUP_TIMEOUT_S:.0f}s")

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL it after 15 s, then kill whatever is left in the session."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # children left behind in the session (e.g. a worker whose parent exited first)
        if HAS_PROC:
            for pid in session_pids(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()
        if self in _running:
            _running.remove(self)


_running: list[Managed] = []


def chatd_command() -> list[str]:
    """``chatd``: the console script next to this Python, or the module when not installed."""
    exe = Path(sys.executable).parent / "chatd"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "chatd.cli"]


def start_chatd(*extra: str) -> Managed:
    """``chatd serve`` on a free port with its defaults (all cores, continuous batching) but
    no per-key in-flight limit (a benchmark's one client is not a tenant to hold back; its
    levels may go past the default), then ``extra`` options (a later option wins)."""
    port = free_port()
    cmd = [*chatd_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--max-in-flight-per-key", "0", *extra]
    return Managed("chatd", cmd, port, "/health", env=chatd_env())


def started_sessions() -> set[int]:
    """Session ids of the processes started and not yet stopped (each leads its session)."""
    return {s.proc.pid for s in _running}


def stop_all() -> None:
    while _running:
        _running[-1].stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_main(amain: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``amain`` to its exit status; on Ctrl-C or SIGTERM print "interrupted" and return
    130. Every started process is stopped in all cases."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C even when started in the background by a shell (which then ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return asyncio.run(amain())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()


# ---------------------------------------------------------------- CPU accounting


class ProcStat(NamedTuple):
    sid: int  # session id
    cpu: float  # CPU seconds: utime + stime
    children: float  # CPU seconds of its children it has waited for: cutime + cstime
    name: str


def proc_stats() -> dict[int, ProcStat]:
    """Every process on the machine, from /proc/<pid>/stat."""
    stats: dict[int, ProcStat] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            text = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        parts = text[text.rindex(")") + 2 :].split()
        # after "(comm) ": state ppid pgrp session ... utime(11) stime(12) cutime(13) cstime(14)
        cpu = (int(parts[11]) + int(parts[12])) / TICK
        stats[int(d)] = ProcStat(int(parts[3]), cpu, (int(parts[13]) + int(parts[14])) / TICK, name)
    return stats


def session_pids(sid: int) -> list[int]:
    return [pid for pid, p in proc_stats().items() if p.sid == sid and pid != os.getpid()]


def _machine_busy() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK  # minus idle and iowait


@dataclass
class CpuSample:
    """CPU seconds so far: the machine, this script, each started process's session.

    Whole sessions count, with the children they reaped, so a server's worker processes are
    its own CPU and not "other processes" disturbing the level."""

    busy: float
    own: float
    ours: dict[str, float]
    procs: dict[int, ProcStat]

    @classmethod
    def take(cls, servers: Sequence[Managed]) -> CpuSample:
        procs = proc_stats()
        ours = {
            # a session's processes, and the children they reaped (e.g. worker processes)
            s.name: sum(p.cpu + p.children for p in procs.values() if p.sid == s.proc.pid)
            for s in servers
        }
        t = os.times()
        return cls(_machine_busy(), t.user + t.system, ours, procs)

    def other_cores(self, start: CpuSample, wall: float) -> float:
        """Cores used during [start, self] by everything but this script and its servers."""
        ours = sum(self.ours.values()) - sum(start.ours.values())
        return max(0.0, (self.busy - start.busy - (self.own - start.own) - ours) / wall)


async def wait_quiet(servers: Sequence[Managed], limit_s: float, threshold: float = 0.2) -> None:
    """Wait (at most ``limit_s``) until the rest of the machine (all but this script and
    ``servers``) uses less than ``threshold`` cores over 2 s: on a shared machine other
    processes disturb a level badly. Without /proc there is nothing to wait for."""
    if limit_s <= 0 or not HAS_PROC:
        return
    waited = 0.0
    told = False
    while True:
        start = CpuSample.take(servers)
        await asyncio.sleep(2.0)
        busy = CpuSample.take(servers).other_cores(start, 2.0)
        if busy < threshold:
            return
        waited += 2.0
        if waited >= limit_s:
            print(f"  (machine still busy: {busy:.2f} other cores; measuring anyway)", flush=True)
            return
        if not told:
            print(f"  (machine busy: {busy:.2f} other cores; waiting for quiet)", flush=True)
            told = True


def parse_levels(text: str) -> list[int]:
    """``--concurrency 1,4,16``: comma-separated levels, each at least 1."""
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from e
    if not levels or any(c < 1 for c in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def add_quiet_options(p: argparse.ArgumentParser, retries: int) -> None:
    """``--wait-quiet`` and ``--retries``, the same in every script."""
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="before each level wait up to this long for other processes to use < 0.2 cores "
        "(0: don't wait)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=retries,
        help=f"re-measure a level up to this many times when other processes used more than "
        f"{DISTURBED_CORES} cores during it (the least disturbed attempt is reported)",
    )


# ---------------------------------------------------------------- reporting


def log(msg: str) -> None:
    """Progress to stderr, for a script whose stdout holds only its final table."""
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN without values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def print_notes(notes: list[str]) -> None:
    """The notes after the tables, one bullet each (nothing when there are none)."""
    if notes:
        print("\nNotes:")
        for n in notes:
            print(f"- {n}")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded to their widest cell (pasted into README as is)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)

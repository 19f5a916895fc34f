"""How ``serving.py``'s workloads measure a server: the ``Server`` they run on, one
measurement on a quiet machine (``measured``), a level of concurrent streams
(``measured_level``), and the server's resident memory (``rss_mib``, ``RssSampler``).

Kept apart from the workloads so that every workload module (``workloads.py``,
``agent.py``, ``memory.py``) measures the same way without importing one another.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import harness
import httpx
from client import run_level
from harness import log

T = TypeVar("T")


@dataclass
class Server:
    """One server for a set of workloads: started here (``start``) or given by URL."""

    name: str  # "chatd" or "peer" (the column it reports in)
    workloads: list[str]
    start: Callable[[], harness.Managed] | None = None
    url: str | None = None
    proc: harness.Managed | None = None
    client: httpx.AsyncClient | None = None
    instance: str = ""  # "chatd", "peer-np32", ...: where its command and log are kept


async def measured(
    srv: Server, what: str, args: argparse.Namespace, fn: Callable[[], Awaitable[T]]
) -> tuple[T, float | None]:
    """Run ``fn`` on a quiet machine; when other processes used more than
    ``harness.DISTURBED_CORES`` during it, run it again (``--retries``) and keep the least
    disturbed attempt. Returns the result and the other processes' cores (None: unknown, for a
    server given by URL whose CPU cannot be told apart)."""
    watched = [srv.proc] if srv.proc is not None and harness.HAS_PROC else []
    attempts: list[tuple[T, float | None]] = []
    for attempt in range(1 + args.retries):
        with contextlib.redirect_stdout(sys.stderr):  # harness prints its waiting to stdout
            await harness.wait_quiet(watched, args.wait_quiet)
        before = harness.CpuSample.take(watched) if watched else None
        t0 = time.perf_counter()
        result = await fn()
        wall = time.perf_counter() - t0
        bg = harness.CpuSample.take(watched).other_cores(before, wall) if before else None
        attempts.append((result, bg))
        if bg is None or bg < harness.DISTURBED_CORES:
            break
        log(f"  [{srv.name}] {what}: other processes used {bg:.2f} cores (attempt {attempt + 1})")
    return min(attempts, key=lambda a: a[1] or 0.0)


async def measured_level(
    srv: Server,
    what: str,
    args: argparse.Namespace,
    concurrency: int,
    body: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """A level of ``concurrency`` concurrent streams, ``measured``: its summary, with the cores
    other processes used during it and the server's largest resident memory meanwhile."""
    assert srv.client is not None
    client = srv.client

    async def go() -> dict[str, Any]:
        async with RssSampler(srv.proc) as rss:
            summary = (await run_level(client, concurrency, body)).summary()
        summary["rss_max_mib"] = rss.max_mib
        return summary

    summary, bg = await measured(srv, what, args, go)
    summary["other_cores"] = bg
    return summary


def rss_mib(proc: harness.Managed | None) -> float | None:
    """Resident memory of a started server: ``VmRSS`` of every process in its session (the
    server and any children it started), in MiB; None for a server given by URL or without
    /proc. Pages two processes share would count twice (both servers run one process)."""
    if proc is None or not harness.HAS_PROC or proc.proc.poll() is not None:
        return None
    total_kib = 0
    for pid in harness.session_pids(proc.proc.pid):  # the server leads its session
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
                    break
    return total_kib / 1024


class RssSampler:
    """The largest ``rss_mib`` of a server while the block runs, read every ``interval`` s
    (and once at each end), so a peak between samples is missed by at most that much time."""

    def __init__(self, proc: harness.Managed | None, interval: float = 0.5) -> None:
        self.proc, self.interval = proc, interval
        self.max_mib: float | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        value = rss_mib(self.proc)
        if value is not None and (self.max_mib is None or value > self.max_mib):
            self.max_mib = value

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> RssSampler:
        if self.proc is not None:
            self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self.sample()

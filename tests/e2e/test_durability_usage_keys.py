"""SIGKILL durability, continued from test_durability.py: usage and API keys.

Usage is added up in memory and written once per flush interval (``UsageBuffer``, 1 s):
a crash loses at most the requests answered in the last interval (plus the time one
write takes), never one answered before; nothing is counted twice. A key acknowledged by
``chatd keys create`` (its output) is committed before that output, so it survives a
SIGKILL of the server that was using it; a revocation likewise, and takes effect at once.
On SQLite and PostgreSQL. docs/storage.md states the guarantee."""

from __future__ import annotations

import asyncio
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from conftest import MODEL, PG_URL, Server, postgres_reachable

from chatd.store.usage import UsageBuffer

INTERVAL = UsageBuffer(None).interval  # type: ignore[arg-type]  # the flush interval, 1 s
WRITE = 1.0  # seconds allowed for one flush's write on a busy machine


def db_args(backend: str, tmp_path: Path) -> tuple[str, ...]:
    if backend == "postgresql":
        if not postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
        return ("--database-url", PG_URL)
    return ("--data-dir", str(tmp_path))


def usage_in_db(backend: str, tmp_path: Path, owner: str) -> tuple[int, int, int]:
    """This owner's (requests, prompt_tokens, completion_tokens), read from the database
    as the kill left it."""
    q = (
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(prompt_tokens), 0),"
        " COALESCE(SUM(completion_tokens), 0) FROM usage WHERE owner = $1"
    )
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "chatd.db") as conn:
            row = conn.execute(q.replace("$1", "?"), (owner,)).fetchone()
    else:

        async def read() -> tuple[int, int, int]:
            conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
            try:
                return tuple(await conn.fetchrow(q, owner))  # type: ignore[return-value]
            finally:
                await conn.close()

        row = asyncio.run(read())
    return int(row[0]), int(row[1]), int(row[2])


@dataclass
class Load:
    """Workers sending small chat requests until the kill; each answer's arrival time
    (monotonic) and usage."""

    srv: Server
    headers: dict[str, str]
    sent: int = 0
    answered: list[tuple[float, int, int]] = field(default_factory=list)
    killed_at: float = 0.0

    async def worker(self, c: httpx.AsyncClient, w: int) -> None:
        i = 0
        while not self.killed_at:
            i += 1
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Say a word ({w}.{i})."}],
                "max_tokens": 2 + (w + i) % 4,
            }
            self.sent += 1
            try:
                r = await c.post("/v1/chat/completions", json=body)
            except httpx.HTTPError:
                return  # the server died under us: that is the point
            if r.status_code == 200:
                u = r.json()["usage"]
                self.answered.append((time.monotonic(), u["prompt_tokens"], u["completion_tokens"]))

    def answered_before(self, moment: float) -> int:
        return sum(1 for a in self.answered if a[0] <= moment)

    async def run_then_kill(
        self, min_answers: int, min_seconds: float, settled: int = 0, settle: float = 0.0
    ) -> None:
        """Kill once there are ``min_answers`` answers, ``min_seconds`` have passed and
        ``settled`` answers arrived more than ``settle`` seconds ago: conditions, never a
        time window, so a slow machine only waits longer (a deadline of minutes fails a
        server that stopped answering)."""
        async with httpx.AsyncClient(
            base_url=self.srv.base_url, headers=self.headers, timeout=60
        ) as c:
            tasks = [asyncio.create_task(self.worker(c, w)) for w in range(4)]
            start = time.monotonic()
            # under load for a few flush intervals, whatever this machine's speed
            while (
                len(self.answered) < min_answers
                or time.monotonic() - start < min_seconds
                or self.answered_before(time.monotonic() - settle) < settled
            ):
                assert not all(t.done() for t in tasks), "every worker stopped"
                assert time.monotonic() - start < 600, "too few answers in 10 minutes"
                await asyncio.sleep(0.05)
            self.killed_at = time.monotonic()
            self.srv.proc.kill()  # SIGKILL: no shutdown, no last flush
            await asyncio.gather(*tasks)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_loses_at_most_the_last_flush_interval_of_usage(
    backend: str, tmp_path: Path
) -> None:
    args = db_args(backend, tmp_path)
    key = "sk-" + secrets.token_hex(12)  # a fresh owner: the PostgreSQL database is shared
    srv = Server("--api-key", key, *args)
    owner = srv.owner_id()
    load = Load(srv, {"Authorization": f"Bearer {key}"})
    try:
        # at least 10 answers older than a flush interval and a write when killed: the
        # ones that must have been counted (waited for, however slow the machine)
        asyncio.run(
            load.run_then_kill(
                min_answers=20, min_seconds=4 * INTERVAL, settled=10, settle=INTERVAL + WRITE
            )
        )
    finally:
        srv.stop()
    requests, prompt, completion = usage_in_db(backend, tmp_path, owner)
    # answered more than a flush interval (and a write) before the kill: all counted
    cutoff = load.killed_at - INTERVAL - WRITE
    settled = [a for a in load.answered if a[0] <= cutoff]
    assert len(settled) >= 10  # by the kill's condition
    assert requests >= len(settled)
    assert prompt >= sum(p for _, p, _ in settled)
    assert completion >= sum(c for _, _, c in settled)
    # never counted twice: at most every request sent (an abandoned one counts too)
    assert requests <= load.sent
    lost = len(load.answered) - requests
    recent = len(load.answered) - len(settled)
    assert lost <= recent, f"lost {lost} answers, only {recent} in the last interval"


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def chatd_cli(*args: str) -> str:
    """``chatd <args>`` in its own process: its output, once it has exited 0."""
    exe = Path(sys.executable).parent / "chatd"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "chatd.cli"]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def create_key(args: tuple[str, ...], name: str) -> tuple[str, str]:
    out = chatd_cli("keys", "create", "--name", name, *args)
    key_id = re.search(r"id:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    return key_id, re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]


def status(srv: Server, key: str) -> tuple[int, str]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    r = httpx.post(
        srv.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    return r.status_code, r.text


async def kill_under_load(srv: Server, key: str) -> None:
    """SIGKILL while requests with ``key`` are in flight."""
    load = Load(srv, {"Authorization": f"Bearer {key}"})
    await load.run_then_kill(min_answers=4, min_seconds=0)
    assert load.answered


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_keys_and_revocations_survive_sigkill(backend: str, tmp_path: Path) -> None:
    args = db_args(backend, tmp_path)
    operator = "sk-" + secrets.token_hex(12)  # keeps the server closed to unknown keys
    srv = Server("--api-key", operator, *args)
    try:
        # created while the server runs: usable at once, acknowledged by the output
        kept_id, kept = create_key(args, "durable-" + secrets.token_hex(3))
        gone_id, gone = create_key(args, "revoked-" + secrets.token_hex(3))
        assert status(srv, kept)[0] == 200 and status(srv, gone)[0] == 200
        assert f"revoked {gone_id}" in chatd_cli("keys", "revoke", gone_id, *args)
        code, text = status(srv, gone)  # a revocation takes effect at once
        assert code == 401 and "revoked" in text
        asyncio.run(kill_under_load(srv, kept))
    finally:
        srv.stop()
    assert srv.proc.returncode == -9  # it was SIGKILLed, not stopped
    srv2 = Server("--api-key", operator, *args)
    try:
        assert status(srv2, kept)[0] == 200
        code, text = status(srv2, gone)
        assert code == 401 and "revoked" in text
        listing = chatd_cli("keys", "list", *args)
        states = {ln.split()[0]: ln.split()[1] for ln in listing.splitlines()[1:] if ln.strip()}
        assert states[kept_id] == "active" and states[gone_id] == "revoked"
        assert kept not in listing and gone not in listing
    finally:
        srv2.stop()

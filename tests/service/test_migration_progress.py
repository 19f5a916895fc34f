"""Migrations say what they do (store/db.py): each one announced as it starts, the total
time after them when it passed a second, nothing when the database is up to date; in
the server's log (``chatd serve``) and on stderr for ``chatd db upgrade``. Run on fresh
SQLite databases; the clock is the test's, so the one-second rule is checked without
waiting for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from chatd.store.db import _MIGRATIONS, Database, sqlite_url

from .harness import run_cli, running_chatd


def revisions() -> list[str]:
    """Every revision, oldest first, as the migrations folder has them."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return [s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()][::-1]


def ticking(step: float) -> Iterator[float]:
    t = 0.0
    while True:
        yield t
        t += step


async def test_each_migration_is_announced_then_none(tmp_path: Path) -> None:
    clock = ticking(0.1)  # two reads (start, end) a run: 0.1 s
    db = Database(sqlite_url(tmp_path), clock=lambda: next(clock))
    lines: list[str] = []
    try:
        await db.upgrade(lines.append)
        revs = revisions()
        assert [ln.split(" (")[0] for ln in lines] == [
            f"migrating database: {before} -> {after}"
            for before, after in zip(["empty", *revs], revs, strict=False)
        ]
        assert (
            "migrating database: 0005 -> 0006"
            " (Stored Responses API responses and their input and output items)..." in lines
        )
        assert all(ln.endswith(")...") and "\n" not in ln for ln in lines)
        lines.clear()
        await db.upgrade(lines.append)
        assert lines == []  # up to date: nothing to say
    finally:
        await db.close()


async def test_the_total_time_is_shown_past_a_second(tmp_path: Path) -> None:
    clock = ticking(1.5)
    db = Database(sqlite_url(tmp_path), clock=lambda: next(clock))
    lines: list[str] = []
    try:
        await db.upgrade(lines.append)
    finally:
        await db.close()
    assert lines[-1] == f"database migrated to {revisions()[-1]} in 1.5 s"
    assert len(lines) == len(revisions()) + 1


async def test_only_pending_migrations_run(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    with create_engine(url.replace("+aiosqlite", "")).begin() as connection:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0004")
    db = Database(url)
    lines: list[str] = []
    try:
        await db.upgrade(lines.append)
    finally:
        await db.close()
    assert lines[0].startswith("migrating database: 0004 -> 0005 (Per-key rate limits per model")
    assert len(lines) == len(revisions()) - 4


def test_db_upgrade_prints_them_on_stderr(tmp_path: Path) -> None:
    code, out, err = run_cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert code == 0 and out == "database is up to date\n"
    assert err.splitlines()[0].startswith("migrating database: empty -> 0001 (Stored completions")
    assert len(err.splitlines()) == len(revisions())
    code, out, err = run_cli("keys", "list", "--data-dir", str(tmp_path))
    assert code == 0 and err == ""  # already migrated: silent


async def test_the_server_logs_them_at_start(tmp_path: Path) -> None:
    async with running_chatd(tmp_path) as chatd:
        records = [r for r in chatd.log.records if r.name == "chatd.store.db"]
    assert [r.levelname for r in records] == ["INFO"] * len(revisions())
    assert records[-1].getMessage().startswith(f"migrating database: {revisions()[-2]} -> ")

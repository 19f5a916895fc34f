"""The database: an async SQLAlchemy engine on SQLite (embedded default, WAL) or
PostgreSQL, migrated with alembic at start-up. Each migration is announced before it
runs, and the total time after them when it passed a second: on a big database a
migration can take minutes, and a server that says nothing meanwhile looks hung."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("chatd.store.db")

Progress = Callable[[str], None]
"""Where the migration lines go: the log by default, stderr for ``chatd db upgrade``."""


def sqlite_url(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'chatd.db'}"


class Database:
    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.clock = clock  # times the migrations
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def upgrade(self, progress: Progress | None = None) -> None:
        """Apply every migration not applied yet (idempotent: nothing to say when there
        is none), telling ``progress`` (default: the log, at info) about each one."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade, progress or log.info, self.clock)

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade(connection: Any, progress: Progress, clock: Callable[[], float]) -> None:
    """One alembic upgrade per pending revision, oldest first, so each is announced as
    it starts (alembic has a hook only after each); all in the caller's transaction."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    current = MigrationContext.configure(connection).get_current_heads()
    pending = list(ScriptDirectory.from_config(cfg).iterate_revisions("head", current))[::-1]
    started = clock()
    for script in pending:
        before = script.down_revision or "empty"
        progress(f"migrating database: {before} -> {script.revision} ({_title(script)})...")
        command.upgrade(cfg, script.revision)
    took = clock() - started
    if pending and took > 1.0:
        progress(f"database migrated to {pending[-1].revision} in {took:.1f} s")


def _title(script: Script) -> str:
    """The migration's docstring, first sentence, on one line."""
    text = " ".join((script.doc or "").split())
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= 72 else first[:71] + "~"


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()

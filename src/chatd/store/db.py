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
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chatd.store.files import DATABASE_FILE, private_data_dir, private_database

_MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("chatd.store.db")

Progress = Callable[[str], None]
"""Where the migration lines go: the log by default, stderr for ``chatd db upgrade``."""


def sqlite_url(data_dir: Path) -> str:
    """The data directory's database, the directory made private first (store/files.py)."""
    private_data_dir(data_dir)
    return f"sqlite+aiosqlite:///{data_dir / DATABASE_FILE}"


# The drivers' loggers and the most they may say. At DEBUG, SQLAlchemy logs every
# result row and aiosqlite every call with its arguments: prompts, outputs and key
# digests. SQLAlchemy's INFO is each statement (its parameters hidden, below): noise.
DRIVER_LOG_LEVELS = {
    "sqlalchemy": logging.WARNING,
    "aiosqlite": logging.INFO,
    "asyncpg": logging.INFO,
    "alembic": logging.INFO,
}


def quiet_drivers() -> None:
    """Cap the database drivers' loggers (``DRIVER_LOG_LEVELS``), whatever the root's
    level: ``--log-level debug`` is for chatd's own lines, and must not put stored
    conversations or key digests in the log."""
    children = list(logging.root.manager.loggerDict)
    for name, level in DRIVER_LOG_LEVELS.items():
        for each in [name, *(c for c in children if c.startswith(name + "."))]:
            logger = logging.getLogger(each)
            if logger.level != logging.NOTSET or each == name:  # NOTSET: its parent's
                logger.setLevel(max(logger.level, level))


class Database:
    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.clock = clock  # times the migrations
        self.is_sqlite = url.startswith("sqlite")
        quiet_drivers()
        path = make_url(url).database if self.is_sqlite else None
        if path and path != ":memory:" and not path.startswith("file:"):
            private_database(Path(path))
        # hide_parameters: a statement's parameters (prompts, digests) are kept out of
        # its log lines and out of its exceptions' messages, which are logged.
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=not self.is_sqlite, hide_parameters=True
        )
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

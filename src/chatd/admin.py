"""The database commands of the CLI: migrations, API keys, usage reports."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from chatd.arg_types import count
from chatd.config import Settings
from chatd.store.db import Database
from chatd.store.keys import KeyRecord, KeyStore
from chatd.store.usage import UsageStore


def add_database_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the embedded SQLite database lives (default: $XDG_DATA_HOME/chatd)",
    )
    cmd.add_argument(
        "--database-url",
        default=None,
        help="e.g. postgresql+asyncpg://user@host/db (default: SQLite in the data dir)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"], help="apply pending migrations")
    add_database_options(db)

    keys = sub.add_parser("keys", help="API keys kept in the database")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--models", help="comma-separated model ids this key may use")
    create.add_argument("--expires", type=_date, help="expiry date, YYYY-MM-DD (UTC)")
    create.add_argument("--rpm", type=int, help="requests per minute (default: unlimited)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: unlimited)")
    create.add_argument(
        "--model-limit",
        dest="model_limits",
        type=_model_limit,
        action=_ModelLimits,
        metavar="MODEL:rpm=N,tpm=N",
        help="limits for one public model id, on top of --rpm/--tpm (repeatable; rpm or tpm"
        " may be omitted)",
    )
    create.add_argument(
        "--max-in-flight",
        type=count,
        metavar="N",
        help="requests of this key running at once, streams included, before new ones get"
        " 429 (default: the server's --max-in-flight-per-key; 0: unlimited)",
    )
    create.add_argument(
        "--max-stored-bytes",
        type=count,
        metavar="N",
        help="bytes of stored completions and responses this key may keep; a store: true"
        " request past it gets 400 (default: the server's --max-stored-bytes-per-owner;"
        " 0: unlimited)",
    )
    ksub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    for cmd in (create, *[ksub.choices[n] for n in ("list", "revoke")]):
        add_database_options(cmd)

    usage = sub.add_parser("usage", help="tokens per key, model and day")
    usage.add_argument("--key", help="only this key id (owner)")
    usage.add_argument("--since", type=_date, help="from this day, YYYY-MM-DD")
    add_database_options(usage)


def run(args: argparse.Namespace) -> int:
    commands: dict[str, Callable[[Database, argparse.Namespace], Awaitable[int]]] = {
        "db": _db,
        "keys": _keys,
        "usage": _usage,
    }
    return asyncio.run(_with_db(args, commands[args.command]))


async def _with_db(
    args: argparse.Namespace, command: Callable[[Database, argparse.Namespace], Awaitable[int]]
) -> int:
    settings = Settings(database_url=args.database_url)
    if args.data_dir is not None:
        settings.data_dir = args.data_dir
    db = Database(settings.resolved_database_url())
    try:
        # Migration lines on stderr: these commands log nothing, and stdout is for their
        # output (a key, a usage table) which scripts read.
        await db.upgrade(lambda line: print(line, file=sys.stderr, flush=True))
        return await command(db, args)
    finally:
        await db.close()


async def _db(_: Database, __: argparse.Namespace) -> int:
    print("database is up to date")
    return 0


async def _keys(db: Database, args: argparse.Namespace) -> int:
    store = KeyStore(db)
    if args.keys_command == "create":
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        expires = int(args.expires.timestamp()) if args.expires else None
        record, key = await store.create(
            args.name,
            models,
            expires,
            args.rpm,
            args.tpm,
            args.model_limits,
            max_in_flight=args.max_in_flight,
            max_stored_bytes=args.max_stored_bytes,
        )
        print(f"id:      {record.id}")
        print(f"key:     {key}")
        print("(the key is shown only now; chatd keeps only its SHA-256 digest)")
        return 0
    if args.keys_command == "list":
        print(f"{'id':<21} {'state':<8} {'expires':<10} {'models':<30} {'limits':<30} name")
        for r in await store.all():
            expires = _day(r.expires_at) if r.expires_at else "-"
            models = ",".join(r.models) if r.models else "*"
            limits = _limits_text(r)
            print(f"{r.id:<21} {r.state():<8} {expires:<10} {models:<30} {limits:<30} {r.name}")
        return 0
    if not await store.revoke(args.id):
        print(f"no active key with id {args.id}")
        return 1
    print(f"revoked {args.id}")
    return 0


async def _usage(db: Database, args: argparse.Namespace) -> int:
    since = args.since.date().isoformat() if args.since else None
    rows = await UsageStore(db).rows(owner=args.key, since=since)
    print(
        f"{'day':<10} {'key':<26} {'model':<24} {'requests':>8} {'prompt':>10} {'completion':>10}"
        f" {'estimated':>9}"
    )
    for r in rows:
        print(
            f"{r.day:<10} {r.owner:<26} {r.model:<24} {r.requests:>8} {r.prompt_tokens:>10}"
            f" {r.completion_tokens:>10} {r.estimated_requests:>9}"
        )
    return 0


def _date(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text}") from None


def _model_limit(text: str) -> tuple[str, dict[str, int | None]]:
    """MODEL:rpm=N,tpm=N -> (MODEL, {"rpm": N, "tpm": N}); the last ':' splits, since model
    ids may contain one."""
    bad = argparse.ArgumentTypeError(
        f"expected MODEL:rpm=N,tpm=N (positive integers, either may be omitted): {text!r}"
    )
    model, _, spec = text.rpartition(":")
    if not model.strip():
        raise bad
    limits: dict[str, int | None] = {"rpm": None, "tpm": None}
    for item in spec.split(","):  # at least one item, so at least one limit
        name, _, value = (s.strip() for s in item.partition("="))
        if name not in limits or limits[name] is not None:  # unknown, or given twice
            raise bad
        if not (value.isascii() and value.isdigit() and int(value) > 0):
            raise bad
        limits[name] = int(value)
    return model.strip(), limits


class _ModelLimits(argparse.Action):
    """Collects repeated --model-limit into {model: limits}; a model given twice is an error."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        model, limits = values
        collected = dict(getattr(namespace, self.dest) or {})
        if model in collected:
            raise argparse.ArgumentError(self, f"{model} is given more than once")
        collected[model] = limits
        setattr(namespace, self.dest, collected)


def _limits_text(r: KeyRecord) -> str:
    """Key-wide, then per-model limits, in the flags' syntax (rpm=60 gpt-4o:rpm=3,tpm=900),
    then the key's own quotas (in_flight=8 stored_bytes=1000000)."""

    def spec(rpm: int | None, tpm: int | None) -> str:
        return ",".join(f"{k}={v}" for k, v in (("rpm", rpm), ("tpm", tpm)) if v is not None)

    parts = [spec(r.rpm, r.tpm)] if r.rpm is not None or r.tpm is not None else []
    for model, limits in sorted((r.model_limits or {}).items()):
        parts.append(f"{model}:{spec(limits.get('rpm'), limits.get('tpm'))}")
    if r.max_in_flight is not None:
        parts.append(f"in_flight={r.max_in_flight}")
    if r.max_stored_bytes is not None:
        parts.append(f"stored_bytes={r.max_stored_bytes}")
    return " ".join(parts) or "-"


def _day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()

"""The real chatd app over a FakeEngine, in this process: its lifespan run by hand,
driven through httpx's ASGI transport (no socket, no model); plus the fake upstream
on a real port in a thread (the relay reaches upstreams over aiohttp), and the
``chatd`` command line called in-process."""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import uvicorn
from fakes.anthropic_upstream import create_app as create_anthropic
from fakes.engine import FakeEngine
from fakes.upstream import create_app as create_upstream
from fastapi import FastAPI

from chatd.api.app import create_app
from chatd.api.origins import BrowserPolicy
from chatd.cli import main as cli_main
from chatd.config import load_config
from chatd.protocol.request_limits import Limits
from chatd.service.model_pool import ModelPool
from chatd.service.models import LocalModel, ModelRegistry
from chatd.service.quotas import Quotas
from chatd.store.db import Database, sqlite_url

MODEL = "smollm2-135m-instruct"
API_KEY = "sk-test-chatd-0123456789"
BASE_URL = "http://chatd"


class LogRecorder(logging.Handler):
    """Every record chatd logs (any level) while the app runs, as the server's log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Chatd:
    """One running app: its engine (to script), database, log and clients."""

    app: FastAPI
    engine: FakeEngine
    db: Database
    data_dir: Path | None
    log: LogRecorder = field(default_factory=LogRecorder)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def http(self, key: str | None = API_KEY, **kw: object) -> httpx.AsyncClient:
        """A raw client; ``key`` None sends no Authorization header."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=BASE_URL,
            headers=headers,
            timeout=30,
            **kw,  # type: ignore[arg-type]
        )
        self.clients.append(c)
        return c

    def sdk(self, key: str = API_KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=BASE_URL + "/v1", api_key=key, http_client=self.http(None), max_retries=0
        )

    def anthropic(self, key: str = API_KEY) -> anthropic.AsyncAnthropic:
        """Anthropic's SDK over this app (it speaks through httpx2, httpx's successor)."""
        transport = httpx2.ASGITransport(app=self.app)
        http = httpx2.AsyncClient(transport=transport, base_url=BASE_URL, timeout=30)
        self.clients.append(http)  # type: ignore[arg-type]
        return anthropic.AsyncAnthropic(
            base_url=BASE_URL, api_key=key, http_client=http, max_retries=0
        )

    def cli(self, *args: str) -> tuple[int, str, str]:
        """``chatd <args> --data-dir <this app's>`` (or its --database-url)."""
        if self.data_dir is not None:
            return run_cli(*args, "--data-dir", str(self.data_dir))
        return run_cli(*args, "--database-url", self.db.url)


def build_app(
    tmp: Path,
    engine: FakeEngine,
    api_keys: list[str] | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    config: str | None = None,
    limits: Limits | None = None,
    log_content: bool = False,
    local: list[LocalModel] | None = None,
    pool: ModelPool | None = None,
    browsers: BrowserPolicy | None = None,
    quotas: Quotas | None = None,
    clock: Callable[[], int] | None = None,
) -> FastAPI:
    """The app as ``chatd serve`` builds it (cli.py), with ``engine`` behind every local
    model of ``config`` (a chatd.toml text), or behind MODEL alone, or the ``local``
    models given (in ``pool``, preloaded as at start); its database is ``database_url``
    or SQLite in ``tmp``; ``api_keys`` None means [API_KEY]; ``browsers`` the Host
    names and origins allowed (None: any Host, as the test clients' ``chatd``);
    ``clock`` (nanoseconds) dates and ages stored records."""
    models, aliases, channels = [LocalModel(MODEL, engine)], {}, []
    shared: list[str] = []
    if config is not None:
        path = tmp / "chatd.toml"
        path.write_text(config)
        file = load_config(path)
        if file.models:
            models = [
                LocalModel(m.id, engine, m.priority, m.weight, defaults=m.defaults)
                for m in file.models
            ]
        aliases = {a: m.id for m in file.models for a in m.aliases}
        channels = file.channels
        shared = file.shared_prompts
    if local is not None:
        models = local
    db = Database(database_url or sqlite_url(tmp))
    keys = [API_KEY] if api_keys is None else api_keys
    registry = ModelRegistry(models, aliases, channels, pool)
    registry.pool.preload()
    app = create_app(
        registry,
        keys,
        db,
        redis_url,
        limits,
        log_content=log_content,
        browsers=browsers,
        shared_prompts=shared,
        quotas=quotas,
        **({"clock": clock} if clock is not None else {}),
    )
    app.state.db = db
    return app


@contextlib.asynccontextmanager
async def running_chatd(
    tmp: Path,
    engine: FakeEngine | None = None,
    api_keys: list[str] | None = None,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    config: str | None = None,
    limits: Limits | None = None,
    log_content: bool = False,
    local: list[LocalModel] | None = None,
    pool: ModelPool | None = None,
    browsers: BrowserPolicy | None = None,
    quotas: Quotas | None = None,
    clock: Callable[[], int] | None = None,
) -> AsyncIterator[Chatd]:
    """Build the app as ``chatd serve`` does (cli.py), with ``engine`` as the model
    behind every local model of ``config`` (a chatd.toml text) or behind MODEL alone."""
    engine = engine or FakeEngine()
    app = build_app(
        tmp,
        engine,
        api_keys,
        database_url,
        redis_url,
        config,
        limits,
        log_content=log_content,
        local=local,
        pool=pool,
        browsers=browsers,
        quotas=quotas,
        clock=clock,
    )
    chatd = Chatd(app, engine, app.state.db, None if database_url else tmp)
    logger = logging.getLogger("chatd")
    level = logger.level
    logger.addHandler(chatd.log)
    logger.setLevel(logging.DEBUG)
    try:
        async with app.router.lifespan_context(app):
            try:
                yield chatd
            finally:
                for c in chatd.clients:
                    await c.aclose()
    finally:
        logger.removeHandler(chatd.log)
        logger.setLevel(level)


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``chatd`` in a thread of this process (it runs its own event loop there):
    (exit code, stdout, stderr)."""
    out, err, result = io.StringIO(), io.StringIO(), [0]

    def run() -> None:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                result[0] = cli_main(list(args))
            except SystemExit as e:  # argparse errors exit 2
                result[0] = e.code if isinstance(e.code, int) else 1

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return result[0], out.getvalue(), err.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app: Any, **options: Any) -> Iterator[str]:
    """Serve an ASGI app (lifespan included) with uvicorn on a free port of 127.0.0.1,
    in a daemon thread with its own event loop: its base URL. For what needs a real
    socket: upstreams (the relay calls them with aiohttp), the ``chatd channels``
    command, a client that leaves in the middle of a stream, connections themselves
    (``options`` go to ``uvicorn.Config``: ``http=`` chatd's protocol)."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=0,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # a hang, not a slow start, fails
    while not server.started:
        assert thread.is_alive(), "the server thread stopped before it started"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = server.force_exit = True
        thread.join(timeout=10)


@dataclass
class Upstream:
    url: str
    calls: dict[str, int]
    last: dict[str, dict[str, Any]]
    flaky: dict[str, bool]


@contextlib.contextmanager
def fake_upstream() -> Iterator[Upstream]:
    """tests/fakes/upstream.py, served in a thread of this process."""
    app = create_upstream()
    with serve_in_thread(app) as url:
        yield Upstream(url, app.state.calls, app.state.last, app.state.flaky)


@dataclass
class FakeAnthropic:
    """tests/fakes/anthropic_upstream.py served: its ``/v1`` URL and what it saw (the
    last body, headers and calls per upstream model id)."""

    url: str
    last: dict[str, Any]
    headers: dict[str, Any]
    calls: dict[str, int]


@contextlib.contextmanager
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """tests/fakes/anthropic_upstream.py, served in a thread of this process."""
    app = create_anthropic()
    with serve_in_thread(app) as url:
        state = app.state
        yield FakeAnthropic(url + "/v1", state.last, state.headers, state.calls)


def channel_toml(name: str, url: str, models: dict[str, str], api: str, extra: str = "") -> str:
    """A ``[[channels]]`` entry serving ``models`` (public id -> upstream id)."""
    listed = ", ".join(f'{{id = "{m}", upstream = "{u}"}}' for m, u in models.items())
    return (
        f'[[channels]]\nname = "{name}"\nbase_url = "{url}"\napi = "{api}"\n'
        f"models = [{listed}]\n{extra}\n"
    )


@dataclass
class ThreadServer:
    """The real app over a FakeEngine, served on a real port from a thread: ``base_url``
    and ``data_dir`` as a ``chatd serve`` process would have them."""

    base_url: str
    data_dir: Path
    engine: FakeEngine
    app: FastAPI | None = None


@contextlib.contextmanager
def chatd_in_thread(
    tmp: Path,
    engine: FakeEngine | None = None,
    api_keys: list[str] | None = None,
    *,
    config: str | None = None,
    quotas: Quotas | None = None,
    **options: Any,
) -> Iterator[ThreadServer]:
    """``options`` go to ``uvicorn.Config`` (serve_in_thread)."""
    engine = engine or FakeEngine()
    app = build_app(tmp, engine, api_keys, config=config, quotas=quotas)
    with serve_in_thread(app, **options) as url:
        yield ThreadServer(url, tmp, engine, app)


PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def postgres_reachable() -> bool:
    return reachable(5432)


@contextlib.asynccontextmanager
async def own_pg_database(prefix: str = "chatd_test_") -> AsyncIterator[str]:
    """A PostgreSQL database of its own, created now and dropped after: its URL. For a
    branch whose migrations are newer than other checkouts': migrating the shared
    ``test`` database would leave it at a revision they do not know, and their start-up
    migration would fail."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    name = prefix + secrets.token_hex(6)
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def redis_reachable() -> bool:
    return reachable(6379)

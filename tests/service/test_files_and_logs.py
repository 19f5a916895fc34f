"""Files and logs, attacked in-process over HTTP (the real app over a FakeEngine):

- the data directory is 0700 and every file chatd writes in it 0600, whatever the umask;
  looser ones left by an earlier start are tightened (or, for a shared folder, warned of);
- with every logger at DEBUG, no log record holds a prompt, a key or a key's digest
  (the database drivers log no parameters or rows), on SQLite and PostgreSQL;
- static keys' owner ids are HMACs keyed by the database's secret: distinct per key, no
  digest prefix, the same after a restart, and the records of the old (digest prefix)
  owner ids are moved to them at start;
- a client's control characters (ANSI escapes, CR, LF, C1 controls, bidi overrides) in a
  URL path or X-Client-Request-Id reach the log escaped, on one line, text or JSON,
  through a real uvicorn."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fakes.engine import FakeEngine
from sqlalchemy import update

from chatd.log_lines import JsonFormatter, TextFormatter
from chatd.store.db import Database, sqlite_url
from chatd.store.tables import completions, response_items, responses, usage

from .harness import (
    API_KEY,
    MODEL,
    Chatd,
    build_app,
    own_pg_database,
    postgres_reachable,
    run_cli,
    running_chatd,
    serve_in_thread,
)
from .test_security import AllLogs, all_logs, db_key  # noqa: F401 (a fixture)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sk-" + secrets.token_hex(16)  # fresh owners: a shared PostgreSQL keeps old rows


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask (022): what chatd creates would be 0755/0644 if it relied on it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def request_owners(chatd: Chatd) -> list[str]:
    return [r.request["owner"] for r in chatd.log.records if r.name == "chatd.requests"]  # type: ignore[attr-defined]


async def store_some(chatd: Chatd, key: str, prompt: str = "Hi") -> tuple[str, str]:
    """A stored completion and a stored response of ``key``: their ids."""
    http = chatd.http(key)
    messages = [{"role": "user", "content": prompt}]
    chat = await http.post(
        "/v1/chat/completions", json={**CHAT, "messages": messages, "store": True}
    )
    assert chat.status_code == 200, chat.text
    resp = await http.post(
        "/v1/responses", json={"model": MODEL, "input": prompt, "max_output_tokens": 16}
    )
    assert resp.status_code == 200, resp.text
    return chat.json()["id"], resp.json()["id"]


# --- file modes --------------------------------------------------------------------------


async def test_a_new_data_dir_and_its_files_are_private(tmp_path: Path, loose_umask: None) -> None:
    data = tmp_path / "data"
    key = new_key()
    async with running_chatd(data, api_keys=[key]) as chatd:
        await store_some(chatd, key)  # writes: the WAL and its index exist now
        _, db_client_key = db_key(chatd, "client")
        await store_some(chatd, db_client_key)
        files = sorted(p.name for p in data.iterdir())
        assert {"chatd.db", "chatd.db-wal", "chatd.db-shm"} <= set(files)
        assert mode(data) == 0o700
        assert {f: mode(data / f) for f in files} == {f: 0o600 for f in files}
    # the admin commands make a new data dir private too
    other = tmp_path / "admin"
    code, _, err = run_cli("keys", "create", "--name", "n", "--data-dir", str(other))
    assert code == 0, err
    assert mode(other) == 0o700
    assert {p.name: mode(p) for p in other.iterdir()} == {p.name: 0o600 for p in other.iterdir()}


async def test_looser_modes_are_tightened_at_start(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    key = new_key()
    async with running_chatd(data, api_keys=[key]) as chatd:
        chat_id, _ = await store_some(chatd, key)
    data.chmod(0o755)  # as an older chatd (or a copy with another umask) left them
    for p in data.iterdir():
        p.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="chatd.store"):
        async with running_chatd(data, api_keys=[key]) as chatd:
            assert mode(data) == 0o700
            assert all(mode(p) == 0o600 for p in data.iterdir())
            got = await chatd.http(key).get(f"/v1/chat/completions/{chat_id}")
            assert got.status_code == 200  # the same database, now private
    assert f"data directory {data} was mode 755, readable by others: made 700" in caplog.text
    assert f"database file {data / 'chatd.db'} was mode 644, readable by others: made 600" in (
        caplog.text
    )


def test_a_shared_folder_is_warned_of_not_closed(
    tmp_path: Path, loose_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    (shared / "someone-elses.txt").write_text("x")
    (shared / "chatd.db").touch(mode=0o644)
    with caplog.at_level(logging.WARNING, logger="chatd.store"):
        Database(sqlite_url(shared))
    assert mode(shared) == 0o755  # not chatd's to close
    assert mode(shared / "chatd.db") == 0o600  # chatd's file in it is
    warned = caplog.text
    assert "holds files that are not chatd's" in warned and "made 600" in warned
    # --database-url naming an SQLite file: created 0600 too; a missing folder is left
    # for SQLite to report when it opens
    Database(f"sqlite+aiosqlite:///{shared / 'explicit.db'}")
    assert mode(shared / "explicit.db") == 0o600
    Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")


# --- debug logs: no parameters -----------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | None]:
    """None (SQLite in the test's tmp dir), or a PostgreSQL database of the test's own:
    the shared ``test`` database must stay at a revision every checkout knows."""
    if request.param == "sqlite":
        yield None
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    async with own_pg_database("chatd_files_") as url:
        yield url


async def test_debug_logs_show_no_prompt_key_or_digest(
    tmp_path: Path,
    any_db: str | None,
    all_logs: AllLogs,  # noqa: F811 (the fixture)
) -> None:
    static = new_key()
    prompt = "the walrus password is " + secrets.token_hex(8)
    async with running_chatd(tmp_path, api_keys=[static], database_url=any_db) as chatd:
        _, client = db_key(chatd, "debug-client")
        for key in (static, client):
            chat_id, resp_id = await store_some(chatd, key, prompt)
            http = chatd.http(key)
            assert (await http.get(f"/v1/chat/completions/{chat_id}/messages")).status_code == 200
            assert (await http.get("/v1/chat/completions", params={"limit": 5})).status_code == 200
            assert (await http.get(f"/v1/responses/{resp_id}/input_items")).status_code == 200
            followed = {"model": MODEL, "input": "more", "previous_response_id": resp_id}
            assert (await http.post("/v1/responses", json=followed)).status_code == 200
        wrong = await chatd.http("sk-" + "7" * 40).post("/v1/chat/completions", json=CHAT)
        assert wrong.status_code == 401
        await chatd.app.state.services.chat.usage.flush()  # the usage upserts, now
        assert (await chatd.http(None).get("/health")).status_code == 200
    logged = all_logs.text()
    assert "DEBUG chatd.requests" in logged  # DEBUG was on: /health's line is at debug
    assert prompt not in logged and "walrus password" not in logged
    for key in (static, client, "sk-" + "7" * 40):
        d = digest(key)
        assert (
            key not in logged and d not in logged and d[:24] not in logged and d[:16] not in logged
        )
    noisy = {line.split(" ", 2)[1] for line in all_logs.lines}
    assert not {n for n in noisy if n.startswith(("sqlalchemy", "aiosqlite", "asyncpg"))}


# --- owner ids of static keys ------------------------------------------------------------


async def test_static_keys_owner_ids_are_keyed_hashes_stable_across_restarts(
    tmp_path: Path, any_db: str | None
) -> None:
    a, b = new_key(), new_key()
    async with running_chatd(tmp_path, api_keys=[a, b], database_url=any_db) as chatd:
        chat_a, resp_a = await store_some(chatd, a)
        await store_some(chatd, b)
        owners = request_owners(chatd)
        started = chatd.log.text()
    owner_a, owner_b = owners[0], owners[-1]
    assert owner_a != owner_b
    for key, owner in ((a, owner_a), (b, owner_b)):
        assert owner.startswith("key_") and len(owner) == 4 + 24
        assert digest(key)[:24] not in owner and digest(key)[:8] not in owner
    assert f"static API key #1: owner id {owner_a}" in started  # the operator can find it
    async with running_chatd(tmp_path, api_keys=[a, b], database_url=any_db) as chatd:
        got = await chatd.http(a).get(f"/v1/chat/completions/{chat_a}")
        assert got.status_code == 200  # the same owner id after a restart
        assert (await chatd.http(b).get(f"/v1/chat/completions/{chat_a}")).status_code == 404
        assert (await chatd.http(a).get(f"/v1/responses/{resp_a}")).status_code == 200
        assert (await chatd.http(b).get(f"/v1/responses/{resp_a}")).status_code == 404
        assert request_owners(chatd) == [owner_a, owner_b, owner_a, owner_b]


async def test_records_of_the_old_owner_ids_are_moved_at_start(
    tmp_path: Path, any_db: str | None
) -> None:
    """An upgrade from the unsalted digest prefix: records stored under ``key_`` + the
    digest's first 24 hex digits are the key's again after the first start."""
    a, b = new_key(), new_key()
    async with running_chatd(tmp_path, api_keys=[a, b], database_url=any_db) as chatd:
        chat_a, resp_a = await store_some(chatd, a)
        chat_b, _ = await store_some(chatd, b)
        await chatd.app.state.services.chat.usage.flush()
        owner_a = request_owners(chatd)[0]
        # as the older chatd stored them: under the digest prefix; and today's usage
        # split between both ids, as a rolling upgrade would leave it
        old = "key_" + digest(a)[:24]
        async with chatd.db.engine.begin() as conn:
            for table in (completions, responses, response_items):
                await conn.execute(update(table).where(table.c.owner == owner_a).values(owner=old))
            await conn.execute(
                usage.insert().values(
                    owner=old, model=MODEL, day=_today(), requests=5, prompt_tokens=50,
                    completion_tokens=20, estimated_requests=0,
                )
            )  # fmt: skip
        before = {r.owner: r for r in await _usage(chatd)}[owner_a]
        assert (await chatd.http(a).get(f"/v1/chat/completions/{chat_a}")).status_code == 404
    async with running_chatd(tmp_path, api_keys=[a, b], database_url=any_db) as chatd:
        assert "1 stored completions, 1 stored responses and 1 usage rows moved" in chatd.log.text()
        http_a, http_b = chatd.http(a), chatd.http(b)
        assert (await http_a.get(f"/v1/chat/completions/{chat_a}")).status_code == 200
        assert (await http_a.get(f"/v1/responses/{resp_a}")).status_code == 200
        assert (await http_a.get(f"/v1/responses/{resp_a}/input_items")).status_code == 200
        assert (await http_b.get(f"/v1/chat/completions/{chat_a}")).status_code == 404
        assert (await http_b.get(f"/v1/chat/completions/{chat_b}")).status_code == 200
        rows = {r.owner: r for r in await _usage(chatd)}
        assert old not in rows
        merged = rows[owner_a]
        assert merged.requests == before.requests + 5
        assert merged.prompt_tokens == before.prompt_tokens + 50
    async with running_chatd(tmp_path, api_keys=[a, b], database_url=any_db) as chatd:
        assert "moved from" not in chatd.log.text()  # nothing left to move
        assert (await chatd.http(a).get(f"/v1/chat/completions/{chat_a}")).status_code == 200


def _today() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).date().isoformat()


async def _usage(chatd: Chatd) -> list:  # type: ignore[type-arg]
    from chatd.store.usage import UsageStore

    return await UsageStore(chatd.db).rows()


# --- control characters in the log -------------------------------------------------------


def raw_request(base_url: str, data: bytes) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


HOSTILE = "\x1b[31m\r\nINFO chatd.requests: forged\x1b[0m\x85\x9b2J\u202e\u2028\x7f"
# as sent: percent-encoded in the path (Starlette decodes it into the ASGI path), raw
# latin-1 bytes in a header (uvicorn refuses C0 controls there: 400 before the app)
HOSTILE_PATH = "/v1/" + "".join(f"%{b:02x}" for b in HOSTILE.encode())
HOSTILE_HEADER = "trace\x85\x9b2J\x9d-7".encode("latin-1")
NOT_PRINTABLE = ("\x1b", "\r", "\x85", "\x9b", "\x9d", "\u202e", "\u2028", "\x7f")


@pytest.fixture
def root_log() -> Iterator[logging.Handler]:
    """The root handler as ``chatd serve`` has it, writing to a buffer."""
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.mark.parametrize("form", ["text", "json"])
def test_control_characters_from_clients_are_escaped(
    tmp_path: Path,
    root_log: logging.StreamHandler,
    form: str,  # type: ignore[type-arg]
) -> None:
    root_log.setFormatter(
        JsonFormatter() if form == "json" else TextFormatter("%(levelname)s %(name)s: %(message)s")
    )
    app = build_app(tmp_path, FakeEngine())
    logging.getLogger("chatd").setLevel(logging.INFO)
    with serve_in_thread(app) as url:
        path = raw_request(
            url, f"GET {HOSTILE_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        header = raw_request(
            url,
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + API_KEY.encode()
            + b"\r\nX-Client-Request-Id: "
            + HOSTILE_HEADER
            + b"\r\nConnection: close\r\n\r\n",
        )
        raw_esc = raw_request(  # a raw ESC or CR in the request line: refused by uvicorn
            url, b"GET /v1/\x1b[31mx\rINFO forged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert path.startswith(b"HTTP/1.1 404") and header.startswith(b"HTTP/1.1 200")
    assert raw_esc.startswith(b"HTTP/1.1 400")
    out = root_log.stream.getvalue()  # type: ignore[attr-defined]
    for c in NOT_PRINTABLE:
        assert c not in out, (c, out)
    lines = [line for line in out.splitlines() if "chatd.requests" in line]
    assert len(lines) == 2, out  # each request one line, nothing forged
    assert "forged" not in out.replace(lines[0], "")  # the forged text only inside the line
    if form == "json":
        fields = [json.loads(line) for line in lines]
        assert fields[0]["path"] == "/v1/" + HOSTILE  # escaped, yet exactly what was sent
        assert fields[1]["client_request_id"] == HOSTILE_HEADER.decode("latin-1")
    else:
        assert "\\u001b[31m\\r\\nINFO" in lines[0] and "\\u202e" in lines[0]
        assert 'client_request_id="trace\\u0085\\u009b2J\\u009d-7"' in lines[1]

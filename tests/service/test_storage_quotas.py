"""Per-owner storage quotas and retention of stored completions and responses
(service/storage.py, store/retention.py), over HTTP with two or more keys, on SQLite and
PostgreSQL: a ``store: true`` request past its owner's quota is refused before anything
is generated, with a 400 naming ``store``, and another owner is unaffected; a key's own
quota overrides the server's; expired records are invisible at once and purged in the
background. Time is the test's clock, injected: nothing sleeps on the wall clock.

PostgreSQL runs in a database of its own, created for this module and dropped after it
(this branch's migration must not reach the shared ``test`` database)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, insert, select

from chatd.service.quotas import Quotas
from chatd.store.db import _MIGRATIONS, Database, sqlite_url
from chatd.store.retention import NS_PER_DAY, json_size
from chatd.store.tables import completions, messages, response_items, responses

from .checks import URL, check_error
from .harness import MODEL, Chatd, own_pg_database, postgres_reachable, running_chatd

QUOTA = 4000  # bytes: a few stored completions of the FakeEngine's answer
RESPONSES = "/v1/responses"


class Clock:
    """Nanoseconds since the epoch, moved by the test."""

    def __init__(self) -> None:
        self.ns = time.time_ns()

    def __call__(self) -> int:
        return self.ns

    def advance(self, days: float) -> None:
        self.ns += int(days * NS_PER_DAY)


@asynccontextmanager
async def database_url(kind: str, tmp: Path) -> AsyncIterator[str | None]:
    """None (SQLite in ``tmp``), or a PostgreSQL database of our own, dropped after."""
    if kind == "sqlite":
        yield None
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    async with own_pg_database("chatd_quota_") as url:
        yield url


@dataclass
class Backend:
    kind: str
    srv: Chatd
    clock: Clock

    def key(self, *options: str) -> tuple[str, httpx.AsyncClient]:
        """A new database key (its owner id) and a client using it."""
        code, out, err = self.srv.cli("keys", "create", "--name", "q", *options)
        assert code == 0, err
        found = re.search(r"id:\s+(\S+)\nkey:\s+(\S+)", out)
        assert found, out
        return found.group(1), self.srv.http(found.group(2))

    async def rows(self, table: Any, owner: str) -> int:
        async with self.srv.db.engine.connect() as conn:
            q = select(func.count()).select_from(table).where(table.c.owner == owner)
            return (await conn.execute(q)).scalar_one()

    def in_flight(self, owner: str) -> int:
        return self.srv.app.state.services.in_flight.count(owner)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    """A server whose keys may store QUOTA bytes each, kept 30 days (the purge is left to
    the tests: its interval is a day)."""
    tmp = tmp_path_factory.mktemp("quota")
    clock = Clock()
    quotas = Quotas(
        max_stored_bytes_per_owner=QUOTA, store_retention_days=30, purge_interval=86_400
    )
    async with (
        database_url(request.param, tmp) as url,
        running_chatd(tmp, api_keys=[], database_url=url, quotas=quotas, clock=clock) as srv,
    ):
        yield Backend(request.param, srv, clock)


def chat(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **fields}


def response(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": text, **fields}


def assert_store_refused(r: httpx.Response) -> None:
    check_error(
        r, 400, param="store", code="storage_quota_exceeded", contains=("store: false", "quota")
    )


async def fill(http: httpx.AsyncClient) -> list[str]:
    """Store completions until the quota refuses one: the ids stored."""
    stored = []
    for _ in range(50):
        r = await http.post(URL, json=chat("fill me", store=True))
        if r.status_code != 200:
            assert_store_refused(r)
            return stored
        stored.append(r.json()["id"])
    raise AssertionError("the quota never refused a store")


async def test_past_the_quota_store_is_refused_before_generating(backend: Backend) -> None:
    a, http_a = backend.key()
    b, http_b = backend.key()
    stored = await fill(http_a)
    assert len(stored) >= 2
    engine = backend.srv.engine
    submitted = len(engine.submitted)
    # every way of asking to store is refused, streamed too (a status, not a stream)
    for path, body in (
        (URL, chat("more", store=True)),
        (URL, chat("more", store=True, stream=True)),
        (RESPONSES, response("more")),  # the Responses API stores by default
        (RESPONSES, response("more", store=True, stream=True)),
    ):
        assert_store_refused(await http_a.post(path, json=body))
    assert len(engine.submitted) == submitted, "a refused request was generated"
    assert backend.in_flight(a) == 0
    # without storing, A is answered; B stores as it likes
    assert (await http_a.post(URL, json=chat("more"))).status_code == 200
    assert (await http_a.post(RESPONSES, json=response("more", store=False))).status_code == 200
    for path, body in ((URL, chat("b", store=True)), (RESPONSES, response("b"))):
        r = await http_b.post(path, json=body)
        assert r.status_code == 200, r.text
    # deleting stored completions frees the quota
    for cid in stored:
        assert (await http_a.delete(f"{URL}/{cid}")).status_code == 200
    assert (await http_a.post(URL, json=chat("again", store=True))).status_code == 200


async def test_one_request_too_big_for_the_quota_is_refused(backend: Backend) -> None:
    """The request's own body counts: one that alone cannot fit is refused at once."""
    _, http = backend.key()
    r = await http.post(URL, json=chat("x" * QUOTA, store=True))
    assert_store_refused(r)
    assert "this request" in r.json()["error"]["message"]


async def test_a_keys_own_quota_overrides_the_server_default(backend: Backend) -> None:
    small, http_small = backend.key("--max-stored-bytes", "1500")
    _, http_free = backend.key("--max-stored-bytes", "0")
    assert len(await fill(http_small)) in (1, 2)
    for _ in range(8):  # about twice the server's QUOTA: no limit for this key
        r = await http_free.post(URL, json=chat("unlimited", store=True))
        assert r.status_code == 200, r.text
    code, out, _ = backend.srv.cli("keys", "list")
    assert code == 0 and re.search(rf"{small}\s.*stored_bytes=1500", out)


async def test_stored_sizes_are_the_bytes_of_their_json(backend: Backend) -> None:
    """What counts against the quota: the stored JSON's bytes, items and messages in."""
    owner, http = backend.key()
    made = (await http.post(URL, json=chat("measure me", store=True))).json()
    resp = (await http.post(RESPONSES, json=response("measure me"))).json()
    async with backend.srv.db.engine.connect() as conn:
        row = (await conn.execute(select(completions).where(completions.c.id == made["id"]))).one()
        msgs = (
            await conn.execute(
                select(messages.c.message).where(messages.c.completion_id == made["id"])
            )
        ).scalars()
        stored = (await conn.execute(select(responses).where(responses.c.id == resp["id"]))).one()
        items = (
            await conn.execute(
                select(response_items.c.item).where(response_items.c.response_id == resp["id"])
            )
        ).scalars()
        sizes = [json_size(row.body), json_size(row.request), *map(json_size, msgs)]
        assert len(sizes) == 3 and row.size == sum(sizes)
        assert stored.size == json_size(stored.body) + sum(json_size(i) for i in items)
    assert row.size > 300 and stored.size > 300


async def test_expired_records_are_invisible_at_once_then_purged(backend: Backend) -> None:
    owner, http = backend.key()
    other, http_other = backend.key()
    old = (await http.post(URL, json=chat("old", store=True, metadata={"t": "x"}))).json()
    old_resp = (await http.post(RESPONSES, json=response("old"))).json()
    others = (await http_other.post(URL, json=chat("theirs", store=True))).json()
    backend.clock.advance(29)
    kept = (await http.post(URL, json=chat("kept", store=True, metadata={"t": "x"}))).json()
    backend.clock.advance(2)  # old: 31 days, kept: 2 days
    cid, rid = old["id"], old_resp["id"]
    for method, path in (
        ("GET", f"{URL}/{cid}"),
        ("GET", f"{URL}/{cid}/messages"),
        ("POST", f"{URL}/{cid}"),
        ("DELETE", f"{URL}/{cid}"),
        ("GET", f"{RESPONSES}/{rid}"),
        ("GET", f"{RESPONSES}/{rid}/input_items"),
        ("DELETE", f"{RESPONSES}/{rid}"),
        ("GET", f"{URL}?after={cid}"),
    ):
        body = {"metadata": {"t": "y"}} if method == "POST" else None
        r = await http.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
    listed = (await http.get(URL, params={"metadata[t]": "x"})).json()
    assert [c["id"] for c in listed["data"]] == [kept["id"]]
    r = await http.post(RESPONSES, json=response("go on", previous_response_id=rid))
    check_error(r, 400, param="previous_response_id", code="previous_response_not_found")
    # expired: invisible, not yet deleted; the purge deletes them with their rows
    assert await backend.rows(completions, owner) == 2
    assert await backend.rows(responses, owner) == 1
    purged = await backend.srv.app.state.purger.purge()
    assert purged >= 3  # this owner's two, the other's one (and earlier tests' records)
    assert await backend.rows(completions, owner) == 1
    assert await backend.rows(responses, owner) == 0
    assert await backend.rows(response_items, owner) == 0
    async with backend.srv.db.engine.connect() as conn:
        left = select(func.count()).select_from(messages).where(messages.c.completion_id == cid)
        assert (await conn.execute(left)).scalar_one() == 0
    assert (await http.get(f"{URL}/{kept['id']}")).status_code == 200
    assert (await http_other.get(f"{URL}/{others['id']}")).status_code == 404


async def test_expired_records_no_longer_count_against_the_quota(backend: Backend) -> None:
    _, http = backend.key()
    await fill(http)
    backend.clock.advance(31)
    assert (await http.post(URL, json=chat("room again", store=True))).status_code == 200


async def test_the_purge_runs_in_the_background(tmp_path: Path) -> None:
    clock = Clock()
    quotas = Quotas(store_retention_days=1, purge_interval=0.01)
    async with running_chatd(tmp_path, api_keys=[], quotas=quotas, clock=clock) as srv:
        http = srv.http(None)  # an open server: everyone is "anonymous"
        made = (await http.post(URL, json=chat("soon gone", store=True))).json()
        clock.advance(2)

        async def left() -> int:
            async with srv.db.engine.connect() as conn:
                q = select(func.count()).select_from(completions)
                return (await conn.execute(q)).scalar_one()

        deadline = time.monotonic() + 120  # the task's next pass, however slow the machine
        while await left():
            assert time.monotonic() < deadline, "the purge never ran"
            await asyncio.sleep(0.01)
        assert (await http.get(f"{URL}/{made['id']}")).status_code == 404


async def test_without_retention_nothing_expires(tmp_path: Path) -> None:
    clock = Clock()
    async with running_chatd(tmp_path, api_keys=[], clock=clock) as srv:
        http = srv.http(None)
        made = (await http.post(URL, json=chat("forever", store=True))).json()
        clock.advance(3650)
        assert await srv.app.state.purger.purge() == 0
        assert (await http.get(f"{URL}/{made['id']}")).status_code == 200


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_migration_measures_records_stored_before_it(kind: str, tmp_path: Path) -> None:
    """Records stored before 0007 count against the quota with their JSON's bytes as the
    database holds them, which is what chatd counts for a new one (``json_size``)."""
    async with database_url(kind, tmp_path) as url:
        db = Database(url or sqlite_url(tmp_path))
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(_upgrade_to, "0006")
                body = {"id": "c1", "model": MODEL, "choices": [{"text": "héllo"}]}
                row = {"owner": "o", "model": MODEL, "created_ns": 1, "metadata": {}}
                await conn.execute(
                    insert(completions).values(id="c1", body=body, request={}, **row)
                )
                await conn.execute(
                    insert(messages).values(completion_id="c1", position=0, message={"a": "b"})
                )
            await db.upgrade()
            async with db.engine.connect() as conn:
                size = (await conn.execute(select(completions.c.size))).scalar_one()
            assert size == json_size(body) + json_size({}) + json_size({"a": "b"})
        finally:
            await db.close()


def _upgrade_to(connection: Any, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--max-stored-bytes-per-owner", "-1"),
        ("serve", "--max-stored-bytes-per-owner", "1e6"),
        ("serve", "--store-retention-days", "nan"),
        ("serve", "--store-retention-days", "-3"),
        ("keys", "create", "--name", "x", "--max-stored-bytes", "lots"),
    ],
)
def test_bad_quotas_are_refused_by_the_command_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    from .harness import run_cli

    code, _, err = run_cli(*args, "--data-dir", str(tmp_path))
    assert code == 2 and ("whole number" in err or "number of days" in err), err

"""Stored Responses API responses: ``store/responses.py`` (ResponseStore) and the API-facing
``service/responses/stored_responses.py`` (StoredResponses), called directly (no app, no
routes yet) on SQLite and on PostgreSQL.

PostgreSQL runs in a database of its own, created for this module and dropped after it:
migrating the shared ``test`` database to this branch's revision would leave it at a
revision other checkouts do not know, and their start-up migration would fail.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from openapi_schemas import assert_valid
from sqlalchemy import func, select
from starlette.datastructures import QueryParams

from chatd.protocol.errors import InvalidRequest, NotFound
from chatd.protocol.ids import call_id, function_call_item_id, message_item_id
from chatd.protocol.responses_response import (
    ResponseSettings,
    function_call_item,
    message_item,
    output_text_part,
    response_usage,
)
from chatd.service.responses.stored_responses import StoredResponses
from chatd.store.db import Database, sqlite_url
from chatd.store.responses import MissingResponse, ResponseStore
from chatd.store.tables import metadata_obj, response_items

from .harness import own_pg_database, postgres_reachable

OUR_TABLES = {"stored_responses", "stored_response_items"}


@dataclass
class Backend:
    name: str
    db: Database
    store: ResponseStore
    api: StoredResponses


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        db = Database(sqlite_url(tmp_path_factory.mktemp("responses")))
        await db.upgrade()
        yield Backend("sqlite", db, ResponseStore(db), StoredResponses(ResponseStore(db)))
        await db.close()
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    async with own_pg_database("chatd_resp_") as url:
        db = Database(url)
        try:
            await db.upgrade()
            yield Backend("postgresql", db, ResponseStore(db), StoredResponses(ResponseStore(db)))
        finally:
            await db.close()


def owner() -> str:
    """A fresh owner per test: nothing any other test stored is visible to it."""
    return "key_" + secrets.token_hex(8)


# --------------------------------------------------------------------------------------------
# Realistic items, as POST /v1/responses will store them
# --------------------------------------------------------------------------------------------


def user_message(text_: str) -> dict[str, Any]:
    return {
        "id": message_item_id(),
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": text_}],
    }


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    return {
        "id": "fco_" + secrets.token_hex(24),
        "type": "function_call_output",
        "call_id": call_id,
        "output": output,
        "status": "completed",
    }


def assistant_message(text_: str) -> dict[str, Any]:
    """An output message as service/responses builds it."""
    return message_item(message_item_id(), "completed", [output_text_part(text_, [])])


def function_call(name: str, arguments: str) -> dict[str, Any]:
    return function_call_item(function_call_item_id(), call_id(), name, arguments, "completed")


def response_body(output: list[dict[str, Any]], previous: str | None = None) -> dict[str, Any]:
    settings = ResponseSettings(model="smollm2-135m-instruct", previous_response_id=previous)
    return settings.response("completed", output, response_usage(12, 5))


async def save(
    b: Backend,
    who: str,
    inputs: list[dict[str, Any]],
    output: list[dict[str, Any]],
    previous: str | None = None,
) -> dict[str, Any]:
    body = response_body(output, previous)
    await b.store.save(who, body, inputs, previous)
    return body


async def chain(b: Backend, who: str, length: int) -> list[tuple[dict[str, Any], list[Any]]]:
    """``length`` responses, each continuing the previous: (body, its input items)."""
    made: list[tuple[dict[str, Any], list[Any]]] = []
    previous = None
    for n in range(length):
        inputs = [user_message(f"turn {n}")]
        body = await save(b, who, inputs, [assistant_message(f"answer {n}")], previous)
        made.append((body, inputs))
        previous = body["id"]
    return made


def conversation(made: list[tuple[dict[str, Any], list[Any]]]) -> list[dict[str, Any]]:
    return [item for body, inputs in made for item in (*inputs, *body["output"])]


async def item_rows(b: Backend, rid: str) -> int:
    query = select(func.count()).where(response_items.c.response_id == rid)
    async with b.db.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


async def test_migration_matches_tables(backend: Backend) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata_obj)

    async with backend.db.engine.connect() as conn:
        found = await conn.run_sync(diff)
    ours = [d for d in found if any(t in repr(d) for t in OUR_TABLES)]
    assert ours == []


# --------------------------------------------------------------------------------------------
# Save, get, delete, owners
# --------------------------------------------------------------------------------------------


async def test_save_get_delete(backend: Backend) -> None:
    who = owner()
    body = await save(backend, who, [user_message("hi")], [assistant_message("hello")])
    rid = body["id"]
    assert await backend.store.get(who, rid) == body
    assert await backend.api.get(who, rid) == body
    assert_valid("Response", body)
    assert await backend.api.get(who, rid, QueryParams("include[]=message.output_text.logprobs"))
    assert await backend.api.delete(who, rid) == {
        "id": rid,
        "object": "response",
        "deleted": True,
    }
    assert await backend.store.get(who, rid) is None
    for call in (backend.api.get, backend.api.delete, backend.api.input_items):
        with pytest.raises(NotFound) as err:
            await call(who, rid)
        assert err.value.status == 404
        assert err.value.body()["error"] == {
            "message": f"Response with id '{rid}' not found.",
            "type": "invalid_request_error",
            "param": "response_id",
            "code": None,
        }


async def test_delete_cascades_to_items(backend: Backend) -> None:
    who = owner()
    inputs = [user_message("a"), user_message("b")]
    body = await save(backend, who, inputs, [assistant_message("c")])
    assert await item_rows(backend, body["id"]) == 3
    assert await backend.store.delete(who, body["id"]) is True
    assert await item_rows(backend, body["id"]) == 0
    assert await backend.store.delete(who, body["id"]) is False


async def test_another_owner_sees_nothing(backend: Backend) -> None:
    who, other = owner(), owner()
    inputs = [user_message("secret")]
    body = await save(backend, who, inputs, [assistant_message("ok")])
    rid = body["id"]
    assert await backend.store.get(other, rid) is None
    assert await backend.store.input_items(other, rid, after=None, limit=20, order="asc") is None
    assert await backend.store.items_by_id(other, [inputs[0]["id"]]) == {}
    assert await backend.store.delete(other, rid) is False
    for call in (backend.api.get, backend.api.delete, backend.api.input_items):
        with pytest.raises(NotFound):
            await call(other, rid)
    with pytest.raises(MissingResponse) as err:
        await backend.store.history(other, rid)
    assert (err.value.response_id, err.value.chained_from) == (rid, None)
    # still there for its owner
    assert await backend.store.get(who, rid) == body
    assert await item_rows(backend, rid) == 2


async def test_save_is_one_transaction(backend: Backend) -> None:
    """An item that cannot be written (a null id) takes the response down with it."""
    who = owner()
    body = response_body([assistant_message("never")])
    with pytest.raises(Exception):  # noqa: B017 (the driver's IntegrityError)
        await backend.store.save(who, body, [{**user_message("x"), "id": None}], None)
    assert await backend.store.get(who, body["id"]) is None
    assert await item_rows(backend, body["id"]) == 0


# --------------------------------------------------------------------------------------------
# Input items
# --------------------------------------------------------------------------------------------


def mixed_inputs() -> list[dict[str, Any]]:
    call = function_call("get_weather", '{"city": "Paris"}')
    return [
        user_message("What is the weather in Paris?"),
        call,
        function_call_output(call["call_id"], '{"temperature": 21}'),
        assistant_message("Sunny, 21 degrees."),
        user_message("And in Rome?"),
    ]


async def test_input_items_pages(backend: Backend) -> None:
    who = owner()
    inputs = mixed_inputs()
    body = await save(backend, who, inputs, [assistant_message("Sunny, 21.")])
    rid, ids = body["id"], [i["id"] for i in inputs]

    async def page(**params: str) -> dict[str, Any]:
        got = await backend.api.input_items(who, rid, QueryParams(params))
        assert_valid("ResponseItemList", got)
        return got

    newest_first = await page()
    assert [i["id"] for i in newest_first["data"]] == ids[::-1]
    assert newest_first["data"] == inputs[::-1]
    assert (newest_first["first_id"], newest_first["last_id"]) == (ids[-1], ids[0])
    assert newest_first["has_more"] is False

    first = await page(order="asc", limit="2")
    assert [i["id"] for i in first["data"]] == ids[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[0], ids[1], True)
    second = await page(order="asc", limit="2", after=first["last_id"])
    assert [i["id"] for i in second["data"]] == ids[2:4] and second["has_more"] is True
    third = await page(order="asc", limit="2", after=second["last_id"])
    assert [i["id"] for i in third["data"]] == ids[4:] and third["has_more"] is False
    exact = await page(order="asc", limit="5")
    assert len(exact["data"]) == 5 and exact["has_more"] is False

    back = await page(limit="3", after=ids[3])
    assert [i["id"] for i in back["data"]] == ids[2::-1] and back["has_more"] is False
    back = await page(order="desc", limit="2", after=ids[4])
    assert [i["id"] for i in back["data"]] == [ids[3], ids[2]] and back["has_more"] is True

    for empty in (
        await page(order="asc", after=ids[-1]),
        await page(after=ids[0]),
        await page(after="msg_not_an_item_of_this_response"),
        await page(after=body["output"][0]["id"]),  # an output item is not an input item
    ):
        assert empty == {
            "object": "list",
            "data": [],
            "first_id": "",
            "last_id": "",
            "has_more": False,
        }


async def test_input_items_of_a_response_without_input(backend: Backend) -> None:
    who = owner()
    body = await save(backend, who, [], [assistant_message("unprompted")])
    got = await backend.api.input_items(who, body["id"])
    assert_valid("ResponseItemList", got)
    assert got == {"object": "list", "data": [], "first_id": "", "last_id": "", "has_more": False}


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [
        ("limit=0", "limit", "integer_below_min_value"),
        ("limit=101", "limit", "integer_above_max_value"),
        ("limit=ten", "limit", "invalid_type"),
        ("order=newest", "order", "invalid_value"),
        ("include[]=bogus", "include[0]", "invalid_value"),
        ("include=reasoning.encrypted_content&include=bogus", "include[1]", "invalid_value"),
        ("before=msg_1", "before", None),
        ("stream=true", "stream", None),
    ],
)
async def test_bad_input_items_query(backend: Backend, query: str, param: str, code: str) -> None:
    who = owner()
    body = await save(backend, who, [user_message("hi")], [])
    for rid in (body["id"], "resp_missing"):  # the query is checked before the lookup
        with pytest.raises(InvalidRequest) as err:
            await backend.api.input_items(who, rid, QueryParams(query))
        assert err.value.status == 400
        assert (err.value.param, err.value.code) == (param, code)


async def test_include_values_are_accepted(backend: Backend) -> None:
    who = owner()
    body = await save(backend, who, [user_message("hi")], [])
    query = QueryParams(
        "include[]=message.output_text.logprobs&include[]=reasoning.encrypted_content"
        "&include=message.input_image.image_url&limit=1&order=asc"
    )
    got = await backend.api.input_items(who, body["id"], query)
    assert len(got["data"]) == 1


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("stream=true", "stream"),
        ("stream=yes", "stream"),
        ("starting_after=x", "starting_after"),
        ("include_obfuscation=1", "include_obfuscation"),
        ("include[]=bogus", "include[0]"),
        ("limit=3", "limit"),
    ],
)
async def test_bad_retrieve_query(backend: Backend, query: str, param: str) -> None:
    who = owner()
    body = await save(backend, who, [user_message("hi")], [])
    with pytest.raises(InvalidRequest) as err:
        await backend.api.get(who, body["id"], QueryParams(query))
    assert err.value.status == 400 and err.value.param == param


async def test_retrieve_query_accepted(backend: Backend) -> None:
    who = owner()
    body = await save(backend, who, [user_message("hi")], [])
    query = QueryParams("stream=false&starting_after=3&include_obfuscation=true")
    assert await backend.api.get(who, body["id"], query) == body


# --------------------------------------------------------------------------------------------
# History (previous_response_id)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 3, 60])
async def test_history_of_a_chain(backend: Backend, length: int) -> None:
    who = owner()
    made = await chain(backend, who, length)
    assert await backend.store.history(who, made[-1][0]["id"]) == conversation(made)
    # any link continues the conversation up to it
    middle = length // 2
    assert await backend.store.history(who, made[middle][0]["id"]) == conversation(
        made[: middle + 1]
    )


async def test_history_keeps_each_response_in_order(backend: Backend) -> None:
    """Input items as given then output items as produced, however many of each."""
    who = owner()
    inputs = mixed_inputs()
    outputs = [function_call("lookup", "{}"), assistant_message("one"), assistant_message("two")]
    first = await save(backend, who, inputs, outputs)
    follow = [function_call_output(outputs[0]["call_id"], "found")]
    second = await save(backend, who, follow, [assistant_message("done")], first["id"])
    assert await backend.store.history(who, second["id"]) == [
        *inputs,
        *outputs,
        *follow,
        *second["output"],
    ]


async def test_history_through_a_deleted_link(backend: Backend) -> None:
    who = owner()
    made = await chain(backend, who, 3)
    first, middle, last = (body["id"] for body, _ in made)
    assert await backend.store.delete(who, middle)
    with pytest.raises(MissingResponse) as err:
        await backend.store.history(who, last)
    assert (err.value.response_id, err.value.chained_from) == (middle, last)
    assert middle in str(err.value) and last in str(err.value)
    with pytest.raises(MissingResponse) as err:
        await backend.store.history(who, middle)
    assert (err.value.response_id, err.value.chained_from) == (middle, None)
    assert await backend.store.history(who, first) == conversation(made[:1])


async def test_history_of_unknown_and_foreign_links(backend: Backend) -> None:
    who, other = owner(), owner()
    with pytest.raises(MissingResponse) as err:
        await backend.store.history(who, "resp_never_stored")
    assert (err.value.response_id, err.value.chained_from) == ("resp_never_stored", None)

    (theirs, _), *_ = await chain(backend, other, 1)
    # a response naming another owner's response as its previous one (the caller checks
    # this before storing; the store must still not follow the link)
    mine = await save(backend, who, [user_message("hi")], [], previous=theirs["id"])
    with pytest.raises(MissingResponse) as err:
        await backend.store.history(who, mine["id"])
    assert (err.value.response_id, err.value.chained_from) == (theirs["id"], mine["id"])
    with pytest.raises(MissingResponse) as err:
        await backend.store.history(who, theirs["id"])
    assert (err.value.response_id, err.value.chained_from) == (theirs["id"], None)


async def test_history_of_a_cycle_ends(backend: Backend) -> None:
    """chatd never writes a cycle (a response's own id is new), but the walk must end on
    one rather than loop: each response once, oldest first as far as there is an order."""
    who = owner()
    a, b = response_body([assistant_message("a")]), response_body([assistant_message("b")])
    await backend.store.save(who, a, [], b["id"])
    await backend.store.save(who, b, [], a["id"])
    assert await backend.store.history(who, a["id"]) == [*b["output"], *a["output"]]
    c = response_body([assistant_message("c")])
    await backend.store.save(who, c, [], c["id"])
    assert await backend.store.history(who, c["id"]) == c["output"]


# --------------------------------------------------------------------------------------------
# Items by id (item_reference)
# --------------------------------------------------------------------------------------------


async def test_items_by_id(backend: Backend) -> None:
    who, other = owner(), owner()
    inputs = mixed_inputs()
    first = await save(backend, who, inputs, [assistant_message("first")])
    # the client sends the first answer back as input, same id, altered: the original wins
    resent = {**first["output"][0], "status": "incomplete"}
    second = await save(
        backend, who, [resent, user_message("more")], [assistant_message("x")], first["id"]
    )
    (foreign, foreign_inputs), *_ = await chain(backend, other, 1)
    wanted = [
        inputs[1]["id"],
        inputs[2]["id"],
        first["output"][0]["id"],
        second["output"][0]["id"],
        foreign_inputs[0]["id"],
        foreign["output"][0]["id"],
        "msg_nowhere",
        inputs[1]["id"],
    ]
    assert await backend.store.items_by_id(who, wanted) == {
        inputs[1]["id"]: inputs[1],
        inputs[2]["id"]: inputs[2],
        first["output"][0]["id"]: first["output"][0],
        second["output"][0]["id"]: second["output"][0],
    }
    assert await backend.store.items_by_id(who, []) == {}
    # deleted with their response
    assert await backend.store.delete(who, first["id"])
    assert await backend.store.items_by_id(who, [inputs[1]["id"], resent["id"]]) == {
        resent["id"]: resent
    }

"""Per-key rate limits, key-wide and per model: 429 with OpenAI's body and Retry-After;
shared by replicas through Redis. In-process over the real app; keys are made with
`chatd keys create`, run in-process too."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from openapi_schemas import assert_valid
from waiting import until

from .harness import (
    MODEL,
    PG_URL,
    REDIS_URL,
    Chatd,
    postgres_reachable,
    redis_reachable,
    run_cli,
    running_chatd,
)

ALIAS = "gpt-4o-mini"  # a second public id for the model
# Limits count per clock minute: every test here runs on a clock that stands still.
pytestmark = pytest.mark.usefixtures("still_minute")


def make_key(data_dir: Path, *limits: str) -> str:
    code, out, err = run_cli("keys", "create", "--name", "limited", *limits,
                             "--data-dir", str(data_dir))  # fmt: skip
    assert code == 0, err
    return re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]


async def limited(srv: Chatd, key: str, model: str = MODEL) -> httpx.Response:
    """The first refusal once the answered request's tokens are counted (they are added
    when a request ends, a moment after its answer: waited for, never timed)."""
    refused: list[httpx.Response] = []

    async def refused_now() -> bool:
        r = await ask(srv, key, model)
        if r.status_code == 200:
            return False
        refused.append(r)
        return True

    await until(refused_now, "a request refused for its tokens")
    return refused[0]


async def ask(srv: Chatd, key: str, model: str = MODEL) -> httpx.Response:
    return await srv.http(key).post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
    )


def assert_limited(r: httpx.Response, kind: str) -> None:
    assert r.status_code == 429, r.text
    assert_valid("ErrorResponse", r.json())
    error = r.json()["error"]
    assert (error["type"], error["code"]) == (kind, "rate_limit_exceeded")
    assert 1 <= int(r.headers["retry-after"]) <= 60


@asynccontextmanager
async def server(tmp_path: Path, **kw: object) -> AsyncIterator[Chatd]:
    """An app whose only keys are the database's (no operator key)."""
    async with running_chatd(tmp_path, api_keys=[], **kw) as srv:  # type: ignore[arg-type]
        yield srv


def aliased(tmp_path: Path) -> AsyncIterator[Chatd]:
    return server(tmp_path, config=f'[[models]]\nid = "{MODEL}"\naliases = ["{ALIAS}"]\n')


async def test_requests_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--rpm", "2")
    async with server(tmp_path) as srv:
        assert (await ask(srv, key)).status_code == 200
        assert (await ask(srv, key)).status_code == 200
        assert_limited(await ask(srv, key), "requests")


async def test_tokens_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--tpm", "10")
    async with server(tmp_path) as srv:
        assert (await ask(srv, key)).status_code == 200  # ~20 tokens: over the limit afterwards
        r = await limited(srv, key)
        assert_limited(r, "tokens")


async def test_replicas_share_one_limit_through_redis(tmp_path: Path) -> None:
    if not redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    key = make_key(tmp_path, "--rpm", "3")
    async with (
        server(tmp_path, redis_url=REDIS_URL) as a,
        server(tmp_path, redis_url=REDIS_URL) as b,
    ):
        assert [(await ask(s, key)).status_code for s in (a, b, a)] == [200, 200, 200]
        assert_limited(await ask(b, key), "requests")
        assert_limited(await ask(a, key), "requests")


async def test_per_model_requests_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--rpm", "3", "--model-limit", f"{MODEL}:rpm=1")
    async with aliased(tmp_path) as srv:
        assert (await ask(srv, key)).status_code == 200
        r = await ask(srv, key)
        assert_limited(r, "requests")
        assert r.json()["error"]["message"].startswith(
            f"Rate limit reached for {MODEL} on requests per min (RPM): Limit 1, Used 1."
        )
        # The alias names the same model: its window is the model's, already full (the
        # 429 names the id sent); the refused requests counted in no window.
        r = await ask(srv, key, ALIAS)
        assert_limited(r, "requests")
        assert r.json()["error"]["message"].startswith(
            f"Rate limit reached for {ALIAS} on requests per min (RPM): Limit 1, Used 1."
        )


async def test_per_model_tokens_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--model-limit", f"{ALIAS}:tpm=10")
    async with aliased(tmp_path) as srv:
        assert (await ask(srv, key, ALIAS)).status_code == 200  # ~20 tokens: over afterwards
        r = await limited(srv, key, ALIAS)
        assert_limited(r, "tokens")
        assert f"for {ALIAS} on tokens per min (TPM): Limit 10" in r.json()["error"]["message"]
        # a limit given under an alias is the model's, whatever id names it
        r = await ask(srv, key)
        assert_limited(r, "tokens")
        assert f"for {MODEL} on tokens per min (TPM): Limit 10" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "value",
    [
        MODEL,  # no limits
        f"{MODEL}:",
        ":rpm=1",
        f"{MODEL}:rpm",
        f"{MODEL}:rpm=0",
        f"{MODEL}:rpm=-1",
        f"{MODEL}:rpm=x",
        f"{MODEL}:rpm=1,",
        f"{MODEL}:rpm=1,rpm=2",
        f"{MODEL}:rps=1",
    ],
)
def test_model_limit_flag_syntax(tmp_path: Path, value: str) -> None:
    code, out, err = create_key(tmp_path, "--model-limit", value)
    assert code == 2, out
    assert "argument --model-limit: expected MODEL:rpm=N,tpm=N" in err


def test_model_limit_flag_twice_for_one_model(tmp_path: Path) -> None:
    flags = ("--model-limit", f"{MODEL}:rpm=1", "--model-limit", f"{MODEL}:tpm=9")
    code, out, err = create_key(tmp_path, *flags)
    assert code == 2, out
    assert f"argument --model-limit: {MODEL} is given more than once" in err


def create_key(data_dir: Path, *flags: str) -> tuple[int, str, str]:
    return run_cli("keys", "create", "--name", "k", *flags, "--data-dir", str(data_dir))


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_model_limits_are_stored_and_listed(tmp_path: Path, database: str) -> None:
    if database == "postgresql":
        if not postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
        db_args = ["--database-url", PG_URL]
    else:
        db_args = ["--data-dir", str(tmp_path)]
    limits = ["--model-limit", "ns/model:v1:tpm=900,rpm=3", "--model-limit", f"{ALIAS}:rpm=2"]

    def cli(*args: str) -> str:
        code, out, err = run_cli("keys", *args, *db_args)
        assert code == 0, err
        return out

    key_id = re.search(r"id:\s+(\S+)", cli("create", "--name", "k", "--rpm", "60", *limits))
    assert key_id is not None
    line = next(ln for ln in cli("list").splitlines() if ln.startswith(key_id.group(1)))
    assert f"rpm=60 {ALIAS}:rpm=2 ns/model:v1:rpm=3,tpm=900 " in line


async def test_redis_down_never_fails_a_request(tmp_path: Path) -> None:
    """With Redis unreachable the limits still hold, counted by this replica alone, and
    the outage is logged once: a rate limiter must not turn into an outage of its own."""
    key = make_key(tmp_path, "--rpm", "2")
    async with server(tmp_path, redis_url="redis://127.0.0.1:1/0") as srv:
        assert (await ask(srv, key)).status_code == 200
        assert (await ask(srv, key)).status_code == 200
        assert_limited(await ask(srv, key), "requests")
        assert srv.log.text().count("Redis unavailable for rate limits") == 1

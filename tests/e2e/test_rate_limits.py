"""Per-key rate limits, key-wide and per model: 429 with OpenAI's body and Retry-After;
shared by replicas through Redis."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, Server
from openapi_schemas import assert_valid
from test_stored import PG_URL, _postgres_reachable

CHATD = str(Path(sys.executable).parent / "chatd")


def make_key(data_dir: Path, *limits: str) -> str:
    out = subprocess.run(
        [CHATD, "keys", "create", "--name", "limited", *limits, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return re.search(r"key:\s+(\S+)", out).group(1)  # type: ignore[union-attr]


def fresh_window() -> None:
    """Limits count per clock minute: do not start a test in its last seconds."""
    left = 60 - time.time() % 60
    if left < 15:
        time.sleep(left + 0.5)


def ask(srv: Server, key: str, model: str = MODEL) -> httpx.Response:
    return httpx.post(
        srv.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        timeout=60,
    )


def assert_limited(r: httpx.Response, kind: str) -> None:
    assert r.status_code == 429, r.text
    assert_valid("ErrorResponse", r.json())
    error = r.json()["error"]
    assert (error["type"], error["code"]) == (kind, "rate_limit_exceeded")
    assert 1 <= int(r.headers["retry-after"]) <= 60


ALIAS = "gpt-4o-mini"  # a second public id for the embedded model


def aliased_server(tmp_path: Path) -> Server:
    config = tmp_path / "chatd.toml"
    config.write_text(f'[[models]]\nid = "{MODEL}"\naliases = ["{ALIAS}"]\n')
    return Server("--data-dir", str(tmp_path), "--config", str(config))


def test_requests_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--rpm", "2")
    srv = Server("--data-dir", str(tmp_path))
    try:
        fresh_window()
        assert ask(srv, key).status_code == 200
        assert ask(srv, key).status_code == 200
        assert_limited(ask(srv, key), "requests")
    finally:
        srv.stop()


def test_tokens_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--tpm", "10")
    srv = Server("--data-dir", str(tmp_path))
    try:
        fresh_window()
        assert ask(srv, key).status_code == 200  # ~33 tokens: over the limit afterwards
        deadline = time.monotonic() + 5
        r = ask(srv, key)
        while r.status_code == 200 and time.monotonic() < deadline:  # tokens land async
            time.sleep(0.2)
            r = ask(srv, key)
        assert_limited(r, "tokens")
    finally:
        srv.stop()


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def test_replicas_share_one_limit_through_redis(tmp_path: Path) -> None:
    if not _redis_reachable():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    key = make_key(tmp_path, "--rpm", "3")
    shared = ("--data-dir", str(tmp_path), "--redis-url", "redis://127.0.0.1:6379/0")
    a, b = Server(*shared), Server(*shared)
    try:
        fresh_window()
        assert [ask(s, key).status_code for s in (a, b, a)] == [200, 200, 200]
        assert_limited(ask(b, key), "requests")
        assert_limited(ask(a, key), "requests")
    finally:
        a.stop()
        b.stop()


def test_per_model_requests_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--rpm", "3", "--model-limit", f"{MODEL}:rpm=1")
    srv = aliased_server(tmp_path)
    try:
        fresh_window()
        assert ask(srv, key).status_code == 200
        r = ask(srv, key)
        assert_limited(r, "requests")
        assert r.json()["error"]["message"].startswith(
            f"Rate limit reached for {MODEL} on requests per min (RPM): Limit 1, Used 1."
        )
        # The alias is another public id: only the key-wide limit (3) applies to it, and
        # the refused request above did not count there.
        assert [ask(srv, key, ALIAS).status_code for _ in range(2)] == [200, 200]
        r = ask(srv, key, ALIAS)
        assert_limited(r, "requests")
        assert r.json()["error"]["message"].startswith(
            "Rate limit reached on requests per min (RPM): Limit 3, Used 3."
        )
    finally:
        srv.stop()


def test_per_model_tokens_per_minute(tmp_path: Path) -> None:
    key = make_key(tmp_path, "--model-limit", f"{ALIAS}:tpm=10")
    srv = aliased_server(tmp_path)
    try:
        fresh_window()
        assert ask(srv, key, ALIAS).status_code == 200  # ~33 tokens: over afterwards
        deadline = time.monotonic() + 5
        r = ask(srv, key, ALIAS)
        while r.status_code == 200 and time.monotonic() < deadline:  # tokens land async
            time.sleep(0.2)
            r = ask(srv, key, ALIAS)
        assert_limited(r, "tokens")
        assert f"for {ALIAS} on tokens per min (TPM): Limit 10" in r.json()["error"]["message"]
        assert ask(srv, key).status_code == 200  # the model's own id has no limit
    finally:
        srv.stop()


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
    r = create_key(tmp_path, "--model-limit", value)
    assert r.returncode == 2, r.stdout
    assert "argument --model-limit: expected MODEL:rpm=N,tpm=N" in r.stderr


def test_model_limit_flag_twice_for_one_model(tmp_path: Path) -> None:
    r = create_key(tmp_path, "--model-limit", f"{MODEL}:rpm=1", "--model-limit", f"{MODEL}:tpm=9")
    assert r.returncode == 2, r.stdout
    assert f"argument --model-limit: {MODEL} is given more than once" in r.stderr


def create_key(data_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHATD, "keys", "create", "--name", "k", *flags, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_model_limits_are_stored_and_listed(tmp_path: Path, database: str) -> None:
    if database == "postgresql":
        if not _postgres_reachable():
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
        db_args = ["--database-url", PG_URL]
    else:
        db_args = ["--data-dir", str(tmp_path)]
    limits = ["--model-limit", "ns/model:v1:tpm=900,rpm=3", "--model-limit", f"{ALIAS}:rpm=2"]

    def cli(*args: str) -> str:
        return subprocess.run(
            [CHATD, "keys", *args, *db_args], capture_output=True, text=True, timeout=60, check=True
        ).stdout

    key_id = re.search(r"id:\s+(\S+)", cli("create", "--name", "k", "--rpm", "60", *limits))
    assert key_id is not None
    line = next(ln for ln in cli("list").splitlines() if ln.startswith(key_id.group(1)))
    assert f"rpm=60 {ALIAS}:rpm=2 ns/model:v1:rpm=3,tpm=900 " in line

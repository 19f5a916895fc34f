"""KeyChecker's comparisons: a presented key is hashed first and compared with the
static keys' digests by ``hmac.compare_digest`` (constant time), never with ``==`` on
the keys (``KeyStore.find`` looks a database key up by its digest); a wrong key is
answered redacted."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from starlette.requests import Request

from chatd.api import auth
from chatd.api.auth import KeyChecker
from chatd.protocol.errors import AuthenticationError
from chatd.store.keys import KeyStore

KEYS = ["sk-operator-one-0123456789", "sk-operator-two-9876543210"]
SECRET = bytes(range(32))


def request(key: str) -> Request:
    return Request({"type": "http", "headers": [(b"authorization", f"Bearer {key}".encode())]})


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []
    compare = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    return calls


async def test_static_keys_are_compared_as_digests_in_constant_time(
    compared: list[tuple[Any, Any]],
) -> None:
    checker = KeyChecker(KEYS, secret=SECRET)
    caller = await checker(request(KEYS[1]))
    # the owner id: an HMAC of the digest keyed by the database's secret, not the digest
    mac = hmac.new(SECRET, digest(KEYS[1]).encode(), hashlib.sha256).hexdigest()
    assert caller.operator and caller.owner == "key_" + mac[:24]
    assert digest(KEYS[1])[:24] not in caller.owner
    assert compared and compared[-1] == (digest(KEYS[1]), digest(KEYS[1]))
    for a, b in compared:  # digests of equal length, never the keys themselves
        assert len(a) == len(b) == 64 and KEYS[1] not in (a, b)
    assert (await checker(request(KEYS[0]))).owner != caller.owner  # each key its own


async def test_a_wrong_key_is_compared_with_every_static_key(
    compared: list[tuple[Any, Any]],
) -> None:
    with pytest.raises(AuthenticationError):
        await KeyChecker(KEYS, secret=SECRET)(
            request("sk-operator-one-0123456780")
        )  # one character off
    assert [b for _, b in compared] == [digest(k) for k in KEYS]
    assert all(a == digest("sk-operator-one-0123456780") for a, _ in compared)


class NoKeys(KeyStore):
    """A database with keys, none of them the one presented."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def find(self, key: str) -> None:
        self.asked.append(key)
        return None

    async def any(self) -> bool:
        return True


async def test_a_wrong_key_is_answered_redacted(compared: list[tuple[Any, Any]]) -> None:
    store = NoKeys()
    with pytest.raises(AuthenticationError) as info:
        await KeyChecker(KEYS, store)(request("sk-chatd-secret-key-abcdef"))
    assert store.asked == ["sk-chatd-secret-key-abcdef"]  # KeyStore.find hashes it
    message = info.value.body()["error"]["message"]
    assert "sk-chatd-secret-key-abcdef" not in message and "secret" not in message
    assert message == "Incorrect API key provided: sk-********cdef."

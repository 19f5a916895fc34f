"""Shared channel health without Redis: what a channel does with what other replicas
say (``Channel.shared``), what it tells its board, and ``SharedChannelHealth`` over an
in-memory stand-in for Redis that can go down (publishing kept until it is back, one
log line per outage). The real Redis is in tests/service/test_shared_channel_health.py."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chatd.service.channel_health import KEY_PREFIX, SharedChannelHealth
from chatd.upstream import channels
from chatd.upstream.channels import Channel, route


def channel(name: str = "gpu", failures_before_cooldown: int = 1) -> Channel:
    return Channel(
        name,
        "http://gpu:8000/v1",
        {"m": "m"},
        failures_before_cooldown=failures_before_cooldown,
        cooldown_seconds=60,
    )


class Board:
    def __init__(self) -> None:
        self.news: list[tuple[str, str]] = []

    def cooled(self, channel: Channel) -> None:
        self.news.append(("cooled", channel.name))

    def recovered(self, channel: Channel) -> None:
        self.news.append(("recovered", channel.name))


def test_a_cooldown_said_by_another_replica_is_skipped_without_failures_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu, spare = channel(), channel("spare")
    now = time.monotonic()
    # the channel's clock stands still: the seconds left read exactly, however slow the run
    monkeypatch.setattr(channels, "time", SimpleNamespace(monotonic=lambda: now))
    gpu.shared(30.0, now)
    assert not gpu.healthy(now) and gpu.healthy(now + 31)
    assert route([gpu, spare]) == [spare]
    state = gpu.state()
    assert state["failures"] == 0 and state["cooled_elsewhere"] is True
    assert state["cooling_seconds_left"] == 30


def test_a_shared_cooldown_cleared_early_ends_this_replicas_own() -> None:
    gpu = channel(failures_before_cooldown=2)
    gpu.failed()
    gpu.failed()  # cooling here too
    now = time.monotonic()
    gpu.shared(59.0, now)
    assert gpu.state()["cooled_elsewhere"] is False  # its own cooldown is what counts here
    gpu.shared(None, now + 1)  # gone 58 s early: a replica saw the channel answer
    assert gpu.healthy() and gpu.failures == 0


def test_a_shared_cooldown_that_expired_leaves_this_replicas_own() -> None:
    gpu = channel()
    gpu.failed()
    now = time.monotonic()
    gpu.shared(0.1, now)
    gpu.shared(None, now + 0.2)  # expired, as the TTL said
    assert not gpu.healthy() and gpu.failures == 1


def test_a_channel_tells_its_board_of_cooldowns_and_recoveries_only() -> None:
    gpu, board = channel(failures_before_cooldown=2), Board()
    gpu.board = board
    gpu.succeeded()  # healthy already: nothing to tell (no Redis write per request)
    gpu.failed()  # one failure: not cooling yet
    assert board.news == []
    gpu.failed()
    gpu.failed()  # extends
    assert board.news == [("cooled", "gpu"), ("cooled", "gpu")]
    gpu.succeeded()
    gpu.succeeded()
    assert board.news[2:] == [("recovered", "gpu")]
    other = channel("other")
    other.board = board
    other.shared(30.0)
    other.succeeded()  # cooling elsewhere, answered here: clears it for all
    assert board.news[3:] == [("recovered", "other")]


class FakeRedis:
    """The few commands SharedChannelHealth uses, in memory; ``down`` makes every
    pipeline fail as an unreachable Redis does."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[bytes, float]] = {}  # key -> (value, expires)
        self.down = False
        self.closed = False

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    async def aclose(self) -> None:
        self.closed = True


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.ops = redis, []  # type: ignore[var-annotated]

    def set(self, key: str, value: str, px: int) -> None:
        self.ops.append(("set", key, value, px))

    def delete(self, key: str) -> None:
        self.ops.append(("delete", key))

    def pttl(self, key: str) -> None:
        self.ops.append(("pttl", key))

    def get(self, key: str) -> None:
        self.ops.append(("get", key))

    async def execute(self) -> list[Any]:
        if self.redis.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6399.")
        out: list[Any] = []
        now, values = time.monotonic(), self.redis.values
        for op, key, *args in self.ops:
            if key in values and values[key][1] <= now:
                del values[key]
            if op == "set":
                values[key] = (args[0].encode(), now + args[1] / 1000)
            elif op == "delete":
                values.pop(key, None)
            elif op == "pttl":
                out.append(int((values[key][1] - now) * 1000) if key in values else -2)
            else:
                out.append(values[key][0] if key in values else None)
        return out


async def test_replicas_share_through_the_board_and_survive_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeRedis()
    a_gpu, b_gpu = channel(), channel()
    a, b = SharedChannelHealth(store, [a_gpu]), SharedChannelHealth(store, [b_gpu])
    store.down = True
    with caplog.at_level(logging.WARNING, "chatd.service"):
        a_gpu.failed()
        await a.sync()
        await a.sync()
        assert not a.available
        assert not a_gpu.healthy()  # its own view still holds
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1 and "Redis unavailable (ConnectionError" in warnings[0]
        store.down = False
        await a.sync()  # the cooldown learnt during the outage is published now
        assert a.available and "Redis is back" in caplog.records[-1].getMessage()
    assert KEY_PREFIX + "gpu@http://gpu:8000/v1" in store.values
    await b.sync()
    assert not b_gpu.healthy() and b_gpu.failures == 0 and b_gpu.state()["cooled_elsewhere"]
    b_gpu.succeeded()  # B's probe answered: A routes to it again
    await b.sync()
    await a.sync()
    assert a_gpu.healthy() and a_gpu.failures == 0 and store.values == {}
    await a.close()
    assert store.closed and a_gpu.board is None


def test_chatd_channels_marks_a_cooldown_another_replica_saw() -> None:
    from chatd.status import format_status

    row = {"healthy": False, "failures": 0, "priority": 0, "weight": 1, "models": ["m"]}
    text = format_status(
        {
            "data": [
                {**row, "name": "gpu", "base_url": "http://gpu/v1", "cooling_seconds_left": 42.0,
                 "cooled_elsewhere": True},
                {**row, "name": "cpu", "base_url": "http://cpu/v1", "cooling_seconds_left": 9.0,
                 "cooled_elsewhere": False},
            ]
        }
    )  # fmt: skip
    lines = text.splitlines()
    assert "cooling 42s (shared)" in next(ln for ln in lines if ln.startswith("gpu "))
    assert "cooling down 9s" in next(ln for ln in lines if ln.startswith("cpu "))

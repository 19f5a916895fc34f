"""RateLimiter with LocalCounters: key-wide and per-model windows both apply, and a
refused request is counted in no window; a model's window by its canonical id."""

from __future__ import annotations

from typing import cast

import pytest

from chatd.api.auth import Caller
from chatd.engine.engine import Engine
from chatd.service.limits import LocalCounters, RateLimited, RateLimiter
from chatd.service.models import LocalModel, ModelRegistry
from chatd.upstream.channels import Channel

MINUTE = 29_000_000


@pytest.fixture
def limiter(monkeypatch: pytest.MonkeyPatch) -> RateLimiter:
    """One fixed window, so no test straddles a minute."""
    monkeypatch.setattr(RateLimiter, "_window", staticmethod(lambda: (MINUTE, 42)))
    return RateLimiter(LocalCounters())


async def count(limiter: RateLimiter, key: str) -> int:
    return await limiter.counters.get(f"chatd:rl:{key}:{MINUTE}:req")


async def refused(limiter: RateLimiter, *args: object) -> RateLimited:
    with pytest.raises(RateLimited) as e:
        await limiter.admit(*args)  # type: ignore[arg-type]
    return e.value


async def test_key_wide_requests_limit_and_its_message(limiter: RateLimiter) -> None:
    for _ in range(2):
        await limiter.admit("key_a", 2, None)
    e = await refused(limiter, "key_a", 2, None)
    assert (e.status, e.type, e.code) == (429, "requests", "rate_limit_exceeded")
    assert e.headers == {"Retry-After": "42"}
    assert e.message == (
        "Rate limit reached on requests per min (RPM): Limit 2, Used 2. Please try again in 42s."
    )
    await refused(limiter, "key_a", 2, None)
    assert await count(limiter, "key_a") == 2  # refusals are not counted
    await limiter.admit("key_b", 2, None)  # another key has its own window


async def test_per_model_requests_limit_names_the_model(limiter: RateLimiter) -> None:
    await limiter.admit("key_a", None, None, "small", 1, None)
    e = await refused(limiter, "key_a", None, None, "small", 1, None)
    assert (e.type, e.code) == ("requests", "rate_limit_exceeded")
    assert e.message == (
        "Rate limit reached for small on requests per min (RPM): Limit 1, Used 1. Please try"
        " again in 42s."
    )
    await limiter.admit("key_a", None, None, "alias", None, None)  # another id: unlimited
    await limiter.admit("key_a", None, None, "other", 1, None)  # its own window
    assert await count(limiter, "key_a:small") == 1


async def test_per_model_refusal_does_not_consume_the_key_wide_window(
    limiter: RateLimiter,
) -> None:
    await limiter.admit("key_a", 3, None, "small", 1, None)
    for _ in range(5):
        e = await refused(limiter, "key_a", 3, None, "small", 1, None)
        assert "for small" in e.message
    assert await count(limiter, "key_a") == 1
    await limiter.admit("key_a", 3, None, "big", None, None)
    await limiter.admit("key_a", 3, None, "big", None, None)
    e = await refused(limiter, "key_a", 3, None, "big", None, None)  # now the key's own limit
    assert "for " not in e.message and "Limit 3, Used 3" in e.message


async def test_key_wide_refusal_takes_back_the_model_count(limiter: RateLimiter) -> None:
    await limiter.admit("key_a", 1, None, "big", None, None)
    await refused(limiter, "key_a", 1, None, "small", 5, None)
    assert await count(limiter, "key_a:small") == 0
    assert await count(limiter, "key_a") == 1


async def test_tokens_go_to_both_windows(limiter: RateLimiter) -> None:
    await limiter.admit("key_a", None, 100, "small", None, 10)
    await limiter.add_tokens("key_a", 12, "small")
    e = await refused(limiter, "key_a", None, 100, "small", None, 10)
    assert (e.type, e.code) == ("tokens", "rate_limit_exceeded")
    assert e.message == (
        "Rate limit reached for small on tokens per min (TPM): Limit 10, Used 12. Please try"
        " again in 42s."
    )
    await limiter.admit("key_a", None, 100, "other", None, 10)  # other model: 0 tokens
    await limiter.add_tokens("key_a", 90, "other")  # key-wide: 102 now
    e = await refused(limiter, "key_a", None, 100, "third", None, 10)
    assert e.type == "tokens" and "for " not in e.message and "Used 102" in e.message


async def test_token_refusal_counts_no_request(limiter: RateLimiter) -> None:
    await limiter.add_tokens("key_a", 50, "small")
    await refused(limiter, "key_a", 5, None, "small", 5, 10)
    assert await count(limiter, "key_a") == 0
    assert await count(limiter, "key_a:small") == 0


async def test_no_limits_count_nothing(limiter: RateLimiter) -> None:
    for _ in range(3):
        await limiter.admit("key_a", None, None, "small", None, None)
    assert await count(limiter, "key_a") == 0
    assert await count(limiter, "key_a:small") == 0


def test_canonical_ids() -> None:
    """The model an id stands for, as rate limits count it: a local model's aliases and a
    routed id it also serves are the model; an id only channels serve, or none, itself."""
    gpu = Channel("gpu", "http://x/v1", {"gpt-4o-mini": "big", "remote": "r"})
    small = LocalModel("small", cast(Engine, None))
    reg = ModelRegistry([small], {"gpt-4o-mini": "small", "tiny": "small"}, [gpu])
    names = ["small", "tiny", "gpt-4o-mini", "remote", "unknown"]
    assert [reg.canonical(m) for m in names] == ["small", "small", "small", "remote", "unknown"]
    caller = Caller("k", model_limits={"tiny": (5, None), "gpt-4o-mini": (2, 900)})
    for model in ("small", "tiny", "gpt-4o-mini"):
        assert caller.limits_for(model, reg.canonical) == (2, 900)  # the strictest of both
    assert caller.limits_for("remote", reg.canonical) == (None, None)
    assert caller.limits_for("small") == (None, None)  # without canonical: ids as given
    assert caller.limits_for("tiny") == (5, None)

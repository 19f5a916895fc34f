"""Routing a public id over channels and the local engine, and the registry's view."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest

from chatd.engine.engine import Engine
from chatd.protocol.errors import ModelNotFound
from chatd.service.models import LocalModel, ModelRegistry, RoutedModel
from chatd.upstream.channels import Channel, route


def channel(name: str, models: list[str], priority: int = 0, weight: float = 1.0) -> Channel:
    return Channel(name, "http://x/v1", {m: m for m in models}, priority=priority, weight=weight)


def local(model_id: str = "small", priority: int = 0) -> LocalModel:
    return LocalModel(model_id, cast(Engine, None), priority=priority)


def test_route_orders_by_priority_and_skips_cooling_channels() -> None:
    a, b, c = channel("a", ["m"], 2), channel("b", ["m"], 0), channel("c", ["m"], 1)
    lm = local(priority=1)
    c.failures_before_cooldown = 1
    c.failed()
    order: list[Any] = route([a, b, c, lm])
    assert order == [b, lm, a]


def test_route_is_weighted_within_a_priority() -> None:
    heavy, light = channel("heavy", ["m"], weight=9), channel("light", ["m"], weight=1)
    rng = random.Random(7)
    firsts = [route([heavy, light], rng)[0].name for _ in range(2000)]
    share = firsts.count("heavy") / len(firsts)
    assert 0.86 < share < 0.94  # 0.9 expected


def test_registry_routes_an_id_served_by_channels_and_the_local_model() -> None:
    small = local(priority=5)
    gpu = channel("gpu", ["gpt-4o-mini", "big"])
    reg = ModelRegistry([small], {"gpt-4o-mini": "small"}, [gpu])
    shared = reg.get("gpt-4o-mini")
    assert isinstance(shared, RoutedModel) and shared.routes == [gpu, small]
    assert reg.get("small") is small
    assert [r.name for r in cast(RoutedModel, reg.get("big")).routes] == ["gpu"]
    ids = [c["id"] for c in reg.cards()]
    assert sorted(ids) == ["big", "gpt-4o-mini", "small"]  # each id listed once
    with pytest.raises(ModelNotFound):
        reg.get("nope")


def test_a_model_with_every_channel_cooling_is_unavailable_with_the_reason() -> None:
    gpu = channel("gpu", ["big"])
    gpu.failures_before_cooldown = 2
    gpu.failed()
    gpu.failed()
    reg = ModelRegistry([local()], {}, [gpu])
    assert "big" not in [c["id"] for c in reg.cards()]
    status = {m["id"]: m for m in reg.status()}
    assert status["big"]["available"] is False
    assert status["big"]["reason"] == "no channel is available: gpu cooling down after 2 failures"
    assert status["small"]["available"] is True and status["small"]["reason"] is None

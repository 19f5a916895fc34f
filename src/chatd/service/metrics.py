"""Prometheus metrics (`GET /metrics`), read at scrape time from state the server keeps
anyway: channel health and counts (upstream/channels.py), engine stats, usage totals
(store/usage.py), model availability and local models' loads (service/model_pool.py).
Nothing is recorded per request here, so the relay path pays nothing for metrics, and
only this module imports prometheus_client.
The registry is per app, not the global one, so several apps (tests) never collide."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from chatd.service.models import ModelRegistry
from chatd.store.usage import UsageBuffer

# Engine stats that only grow: counters, not gauges.
_CUMULATIVE = {"preemptions", "kv_repacks", "prefix_cache_hit_tokens", "prefix_cache_miss_tokens"}


class ChatdCollector(Collector):
    """Builds every chatd_ metric family from the live objects on each scrape."""

    def __init__(self, models: ModelRegistry, usage: UsageBuffer) -> None:
        self.models = models
        self.usage = usage

    def collect(self) -> Iterator[Metric]:
        yield from self._channels()
        yield from self._engines()
        yield from self._loads()
        yield from self._usage()
        available = GaugeMetricFamily(
            "chatd_model_available", "1 if the public model id can be served now", labels=["model"]
        )
        for row in self.models.status():
            available.add_metric([row["id"]], int(row["available"]))
        yield available

    def _channels(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"chatd_channel_{name}", doc, labels=["channel"])

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"chatd_channel_{name}", doc, labels=["channel"])

        healthy = gauge("healthy", "1 if the channel is routed to, 0 while cooling down")
        failures = gauge("consecutive_failures", "Failures since the last success")
        left = gauge("cooldown_remaining_seconds", "Seconds until a cooling channel is probed")
        successes_total = counter("successes", "Upstream calls that succeeded")
        failures_total = counter("failures", "Upstream calls that failed before the first byte")
        cooldowns_total = counter("cooldowns", "Times the channel entered cooldown")
        now = time.monotonic()
        for c in self.models.channels:
            healthy.add_metric([c.name], int(c.healthy(now)))
            failures.add_metric([c.name], c.failures)
            left.add_metric([c.name], c.cooling_left(now))
            successes_total.add_metric([c.name], c.successes_total)
            failures_total.add_metric([c.name], c.failures_total)
            cooldowns_total.add_metric([c.name], c.cooldowns_total)
        yield from (healthy, failures, left, successes_total, failures_total, cooldowns_total)

    def _engines(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for model, stats in sorted(self.models.stats().items()):
            for key, value in stats.items():
                if not isinstance(value, int | float):
                    continue
                name = "chatd_engine_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
                family = families.get(name)
                if family is None:
                    kind = CounterMetricFamily if key in _CUMULATIVE else GaugeMetricFamily
                    family = kind(name, f"Engine stat {key}", labels=["model"])
                    families[name] = family
                family.add_metric([model], float(value))
        yield from families.values()

    def _loads(self) -> Iterator[Metric]:
        """Which local models are loaded, and their loads (on demand or at start)."""
        loaded = GaugeMetricFamily(
            "chatd_model_loaded", "1 if the local model's engine is loaded", labels=["model"]
        )
        loads = CounterMetricFamily(
            "chatd_model_loads", "Loads of the local model (start-up included)", labels=["model"]
        )
        seconds = SummaryMetricFamily(
            "chatd_model_load_seconds", "Time the local model's loads took", labels=["model"]
        )
        for m in self.models.local():
            slot = m.slot
            loaded.add_metric([m.id], int(slot.engine is not None))
            loads.add_metric([m.id], slot.loads)
            seconds.add_metric([m.id], count_value=slot.loads, sum_value=slot.load_seconds)
        yield from (loaded, loads, seconds)

    def _usage(self) -> Iterator[Metric]:
        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"chatd_{name}", doc, labels=["model"])

        requests = counter("requests", "Finished requests since the process started")
        prompt = counter("prompt_tokens", "Prompt tokens since the process started")
        completion = counter("completion_tokens", "Completion tokens since the process started")
        for model, (n, p, c) in sorted(self.usage.totals.items()):
            requests.add_metric([model], n)
            prompt.add_metric([model], p)
            completion.add_metric([model], c)
        yield from (requests, prompt, completion)


def metrics_registry(models: ModelRegistry, usage: UsageBuffer) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ChatdCollector(models, usage))
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and content type of one scrape (text exposition format)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST

"""Channel's lifetime counters (read by GET /metrics): a cooldown is counted once when
it is entered, not again for failures that only extend it."""

from __future__ import annotations

from chatd.upstream.channels import Channel


def test_counters_count_successes_failures_and_cooldowns() -> None:
    c = Channel("c", "http://x/v1", {"m": "m"}, failures_before_cooldown=2)
    c.succeeded()
    c.failed()
    assert c.healthy() and c.cooldowns_total == 0
    c.failed()
    assert not c.healthy() and c.cooldowns_total == 1
    c.failed()  # a request already routed to it fails while it cools: extends only
    assert c.cooldowns_total == 1
    c.succeeded()  # a probe after the cooldown succeeds
    c.failed()
    c.failed()
    assert (c.successes_total, c.failures_total, c.cooldowns_total) == (2, 5, 2)
    assert c.failures == 2  # consecutive, reset by the success

"""UsageBuffer: counts add up per (owner, model); nothing added during a flush is lost."""

from __future__ import annotations

import asyncio

from chatd.store.usage import UsageBuffer


class SlowStore:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, int, int]] = []

    async def record(
        self,
        owner: str,
        model: str,
        prompt: int,
        completion: int,
        requests: int = 1,
        estimated: int = 0,
    ) -> None:
        await asyncio.sleep(0.05)  # a write that takes time: adds arrive meanwhile
        self.rows.append((owner, model, requests, prompt, completion))


async def test_counts_add_up_and_late_adds_are_flushed() -> None:
    store = SlowStore()
    buf = UsageBuffer(store, interval=0.02)  # type: ignore[arg-type]
    for _ in range(3):
        buf.add("k1", "m", 10, 2)
    buf.add("k2", "m", 1, 1)
    await asyncio.sleep(0.04)  # the first flush is now writing
    buf.add("k1", "m", 5, 5)  # arrives during the write
    await asyncio.sleep(0.3)
    totals: dict[str, list[int]] = {}
    for owner, _model, requests, prompt, completion in store.rows:
        t = totals.setdefault(owner, [0, 0, 0])
        t[0] += requests
        t[1] += prompt
        t[2] += completion
    assert totals == {"k1": [4, 35, 11], "k2": [1, 1, 1]}


async def test_close_flushes_what_is_pending() -> None:
    store = SlowStore()
    buf = UsageBuffer(store, interval=60)  # type: ignore[arg-type]
    buf.add("k", "m", 3, 4)
    await buf.close()
    assert store.rows == [("k", "m", 1, 3, 4)]

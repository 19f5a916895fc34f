"""UsageBuffer: counts add up per (owner, model); nothing added during a flush is lost."""

from __future__ import annotations

import asyncio

from waiting import until

from chatd.store.usage import UsageBuffer


class SlowStore:
    """A store whose writes wait for ``release`` (set: they go at once); ``writing``
    is set when the first write starts, so a test can add counts in the middle of it."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, int, int]] = []
        self.writing = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def record(
        self,
        owner: str,
        model: str,
        prompt: int,
        completion: int,
        requests: int = 1,
        estimated: int = 0,
    ) -> None:
        self.writing.set()
        await self.release.wait()  # a write that takes time: adds arrive meanwhile
        self.rows.append((owner, model, requests, prompt, completion))


def totals(store: SlowStore) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for owner, _model, requests, prompt, completion in store.rows:
        t = out.setdefault(owner, [0, 0, 0])
        t[0] += requests
        t[1] += prompt
        t[2] += completion
    return out


async def test_counts_add_up_and_late_adds_are_flushed() -> None:
    store = SlowStore()
    store.release.clear()  # the first write is held until the late add is in
    buf = UsageBuffer(store, interval=0.02)  # type: ignore[arg-type]
    for _ in range(3):
        buf.add("k1", "m", 10, 2)
    buf.add("k2", "m", 1, 1)
    await asyncio.wait_for(store.writing.wait(), 120)  # the first flush is now writing
    buf.add("k1", "m", 5, 5)  # arrives during the write
    store.release.set()
    expected = {"k1": [4, 35, 11], "k2": [1, 1, 1]}
    await until(lambda: totals(store) == expected, f"flushed totals {expected}")
    await asyncio.sleep(0.1)  # and nothing more is written afterwards (no double count)
    assert totals(store) == expected


async def test_close_flushes_what_is_pending() -> None:
    store = SlowStore()
    buf = UsageBuffer(store, interval=60)  # type: ignore[arg-type]
    buf.add("k", "m", 3, 4)
    await buf.close()
    assert store.rows == [("k", "m", 1, 3, 4)]

"""service/model_pool.py: local models loaded on demand, at most ``max_loaded`` at once,
the least recently used idle one unloaded to make room; never one with a lease held;
shared loads, failed loads, the memory check; and the load progress reporter. Over
FakeEngines built by scripted loaders (no model, no HTTP)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes.engine import FakeEngine

from chatd.config import embedded_model_path
from chatd.engine.memory import (
    COMPUTE_ALLOWANCE,
    KVShape,
    MemoryNeed,
    estimate,
    header_facts,
    kv_shape,
    read_metadata,
)
from chatd.protocol.errors import ModelUnavailable
from chatd.service import model_pool
from chatd.service.load_progress import LoadProgress
from chatd.service.model_pool import (
    LoadState,
    ModelPool,
    ModelSlot,
    insufficient_memory,
    mem_available,
)

GIB = 1 << 30


class Loader:
    """Builds a new FakeEngine a load; ``gate`` (set to let it go) holds loads in their
    thread; ``fail`` makes the next loads raise it."""

    def __init__(self) -> None:
        self.built: list[FakeEngine] = []
        self.gate: threading.Event | None = None
        self.fail: Exception | None = None
        self.progress: list[Callable[[float], None]] = []

    def __call__(self, progress: Callable[[float], None]) -> FakeEngine:
        self.progress.append(progress)
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        engine = FakeEngine()
        self.built.append(engine)
        return engine


@pytest.fixture(autouse=True)
def trims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each unload's ``give_back_freed_memory``, recorded instead of run: its
    ``gc.collect()`` over the test process's heap (the whole suite's, in a full run) took
    seconds per unload and shows nothing here (no llama.cpp memory to give back); the
    real one runs in tests/e2e/test_models_on_demand.py."""
    calls: list[int] = []
    monkeypatch.setattr(model_pool, "give_back_freed_memory", lambda: calls.append(1))
    return calls


def pool_of(
    *ids: str,
    max_loaded: int = 0,
    available: int | None = None,
    need: MemoryNeed | None = None,
) -> tuple[ModelPool, dict[str, ModelSlot], dict[str, Loader]]:
    loaders = {i: Loader() for i in ids}
    slots = {i: ModelSlot(i, loader=loaders[i], need=need) for i in ids}
    pool = ModelPool(list(slots.values()), max_loaded, available_memory=lambda: available)
    pool.preload()
    pool.start()
    return pool, slots, loaders


def states(slots: dict[str, ModelSlot]) -> dict[str, str]:
    return {i: s.state.value for i, s in slots.items()}


async def test_preload_loads_in_order_up_to_max_loaded() -> None:
    _, slots, loaders = pool_of("a", "b", "c", max_loaded=2)
    assert states(slots) == {"a": "loaded", "b": "loaded", "c": "unloaded"}
    assert [len(x.built) for x in loaders.values()] == [1, 1, 0]
    assert all(e.started for e in loaders["a"].built)
    _, slots, _ = pool_of("a", "b", "c")  # no max_loaded: all of them
    assert set(states(slots).values()) == {"loaded"}


async def test_lru_unloads_the_least_recently_used_idle_model(trims: list[int]) -> None:
    pool, slots, loaders = pool_of("a", "b", "c", max_loaded=2)
    (await pool.acquire(slots["a"])).release()  # a is now more recent than b
    lease = await pool.acquire(slots["c"])
    assert states(slots) == {"a": "loaded", "b": "unloaded", "c": "loaded"}
    assert loaders["b"].built[0].stopped  # its engine stopped: its memory freed
    assert trims == [1]  # and the heap it freed given back to the system
    assert slots["b"].engine is None
    lease.release()
    (await pool.acquire(slots["a"])).release()
    (await pool.acquire(slots["b"])).release()  # now c is the least recently used
    assert states(slots) == {"a": "loaded", "b": "loaded", "c": "unloaded"}
    assert len(loaders["b"].built) == 2  # loaded again
    assert (slots["b"].loads, slots["c"].loads) == (2, 1)


async def test_a_model_with_a_lease_is_never_unloaded() -> None:
    pool, slots, _ = pool_of("a", "b", "c", max_loaded=2)
    busy = await pool.acquire(slots["a"])  # a: least recently used, but busy
    slots["a"].last_used = -1.0
    (await pool.acquire(slots["c"])).release()
    assert states(slots) == {"a": "loaded", "b": "unloaded", "c": "loaded"}
    busy.release()


async def test_when_every_loaded_model_is_busy_the_request_waits_for_one() -> None:
    pool, slots, _ = pool_of("a", "b", max_loaded=1)
    busy = await pool.acquire(slots["a"])
    waiting = asyncio.create_task(pool.acquire(slots["b"]))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert states(slots) == {"a": "loaded", "b": "unloaded"}
    busy.release()
    lease = await asyncio.wait_for(waiting, 10)
    assert states(slots) == {"a": "unloaded", "b": "loaded"}
    assert lease.engine is slots["b"].engine
    lease.release()


async def test_waiting_past_the_timeout_is_a_503_naming_the_model() -> None:
    pool, slots, _ = pool_of("a", "b", max_loaded=1)
    busy = await pool.acquire(slots["a"])
    with pytest.raises(ModelUnavailable) as e:
        await pool.acquire(slots["b"], timeout=0.05)
    assert e.value.status == 503 and e.value.code == "model_busy"
    assert "`b`" in e.value.message and "max_loaded 1" in e.value.message
    assert e.value.headers["Retry-After"] == "1"
    assert states(slots) == {"a": "loaded", "b": "unloaded"}
    busy.release()
    (await pool.acquire(slots["b"], timeout=5)).release()  # room now


async def test_concurrent_first_requests_share_one_load() -> None:
    pool, slots, loaders = pool_of("a", "b", max_loaded=1)
    loaders["b"].gate = threading.Event()
    tasks = [asyncio.create_task(pool.acquire(slots["b"])) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert slots["b"].state is LoadState.LOADING
    assert slots["a"].state is LoadState.UNLOADED  # taken out at once: no new lease on it
    loaders["b"].gate.set()
    leases = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert len(loaders["b"].built) == 1 and slots["b"].loads == 1
    assert {id(lease.engine) for lease in leases} == {id(loaders["b"].built[0])}
    assert slots["b"].leases == 3
    for lease in leases:
        lease.release()
        lease.release()  # idempotent
    assert slots["b"].leases == 0


async def test_a_failed_load_fails_its_requests_and_the_next_one_retries() -> None:
    pool, slots, loaders = pool_of("a", "b", max_loaded=1)
    loaders["b"].fail = RuntimeError("llama.cpp could not load model /x/b.gguf")
    results = await asyncio.gather(
        pool.acquire(slots["b"]), pool.acquire(slots["b"]), return_exceptions=True
    )
    for r in results:
        assert isinstance(r, ModelUnavailable) and r.code == "model_load_failed"
        assert "`b` could not be loaded: llama.cpp could not load model" in r.message
    assert len(loaders["b"].progress) == 1  # one load for both
    assert states(slots) == {"a": "unloaded", "b": "unloaded"}
    loaders["b"].fail = None
    lease = await pool.acquire(slots["b"])
    assert states(slots) == {"a": "unloaded", "b": "loaded"}
    lease.release()


async def test_a_request_cancelled_while_waiting_does_not_cancel_the_shared_load() -> None:
    pool, slots, loaders = pool_of("a", "b", max_loaded=1)
    loaders["b"].gate = threading.Event()
    first = asyncio.create_task(pool.acquire(slots["b"]))
    second = asyncio.create_task(pool.acquire(slots["b"]))
    await asyncio.sleep(0.05)
    first.cancel()  # its client went away
    loaders["b"].gate.set()
    (await asyncio.wait_for(second, 10)).release()
    assert slots["b"].state is LoadState.LOADED and slots["b"].leases == 0


async def test_a_model_that_does_not_fit_is_refused_naming_need_and_available() -> None:
    need = MemoryNeed(weights=2 * GIB, kv_cache=GIB, compute=0)
    pool, slots, loaders = pool_of("a", "b", max_loaded=1, available=4 * GIB, need=need)
    assert states(slots) == {"a": "loaded", "b": "unloaded"}
    (await pool.acquire(slots["b"])).release()  # 4 GiB available: fits (a unloaded)
    pool.available_memory = lambda: GIB // 2
    # 0.5 GiB free + 3 GiB from unloading b: 3.5 GiB for a's 3 GiB: it fits
    (await pool.acquire(slots["a"])).release()
    slots["b"].need = MemoryNeed(weights=8 * GIB, kv_cache=GIB, compute=0)
    with pytest.raises(ModelUnavailable) as e:
        await pool.acquire(slots["b"])
    assert e.value.status == 503 and e.value.code == "insufficient_memory"
    assert "`b` cannot be loaded: it needs about 9.00 GiB" in e.value.message
    assert "3.50 GiB of memory is available (3.00 GiB of it by unloading `a`)" in e.value.message
    assert states(slots) == {"a": "loaded", "b": "unloaded"}  # nothing unloaded for it
    assert len(loaders["b"].built) == 1


async def test_preload_refuses_a_model_that_does_not_fit() -> None:
    slot = ModelSlot("big", loader=Loader(), need=MemoryNeed(3 * GIB, 0, 0))
    pool = ModelPool([slot], available_memory=lambda: GIB)
    with pytest.raises(ModelUnavailable, match=r"`big` cannot be loaded: it needs about 3\.00"):
        pool.preload()
    assert slot.state is LoadState.UNLOADED


async def test_lease_released_when_the_request_is_refused_before_generating() -> None:
    pool, slots, _ = pool_of("a")
    lease = await pool.acquire(slots["a"])
    with pytest.raises(ValueError), lease.until_handed_over():
        raise ValueError("a 400")
    assert lease.released and slots["a"].leases == 0
    lease = await pool.acquire(slots["a"])
    with lease.until_handed_over():
        pass  # handed over: the generation owns it now
    assert not lease.released and slots["a"].leases == 1


def test_insufficient_memory_is_none_when_it_fits() -> None:
    need = MemoryNeed(GIB, GIB, 0)
    assert insufficient_memory("m", need, 2 * GIB) is None
    assert insufficient_memory("m", need, GIB, GIB, "old") is None
    why = insufficient_memory("m", need, GIB)
    assert why is not None and "`m` cannot be loaded: it needs about 2.00 GiB" in why
    assert "1.00 GiB of memory is available." in why


def test_mem_available_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  16000000 kB\nMemFree: 100 kB\nMemAvailable:  2048 kB\n")
    assert mem_available(meminfo) == 2048 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert mem_available(meminfo) is None
    assert mem_available(tmp_path / "absent") is None


def test_estimate_adds_weights_kv_cells_and_compute() -> None:
    shape = KVShape(layers=30, k_width=192, v_width=192)
    assert shape.cell_bytes() == 30 * 384 * 2
    need = estimate(100, shape, 1000)
    assert need.weights == 100
    assert need.kv_cache == 1000 * 30 * 384 * 2
    assert need.total == 100 + need.kv_cache + COMPUTE_ALLOWANCE


def test_kv_shape_of_the_embedded_model_from_its_gguf_header() -> None:
    path = embedded_model_path()
    meta = read_metadata(path)
    assert meta["general.architecture"] == "llama"
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dims
    assert kv_shape(path) == KVShape(layers=30, k_width=192, v_width=192)
    # the vocabulary (49,152 strings) is skipped but its length kept: llama.cpp's n_vocab
    assert len(meta["tokenizer.ggml.tokens"]) == 49152
    assert header_facts(path) == (kv_shape(path), 49152)


def test_kv_shape_falls_back_to_a_bound_for_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"not a gguf file at all")
    assert kv_shape(path) == KVShape(32, 1024, 1024)
    assert header_facts(path) == (KVShape(32, 1024, 1024), None)
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_metadata(path)


def test_load_progress_shows_quarters_only_past_a_second() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = LoadProgress("m", clock=lambda: now[0], write=lines.append)
    for f in (0.1, 0.3, 0.6):
        progress.update(f)
    assert lines == []  # under a second: nothing
    now[0] = 1.5
    for f in (0.61, 0.7, 0.74, 0.8, 0.99, 1.0, 1.0):
        progress.update(f)
    assert lines == ["loading model m: 50% (1.5 s)", "loading model m: 75% (1.5 s)",
                     "loading model m: 100% (1.5 s)"]  # fmt: skip


def test_a_fast_load_shows_no_progress() -> None:
    lines: list[str] = []
    progress = LoadProgress("m", clock=lambda: 0.2, write=lines.append)
    for f in (0.0, 0.25, 0.5, 0.75, 1.0):
        progress.update(f)
    assert lines == []


async def test_an_engine_loaded_after_the_pool_stopped_is_stopped_not_kept() -> None:
    pool, slots, loaders = pool_of("a", "b", max_loaded=1)
    loaders["b"].gate = threading.Event()
    asked = asyncio.create_task(pool.acquire(slots["b"]))
    await asyncio.sleep(0.05)
    pool.stop()  # the server's lifespan ends while b loads
    loaders["b"].gate.set()
    with pytest.raises(ModelUnavailable, match="`b` was loaded after the server stopped"):
        await asyncio.wait_for(asked, 10)
    assert loaders["b"].built[0].stopped
    assert states(slots) == {"a": "unloaded", "b": "unloaded"}

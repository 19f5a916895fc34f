"""Which local models are loaded, and loading them on demand (docs/models.md).

Every local model has a ``ModelSlot``: how to build its engine (a loader, run in a
thread so the event loop keeps serving the others), what the engine will need in
memory, and whether it is loaded, loading or unloaded. With ``max_loaded`` set, at most
that many engines exist at once: a request for an unloaded model loads it, unloading the
least recently used loaded model that is idle first. A model is idle when no lease is
held on it: the service takes a lease (``acquire``) before it renders a prompt and gives
it back when the generation has ended (every choice finished, cancelled or failed), so a
model is never unloaded under a running request. If every loaded model is busy, the
request waits for one to become idle, for at most its wall-clock limit.

Requests that arrive while their model loads share that one load; a failed load fails
them all with a clear error and leaves the model unloaded, so the next request retries.
The engine knows nothing of this pool, and the API layer nothing of loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path

from chatd.engine.memory import MemoryNeed, gib, give_back_freed_memory
from chatd.protocol.errors import APIError, ModelUnavailable
from chatd.redact import redact
from chatd.service.engine_api import EngineLike
from chatd.service.load_progress import LoadProgress

__all__ = [
    "Lease",
    "LoadState",
    "Loader",
    "ModelPool",
    "ModelSlot",
    "insufficient_memory",
    "mem_available",
]

log = logging.getLogger("chatd.models")

# Builds a model's engine (blocking: runs in a thread), told the load's progress (0..1).
Loader = Callable[[Callable[[float], None]], EngineLike]


class LoadState(StrEnum):
    LOADED = "loaded"
    LOADING = "loading"
    UNLOADED = "unloaded"


class ModelSlot:
    """One local model's place in the pool: its engine while loaded, how to load it."""

    def __init__(
        self,
        model_id: str,
        engine: EngineLike | None = None,
        loader: Loader | None = None,
        need: MemoryNeed | None = None,
    ) -> None:
        self.id = model_id
        self.engine = engine
        if loader is None and engine is not None:
            built = engine  # an engine given built (tests): loading it again reuses it
            loader = lambda progress: built  # noqa: E731
        self.loader = loader
        self.need = need  # None: not known, never refused for memory
        self.state = LoadState.LOADED if engine is not None else LoadState.UNLOADED
        self.leases = 0  # requests holding this engine (generations not yet ended)
        self.last_used = 0.0  # monotonic time of the last acquire or release
        self.loading: asyncio.Task[None] | None = None  # the load under way, shared
        self.loads = 0  # completed loads since the process started (start-up included)
        self.load_seconds = 0.0  # their total duration

    @property
    def idle(self) -> bool:
        return self.state is LoadState.LOADED and self.leases == 0


class Lease:
    """A request's hold on a loaded engine; ``release`` (idempotent) when its generation
    has ended. Until then the pool never unloads the engine."""

    def __init__(self, pool: ModelPool, slot: ModelSlot, engine: EngineLike) -> None:
        self._pool = pool
        self._slot = slot
        self.engine = engine
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._pool._released(self._slot)

    @contextlib.contextmanager
    def until_handed_over(self) -> Iterator[Lease]:
        """Released if the block raises: the request was refused before its generation
        (which then owns the lease) started."""
        try:
            yield self
        except BaseException:
            self.release()
            raise


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), None
    where there is no /proc/meminfo (then no load is refused for memory)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def insufficient_memory(
    model_id: str, need: MemoryNeed, available: int, freed: int = 0, victim: str | None = None
) -> str | None:
    """Why ``model_id`` cannot be loaded, or None when it fits: ``need`` against what is
    available now plus what unloading ``victim`` frees."""
    if need.total <= available + freed:
        return None
    source = f" ({gib(freed)} of it by unloading `{victim}`)" if victim else ""
    return (
        f"The model `{model_id}` cannot be loaded: it needs about {need.describe()},"
        f" and {gib(available + freed)} of memory is available{source}."
        " Lower its n_ctx, or max_loaded, or add memory."
    )


class ModelPool:
    """The local models' slots, at most ``max_loaded`` loaded at once (0: no limit)."""

    def __init__(
        self,
        slots: list[ModelSlot],
        max_loaded: int = 0,
        available_memory: Callable[[], int | None] = mem_available,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = list(slots)
        self.max_loaded = max_loaded
        self.available_memory = available_memory
        self.clock = clock
        self.started = False
        self._waiters: list[asyncio.Future[None]] = []

    # --- lifecycle --------------------------------------------------------------------
    def preload(self) -> None:
        """At start, before serving: load models in order up to ``max_loaded`` (all
        without it). Raises ModelUnavailable when one does not fit in memory, or
        what its loader raised."""
        for slot in self.slots:
            if slot.state is LoadState.LOADED:
                continue
            if self.max_loaded and self._occupied() >= self.max_loaded:
                log.info("model %s: not loaded until a request needs it", slot.id)
                continue
            self._check_memory(slot, None)
            started = self.clock()
            slot.engine = self._build(slot)
            self._loaded(slot, self.clock() - started)

    def start(self) -> None:
        """Start the loaded engines' threads; models loaded later start as they load."""
        self.started = True
        for slot in self.slots:
            if slot.engine is not None:
                slot.engine.start()

    def stop(self) -> None:
        self.started = False
        for slot in self.slots:
            if slot.engine is not None:
                slot.engine.stop()

    # --- leases -----------------------------------------------------------------------
    async def acquire(self, slot: ModelSlot, timeout: float = 0.0) -> Lease:
        """A lease on ``slot``'s engine, loading it first if needed (unloading the least
        recently used idle model to make room). Waiting for a busy pool is bounded by
        ``timeout`` seconds (0: none); raises ModelUnavailable (503) when it passes,
        when the model does not fit in memory, or when its load fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        told = False
        while True:
            if slot.state is LoadState.LOADED and slot.engine is not None:
                slot.leases += 1
                slot.last_used = self.clock()
                return Lease(self, slot, slot.engine)
            if slot.loading is not None:
                await asyncio.shield(slot.loading)  # raises the load's failure
                continue
            victim = None
            if self.max_loaded and self._occupied() >= self.max_loaded:
                victim = self._least_recently_used()
                if victim is None:  # every loaded model is busy: wait for one
                    if not told:
                        log.info(
                            "model %s waits for a loaded model to become idle (max_loaded %d:"
                            " %s busy)",
                            slot.id,
                            self.max_loaded,
                            ", ".join(
                                s.id for s in self.slots if s.state is not LoadState.UNLOADED
                            ),
                        )
                        told = True
                    await self._change(slot, deadline, timeout)
                    continue
            self._check_memory(slot, victim)
            self._start_load(slot, victim)

    def _released(self, slot: ModelSlot) -> None:
        slot.leases -= 1
        slot.last_used = self.clock()
        self._notify()

    # --- loading ----------------------------------------------------------------------
    def _occupied(self) -> int:
        return sum(1 for s in self.slots if s.state is not LoadState.UNLOADED)

    def _least_recently_used(self) -> ModelSlot | None:
        idle = [s for s in self.slots if s.idle]
        return min(idle, key=lambda s: s.last_used) if idle else None

    def _check_memory(self, slot: ModelSlot, victim: ModelSlot | None) -> None:
        if slot.need is None:
            return
        available = self.available_memory()
        if available is None:
            return
        freed = victim.need.total if victim is not None and victim.need is not None else 0
        why = insufficient_memory(
            slot.id, slot.need, available, freed, victim.id if victim else None
        )
        if why is not None:
            log.error("%s", why)
            raise ModelUnavailable(why, code="insufficient_memory")

    def _start_load(self, slot: ModelSlot, victim: ModelSlot | None) -> None:
        """Take ``victim`` out at once (no new lease on it), then load in a task the
        requests for ``slot`` share."""
        old = None
        if victim is not None:
            old, victim.engine, victim.state = victim.engine, None, LoadState.UNLOADED
        slot.state = LoadState.LOADING
        why = f" (LRU: unloading {victim.id})" if victim is not None else ""
        log.info("loading model %s for a request%s", slot.id, why)
        load = self._load(slot, victim, old, self.started)
        task = asyncio.get_running_loop().create_task(load)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # awaited by requests
        slot.loading = task

    async def _load(
        self, slot: ModelSlot, victim: ModelSlot | None, old: EngineLike | None, running: bool
    ) -> None:
        """``running``: the pool had started (the server serves): the new engine is
        started, and stopped again if the pool stops before it is ready."""
        try:
            if victim is not None and old is not None:
                await asyncio.to_thread(old.stop)  # frees its llama.cpp model and contexts
                del old  # the last reference: its Python objects can go too
                await asyncio.to_thread(give_back_freed_memory)
                log.info("model %s unloaded (least recently used)", victim.id)
            started = self.clock()
            engine = await asyncio.to_thread(self._build, slot, running)
            if running and not self.started:  # the server stopped meanwhile: not kept
                await asyncio.to_thread(engine.stop)
                raise ModelUnavailable(
                    f"The model `{slot.id}` was loaded after the server stopped.",
                    code="model_load_failed",
                )
        except BaseException as e:
            slot.state = LoadState.UNLOADED
            if not isinstance(e, Exception):  # cancelled (shutdown): no request is told
                raise
            log.error("model %s could not be loaded: %s", slot.id, e)
            if isinstance(e, APIError):
                raise
            raise ModelUnavailable(  # the reason without its paths: the log has them
                f"The model `{slot.id}` could not be loaded: {redact(str(e))}",
                code="model_load_failed",
            ) from None
        finally:
            slot.loading = None
            self._notify()
        slot.engine = engine
        self._loaded(slot, self.clock() - started)

    def _build(self, slot: ModelSlot, start: bool = False) -> EngineLike:
        if slot.loader is None:
            raise RuntimeError("no way to load it (no file configured)")
        engine = slot.loader(LoadProgress(slot.id).update)
        if start:
            engine.start()
        return engine

    def _loaded(self, slot: ModelSlot, seconds: float) -> None:
        slot.state = LoadState.LOADED
        slot.last_used = self.clock()
        slot.loads += 1
        slot.load_seconds += seconds
        log.info("model %s loaded in %.1f s", slot.id, seconds)
        self._notify()

    # --- waiting ----------------------------------------------------------------------
    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _change(self, slot: ModelSlot, deadline: float | None, timeout: float) -> None:
        """Until a lease is released or a load ends; 503 past ``deadline``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            raise ModelUnavailable(
                f"The model `{slot.id}` is not loaded, and no loaded model became idle"
                f" within {timeout:g} seconds to make room for it (max_loaded"
                f" {self.max_loaded}). Retry later.",
                code="model_busy",
                headers={"Retry-After": "1"},
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

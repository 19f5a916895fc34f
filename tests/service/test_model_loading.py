"""Several local models in one server, loaded on demand (service/model_pool.py), over
HTTP in-process: with ``max_loaded`` 1, asking the unloaded model loads it and unloads
the other (least recently used, idle); /v1/models, /chatd/models, /health and /metrics
show which is loaded; a request for a model while the loaded one is busy waits for it,
and past its limit gets a 503; a failed load or a model that does not fit in memory is
a clear 503 and the next request retries; refused and finished requests give their
lease back. FakeEngines built by loaders stand in for the models."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.engine import FakeEngine
from openapi_schemas import assert_valid
from prometheus_client.parser import text_string_to_metric_families

from chatd.engine.memory import MemoryNeed
from chatd.protocol.request_limits import Limits
from chatd.service import model_pool
from chatd.service.model_pool import ModelPool
from chatd.service.models import LocalModel

from .harness import Chatd, free_port, run_cli, running_chatd

GIB = 1 << 30
LONG = " ".join(f"w{i}" for i in range(30))


class Loader:
    """Each load builds a new FakeEngine writing ``script`` (``step_delay`` between
    tokens); ``fail`` makes loads raise it."""

    def __init__(self, script: str, step_delay: float = 0.0) -> None:
        self.script = script
        self.step_delay = step_delay
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None  # holds loads (in their thread) until set
        self.built: list[FakeEngine] = []

    def __call__(self, progress: Callable[[float], None]) -> FakeEngine:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        engine = FakeEngine(self.script, step_delay=self.step_delay)
        self.built.append(engine)
        return engine


class Server:
    def __init__(self, chatd: Chatd, models: dict[str, LocalModel], loaders: dict[str, Loader]):
        self.chatd = chatd
        self.models = models
        self.loaders = loaders
        self.http = chatd.http()

    async def ask(self, model: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra}
        return await self.http.post("/v1/chat/completions", json=body)

    async def states(self) -> dict[str, str]:
        """/chatd/models: each local model's route state."""
        r = await self.http.get("/chatd/models")
        assert r.status_code == 200, r.text
        return {row["id"]: row["routes"][0]["state"] for row in r.json()["data"]}

    async def cards(self) -> dict[str, str]:
        """/v1/models: each card's status value."""
        r = await self.http.get("/v1/models")
        assert r.status_code == 200, r.text
        for card in r.json()["data"]:
            assert_valid("Model", card)  # OpenAI's schema: the extension field is allowed
        return {card["id"]: card["status"]["value"] for card in r.json()["data"]}

    async def metrics(self) -> dict[tuple[str, str], float]:
        r = await self.http.get("/metrics")
        assert r.status_code == 200, r.text
        return {
            (s.name, s.labels.get("model", "")): s.value
            for family in text_string_to_metric_families(r.text)
            for s in family.samples
        }


@pytest.fixture(autouse=True)
def no_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unloads skip ``give_back_freed_memory`` (a ``gc.collect()`` of the whole test
    process: seconds each in a full run, nothing to give back from a FakeEngine); the
    real one runs in tests/e2e/test_models_on_demand.py."""
    monkeypatch.setattr(model_pool, "give_back_freed_memory", lambda: None)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """Models a and b, at most one loaded (a, loaded at start)."""
    async with two_models(tmp_path) as s:
        yield s


@contextlib.asynccontextmanager
async def two_models(
    tmp_path: Path,
    max_loaded: int = 1,
    available: Callable[[], int | None] = lambda: None,
    limits: Limits | None = None,
    step_delay: float = 0.0,
) -> AsyncIterator[Server]:
    """Models a and b (1 GiB of weights and 1 GiB of KV cache each, as far as the memory
    check knows), loaded in order up to ``max_loaded``."""
    loaders = {"a": Loader("I am a", step_delay), "b": Loader("I am b", step_delay)}
    need = MemoryNeed(GIB, GIB, 0)
    models = {i: LocalModel(i, loader=loaders[i], need=need, n_vocab=49152) for i in loaders}
    pool = ModelPool([], max_loaded, available_memory=available)
    # a lease never given back: a 503 within 10 s rather than a test that hangs
    limits = limits or Limits(request_timeout=10)
    async with running_chatd(tmp_path, local=list(models.values()), pool=pool, limits=limits) as c:
        yield Server(c, models, loaders)


async def test_asking_an_unloaded_model_loads_it_and_unloads_the_lru_one(server: Server) -> None:
    assert await server.states() == {"a": "loaded", "b": "unloaded"}
    assert await server.cards() == {"a": "loaded", "b": "unloaded"}  # b listed: it loads
    health = (await server.http.get("/health")).json()["models"]
    assert health["a"]["loaded"] is True and health["a"]["running_requests"] == 0
    assert health["b"] == {"loaded": False, "state": "unloaded"}

    r = await server.ask("b")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "I am b"
    assert await server.states() == {"a": "unloaded", "b": "loaded"}
    assert await server.cards() == {"a": "unloaded", "b": "loaded"}
    health = (await server.http.get("/health")).json()["models"]
    assert health["a"] == {"loaded": False, "state": "unloaded"}
    assert health["b"]["loaded"] is True
    assert server.loaders["a"].built[0].stopped
    log = server.chatd.log.text()
    assert "loading model b for a request (LRU: unloading a)" in log
    assert "model a unloaded (least recently used)" in log
    assert re.search(r"model b loaded in \d+\.\d s", log)

    r = await server.ask("a")  # and back
    assert r.json()["choices"][0]["message"]["content"] == "I am a"
    assert await server.states() == {"a": "loaded", "b": "unloaded"}
    assert len(server.loaders["a"].built) == 2


async def test_a_request_refused_for_its_fields_loads_nothing(server: Server) -> None:
    """An unloaded model's vocabulary is known from its file's header: a token id past it
    is a 400 before the model loads, so a bad request never unloads another model."""
    r = await server.ask("b", logit_bias={"49152": 5})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "logit_bias"
    assert await server.states() == {"a": "loaded", "b": "unloaded"}
    assert server.loaders["b"].built == []
    r = await server.ask("b", logit_bias={"49151": 5})  # the last id: it loads and answers
    assert r.status_code == 200, r.text
    assert await server.states() == {"a": "unloaded", "b": "loaded"}


async def test_a_model_shows_loading_while_it_loads(server: Server) -> None:
    server.loaders["b"].gate = threading.Event()
    asked = asyncio.create_task(server.ask("b"))
    while (await server.states())["b"] != "loading":
        await asyncio.sleep(0.005)
    assert await server.states() == {"a": "unloaded", "b": "loading"}  # a: taken out at once
    assert await server.cards() == {"a": "unloaded", "b": "loading"}
    health = (await server.http.get("/health")).json()["models"]
    assert health["b"] == {"loaded": False, "state": "loading"}
    m = await server.metrics()
    assert m[("chatd_model_loaded", "b")] == 0
    server.loaders["b"].gate.set()
    r = await asked
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "I am b"
    assert await server.states() == {"a": "unloaded", "b": "loaded"}


async def test_metrics_per_model_loaded_and_loads(server: Server) -> None:
    m = await server.metrics()
    assert m[("chatd_model_loaded", "a")] == 1 and m[("chatd_model_loaded", "b")] == 0
    assert m[("chatd_model_loads_total", "a")] == 1 and m[("chatd_model_loads_total", "b")] == 0
    assert ("chatd_engine_running_requests", "b") not in m  # no engine: no engine stats
    assert (await server.ask("b")).status_code == 200
    m = await server.metrics()
    assert m[("chatd_model_loaded", "a")] == 0 and m[("chatd_model_loaded", "b")] == 1
    assert m[("chatd_model_loads_total", "b")] == 1
    assert m[("chatd_model_load_seconds_count", "b")] == 1
    assert m[("chatd_model_load_seconds_sum", "b")] >= 0
    assert ("chatd_engine_running_requests", "b") in m
    assert m[("chatd_model_available", "b")] == 1


async def test_a_request_waits_while_the_loaded_model_is_busy(tmp_path: Path) -> None:
    async with two_models(tmp_path, step_delay=0.01) as server:
        server.loaders["a"].built[0].script = LONG
        busy = asyncio.create_task(server.ask("a"))
        engine_a = server.loaders["a"].built[0]
        while not engine_a.in_flight:
            await asyncio.sleep(0.005)
        r = await server.ask("b")  # waits for a's answer, then unloads it
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "I am b"
        a = await busy
        assert a.status_code == 200 and a.json()["choices"][0]["message"]["content"] == LONG
        assert "model b waits for a loaded model to become idle (max_loaded 1: a busy)" in (
            server.chatd.log.text()
        )
        assert engine_a.stopped


async def test_waiting_past_the_request_limit_is_a_503(tmp_path: Path) -> None:
    async with two_models(tmp_path, limits=Limits(request_timeout=0.05)) as server:
        lease = await server.models["a"].acquire()  # a request on a still generating
        r = await server.ask("b")
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert error["code"] == "model_busy" and error["type"] == "server_error"
        assert "`b` is not loaded" in error["message"]
        assert await server.states() == {"a": "loaded", "b": "unloaded"}
        lease.release()
        assert (await server.ask("b")).status_code == 200


async def test_a_failed_load_is_a_503_and_the_next_request_retries(server: Server) -> None:
    server.loaders["b"].fail = RuntimeError("llama.cpp could not load model /m/b.gguf")
    r = await server.ask("b")
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "model_load_failed"
    assert "`b` could not be loaded: llama.cpp could not load model <path>" in error["message"]
    assert await server.states() == {"a": "unloaded", "b": "unloaded"}
    server.loaders["b"].fail = None
    r = await server.ask("b")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "I am b"


async def test_a_model_that_does_not_fit_in_memory_is_a_503_naming_it(tmp_path: Path) -> None:
    available = [4 * GIB]
    async with two_models(tmp_path, available=lambda: available[0]) as server:
        available[0] = 0  # a's 2 GiB come back when it is unloaded: b's 2 GiB fit
        assert (await server.ask("b")).status_code == 200
        server.models["a"].slot.need = MemoryNeed(6 * GIB, GIB, 0)
        r = await server.ask("a")
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_memory"
        assert error["message"].startswith("The model `a` cannot be loaded: it needs about 7.00")
        assert (
            "2.00 GiB of memory is available (2.00 GiB of it by unloading `b`)"
            in (error["message"])
        )
        assert await server.states() == {"a": "unloaded", "b": "loaded"}  # b kept


async def test_refused_streamed_and_responses_requests_give_their_lease_back(
    tmp_path: Path,
) -> None:
    async with two_models(tmp_path, limits=Limits(request_timeout=5)) as server:
        r = await server.ask("a", modalities=["text", "audio"])  # refused after the lease
        assert r.status_code == 400, r.text
        assert server.models["a"].slot.leases == 0
        stream = await server.ask("a", stream=True)
        assert stream.status_code == 200 and "[DONE]" in stream.text
        assert server.models["a"].slot.leases == 0
        r = await server.http.post("/v1/responses", json={"model": "b", "input": "Hi"})
        assert r.status_code == 200, r.text
        assert r.json()["output"][0]["content"][0]["text"] == "I am b"
        assert server.models["b"].slot.leases == 0
        assert await server.states() == {"a": "unloaded", "b": "loaded"}


async def test_without_max_loaded_both_models_stay_loaded(tmp_path: Path) -> None:
    async with two_models(tmp_path, max_loaded=0) as server:
        assert await server.states() == {"a": "loaded", "b": "loaded"}
        for model in ("a", "b", "a"):
            r = await server.ask(model)
            assert r.json()["choices"][0]["message"]["content"] == f"I am {model}"
        assert [len(x.built) for x in server.loaders.values()] == [1, 1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "x=embedded", "--model", "x=embedded"], "two local models have the id 'x'"),
        (["--model", "embedded", "--model", "b=embedded", "--model-id", "m"], "--model-id names"),
        (["--max-loaded", "-1"], "--max-loaded -1: 0 (all stay loaded) or more"),
        (["--model", "/nowhere/m.gguf"], "model file not found: /nowhere/m.gguf"),
    ],
)
def test_serve_refuses_bad_model_options(argv: list[str], message: str) -> None:
    code, _, err = run_cli("serve", *argv, "--port", str(free_port()))
    assert code == 1 and message in err, err


def test_serve_exits_when_a_model_cannot_fit_in_memory() -> None:
    """The check comes before llama.cpp reads the file: a billion KV cells need ~TBs."""
    code, _, err = run_cli("serve", "--n-ctx", "1000000000", "--port", str(free_port()))
    assert code == 1, err
    assert "The model `smollm2-135m-instruct` cannot be loaded: it needs about" in err
    assert "of memory is available" in err

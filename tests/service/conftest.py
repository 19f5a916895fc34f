"""In-process tests of the service and API layers (tests/service/): the real app
(``create_app``) over a scripted FakeEngine (tests/fakes/engine.py) and a temporary
SQLite database, driven through httpx's ASGI transport and the openai SDK. No model is
loaded and no server process is started; what needs the real model, a real process or
the real grammar compiler stays in tests/e2e/ (marked ``e2e``; ``pytest -m "not e2e"``
runs unit + in-process tests only)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import openai
import pytest

from chatd.service import limits

from .harness import Chatd, running_chatd


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    """One app per module, over the default FakeEngine and a fresh database."""
    async with running_chatd(tmp_path_factory.mktemp("chatd")) as c:
        yield c


@pytest.fixture(scope="module")
def http(chatd: Chatd) -> httpx.AsyncClient:
    return chatd.http()


@pytest.fixture(scope="module")
def client(chatd: Chatd) -> openai.AsyncOpenAI:
    return chatd.sdk()


@pytest.fixture
def still_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Limits count per clock minute: the limiter's wall clock (``time.time`` in
    service/limits.py) stands still in the middle of the current minute, so a test's
    requests all fall in one window however slowly they run (a real clock let a slow
    run cross a minute and find its window empty again)."""
    still = time.time() // 60 * 60 + 30
    clock = SimpleNamespace(time=lambda: still, monotonic=time.monotonic)
    monkeypatch.setattr(limits, "time", clock)

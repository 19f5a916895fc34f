"""The test suite's layout, and the real chatd server the end-to-end tests share.

- tests/unit/: pure units (engine pieces against fakes, protocol parsing, tools...).
- tests/service/: the service and API layers in-process: the real app (``create_app``)
  over a scripted FakeEngine (tests/fakes/engine.py) and a temporary database, driven
  through httpx's ASGI transport and the openai SDK, or served from a thread where a
  real socket is needed (gateway); upstreams are tests/fakes/upstream.py in a thread.
- tests/e2e/: what needs the real model, a real ``chatd serve`` process or the real
  grammar compiler; every test there is marked ``e2e`` (below), and only they start
  the session's ``server`` (one ``chatd serve`` loading the GGUF model).

``pytest -m "not e2e"`` runs unit + in-process tests and never loads the model;
``pytest -q`` runs everything.

No verdict depends on the machine's speed: the suite must pass on a busy machine (a
newcomer's laptop doing other work, a shared CI runner). So no test asserts that
something took less than N seconds, counts what happened within a time window, or
sleeps and then looks. Instead:

- something must happen: wait for it, ``wait_until(condition, what)`` or ``await
  until(condition, what)`` from tests/waiting.py, whose deadline (120 s) only guards
  against a hang and fails naming what never happened;
- something must not happen yet (a cooldown, a rate-limit window, a timeout): drive the
  code's clock (monkeypatch the module's ``time``, as tests/service/conftest.py's
  ``still_minute`` and test_gateway.py's cooldown do) or make the thing wait on an
  event the test sets (tests/fakes/: ``gate``, ``hold``);
- a cancellation must free work: check the work was cut (a log line's
  ``client_left``/token count, a fake generation's ``cancelled``), not only that it
  ended, since a slow run ends it anyway;
- a client or server timeout that is part of the behaviour (``--header-timeout``,
  ``--drain-seconds``) is given a margin the other way round: the test waits until
  the precondition holds (headers sent, first tokens streamed) before the timer can
  matter.

A duration may be printed (``pytest -s``), never asserted.

What the e2e tier costs is the tokens the embedded model computes (on a 2-core CPU a
prompt's prefill and every decoded token; a busy machine multiplies both), then each
``chatd serve`` started. So: a test runs on the session ``server`` unless it needs a
flag that changes what it checks (a module's own server says which); one long prompt
in the whole suite (tests/e2e/test_claude_code.py's, on ``stretched_server``): another
client's long request is replayed in the fast tier instead (tests/service/); a real
client's turns cap what the model may write where the client lets them, or through a
proxy that adds the cap (tests/e2e/test_codex.py); and one run covers what several
would check the same way (a handoff and a tool call in one agents run).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:
    from playground_browser import Guarded

MODEL = "smollm2-135m-instruct"
API_KEY = "sk-test-chatd-0123456789"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# The session clients' limit per request: a hang's guard, not a speed check (at 120 s a
# 300-token constrained answer timed out on a loaded 2-core machine)
REQUEST_TIMEOUT = 600


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of ``key`` (e.g. for /health's engine statistics, which a
    server with keys shows only to a key)."""
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).parent / "chatd"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "chatd.cli"]
        tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        self.log_path = tmp / f"chatd-test-{self.port}.log"
        if "--database-url" not in args and "--data-dir" not in args:
            self.data_dir = Path(tempfile.mkdtemp(prefix="chatd-test-data-"))
            args = (*args, "--data-dir", str(self.data_dir))
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 120  # loading the model on a busy machine
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chatd exited early:\n{self.log()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"chatd did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def owner_id(self, n: int = 1) -> str:
        """The owner id of the n-th static key (``--api-key``), as chatd logs it at start:
        an HMAC keyed by the database's secret, not computable from the key alone."""
        found = re.search(rf"static API key #{n}: owner id (\S+)", self.log())
        assert found, f"no owner id of static key #{n} in the log:\n{self.log()}"
        return found.group(1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e/ is marked ``e2e`` (registered in pyproject.toml)."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    srv = Server("--api-key", API_KEY)
    yield srv
    srv.stop()


# The embedded model stretched past its 8,192-token training context (docs/models.md,
# "Stretching a model's context"): YaRN picks the factor 4 from the 32,768-token window.
STRETCHED_ARGS = (
    "--n-ctx", "32768", "--context-window", "32768", "--rope-scaling", "yarn",
)  # fmt: skip


@pytest.fixture(scope="session")
def stretched_server() -> Iterator[Server]:
    """A second server for prompts longer than the embedded model's training context
    (tests/e2e/test_long_context.py, test_claude_code.py); started only by them."""
    srv = Server("--api-key", API_KEY, *STRETCHED_ARGS)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def base_url(server: Server) -> str:
    return server.base_url


@pytest.fixture(scope="session")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=REQUEST_TIMEOUT
    )


@pytest.fixture(scope="session")
def aclient(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=REQUEST_TIMEOUT
    )


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=REQUEST_TIMEOUT
    ) as c:
        yield c


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """The playground tests' headless Chromium, one per module (tests/playground_browser.py;
    skipped, saying why, where there is none)."""
    from playground_browser import launch, skip_without_browser

    skip_without_browser()
    with launch() as b:
        yield b


@pytest.fixture
def guarded(browser: Any, server: Server) -> Iterator[Guarded]:
    """The playground with the server's key already kept; no request leaves localhost."""
    from playground_browser import open_page, ready

    with open_page(browser, server.base_url, key=API_KEY) as g:
        ready(g.page, server.base_url)
        yield g
        assert g.external == []
        assert g.errors == []

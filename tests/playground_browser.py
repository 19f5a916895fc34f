"""A real headless Chromium for the playground's end-to-end tests (tests/e2e/
test_playground*.py) and scripts/playground_screenshots.py: Debian's ``chromium``
driven by Playwright's Python API with ``executable_path`` (no browser build can be
downloaded here). Every page gets a guard that aborts and records any request to
another host than the chatd under test: the playground must work offline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
KEY_ITEM = "chatd.apiKey"  # the localStorage item api.js keeps the key in
COMPLETIONS = "/v1/chat/completions"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def skip_without_browser() -> None:
    """Skip (with what to install) when Playwright or Debian's chromium is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if chromium_path() is None:
        pytest.skip("no chromium: apt-get install chromium")


@contextmanager
def launch(*args: str) -> Iterator[Any]:
    """One browser (the tests share one per module); ``args``: more Chromium switches."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_ARGS, *args])
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Guarded:
    """A page whose requests to other hosts are aborted and listed in ``external``; its
    console errors and uncaught exceptions are listed too."""

    page: Any
    external: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def open_page(browser: Any, base_url: str, key: str | None = None) -> Iterator[Guarded]:
    """A fresh context (its own localStorage) and page; ``key`` is put in localStorage
    first, as if typed earlier. The page is not loaded yet: ``goto`` it."""
    context = browser.new_context(viewport=VIEWPORT)
    # a wait's upper bound, not a speed check: the shared 2-core machine can be slow
    context.set_default_timeout(120_000)
    host = urlsplit(base_url).netloc
    guarded = Guarded(context.new_page())

    def route(r: Any) -> None:
        url = r.request.url
        guarded.requests.append(url)
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).netloc == host:
            r.continue_()
        else:
            guarded.external.append(url)
            r.abort()

    context.route("**/*", route)
    if key is not None:
        context.add_init_script(f"localStorage.setItem({KEY_ITEM!r}, {key!r});")
    guarded.page.on(
        "console", lambda m: guarded.errors.append(m.text) if m.type == "error" else None
    )
    guarded.page.on("pageerror", lambda e: guarded.errors.append(f"uncaught: {e}"))
    try:
        yield guarded
    finally:
        context.close()


def ready(page: Any, base_url: str) -> None:
    """Load the playground and wait until its models are listed."""
    page.goto(base_url + "/")
    page.wait_for_selector("body[data-ready=true]")


def chat_bodies(page: Any) -> list[dict[str, Any]]:
    """Every chat completion request body the page sends (filled in as it sends them)."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Any) -> None:
        if request.method == "POST" and request.url.endswith(COMPLETIONS):
            bodies.append(request.post_data_json)

    page.on("request", seen)
    return bodies


def fill(page: Any, testid: str, value: str) -> None:
    page.get_by_test_id(testid).fill(value)


def open_section(page: Any, name: str) -> None:
    page.get_by_test_id(f"section-{name}").locator("summary").click()


def send(page: Any, prompt: str, state: str = "done") -> Any:
    """Send ``prompt``; wait until the answer ends in ``state``; that answer."""
    before = page.get_by_test_id("answer").count()
    fill(page, "prompt", prompt)
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").nth(before)
    answer.locator(f"[data-testid=answer-status][data-state={state}]").wait_for()
    return answer

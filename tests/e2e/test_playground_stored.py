"""The playground's key and stored-completions browser in a real headless Chromium
(tests/playground_browser.py) against live ``chatd serve`` processes: the key dialog on
a 401 and the key kept in localStorage only (and forgotten), the stored completions of
the key listed, filtered by metadata, opened and deleted, and a channel cooling down
shown in the model picker. The chat features are in test_playground.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from conftest import API_KEY, MODEL, Server
from playground_browser import KEY_ITEM, open_page, ready


def stored_key(page: Any) -> str | None:
    return page.evaluate(f"localStorage.getItem({KEY_ITEM!r})")


def test_key_dialog_on_401_and_key_kept_in_the_browser_only(browser: Any, server: Server) -> None:
    with open_page(browser, server.base_url) as guarded:
        page = guarded.page
        sent: list[str | None] = []
        page.on(
            "request",
            lambda r: (
                sent.append(r.headers.get("authorization"))
                if r.url.endswith("/chatd/models")
                else None
            ),
        )
        page.goto(server.base_url + "/")
        dialog = page.get_by_test_id("key-dialog")
        dialog.wait_for()
        assert "API key" in page.get_by_test_id("key-reason").inner_text()
        assert sent == [None]
        # a wrong key: refused again, the dialog says why
        page.get_by_test_id("key-input").fill("sk-not-the-key")
        page.get_by_test_id("key-save").click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=key-reason]')"
            ".textContent.includes('Incorrect API key')"
        )
        assert dialog.is_visible()
        page.get_by_test_id("key-input").fill(API_KEY)
        page.get_by_test_id("key-input").press("Enter")
        page.wait_for_selector("body[data-ready=true]")
        assert dialog.is_hidden()
        assert sent == [None, "Bearer sk-not-the-key", f"Bearer {API_KEY}"]
        assert page.get_by_test_id("model-select").input_value() == MODEL
        assert stored_key(page) == API_KEY
        assert page.get_by_test_id("key-state").inner_text() == "key kept in this browser"
        # kept: a reload asks nothing
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert dialog.is_hidden() and sent[-1] == f"Bearer {API_KEY}"
        # forgotten: gone from the browser, asked for again
        page.get_by_test_id("forget-key").click()
        assert stored_key(page) is None
        assert page.get_by_test_id("key-state").inner_text() == "no key"
        page.reload()
        dialog.wait_for()
        page.get_by_test_id("key-cancel").click()
        assert dialog.is_hidden()
        error = page.get_by_test_id("models-error")
        error.wait_for()
        assert "API key" in error.inner_text()
        assert guarded.external == []


def send(page: Any, prompt: str) -> str:
    """Send ``prompt``; the stored completion's id the answer shows."""
    before = page.get_by_test_id("answer").count()
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").nth(before)
    answer.locator("[data-testid=answer-status][data-state=done]").wait_for()
    return answer.get_by_test_id("completion-id").inner_text().removeprefix("stored as ")


def test_stored_browser_lists_filters_opens_and_deletes(
    browser: Any, server: Server, http: httpx.Client
) -> None:
    tag = uuid.uuid4().hex
    with open_page(browser, server.base_url, key=API_KEY) as guarded:
        page = guarded.page
        ready(page, server.base_url)
        lists: list[dict[str, list[str]]] = []
        page.on(
            "request",
            lambda r: (
                lists.append(parse_qs(urlsplit(r.url).query))
                if urlsplit(r.url).path == "/v1/chat/completions" and r.method == "GET"
                else None
            ),
        )
        page.get_by_test_id("section-store").locator("summary").click()
        page.get_by_test_id("param-store").check()
        page.get_by_test_id("metadata-key").fill("suite")
        page.get_by_test_id("metadata-value").fill(tag)
        page.get_by_test_id("param-max_tokens").fill("2")
        first = send(page, "First stored question")
        second = send(page, "Second stored question")
        assert first.startswith("chatcmpl-") and second != first

        page.get_by_test_id("tab-stored").click()
        page.get_by_test_id("stored-list").wait_for()
        page.get_by_test_id("stored-meta-key").fill("suite")
        page.get_by_test_id("stored-meta-value").fill(tag)
        page.get_by_test_id("stored-model").fill(MODEL)
        page.get_by_test_id("stored-search").click()
        rows = page.get_by_test_id("stored-row")
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=stored-row]').length === 2"
            " && [...document.querySelectorAll('[data-testid=stored-row]')]"
            f".every(r => r.textContent.includes('suite={tag}'))"
        )
        assert [rows.nth(i).get_attribute("data-id") for i in range(2)] == [second, first]
        assert lists[-1] == {
            "limit": ["20"],
            "order": ["desc"],
            "model": [MODEL],
            "metadata[suite]": [tag],
        }

        # one per page: the second page comes after the first's last id
        page.get_by_test_id("stored-limit").fill("1")
        page.get_by_test_id("stored-search").click()
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=stored-row]').length === 1"
        )
        assert rows.first.get_attribute("data-id") == second
        page.get_by_test_id("stored-more").click()
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=stored-row]').length === 2"
        )
        assert rows.nth(1).get_attribute("data-id") == first
        assert lists[-1]["after"] == [second] and lists[-1]["limit"] == ["1"]
        assert page.get_by_test_id("stored-more").is_hidden()  # no more
        # a page size the server refuses: its message, inline
        page.get_by_test_id("stored-limit").fill("500")
        page.get_by_test_id("stored-search").click()
        page.get_by_test_id("stored-error").wait_for()
        assert "limit" in page.get_by_test_id("stored-error").inner_text()
        guarded.errors.clear()  # the browser logs the 400 response itself
        page.get_by_test_id("stored-limit").fill("20")

        # another value matches nothing
        page.get_by_test_id("stored-meta-value").fill(tag + "-other")
        page.get_by_test_id("stored-search").click()
        page.get_by_test_id("stored-empty").wait_for()
        page.get_by_test_id("stored-meta-value").fill(tag)
        page.get_by_test_id("stored-search").click()
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=stored-row]').length === 2"
        )

        page.locator(f"[data-testid=stored-row][data-id='{first}'] button").click()
        detail = page.get_by_test_id("stored-detail")
        detail.get_by_test_id("stored-detail-id").wait_for()
        assert detail.get_by_test_id("stored-detail-id").inner_text() == first
        messages = detail.get_by_test_id("stored-message")
        assert messages.count() == 1
        assert messages.first.inner_text().endswith("First stored question")
        assert detail.get_by_test_id("stored-answer").count() == 1
        assert f"suite={tag}" in detail.inner_text()

        detail.get_by_test_id("stored-delete").click()
        page.get_by_test_id("stored-deleted").wait_for()
        assert rows.count() == 1 and rows.first.get_attribute("data-id") == second
        assert http.get(f"/v1/chat/completions/{first}").status_code == 404
        assert http.get(f"/v1/chat/completions/{second}").status_code == 200
        assert guarded.external == [] and guarded.errors == []


def test_picker_shows_a_channel_cooling_down(browser: Any, tmp_path: Path) -> None:
    config = tmp_path / "chatd.toml"
    config.write_text(
        f'[[models]]\nid = "{MODEL}"\npath = "embedded"\n\n'
        '[[channels]]\nname = "deadch"\nbase_url = "http://127.0.0.1:1/v1"\n'
        'models = ["mdead"]\nfailures_before_cooldown = 2\ncooldown_seconds = 300\n'
    )
    srv = Server("--config", str(config))  # no key: an open server, no dialog
    try:
        with open_page(browser, srv.base_url) as guarded:
            page = guarded.page
            ready(page, srv.base_url)
            picker = page.get_by_test_id("model-select")
            dead = picker.locator("option[value='mdead']")
            assert dead.get_attribute("data-available") == "true"
            assert "channel deadch" in dead.inner_text()
            body = {"model": "mdead", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(2):
                r = httpx.post(srv.base_url + "/v1/chat/completions", json=body, timeout=30)
                assert r.status_code == 503
            page.get_by_test_id("models-refresh").click()
            page.wait_for_function(
                "() => document.querySelector(\"option[value='mdead']\").disabled"
            )
            assert "channel deadch · cooling down (" in dead.inner_text()
            assert "unavailable" in dead.inner_text()
            assert picker.input_value() == MODEL
            local = picker.locator(f"option[value='{MODEL}']")
            assert "local · loaded" in local.inner_text() and local.is_enabled()
            assert dead.is_disabled()  # listed, but cannot be chosen while cooling down
            assert guarded.external == [] and guarded.errors == []
    finally:
        srv.stop()

"""The playground's Complete tab in a real headless Chromium against the live server:
a raw prompt continued through ``POST /v1/completions`` (no chat template), the sidebar's
sampling fields sent (and the chat-only ones not), the prompt shown before the streamed
continuation, logprobs shaded as in the chat, and the usage line."""

from __future__ import annotations

import re
from typing import Any

from conftest import MODEL
from playground_browser import Guarded, fill, open_section


def test_complete_tab_continues_a_raw_prompt(guarded: Guarded) -> None:
    page = guarded.page
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            bodies.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/v1/completions")
            else None
        ),
    )
    fill(page, "param-max_tokens", "6")
    fill(page, "param-temperature", "0")
    fill(page, "param-seed", "3")
    open_section(page, "logprobs")
    page.get_by_test_id("param-logprobs").check()
    fill(page, "param-top_logprobs", "9")  # more than the API's 5: sent as 5
    page.get_by_test_id("tab-complete").click()
    fill(page, "complete-prompt", "1, 2, 3, 4,")
    page.get_by_test_id("complete-run").click()
    page.locator("[data-testid=complete-status][data-state=done]").wait_for()
    (body,) = bodies
    assert body["model"] == MODEL and body["prompt"] == "1, 2, 3, 4,"
    assert body["max_tokens"] == 6 and body["temperature"] == 0 and body["seed"] == 3
    assert body["logprobs"] == 5 and body["stream"] is True
    assert "messages" not in body and "top_logprobs" not in body and "store" not in body
    choice = page.get_by_test_id("completion-choice")
    assert choice.count() == 1
    assert choice.inner_text().startswith("1, 2, 3, 4,")
    tokens = choice.get_by_test_id("token")
    assert tokens.count() > 0
    assert all(0 < float(tokens.nth(i).get_attribute("data-probability")) <= 1
               for i in range(tokens.count()))  # fmt: skip
    text = page.get_by_test_id("completion-text").inner_text()
    usage = page.get_by_test_id("complete-usage").inner_text()
    assert text.strip() and re.search(r"completion [1-6] tokens", usage), usage
    # the chat is untouched: no answer there
    assert page.get_by_test_id("answer").count() == 0

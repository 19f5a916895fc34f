"""The playground answers tool calls, in a real headless Chromium (tests/
playground_browser.py) against the session's live ``chatd serve`` on the embedded model:
a result typed under each call of the last answer and "Send results" make the next turn
(the assistant's calls exactly as received, one ``tool`` message per call id), streamed
with the panel's current fields and stored with ``store: true``; the button stays
disabled while a result is empty; a refused turn can be sent again; a stopped answer
to the results keeps the turn and its text so far; calls left unanswered by a new
message, and Clear, leave no call in the conversation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from conftest import Server
from playground_browser import (
    COMPLETIONS,
    Guarded,
    chat_bodies,
    fill,
    open_section,
    send,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
RESULT = '{"city": "Paris", "sky": "sunny", "temperature_c": 18}'


def calls_in_stream(sse: str) -> list[dict[str, Any]]:
    """Choice 0's tool calls put together from a chat stream's chunks, as received."""
    calls: dict[int, dict[str, Any]] = {}
    for line in sse.splitlines():
        data = line.removeprefix("data:").strip()
        if not line.startswith("data:") or data == "[DONE]":
            continue
        for choice in json.loads(data).get("choices", []):
            if choice["index"] != 0:
                continue
            for delta in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(
                    delta["index"],
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = delta.get("id") or call["id"]
                fn = delta.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def ask_for_a_call(page: Any, prompt: str) -> tuple[Any, list[dict[str, Any]]]:
    """Send ``prompt`` with tool_choice "required": the answer and its calls as streamed.

    The browser keeps no body of a streamed response, so this one answer goes through a
    route that fetches it whole, reads it and hands it on to the page unchanged."""
    streams: list[str] = []

    def relay(route: Any) -> None:
        if route.request.method != "POST":
            route.fallback()
            return
        response = route.fetch(timeout=120_000)
        streams.append(response.text())
        route.fulfill(response=response)

    page.get_by_test_id("tool-choice").select_option("required")
    page.route("**" + COMPLETIONS, relay)
    try:
        answer = send(page, prompt)
    finally:
        page.unroute("**" + COMPLETIONS, relay)
    [stream] = streams
    calls = calls_in_stream(stream)
    assert calls, answer.inner_text()
    return answer, calls


def send_results(page: Any, state: str = "done") -> Any:
    """Click Send results; wait until the next answer ends in ``state``; that answer."""
    before = page.get_by_test_id("answer").count()
    page.get_by_test_id("send-tool-results").click()
    answer = page.get_by_test_id("answer").nth(before)
    answer.locator(f"[data-testid=answer-status][data-state={state}]").wait_for()
    return answer


def declare_tools(page: Any) -> None:
    open_section(page, "tools")
    fill(page, "tools-text", json.dumps([WEATHER]))
    fill(page, "param-temperature", "0")  # greedy: the same short call every run
    fill(page, "param-max_tokens", "60")


def test_results_are_sent_back_and_the_answer_goes_on_stored(
    guarded: Guarded, server: Server, http: httpx.Client
) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    tag = uuid.uuid4().hex
    declare_tools(page)
    page.get_by_test_id("param-parallel_tool_calls").uncheck()  # one call to answer
    open_section(page, "store")
    page.get_by_test_id("param-store").check()
    fill(page, "metadata-key", "suite")
    fill(page, "metadata-value", tag)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first, calls = ask_for_a_call(page, question["content"])
    [call] = calls
    assert call["function"]["name"] == "get_weather" and call["id"]
    box = first.get_by_test_id("tool-result")
    assert box.count() == 1 and box.get_attribute("data-call-id") == call["id"]
    button = first.get_by_test_id("send-tool-results")
    assert button.is_disabled()
    box.fill(RESULT)
    assert button.is_enabled()
    # the follow-up uses the panel's current tool_choice: "none" to get text
    page.get_by_test_id("tool-choice").select_option("none")
    second = send_results(page)

    assert len(bodies) == 2
    assert bodies[1]["messages"] == [
        question,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": call["id"], "content": RESULT},
    ]
    assert bodies[1]["tools"] == [WEATHER] and bodies[1]["tool_choice"] == "none"
    assert bodies[1]["parallel_tool_calls"] is False
    assert bodies[1]["store"] is True and bodies[1]["metadata"] == {"suite": tag}
    assert bodies[1]["stream"] is True
    reply = second.get_by_test_id("choice-content").text_content()
    assert reply.strip()
    assert second.get_by_test_id("tool-call").count() == 0
    status = second.get_by_test_id("answer-status").inner_text()
    assert status in ("done (stop)", "done (length)")
    # the results stay shown under the call, sent; no user message was added
    assert box.get_attribute("readonly") is not None and button.is_hidden()
    assert first.get_by_test_id("tool-results-hint").inner_text() == "results sent"
    assert page.get_by_test_id("user-message").count() == 1

    # stored as the continued conversation: the calls and the result with its call id
    stored_id = second.get_by_test_id("completion-id").inner_text().removeprefix("stored as ")
    stored = http.get(f"{COMPLETIONS}/{stored_id}/messages").json()["data"]
    assert [m["role"] for m in stored] == ["user", "assistant", "tool"]
    assert stored[1]["tool_calls"] == calls
    assert stored[2]["tool_call_id"] == call["id"] and stored[2]["content"] == RESULT
    page.get_by_test_id("tab-stored").click()
    fill(page, "stored-meta-key", "suite")
    fill(page, "stored-meta-value", tag)
    page.get_by_test_id("stored-search").click()
    page.locator(f"[data-testid=stored-row][data-id='{stored_id}'] button").click()
    detail = page.get_by_test_id("stored-detail")
    detail.get_by_test_id("stored-detail-id").wait_for()
    messages = detail.get_by_test_id("stored-message")
    assert messages.count() == 3
    assert messages.nth(1).get_by_test_id("stored-tool-call").inner_text() == (
        f"get_weather({call['function']['arguments']})"
    )
    assert messages.nth(2).get_by_test_id("stored-call-id").inner_text() == call["id"]
    assert RESULT in messages.nth(2).inner_text()

    # the conversation goes on from the answer to the results
    page.get_by_test_id("tab-chat").click()
    fill(page, "param-max_tokens", "4")
    send(page, "Thanks.")
    assert bodies[2]["messages"] == [
        *bodies[1]["messages"],
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Thanks."},
    ]


def test_send_results_disabled_while_a_result_is_empty_and_resent_after_an_error(
    guarded: Guarded,
) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    declare_tools(page)
    fill(page, "param-n", "2")
    first, calls = ask_for_a_call(page, "What is the weather in Paris?")
    # n=2: the first choice continues the conversation, so only its calls get results
    choices = first.get_by_test_id("choice")
    assert choices.count() == 2
    assert choices.nth(1).get_by_test_id("tool-result").count() == 0
    boxes = choices.nth(0).get_by_test_id("tool-result")
    assert boxes.count() == len(calls)
    assert [boxes.nth(i).get_attribute("data-call-id") for i in range(len(calls))] == [
        c["id"] for c in calls
    ]
    button = first.get_by_test_id("send-tool-results")
    hint = first.get_by_test_id("tool-results-hint")
    assert button.is_disabled() and "to fill in" in hint.inner_text()
    # blank is empty: still disabled, and a click sends nothing
    for i in range(len(calls)):
        boxes.nth(i).fill("  \n ")
    assert button.is_disabled()
    button.click(force=True)
    assert len(bodies) == 1
    for i in range(len(calls) - 1):
        boxes.nth(i).fill(f"result {i}")
    assert button.is_disabled()  # one left empty
    boxes.nth(len(calls) - 1).fill("sunny")
    assert button.is_enabled() and hint.inner_text() == ""

    # refused (temperature out of range): the results can be sent again
    fill(page, "param-n", "1")
    fill(page, "param-temperature", "5")
    page.get_by_test_id("tool-choice").select_option("none")
    refused = send_results(page, state="error")
    assert "temperature" in refused.get_by_test_id("error").inner_text()
    guarded.errors.clear()  # the browser logs the 400 response itself
    assert button.is_enabled() and boxes.first.get_attribute("readonly") is None
    fill(page, "param-temperature", "0")
    fill(page, "param-max_tokens", "8")
    send_results(page)
    expected = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *[
            {"role": "tool", "tool_call_id": c["id"], "content": f"result {i}"}
            for i, c in enumerate(calls[:-1])
        ],
        {"role": "tool", "tool_call_id": calls[-1]["id"], "content": "sunny"},
    ]
    assert bodies[1]["messages"] == expected
    assert bodies[2]["messages"] == expected  # the retry: the same turn, not added twice
    assert button.is_hidden()


def test_calls_left_unanswered_and_clear_leave_no_call_behind(guarded: Guarded) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    declare_tools(page)
    first, _ = ask_for_a_call(page, "What is the weather in Paris?")
    text = first.get_by_test_id("choice-content").text_content()
    # a new message instead of results: the calls are dropped (the API would refuse
    # calls without results), their text kept, the result boxes closed
    page.get_by_test_id("tool-choice").select_option("none")
    fill(page, "param-max_tokens", "4")
    send(page, "Never mind, say hello.")
    assert bodies[1]["messages"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        *([{"role": "assistant", "content": text}] if text else []),
        {"role": "user", "content": "Never mind, say hello."},
    ]
    assert first.get_by_test_id("send-tool-results").is_hidden()
    assert first.get_by_test_id("tool-results-hint").inner_text() == "not answered"
    boxes = first.get_by_test_id("tool-result")
    assert boxes.count() >= 1
    assert all(boxes.nth(i).get_attribute("readonly") is not None for i in range(boxes.count()))
    # Clear with calls waiting for results: the next turn starts afresh
    fill(page, "param-max_tokens", "60")
    ask_for_a_call(page, "And in Rome?")
    page.get_by_test_id("clear").click()
    assert page.get_by_test_id("send-tool-results").count() == 0
    page.get_by_test_id("tool-choice").select_option("none")
    fill(page, "param-max_tokens", "4")
    send(page, "Hello.")
    assert bodies[-1]["messages"] == [{"role": "user", "content": "Hello."}]


def test_stop_during_the_answer_to_results_keeps_the_turn(guarded: Guarded) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    declare_tools(page)
    page.get_by_test_id("param-parallel_tool_calls").uncheck()
    _, [call] = ask_for_a_call(page, "What is the weather in Paris?")
    page.get_by_test_id("tool-result").fill("rain")
    page.get_by_test_id("tool-choice").select_option("none")
    open_section(page, "extensions")
    # min_tokens: the answer would go on for 2000 tokens unless stopped
    fill(page, "param-max_tokens", "2000")
    fill(page, "param-min_tokens", "2000")
    page.get_by_test_id("send-tool-results").click()
    answer = page.get_by_test_id("answer").nth(1)
    page.wait_for_function(
        "() => (document.querySelectorAll('[data-testid=choice-content]')[1]"
        " || {textContent: ''}).textContent.length > 20"
    )
    page.get_by_test_id("stop").click()
    answer.locator("[data-testid=answer-status][data-state=stopped]").wait_for()
    partial = answer.get_by_test_id("choice-content").text_content()
    # stopped, not failed: the calls, the result and the text so far are the conversation
    assert page.get_by_test_id("send-tool-results").is_hidden()
    fill(page, "param-min_tokens", "")
    fill(page, "param-max_tokens", "4")
    send(page, "Thanks.")
    assert bodies[2]["messages"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"},
        {"role": "assistant", "content": partial},
        {"role": "user", "content": "Thanks."},
    ]

"""The browser playground at ``/`` in a real headless Chromium (Debian's ``chromium``
driven by Playwright, tests/playground_browser.py) against the session's live ``chatd
serve`` on the embedded model: the page loads offline, the picker shows the local model,
answers stream in with their usage, Stop cancels the generation on the server, the
parameters are sent, n choices, JSON mode, the schema editor, tool calls, the logprobs
view and API errors shown inline. The key and the stored-completions browser are in
test_playground_stored.py."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import API_KEY, MODEL, Server, bearer
from playground_browser import (
    Guarded,
    chat_bodies,
    fill,
    open_section,
    send,
)
from waiting import wait_until


def test_page_is_served_from_the_package_and_loads_offline(
    guarded: Guarded, server: Server
) -> None:
    page = guarded.page
    assert page.title() == "chatd playground"
    loaded = {u.removeprefix(server.base_url) for u in guarded.requests}
    assert {"/", "/playground/main.js", "/playground/playground.css", "/chatd/models"} <= loaded
    # the guard fixture asserts no request went elsewhere; the page names no other host
    html = httpx.get(server.base_url + "/")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert "http://" not in html.text and "https://" not in html.text


def test_picker_shows_the_local_model_loaded(guarded: Guarded) -> None:
    page = guarded.page
    picker = page.get_by_test_id("model-select")
    assert picker.input_value() == MODEL
    option = picker.locator(f"option[value='{MODEL}']")
    assert option.get_attribute("data-available") == "true"
    assert "local · loaded" in option.inner_text()
    route = page.get_by_test_id("model-route")
    assert route.get_attribute("data-kind") == "local"
    assert route.get_attribute("data-state") == "loaded"
    assert route.inner_text() == "local · loaded"


def test_answer_streams_in_and_shows_its_usage(guarded: Guarded) -> None:
    page = guarded.page
    fill(page, "param-max_tokens", "16")
    # record the answer's text each time it changes while the status still says streaming
    page.evaluate(
        """() => {
        window.partials = [];
        new MutationObserver(() => {
          const status = document.querySelector('[data-testid=answer-status]');
          const content = document.querySelector('[data-testid=choice-content]');
          if (status && content && status.dataset.state === 'streaming' && content.textContent)
            window.partials.push(content.textContent);
        }).observe(document.querySelector('[data-testid=transcript]'),
                   {childList: true, subtree: true, characterData: true});
        }"""
    )
    answer = send(page, "Tell me about the sea.")
    final = answer.get_by_test_id("choice-content").text_content()
    partials = page.evaluate("window.partials")
    assert final and len(set(partials)) >= 2  # seen growing, before the end
    assert all(final.startswith(p) for p in partials)
    assert min(len(p) for p in partials) < len(final)
    usage = answer.get_by_test_id("usage").inner_text()
    assert "prompt " in usage and "cached " in usage and "completion " in usage
    assert "first token " in usage and "total " in usage
    completion_tokens = int(usage.split("completion ")[1].split(" ")[0])
    assert 0 < completion_tokens <= 16
    assert page.get_by_test_id("user-message").inner_text().endswith("Tell me about the sea.")


def engine_running(server: Server) -> int:
    stats = httpx.get(server.base_url + "/health", headers=bearer(API_KEY)).json()["models"][MODEL]
    return stats["running_requests"]


def cut_lines(server: Server) -> list[str]:
    """The request-log lines of chat completions whose client left."""
    return [
        line
        for line in server.log().splitlines()
        if "path=/v1/chat/completions" in line and "client_left=true" in line
    ]


def test_stop_cancels_the_generation_on_the_server(guarded: Guarded, server: Server) -> None:
    page = guarded.page
    already = len(cut_lines(server))
    open_section(page, "extensions")
    # min_tokens: the engine would go on for 2000 tokens unless the request is cancelled
    fill(page, "param-max_tokens", "2000")
    fill(page, "param-min_tokens", "2000")
    fill(page, "prompt", "Tell me a very long story about a lighthouse keeper.")
    page.get_by_test_id("send").click()
    answer = page.get_by_test_id("answer").last
    page.wait_for_function(
        "() => document.querySelector('[data-testid=choice-content]').textContent.length > 20"
    )
    assert engine_running(server) == 1
    page.get_by_test_id("stop").click()
    answer.locator("[data-testid=answer-status][data-state=stopped]").wait_for()
    # the connection closed, chatd cancels: the engine has nothing running any more,
    # because the request was cut (its log line), not because its 2000 tokens were done
    wait_until(lambda: engine_running(server) == 0, "the engine idle after Stop", interval=0.05)
    wait_until(lambda: len(cut_lines(server)) > already, "the stopped request's log line")
    line = cut_lines(server)[-1]
    assert int(line.split(" completion_tokens=")[1].split(" ")[0]) < 2000, line
    shown = answer.get_by_test_id("choice-content").inner_text()
    assert 0 < len(shown) < 2000 * 4
    assert page.get_by_test_id("send").is_enabled()
    assert page.get_by_test_id("stop").is_disabled()


def test_parameters_are_sent_and_n_choices_shown(guarded: Guarded) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    fill(page, "system-prompt", "You answer briefly.")
    fill(page, "param-temperature", "0.7")
    fill(page, "param-top_p", "0.9")
    fill(page, "param-max_tokens", "6")
    fill(page, "param-seed", "42")
    fill(page, "param-n", "2")
    fill(page, "param-stop", "END\nSTOP")
    answer = send(page, "Name two fruits.")
    [body] = bodies
    assert body["model"] == MODEL
    assert body["messages"] == [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Name two fruits."},
    ]
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert body["max_tokens"] == 6 and body["seed"] == 42 and body["n"] == 2
    assert body["stop"] == ["END", "STOP"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    choices = answer.get_by_test_id("choice")
    assert choices.count() == 2
    assert [choices.nth(i).get_attribute("data-index") for i in range(2)] == ["0", "1"]
    for i in range(2):
        assert choices.nth(i).get_by_test_id("choice-content").inner_text()
    # the next turn carries the conversation so far
    send(page, "And one more.")
    assert [m["role"] for m in bodies[1]["messages"]] == ["system", "user", "assistant", "user"]


def test_json_mode_answer_is_shown_parsed(guarded: Guarded) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    open_section(page, "format")
    page.get_by_test_id("response-format").select_option("json_object")
    fill(page, "param-temperature", "0")  # greedy: the same short object every run
    fill(page, "param-max_tokens", "100")
    answer = send(page, "Describe a cat as a JSON object with a name and an age.")
    assert bodies[0]["response_format"] == {"type": "json_object"}
    invalid = answer.get_by_test_id("json-invalid")
    assert invalid.count() == 0, invalid.inner_text()
    shown = answer.get_by_test_id("json-view").inner_text()
    raw = answer.get_by_test_id("choice-content").inner_text()
    assert json.loads(shown) == json.loads(raw)
    assert isinstance(json.loads(shown), dict)


def test_schema_editor_rejects_invalid_json_and_sends_a_valid_schema(guarded: Guarded) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    open_section(page, "format")
    page.get_by_test_id("response-format").select_option("json_schema")
    fill(page, "param-max_tokens", "40")
    fill(page, "schema-text", '{"type": "object", "properties": ')
    fill(page, "prompt", "Pick a colour.")
    page.get_by_test_id("send").click()
    error = page.get_by_test_id("schema-error")
    error.wait_for()
    assert "not valid JSON" in error.inner_text()
    assert page.get_by_test_id("answer").count() == 0 and bodies == []
    assert page.get_by_test_id("prompt").input_value() == "Pick a colour."  # kept to retry
    fill(page, "schema-text", '["not", "an", "object"]')
    page.get_by_test_id("send").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=schema-error]')"
        ".textContent.includes('must be a JSON object')"
    )
    assert page.get_by_test_id("answer").count() == 0 and bodies == []
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    fill(page, "schema-name", "colour_pick")
    fill(page, "schema-text", json.dumps(schema))
    answer = send(page, "Pick a colour.")
    assert error.is_hidden()
    assert bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "colour_pick", "schema": schema, "strict": True},
    }
    assert json.loads(answer.get_by_test_id("json-view").inner_text())["colour"] in {
        "red",
        "green",
        "blue",
    }


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


def test_tools_panel_shows_the_tool_call(guarded: Guarded) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    open_section(page, "tools")
    fill(page, "tools-text", "[{not json")
    fill(page, "prompt", "What is the weather in Paris?")
    page.get_by_test_id("send").click()
    page.get_by_test_id("tools-error").wait_for()
    assert "not valid JSON" in page.get_by_test_id("tools-error").inner_text() and bodies == []
    fill(page, "tools-text", '[{"type": "function", "function": {"description": "no name"}}]')
    page.get_by_test_id("send").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=tools-error]')"
        ".textContent.includes('Each tool needs')"
    )
    assert page.get_by_test_id("answer").count() == 0 and bodies == []
    fill(page, "tools-text", json.dumps([WEATHER]))
    page.get_by_test_id("tool-choice").select_option("required")
    page.get_by_test_id("param-parallel_tool_calls").uncheck()
    fill(page, "param-temperature", "0")  # greedy: the same short call every run
    fill(page, "param-max_tokens", "60")
    answer = send(page, "What is the weather in Paris?")
    assert bodies[0]["tools"] == [WEATHER] and bodies[0]["tool_choice"] == "required"
    assert bodies[0]["parallel_tool_calls"] is False
    call = answer.get_by_test_id("tool-call")
    assert call.count() == 1
    assert call.get_by_test_id("tool-name").inner_text() == "get_weather"
    shown = call.get_by_test_id("tool-args").inner_text()
    assert "\n" in shown  # pretty-printed
    assert isinstance(json.loads(shown)["city"], str)
    assert answer.get_by_test_id("answer-status").inner_text() == "done (tool_calls)"


def test_logprobs_view_shades_tokens_with_alternatives_on_hover(guarded: Guarded) -> None:
    page = guarded.page
    bodies = chat_bodies(page)
    open_section(page, "logprobs")
    page.get_by_test_id("param-logprobs").check()
    fill(page, "param-top_logprobs", "3")
    fill(page, "param-max_tokens", "8")
    # greedy: a token sampled at temperature 1 may be so unlikely that its probability,
    # as the page rounds it, is 0
    fill(page, "param-temperature", "0")
    answer = send(page, "Say something.")
    assert bodies[0]["logprobs"] is True and bodies[0]["top_logprobs"] == 3
    tokens = answer.get_by_test_id("token")
    assert tokens.count() > 0
    shades = set()
    for i in range(tokens.count()):
        token = tokens.nth(i)
        probability = float(token.get_attribute("data-probability"))
        assert 0 < probability <= 1
        shade = token.evaluate("t => getComputedStyle(t).backgroundColor")
        shades.add(shade)
        alpha = token.evaluate("t => getComputedStyle(t).getPropertyValue('--p')")
        assert float(alpha) == pytest.approx(probability, abs=1e-3)
    tip = tokens.first.get_by_test_id("token-alternatives")
    assert tip.is_hidden()
    tokens.first.hover()
    tip.wait_for(state="visible")
    alternatives = tip.locator("li")
    assert alternatives.count() == 3
    assert all("%" in alternatives.nth(i).inner_text() for i in range(3))


def test_api_errors_are_shown_inline(guarded: Guarded) -> None:
    page = guarded.page
    fill(page, "param-temperature", "5")
    answer = send(page, "Hello", state="error")
    message = answer.get_by_test_id("error").inner_text()
    assert "Invalid 'temperature'" in message and "Expected a value <= 2" in message
    guarded.errors.clear()  # the browser logs the 400 response itself

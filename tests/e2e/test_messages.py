"""``POST /v1/messages`` on the real model (SmolLM2-135M in a real ``chatd serve``) with
Anthropic's SDK: create, stream, a forced tool whose input parses with exactly the
schema's keys (the grammar), ``count_tokens`` equal to what the message is billed, and a
prompt too long for the context. Answers are short and greedy."""

from __future__ import annotations

import anthropic
import pytest
from conftest import API_KEY, MODEL

HI = [{"role": "user", "content": "Say hello in one short sentence."}]
WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
        "required": ["city", "unit"],
    },
}


@pytest.fixture(scope="module")
def claude(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=120)


def billed(usage: anthropic.types.Usage) -> int:
    """Every prompt token, read from the cache or not (Anthropic splits them)."""
    return (
        usage.input_tokens
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
    )


def test_create_and_count_tokens(claude: anthropic.Anthropic) -> None:
    system = "You are a terse assistant."
    counted = claude.messages.count_tokens(model=MODEL, system=system, messages=HI)
    m = claude.messages.create(
        model=MODEL, max_tokens=12, system=system, messages=HI, extra_body={"temperature": 0}
    )
    assert m.id.startswith("msg_") and m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert 0 < m.usage.output_tokens <= 12
    assert billed(m.usage) == counted.input_tokens > 0


def test_stream_adds_up(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL, max_tokens=32000, messages=HI, extra_body={"temperature": 0}
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and text == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.input_tokens > 0


def test_a_forced_tool_input_has_exactly_the_schemas_keys(claude: anthropic.Anthropic) -> None:
    tools = [WEATHER]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    counted = claude.messages.count_tokens(
        model=MODEL,
        messages=messages,
        tools=tools,  # type: ignore[arg-type]
    )
    m = claude.messages.create(
        model=MODEL,
        max_tokens=60,
        messages=messages,  # type: ignore[arg-type]
        tools=tools,  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body={"temperature": 0},
    )
    assert m.stop_reason == "tool_use"
    (use,) = m.content
    assert use.type == "tool_use" and use.name == "get_weather"
    assert set(use.input) == {"city", "unit"} and use.input["unit"] in ("C", "F")  # type: ignore[operator,index]
    assert billed(m.usage) == counted.input_tokens


def test_a_prompt_too_long_is_anthropics_400(claude: anthropic.Anthropic) -> None:
    long = [{"role": "user", "content": "word " * 20000}]
    counted = claude.messages.count_tokens(model=MODEL, messages=long)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=MODEL, max_tokens=100, messages=long)  # type: ignore[arg-type]
    error = e.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"prompt is too long: {counted.input_tokens} tokens > ")

"""``protocol/chat_as_messages.py``: a Chat Completions body as the Messages body an
Anthropic channel is sent: the conversation (system, tool calls and results, images,
files), tools and tool choice, limits and sampling, structured output; and the 400 for
each field whose promise Anthropic cannot keep. Over HTTP:
tests/service/test_anthropic_channels.py."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chatd.protocol.chat_as_messages import DEFAULT_MAX_TOKENS, messages_from_chat
from chatd.protocol.errors import InvalidRequest, Unsupported

USER = {"role": "user", "content": "Hi"}
TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body(**kw: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": [USER], **kw}


def text(t: str) -> dict[str, str]:
    return {"type": "text", "text": t}


def test_a_plain_request() -> None:
    out = messages_from_chat(body())
    assert out == {
        "model": "claude",
        "messages": [{"role": "user", "content": [text("Hi")]}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }


def test_max_tokens_from_either_chat_field_else_the_default_given() -> None:
    assert messages_from_chat(body(max_completion_tokens=10))["max_tokens"] == 10
    assert messages_from_chat(body(max_tokens=20))["max_tokens"] == 20
    assert messages_from_chat(body(max_tokens=20, max_completion_tokens=10))["max_tokens"] == 10
    assert messages_from_chat(body(), max_tokens=99)["max_tokens"] == 99


def test_system_and_developer_messages_become_system_blocks_in_order() -> None:
    messages = [
        {"role": "system", "content": "One."},
        USER,
        {"role": "developer", "content": [text("Two."), text("")]},
    ]
    out = messages_from_chat(body(messages=messages))
    assert out["system"] == [text("One."), text("Two.")]
    assert out["messages"] == [{"role": "user", "content": [text("Hi")]}]


def test_a_tool_round_trip() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        USER,
        {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [text("Warm")]},
        {"role": "user", "content": "And?"},
    ]
    out = messages_from_chat(body(messages=messages, tools=[TOOL]))
    assert out["messages"] == [
        {"role": "user", "content": [text("Hi")]},
        {
            "role": "assistant",
            "content": [
                text("Let me look."),
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            ],
        },
        {  # consecutive tool results and the next user message: one user turn
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [text("Sunny")]},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [text("Warm")]},
                text("And?"),
            ],
        },
    ]
    assert out["tools"] == [
        {
            "name": "weather",
            "input_schema": TOOL["function"]["parameters"],
            "description": "The weather in a city",
        }
    ]
    assert "tool_choice" not in out  # auto is Anthropic's default


def test_an_empty_tool_result_and_an_empty_assistant_turn() -> None:
    messages = [
        USER,
        {"role": "assistant", "content": None},
        {"role": "tool", "tool_call_id": "c", "content": ""},
    ]
    out = messages_from_chat(body(messages=messages))
    assert out["messages"] == [
        {"role": "user", "content": [text("Hi"), {"type": "tool_result", "tool_use_id": "c"}]}
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            None,
            {"type": "tool", "name": "weather"},
        ),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"tools": [TOOL]}
    if choice is not None:
        kw["tool_choice"] = choice
    if parallel is not None:
        kw["parallel_tool_calls"] = parallel
    assert messages_from_chat(body(**kw))["tool_choice"] == expected


def test_allowed_tools_keeps_the_named_tools() -> None:
    other = {"type": "function", "function": {"name": "other"}}
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "other"}}],
        },
    }
    out = messages_from_chat(body(tools=[TOOL, other], tool_choice=choice))
    assert [t["name"] for t in out["tools"]] == ["other"]
    assert out["tools"][0]["input_schema"] == {"type": "object", "properties": {}}
    assert out["tool_choice"] == {"type": "any"}


def test_a_tool_choice_without_tools_is_not_sent() -> None:
    out = messages_from_chat(body(tool_choice="none", parallel_tool_calls=False))
    assert "tools" not in out and "tool_choice" not in out


def test_strict_tools_stay_strict() -> None:
    strict = {"type": "function", "function": {**TOOL["function"], "strict": True}}
    assert messages_from_chat(body(tools=[strict]))["tools"][0]["strict"] is True


def test_sampling_and_stop() -> None:
    out = messages_from_chat(body(temperature=0.5, top_p=0.9, stop="END", stream=True))
    assert (out["temperature"], out["top_p"], out["stop_sequences"]) == (0.5, 0.9, ["END"])
    assert out["stream"] is True
    assert messages_from_chat(body(stop=["a", "b"]))["stop_sequences"] == ["a", "b"]
    # OpenAI's temperature runs to 2, Anthropic's to 1
    assert messages_from_chat(body(temperature=1.7))["temperature"] == 1.0


def test_hints_without_a_twin_are_dropped() -> None:
    out = messages_from_chat(
        body(
            seed=3,
            presence_penalty=0.5,
            frequency_penalty=0.5,
            reasoning_effort="low",
            verbosity="low",
            prompt_cache_key="k",
            service_tier="auto",
            prediction={"type": "content", "content": "x"},
            n=1,
            logprobs=False,
            user="u",
            metadata={"a": "b"},
            store=True,
        )
    )
    assert set(out) == {"model", "messages", "max_tokens"}


def test_json_schema_becomes_the_output_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    out = messages_from_chat(body(response_format=fmt))
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in messages_from_chat(body(response_format={"type": "text"}))


def test_images_and_files() -> None:
    content = [
        text("Look"),
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
        },
    ]
    out = messages_from_chat(body(messages=[{"role": "user", "content": content}]))
    assert out["messages"][0]["content"] == [
        text("Look"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
            "title": "a.pdf",
        },
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}
                ]
            },
            "messages[0].content[0].file.file_id",
        ),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_what_anthropic_cannot_keep_is_a_400_naming_it(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(Unsupported) as e:
        messages_from_chat(body(**fields))
    assert e.value.param == param and e.value.status == 400
    assert "Anthropic" in e.value.message


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([], "messages"),
        ([{"role": "system", "content": "only"}], "messages"),
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        (
            [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "[1]"},
                        }
                    ],
                },
            ],
            "messages[1].tool_calls[0].function.arguments",
        ),
        ([USER, {"role": "tool", "content": "x"}], "messages[1].tool_call_id"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
            "messages[0].content[0].image_url.url",
        ),
        ([{"role": "system", "content": [{"type": "image_url"}]}, USER], "messages[0].content[0]"),
    ],
)
def test_a_conversation_that_cannot_be_read_is_a_400(messages: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        messages_from_chat(body(messages=messages))
    assert e.value.param == param


def test_call_ids_anthropic_would_refuse_are_rewritten_alike() -> None:
    call = {
        "id": "functions.weather:0",
        "type": "function",
        "function": {"name": "weather", "arguments": "{}"},
    }
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "functions.weather:0", "content": "Sunny"},
    ]
    out = messages_from_chat(body(messages=messages))
    assert out["messages"][1]["content"][0]["id"] == "functions_weather_0"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "functions_weather_0"


def test_top_p_of_1_is_no_cut_and_not_sent() -> None:
    out = messages_from_chat(body(temperature=0.7, top_p=1))
    assert out["temperature"] == 0.7 and "top_p" not in out


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, "10", True, 1.5])
def test_a_limit_that_is_no_count_is_a_400(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as e:
        messages_from_chat(body(**{name: value}))
    assert e.value.param == name


JUNK: list[Any] = [None, 0, -1, 1.5, True, "x", "", [], [None], [1, "a"], {}, {"type": 1}]
FIELDS = [
    "messages", "tools", "tool_choice", "stop", "temperature", "top_p", "response_format",
    "parallel_tool_calls", "max_tokens", "n", "logprobs", "modalities", "logit_bias",
]  # fmt: skip


@pytest.mark.parametrize("field", FIELDS)
def test_junk_in_a_relayed_body_is_a_400_or_dropped_never_a_crash(field: str) -> None:
    """A relayed chat body is barely checked before it reaches the translation
    (protocol/relayed_request.py): any value is translated, or refused with a 400."""
    for value in JUNK:
        kw: dict[str, Any] = {field: value}
        if field in ("tool_choice", "parallel_tool_calls"):
            kw["tools"] = [TOOL]
        try:
            messages_from_chat(body(**kw))
        except InvalidRequest as e:
            assert e.status == 400 and e.param
    for value in JUNK:
        shapes = [
            {"role": "user", "content": value},
            {"role": "assistant", "content": "x", "tool_calls": value},
            {"role": "tool", "tool_call_id": value, "content": value},
            value,
        ]
        for shape in shapes:
            try:
                messages_from_chat(body(messages=[USER, shape]))
            except InvalidRequest as e:
                assert e.status == 400 and e.param


def _junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, biased towards the shapes the translation reads."""
    pick = rng.randrange(9 if depth < 3 else 5)
    if pick < 5:
        return [None, 0, "x", True, 1.5][pick]
    if pick == 5:
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = ["type", "role", "content", "text", "function", "name", "arguments", "id",
            "tool_calls", "tool_call_id", "image_url", "url", "file", "file_data",
            "parameters", "json_schema", "schema", "allowed_tools", "tools", "mode"]  # fmt: skip
    values = ["text", "function", "user", "assistant", "tool", "image_url", "file",
              "json_schema", "allowed_tools", "{}", "data:image/png;base64,AA"]  # fmt: skip
    out = {}
    for _ in range(rng.randrange(1, 5)):
        key = rng.choice(keys)
        out[key] = rng.choice(values) if rng.random() < 0.5 else _junk(rng, depth + 1)
    return out


def test_random_nested_junk_never_crashes() -> None:
    rng = random.Random(21)
    for _ in range(3000):
        chat: dict[str, Any] = {"model": "claude", "messages": [USER, _junk(rng)]}
        for name in ("tools", "tool_choice", "response_format"):
            if rng.random() < 0.5:
                chat[name] = [_junk(rng)] if name == "tools" else _junk(rng)
        if rng.random() < 0.3:
            chat["tools"] = [TOOL]
        try:
            messages_from_chat(chat)
        except InvalidRequest as e:
            assert e.status == 400 and e.param


@pytest.mark.parametrize(
    "choice",
    [
        {"type": "allowed_tools", "allowed_tools": "x"},
        {"type": "allowed_tools", "allowed_tools": {"mode": "sometimes", "tools": []}},
        {"type": "allowed_tools", "allowed_tools": {"tools": [{"function": "x"}]}},
        {"type": "allowed_tools", "allowed_tools": {"tools": [{"function": {"name": ["a"]}}]}},
        {"type": "function", "function": "x"},
        {"type": "function"},
        "sometimes",
        7,
    ],
)
def test_a_tool_choice_that_cannot_be_read_is_a_400(choice: Any) -> None:
    with pytest.raises(InvalidRequest) as e:
        messages_from_chat(body(tools=[TOOL], tool_choice=choice))
    assert e.value.param is not None and e.value.param.startswith("tool_choice")

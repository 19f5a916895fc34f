"""Chat Completions' tool fields as a plan (service/chat/tools.py) and the conversation as
template messages (service/chat/prompt.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tool_fixtures import (
    CALLING_PLANS,
    FUNCTIONS,
    NAMED_WEATHER,
    NO_PARAMS,
    TOOLS,
    USER,
    WEATHER_PARAMS,
    plan_of,
    request,
    tool,
)

from chatd.protocol.errors import InvalidRequest, NotYetSupported
from chatd.service.chat.prompt import render_messages
from chatd.service.chat.tools import plan_tools
from chatd.service.tool_calls import (
    CLOSE,
    OPEN,
    system_prompt,
    template_tools,
)

# --- plan_tools ----------------------------------------------------------------------------


def test_no_tools_no_plan() -> None:
    assert plan_tools(request()) is None


@pytest.mark.parametrize(
    ("fields", "mode", "forced", "parallel", "legacy"),
    [
        ({"tools": TOOLS}, "auto", None, True, False),
        ({"tools": TOOLS, "tool_choice": "auto"}, "auto", None, True, False),
        ({"tools": TOOLS, "tool_choice": "none"}, "none", None, True, False),
        ({"tools": TOOLS, "tool_choice": "required"}, "required", None, True, False),
        ({"tools": TOOLS, "tool_choice": NAMED_WEATHER}, "named", "get_weather", False, False),
        ({"tools": TOOLS, "parallel_tool_calls": True}, "auto", None, True, False),
        ({"tools": TOOLS, "parallel_tool_calls": False}, "auto", None, False, False),
        (
            {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False},
            "required",
            None,
            False,
            False,
        ),
        (
            {"tools": TOOLS, "tool_choice": NAMED_WEATHER, "parallel_tool_calls": True},
            "named",
            "get_weather",
            False,
            False,
        ),
        ({"functions": FUNCTIONS}, "auto", None, False, True),
        ({"functions": FUNCTIONS, "function_call": "auto"}, "auto", None, False, True),
        ({"functions": FUNCTIONS, "function_call": "none"}, "none", None, False, True),
        ({"functions": FUNCTIONS, "function_call": {"name": "f"}}, "named", "f", False, True),
    ],
    ids=[
        "tools-default",
        "tool_choice-auto",
        "tool_choice-none",
        "tool_choice-required",
        "tool_choice-named",
        "parallel-true",
        "parallel-false",
        "required-serial",
        "named-parallel-true",
        "functions-default",
        "function_call-auto",
        "function_call-none",
        "function_call-named",
    ],
)
def test_plan_modes(
    fields: dict[str, Any], mode: str, forced: str | None, parallel: bool, legacy: bool
) -> None:
    plan = plan_of(**fields)
    assert (plan.mode, plan.forced, plan.parallel, plan.legacy) == (mode, forced, parallel, legacy)
    assert plan.may_call is (mode != "none")
    assert [f.name for f in plan.functions] == ["get_weather", "f"]
    assert plan.functions[0].description == "Weather of a city"
    assert plan.functions[0].parameters == WEATHER_PARAMS
    assert plan.functions[1].description is None


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [tool("f")]},
        {"tools": [tool("f", strict=True)]},
        {"functions": [{"name": "f"}]},
    ],
    ids=["tools", "tools-strict", "functions"],
)
def test_omitted_parameters_take_no_arguments(fields: dict[str, Any]) -> None:
    (function,) = plan_of(**fields).functions
    assert function.parameters == NO_PARAMS


def test_parameters_without_type_are_an_object() -> None:
    params = {"properties": {"a": {"type": "string"}}}
    assert plan_of(tools=[tool("f", params)]).functions[0].parameters == params


NOT_STRICT = {"type": "object", "properties": {"a": {"type": "string"}}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [tool("f", NOT_STRICT, strict=True)]}, "tools[0].function.parameters"),
        (
            {"tools": [tool("g"), tool("f", NOT_STRICT, strict=True)]},
            "tools[1].function.parameters",
        ),
        (
            {"tools": [tool("f", {**WEATHER_PARAMS, "required": ["city"]}, strict=True)]},
            "tools[0].function.parameters",
        ),
        ({"tools": [tool("f", {"type": "array"})]}, "tools[0].function.parameters"),
        ({"tools": [tool("g"), tool("f", {"type": "string"})]}, "tools[1].function.parameters"),
        ({"tools": [tool("f", {"type": "array"}, strict=True)]}, "tools[0].function.parameters"),
        (
            {"functions": [{"name": "f", "parameters": {"type": "array"}}]},
            "functions[0].parameters",
        ),
    ],
    ids=[
        "strict-no-additionalProperties",
        "strict-second-tool",
        "strict-not-all-required",
        "array",
        "string-second-tool",
        "strict-array",
        "legacy-array",
    ],
)
def test_invalid_parameters(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        plan_tools(request(**fields))
    assert not isinstance(info.value, NotYetSupported)
    assert info.value.param == param
    assert info.value.status == 400
    assert "'f'" in info.value.message


def test_non_strict_schema_accepted_without_strict() -> None:
    for strict in (None, False):
        extra = {} if strict is None else {"strict": strict}
        plan = plan_of(tools=[tool("f", NOT_STRICT, **extra)])
        assert plan.functions[0].parameters == NOT_STRICT


def test_strict_valid_schema_accepted() -> None:
    plan = plan_of(tools=[tool("get_weather", WEATHER_PARAMS, strict=True)])
    assert plan.functions[0].parameters == WEATHER_PARAMS


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "custom", "custom": {"name": "x"}}], "tools[0]"),
        ([tool("f"), {"type": "custom", "custom": {"name": "x"}}], "tools[1]"),
    ],
    ids=["only-custom", "custom-second"],
)
def test_custom_tools_not_yet_supported(tools: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(NotYetSupported) as info:
        plan_tools(request(tools=tools))
    assert info.value.param == param
    assert info.value.code == "unsupported_parameter"


def test_allowed_tools_choice_not_yet_supported() -> None:
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}
    with pytest.raises(NotYetSupported) as info:
        plan_tools(request(tools=TOOLS, tool_choice=choice))
    assert info.value.param == "tool_choice"


# --- render_messages -----------------------------------------------------------------------


def assistant_call(*calls: tuple[str, str, str], content: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": "assistant",
        "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in calls
        ],
    }
    if content is not None:
        msg["content"] = content
    return msg


def parse_call_text(text: str) -> Any:
    assert text.startswith(OPEN) and text.endswith(CLOSE), text
    return json.loads(text[len(OPEN) : -len(CLOSE)])


def render(messages: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    req = request(messages, **fields)
    return render_messages(req, plan_tools(req))


@pytest.mark.parametrize(
    "fields", [CALLING_PLANS[k] for k in CALLING_PLANS], ids=list(CALLING_PLANS)
)
def test_system_prompt_inserted_when_calls_possible(fields: dict[str, Any]) -> None:
    out = render(USER, **fields)
    plan = plan_of(**fields)
    assert out == [{"role": "system", "content": system_prompt(plan)}, USER[0]]
    prompt = out[0]["content"]
    assert "<tools>" in prompt and "</tools>" in prompt
    assert '"name": "get_weather"' in prompt and '"description": "Weather of a city"' in prompt
    assert json.dumps(WEATHER_PARAMS) in prompt


@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_prompt_appended_to_first_system_message(role: str) -> None:
    messages = [{"role": role, "content": "Be brief.", "name": "boss"}, *USER]
    out = render(messages, tools=TOOLS)
    prompt = system_prompt(plan_of(tools=TOOLS))
    assert out == [
        {"role": role, "content": f"Be brief.\n\n{prompt}", "name": "boss"},
        USER[0],
    ]


def test_system_prompt_not_merged_into_later_system_message() -> None:
    messages = [*USER, {"role": "system", "content": "Be brief."}]
    out = render(messages, tools=TOOLS)
    assert out[0] == {"role": "system", "content": system_prompt(plan_of(tools=TOOLS))}
    assert out[1:] == messages


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"tools": TOOLS, "tool_choice": "none"},
        {"functions": FUNCTIONS, "function_call": "none"},
    ],
    ids=["no-tools", "tool_choice-none", "function_call-none"],
)
def test_no_system_prompt_without_possible_calls(fields: dict[str, Any]) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    assert render(messages, **fields) == messages
    assert render(USER, **fields) == USER


def test_render_without_plan() -> None:
    req = request([{"role": "system", "content": "S"}, *USER], tools=TOOLS)
    assert render_messages(req, None) == [{"role": "system", "content": "S"}, USER[0]]


def test_assistant_tool_calls_rendered_as_text() -> None:
    messages = [
        *USER,
        assistant_call(
            ("call_1", "get_weather", '{"city":"Paris","unit":"celsius"}'),
            ("call_2", "f", "{}"),
        ),
        {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "ok"}]},
    ]
    out = render(messages, tools=TOOLS, tool_choice="none")
    assert out[0] == USER[0]
    assert out[1]["role"] == "assistant"
    first, second = out[1]["content"].split("\n" + OPEN)
    assert parse_call_text(first) == {
        "name": "get_weather",
        "arguments": {"city": "Paris", "unit": "celsius"},
    }
    assert parse_call_text(OPEN + second) == {"name": "f", "arguments": {}}
    assert out[2:] == [
        {"role": "user", "content": "<tool_response>\n22C\n</tool_response>"},
        {"role": "user", "content": "<tool_response>\nok\n</tool_response>"},
    ]
    assert len(out) == 4


def test_assistant_content_precedes_calls() -> None:
    messages = [*USER, assistant_call(("c1", "f", "{}"), content="Let me check.")]
    (_, out) = render(messages)
    text, call_text = out["content"].split("\n", 1)
    assert text == "Let me check."
    assert parse_call_text(call_text) == {"name": "f", "arguments": {}}


def test_assistant_invalid_json_arguments_kept_as_string() -> None:
    messages = [*USER, assistant_call(("c1", "f", "not json {"))]
    (_, out) = render(messages)
    assert parse_call_text(out["content"]) == {"name": "f", "arguments": "not json {"}


def test_assistant_plain_text_unchanged() -> None:
    messages = [*USER, {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "x"}]
    assert render(messages, tools=TOOLS, tool_choice="none") == messages


def test_legacy_function_call_and_function_message() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"role": "function", "name": "get_weather", "content": "22C"},
        {"role": "function", "name": "f", "content": None},
    ]
    out = render(messages, functions=FUNCTIONS, function_call="none")
    assert out[0] == USER[0]
    assert out[1]["role"] == "assistant"
    assert parse_call_text(out[1]["content"]) == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert out[2:] == [
        {"role": "user", "content": '<tool_response name="get_weather">\n22C\n</tool_response>'},
        {"role": "user", "content": '<tool_response name="f">\n\n</tool_response>'},
    ]


@pytest.mark.parametrize(
    ("messages", "index"),
    [
        ([*USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}], 1),
        (
            [
                *USER,
                assistant_call(("call_1", "f", "{}")),
                {"role": "tool", "tool_call_id": "call_2", "content": "x"},
            ],
            2,
        ),
        (
            [
                *USER,
                assistant_call(("call_1", "f", "{}")),
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "tool", "tool_call_id": "call_9", "content": "x"},
            ],
            3,
        ),
        (
            [
                *USER,
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                assistant_call(("call_1", "f", "{}")),
            ],
            1,
        ),
    ],
    ids=["no-call-before", "other-id", "second-tool-message", "call-comes-later"],
)
def test_unknown_tool_call_id(messages: list[dict[str, Any]], index: int) -> None:
    req = request(messages, tools=TOOLS)
    with pytest.raises(InvalidRequest) as info:
        render_messages(req, plan_tools(req))
    assert info.value.param == f"messages[{index}].tool_call_id"
    assert info.value.status == 400


# --- templates that render tools themselves ------------------------------------------------


def test_template_tools() -> None:
    assert template_tools(plan_of(tools=TOOLS)) == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": WEATHER_PARAMS,
            },
        },
        {"type": "function", "function": {"name": "f", "description": "", "parameters": NO_PARAMS}},
    ]


def test_native_rendering() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        *USER,
        assistant_call(
            ("call_1", "get_weather", '{"city":"Paris","unit":"celsius"}'),
            ("call_2", "f", "not json"),
            content="Checking.",
        ),
        {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "ok"}]},
        {"role": "assistant", "content": "It is 22C."},
    ]
    req = request(messages, tools=TOOLS)
    out = render_messages(req, plan_tools(req), native=True)
    assert out == [
        {"role": "system", "content": "Be brief."},
        USER[0],
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": {"city": "Paris", "unit": "celsius"},
                    },
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "f", "arguments": "not json"},
                },
            ],
        },
        {"role": "tool", "content": "22C", "tool_call_id": "call_1"},
        {"role": "tool", "content": "ok", "tool_call_id": "call_2"},
        {"role": "assistant", "content": "It is 22C."},
    ]


def test_native_legacy_function_messages() -> None:
    messages = [
        *USER,
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "done"},
    ]
    req = request(messages, functions=FUNCTIONS)
    out = render_messages(req, plan_tools(req), native=True)
    assert out[0] == USER[0]
    assert out[1]["role"] == "assistant" and out[1]["content"] == ""
    assert [c["function"] for c in out[1]["tool_calls"]] == [{"name": "f", "arguments": {}}]
    assert out[2] == {"role": "tool", "content": "done", "name": "f"}


def test_native_unknown_tool_call_id() -> None:
    messages = [*USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]
    req = request(messages, tools=TOOLS)
    with pytest.raises(InvalidRequest) as info:
        render_messages(req, plan_tools(req), native=True)
    assert info.value.param == "messages[1].tool_call_id"

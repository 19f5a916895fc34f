"""The Responses adapter's pure parts: input items as stored and listed, the conversation
as the core's turns (and its call/output checks), the tool plan and the tools a response
echoes."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schemas import assert_valid

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.responses_request import validate_response_request
from chatd.service.responses.conversation import conversation_turns, stored_input_items
from chatd.service.responses.tools import echoed_tools, plan_tools
from chatd.service.turns import Answered, Call, Called, Said, render_turns

PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def request(**fields: Any) -> Any:
    return validate_response_request({"model": "m", **fields})


def stored(*items: dict[str, Any], referenced: dict[str, Any] | None = None) -> list[Any]:
    return stored_input_items(request(input=list(items)).input_items(), referenced or {})


def test_items_as_stored_and_listed() -> None:
    items = stored(
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "x"}]},
    )
    assert items[0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert items[1]["content"] == [
        {"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}
    ]
    prefixes = [item["id"].split("_")[0] for item in items]
    assert prefixes == ["msg", "msg", "fc", "fco", "msg"]
    assert all(item["status"] == "completed" for item in items)
    assert_valid(
        "ResponseItemList",
        {"object": "list", "data": items, "first_id": "a", "last_id": "b", "has_more": False},
    )


def test_given_ids_are_kept() -> None:
    items = stored({"type": "message", "id": "msg_mine", "role": "user", "content": "hi"})
    assert items[0]["id"] == "msg_mine"


def test_item_reference_resolves_to_the_stored_item() -> None:
    earlier = {"id": "msg_1", "type": "message", "role": "user", "content": []}
    items = stored({"type": "item_reference", "id": "msg_1"}, referenced={"msg_1": earlier})
    assert items == [earlier]
    with pytest.raises(InvalidRequest) as e:
        stored({"role": "user", "content": "x"}, {"type": "item_reference", "id": "msg_2"})
    assert e.value.param == "input[1]"


def test_items_chatd_does_not_act_on_are_kept_for_channels() -> None:
    items = stored({"type": "reasoning", "id": "rs_1", "summary": []})
    assert items == [{"type": "reasoning", "id": "rs_1", "summary": []}]


def test_turns_merge_text_and_calls() -> None:
    items = stored(
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Let me look."},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": "two"},
    )
    turns = conversation_turns("Be brief.", [], items)
    assert turns == [
        Said("system", "Be brief."),
        Said("user", "weather?"),
        Called("Let me look.", (Call("c1", "f", '{"a":1}'), Call("c2", "g", "{}"))),
        Answered("one", call_id="c1"),
        Answered("two", call_id="c2"),
    ]


def test_history_comes_before_the_input() -> None:
    history = stored({"role": "user", "content": "first"})
    turns = conversation_turns(None, history, stored({"role": "user", "content": "second"}))
    assert [t.text for t in turns] == ["first", "second"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [{"type": "function_call_output", "call_id": "c9", "output": "x"}],
            "No tool call found for function call output with call_id c9.",
        ),
        (
            [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}],
            "No tool output found for function call c1.",
        ),
    ],
)
def test_calls_and_outputs_must_match(items: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        conversation_turns(None, [], stored(*items))
    assert str(e.value) == message and e.value.param == "input"


def test_rendered_as_text_for_a_template_without_tools() -> None:
    plan = plan_tools(request(tools=[{"type": "function", "name": "f", "parameters": PARAMS}]))
    turns = [Said("user", "q"), Called("", (Call("c1", "f", '{"city":"P"}'),)), Answered("r", "c1")]
    messages = render_turns(turns, plan)
    assert messages[0]["role"] == "system" and "<tools>" in messages[0]["content"]
    call = '<tool_call>\n{"name":"f","arguments":{"city":"P"}}\n</tool_call>'
    assert messages[2] == {"role": "assistant", "content": call}
    assert messages[-1] == {"role": "user", "content": "<tool_response>\nr\n</tool_response>"}
    native = render_turns(turns, plan, native=True)
    assert native[-1] == {"role": "tool", "content": "r", "tool_call_id": "c1"}


@pytest.mark.parametrize(
    ("choice", "mode", "forced", "parallel"),
    [
        (None, "auto", None, True),
        ("none", "none", None, True),
        ("required", "required", None, True),
        ({"type": "function", "name": "f"}, "named", "f", False),
    ],
)
def test_tool_plan(choice: Any, mode: str, forced: str | None, parallel: bool) -> None:
    fields: dict[str, Any] = {"tools": [{"type": "function", "name": "f", "parameters": PARAMS}]}
    if choice is not None:
        fields["tool_choice"] = choice
    plan = plan_tools(request(**fields))
    assert plan is not None
    assert (plan.mode, plan.forced, plan.parallel) == (mode, forced, parallel)
    serial = plan_tools(request(**fields, parallel_tool_calls=False))
    assert serial is not None and not serial.parallel


def test_no_function_tools_no_plan() -> None:
    assert plan_tools(request()) is None


def test_echoed_strict_is_resolved() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}}}
    req = request(
        tools=[
            {"type": "function", "name": "a", "parameters": PARAMS},
            {"type": "function", "name": "b", "parameters": loose},
            {"type": "function", "name": "c", "parameters": loose, "strict": False},
        ]
    )
    assert [t["strict"] for t in echoed_tools(req)] == [True, False, False]
    for tool in echoed_tools(req):
        assert_valid("FunctionTool", tool)

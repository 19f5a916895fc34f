"""The Messages API's pure parts: the contract's 400s in Anthropic's words, the
conversation as core turns, tools and tool_choice as a ToolPlan, errors in Anthropic's
shape, and the stop sequence the detokenizer matched."""

from __future__ import annotations

from typing import Any

import pytest

from chatd.engine.detokenizer import Detokenizer
from chatd.protocol.errors import (
    AuthenticationError,
    InvalidRequest,
    Overloaded,
    ServerError,
    ShuttingDown,
)
from chatd.protocol.messages_errors import anthropic_error_body, anthropic_status
from chatd.protocol.messages_request import MessagesRequest, validate_messages_request
from chatd.service.messages.conversation import conversation_turns
from chatd.service.messages.tools import plan_tools
from chatd.service.turns import Answered, Call, Called, Said

TOOL = {"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}


def req(**fields: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    return validate_messages_request({**body, **fields})


def refused(**fields: Any) -> str:
    with pytest.raises(InvalidRequest) as e:
        req(**fields)
    return e.value.message


def test_the_contracts_faults_read_as_anthropics() -> None:
    assert refused(stream="yes") == "stream: Input should be a valid boolean"
    assert refused(tool_choice={"type": "sometimes"}).startswith("tool_choice.type: Input")
    assert refused(messages=[{"role": "user", "content": [{"type": "nope"}]}]).startswith(
        "messages.0.content.0: Input tag does not match"
    )
    assert refused(system=[{"type": "text", "text": 1}]) == (
        "system.0.text: Input should be a valid string"
    )


def test_what_claude_code_sends_is_accepted() -> None:
    r = req(
        system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        metadata={"user_id": "u"},
        thinking={"type": "adaptive"},
        context_management={"edits": [{"type": "clear_thinking_20251015"}]},
        output_config={"effort": "high"},
        tools=[TOOL, {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        cache_control={"type": "ephemeral"},
    )
    assert [t.name for t in r.custom_tools()] == ["f"]


def test_conversation_turns() -> None:
    r = req(
        system="be kind",
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": "b"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "bad", "is_error": True},
                {"type": "text", "text": "next"}]},
        ],
    )  # fmt: skip
    assert conversation_turns(r) == [
        Said("system", "be kind"),
        Said("user", "q"),
        Called("calling", (Call("t1", "f", '{"a":"b"}'),)),
        Answered("Error: bad", call_id="t1"),
        Said("user", "next"),
    ]


@pytest.mark.parametrize(
    ("choice", "mode", "forced", "parallel"),
    [
        (None, "auto", None, True),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", None, False),
        ({"type": "any"}, "required", None, True),
        ({"type": "tool", "name": "f"}, "named", "f", False),
        ({"type": "none"}, "none", None, True),
    ],
)
def test_tool_choice_is_the_plans_mode(
    choice: dict[str, Any] | None, mode: str, forced: str | None, parallel: bool
) -> None:
    fields: dict[str, Any] = {"tools": [TOOL]}
    if choice is not None:
        fields["tool_choice"] = choice
    plan = plan_tools(req(**fields))
    assert plan is not None
    assert (plan.mode, plan.forced, plan.parallel) == (mode, forced, parallel)
    assert plan.functions[0].parameters == TOOL["input_schema"]


def test_no_custom_tool_no_plan() -> None:
    assert plan_tools(req()) is None
    assert plan_tools(req(tools=[{"type": "web_search_20250305", "name": "w"}])) is None


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("x"), 400, "invalid_request_error"),
        (InvalidRequest("x", status=405), 405, "invalid_request_error"),
        (AuthenticationError("x"), 401, "authentication_error"),
        (Overloaded("x", 1), 529, "overloaded_error"),
        (ShuttingDown("x"), 503, "overloaded_error"),
        (ServerError("x"), 500, "api_error"),
        (ServerError("x", status=502), 502, "api_error"),
    ],
)
def test_errors_in_anthropics_shape(error: Any, status: int, kind: str) -> None:
    assert anthropic_status(error) == status
    body = anthropic_error_body(error, "req_1")
    assert body == {"type": "error", "error": {"type": kind, "message": "x"}, "request_id": "req_1"}


def test_the_detokenizer_names_the_stop_it_matched() -> None:
    d = Detokenizer(("END", "ST"))
    out = d.push(b"one ") + d.push(b"tw") + d.push(b"o STOP")
    assert out == "one two " and d.stopped and d.matched == "ST"


def test_a_system_message_in_the_conversation_is_read_with_the_users_turn() -> None:
    """Claude Code's first request ends with a system message (beta
    mid-conversation-tool-changes): read where it stands, joined to the user's turn beside
    it, as Claude Code's own fallback does (templates refuse a late system turn)."""
    req = validate_messages_request(
        {
            "model": "m",
            "max_tokens": 10,
            "system": "S",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": [{"type": "text", "text": "Tools changed."}]},
            ],
        }
    )
    assert conversation_turns(req) == [Said("system", "S"), Said("user", "Hi\n\nTools changed.")]
    first = validate_messages_request(
        {
            "model": "m",
            "max_tokens": 10,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
        }
    )
    assert conversation_turns(first) == [Said("user", "Be brief.\n\nHi")]


def test_claude_codes_billing_header_is_not_read_by_the_model() -> None:
    """Its hashes change with every request: as the prompt's first tokens they would make
    every Claude Code request miss the prefix cache (protocol.messages_blocks)."""
    billing = "x-anthropic-billing-header: cc_version=2.1.337.ef8; cc_entrypoint=cli; cch=3f2a1;"
    r = req(
        system=[{"type": "text", "text": billing}, {"type": "text", "text": "You are an agent."}],
        messages=[{"role": "user", "content": "q"}],
    )
    assert conversation_turns(r)[0] == Said("system", "You are an agent.")
    alone = req(
        system=[{"type": "text", "text": billing}], messages=[{"role": "user", "content": "q"}]
    )
    assert conversation_turns(alone) == [Said("user", "q")]

"""Custom and namespace tools on the real model (SmolLM2-135M in a real ``chatd serve``),
where the grammar is the real llguidance one over the model's vocabulary: a forced custom
tool's input follows its Lark or regex grammar, and a forced namespace member's call comes
back with its ``name`` and ``namespace``. Answers are short and greedy."""

from __future__ import annotations

import json
import re

import openai
import pytest
from conftest import API_KEY, MODEL

LARK = 'start: "add " NUM (" " NUM){1,3}\nNUM: /[1-9][0-9]?/'
CALC = {
    "type": "custom",
    "name": "calc",
    "description": "Adds numbers.",
    "format": {"type": "grammar", "syntax": "lark", "definition": LARK},
}
SPAWN = {
    "type": "function",
    "name": "spawn_agent",
    "description": "Spawn a sub-agent with a task.",
    "parameters": {
        "type": "object",
        "properties": {"task": {"type": "string", "maxLength": 8}},
        "required": ["task"],
        "additionalProperties": False,
    },
}
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for sub-agents.",
    "tools": [SPAWN],
}


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    """A patient client: the answers are short, but a machine shared by many test runs can
    take minutes to write them; how long is no part of what these tests check."""
    return openai.OpenAI(base_url=base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=1800)


def test_a_custom_tool_input_follows_its_lark_grammar(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=MODEL,
        input="Add 2 and 3 with the calc tool.",
        tools=[CALC],
        tool_choice={"type": "custom", "name": "calc"},
        temperature=0,
        max_output_tokens=40,
        store=False,
    )
    (call,) = [item for item in r.output if item.type == "custom_tool_call"]
    assert call.name == "calc"
    assert re.fullmatch(r"add [1-9][0-9]?( [1-9][0-9]?){1,3}", call.input), call.input


def test_a_custom_tool_input_follows_its_regex(client: openai.OpenAI) -> None:
    tool = {
        "type": "custom",
        "name": "shout",
        "format": {"type": "grammar", "syntax": "regex", "definition": "[A-Z]{2,8}!"},
    }
    r = client.responses.create(
        model=MODEL,
        input="Shout hello.",
        tools=[tool],
        tool_choice={"type": "custom", "name": "shout"},
        temperature=0,
        max_output_tokens=30,
        store=False,
    )
    (call,) = [item for item in r.output if item.type == "custom_tool_call"]
    assert re.fullmatch(r"[A-Z]{2,8}!", call.input), call.input


def test_a_namespace_member_call(client: openai.OpenAI) -> None:
    r = client.responses.create(
        model=MODEL,
        input="Spawn an agent to read the docs.",
        tools=[NAMESPACE, {"type": "web_search"}],
        tool_choice={"type": "function", "name": "multi_agent_v1.spawn_agent"},
        temperature=0,
        max_output_tokens=40,
        store=False,
    )
    (call,) = [item for item in r.output if item.type == "function_call"]
    assert (call.name, call.namespace) == ("spawn_agent", "multi_agent_v1")
    assert isinstance(json.loads(call.arguments)["task"], str)

"""Custom tools in the tool-call core (service/custom_tools.py, service/tool_calls.py):
the grammar a plan with custom tools compiles to, run through the real llguidance with its
byte tokenizer (no model needed): it admits exactly the calls the tool's Lark or regex
grammar allows; and the parser that reads them back, fed in every split."""

from __future__ import annotations

import json

import llguidance
import pytest

from chatd.protocol.errors import InvalidRequest
from chatd.service.custom_tools import CustomFormat, checked_format
from chatd.service.tool_calls import (
    NO_JSON,
    OPEN,
    Function,
    OutputParser,
    ToolPlan,
    custom_call_text,
    grammar,
    system_prompt,
    template_tools,
)

TOKENIZER = llguidance.LLTokenizer("byte")
LARK = 'start: "add " NUM (" " NUM)*\nNUM: /[0-9]+/'
CALC = Function("calc", "Adds.", {"type": "object"}, CustomFormat("lark", LARK))
SHOUT = Function("shout", None, {"type": "object"}, CustomFormat("regex", r"[A-Z!/]+"))
NOTE = Function("note", None, {"type": "object"}, CustomFormat())
ECHO = Function(
    "ns.echo",
    None,
    {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
)


def accepts(plan: ToolPlan, text: str) -> bool:
    """Whether the plan's grammar lets the model write exactly ``text`` (and stop)."""
    source = grammar(plan)
    assert source is not None
    m = llguidance.LLMatcher(TOKENIZER, llguidance.LLMatcher.grammar_from_lark(source))
    assert not m.is_error(), m.get_error()
    for t in TOKENIZER.tokenize_str(text):
        if not m.consume_token(t):
            return False
    return m.is_accepting()


def call(name: str, text: str) -> str:
    return custom_call_text(name, text)


@pytest.mark.parametrize(
    ("tool", "good", "bad"),
    [
        (CALC, "add 1 22", "add x"),
        (SHOUT, "HI!/", "hi"),
        (NOTE, "any text\nat all </tool_call", None),
    ],
    ids=["lark", "regex", "text"],
)
def test_grammar_holds_the_input_to_the_tool_format(
    tool: Function, good: str, bad: str | None
) -> None:
    plan = ToolPlan([tool], "required")
    assert accepts(plan, call(tool.name, good))
    if bad is not None:
        assert not accepts(plan, call(tool.name, bad))
    assert not accepts(plan, call("other", good))


def test_custom_and_function_tools_together() -> None:
    plan = ToolPlan([CALC, ECHO], "auto")
    assert accepts(plan, call("calc", "add 1") + "\n" + call("calc", "add 2 3"))
    function_call = OPEN + '{"name":"ns.echo","arguments":{"x":"y"}}\n</tool_call>'
    assert accepts(plan, call("calc", "add 1") + "\n" + function_call)
    assert accepts(plan, "Just text.")
    assert plan.json_after == NO_JSON  # raw input is no JSON: the key guard is off
    assert ToolPlan([ECHO], "auto").json_after == OPEN


def test_a_forced_custom_tool() -> None:
    plan = ToolPlan([CALC, SHOUT], "named", "shout", parallel=False)
    assert accepts(plan, call("shout", "OK"))
    assert not accepts(plan, call("calc", "add 1"))
    assert not accepts(plan, "text")


def test_the_model_is_told_how_to_call_them() -> None:
    prompt = system_prompt(ToolPlan([CALC, ECHO], "auto"))
    assert '"type": "custom"' in prompt and json.dumps(LARK)[1:-1] in prompt
    assert "raw text, not JSON" in prompt
    tools = template_tools(ToolPlan([CALC], "auto"))
    assert tools[0]["function"]["parameters"]["properties"]["input"]["type"] == "string"


def parse(plan: ToolPlan, text: str, size: int) -> tuple[str, list[tuple[str, str]]]:
    parser = OutputParser(plan)
    content = ""
    for i in range(0, len(text), size):
        out, _ = parser.feed(text[i : i + size])
        content += out
    content += parser.finish()
    parser.flush()
    return content, [(c.name, c.arguments) for c in parser.calls]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1000])
def test_parser_reads_custom_calls_in_any_split(size: int) -> None:
    plan = ToolPlan([CALC, ECHO], "auto")
    text = (
        call("calc", "add 1 2\n<not the end>")
        + "\n"
        + OPEN
        + '{"name":"ns.echo","arguments":{"x":"}\\n"}}\n</tool_call>'
    )
    content, calls = parse(plan, text, size)
    assert content == ""
    assert calls == [("calc", "add 1 2\n<not the end>"), ("ns.echo", '{"x":"}\\n"}')]


def test_parser_streams_input_and_holds_what_may_be_the_closing_tag() -> None:
    parser = OutputParser(ToolPlan([NOTE], "required"))
    _, events = parser.feed(OPEN + "note\nhello\n</to")
    assert [e.name for e in events if e.name] == ["note"]
    assert "".join(e.arguments for e in events) == "hello"  # "\n</to" held back
    _, events = parser.feed("ast>")  # not the tag after all
    assert "".join(e.arguments for e in events) == "\n</toast>"


def test_a_cut_input_is_what_it_got() -> None:
    parser = OutputParser(ToolPlan([NOTE], "required"))
    parser.feed(OPEN + "note\npartial\n</tool")
    assert [e.arguments for e in parser.flush()] == ["\n</tool"]
    assert parser.calls[0].arguments == "partial\n</tool"


@pytest.mark.parametrize(
    ("syntax", "definition"),
    [("lark", "start: ("), ("lark", "start: nowhere"), ("regex", "[a-"), ("regex", "(")],
)
def test_a_grammar_llguidance_refuses_is_a_400(syntax: str, definition: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        checked_format("calc", syntax, definition, "tools[0].format")  # type: ignore[arg-type]
    assert e.value.param == "tools[0].format" and e.value.code == "invalid_grammar"
    assert f"Invalid {syntax} grammar for custom tool 'calc'" in str(e.value)


def test_good_grammars_pass() -> None:
    assert checked_format("c", "lark", LARK, "p") == CustomFormat("lark", LARK)
    assert checked_format("c", "regex", "[a-z/]+", "p").syntax == "regex"
    assert checked_format("c", "text", "", "p") == CustomFormat()

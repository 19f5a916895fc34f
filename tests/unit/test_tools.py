"""Tool calling (src/chatd/service/tool_calls.py, and the Chat adapter's service/chat/tools.py
and prompt.py): the plan, the prompt, the grammar, the parser.

Pure unit tests: requests are built with ``validate_chat_request``; the grammar is compiled by
llguidance against the real vocabulary of the embedded model (tokenizer built once).
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from typing import Any

import llguidance
import llguidance.llamacpp
import pytest

from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.errors import InvalidRequest, NotYetSupported
from chatd.service.chat.prompt import render_messages
from chatd.service.chat.tools import plan_tools
from chatd.service.tool_calls import (
    CLOSE,
    OPEN,
    CallEvent,
    OutputParser,
    ToolPlan,
    grammar,
    system_prompt,
    template_tools,
)

# --- fixtures and builders -----------------------------------------------------------------

WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
NO_PARAMS = {"type": "object", "properties": {}, "additionalProperties": False}


def tool(name: str, parameters: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, **extra}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


TOOLS = [tool("get_weather", WEATHER_PARAMS, description="Weather of a city"), tool("f")]
FUNCTIONS = [
    {"name": "get_weather", "description": "Weather of a city", "parameters": WEATHER_PARAMS},
    {"name": "f"},
]
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


def request(messages: list[dict[str, Any]] | None = None, **fields: Any) -> Any:
    return validate_chat_request({"model": "m", "messages": messages or USER, **fields})


def plan_of(**fields: Any) -> ToolPlan:
    plan = plan_tools(request(**fields))
    assert plan is not None
    return plan


NAMED_WEATHER = {"type": "function", "function": {"name": "get_weather"}}

# Every way of allowing calls, tools and legacy functions alike.
CALLING_PLANS: dict[str, dict[str, Any]] = {
    "auto": {"tools": TOOLS},
    "auto-explicit": {"tools": TOOLS, "tool_choice": "auto"},
    "auto-serial": {"tools": TOOLS, "parallel_tool_calls": False},
    "required": {"tools": TOOLS, "tool_choice": "required"},
    "named": {"tools": TOOLS, "tool_choice": NAMED_WEATHER},
    "legacy-auto": {"functions": FUNCTIONS},
    "legacy-named": {"functions": FUNCTIONS, "function_call": {"name": "get_weather"}},
}
AUTO_PLANS = ["auto", "auto-explicit", "auto-serial", "legacy-auto"]


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


# --- OutputParser --------------------------------------------------------------------------

ARGS_0 = '{"city":"Pa\\"ris}","n":[1,{"a":"}"}]}'
ARGS_1 = "{}"
TWO_CALLS = (
    f'{OPEN}{{"name":"get_weather","arguments":{ARGS_0}}}{CLOSE}\n'
    f'{OPEN}{{"name":"f","arguments":{ARGS_1}}}{CLOSE}'
)
EXPECTED_CALLS = [("get_weather", ARGS_0), ("f", ARGS_1)]


def test_sample_output_is_what_the_brief_says() -> None:
    assert TWO_CALLS == (
        '<tool_call>\n{"name":"get_weather","arguments":{"city":"Pa\\"ris}","n":[1,{"a":"}"}]}}'
        '\n</tool_call>\n<tool_call>\n{"name":"f","arguments":{}}\n</tool_call>'
    )
    assert json.loads(ARGS_0) == {"city": 'Pa"ris}', "n": [1, {"a": "}"}]}


def splits(text: str) -> Iterator[list[str]]:
    """Many ways of cutting ``text`` into chunks: whole, 1-char, every cut, random sizes."""
    yield [text]
    yield list(text)
    for cut in range(1, len(text)):
        yield [text[:cut], text[cut:]]
    for seed in range(40):
        rng = random.Random(seed)
        top = rng.choice([2, 3, 5, 8, 16])
        chunks, i = [], 0
        while i < len(text):
            n = rng.randint(1, top)
            chunks.append(text[i : i + n])
            i += n
        yield chunks
    # a few with empty chunks thrown in
    for seed in range(5):
        rng = random.Random(1000 + seed)
        chunks = []
        for c in text:
            if rng.random() < 0.2:
                chunks.append("")
            chunks.append(c)
        yield chunks


def run(parser: OutputParser, chunks: list[str]) -> tuple[str, list[CallEvent]]:
    content, events = "", []
    for chunk in chunks:
        text, new = parser.feed(chunk)
        content += text
        events += new
    content += parser.finish()
    return content, events


@pytest.mark.parametrize("plan_name", list(CALLING_PLANS))
def test_parser_calls_identical_for_every_split(plan_name: str) -> None:
    plan = plan_of(**CALLING_PLANS[plan_name])
    assert plan.may_call
    n_splits = 0
    for chunks in splits(TWO_CALLS):
        assert "".join(chunks) == TWO_CALLS
        parser = OutputParser(plan)
        content, events = run(parser, chunks)
        assert content == "", chunks
        assert parser.kind == "calls"
        # Per index: exactly one name event, first; then argument fragments.
        names: dict[int, str] = {}
        args: dict[int, str] = {}
        last_index = -1
        for ev in events:
            assert ev.index >= last_index, chunks
            last_index = ev.index
            if ev.name is not None:
                assert ev.index not in names, chunks
                assert ev.index == len(names), chunks
                assert ev.arguments == "", chunks
                names[ev.index] = ev.name
                args[ev.index] = ""
            else:
                assert ev.index in names, chunks
                assert ev.arguments != "", chunks
                args[ev.index] += ev.arguments
        got = [(names[i], args[i]) for i in sorted(names)]
        assert got == EXPECTED_CALLS, chunks
        assert [(c.name, c.arguments) for c in parser.calls] == EXPECTED_CALLS, chunks
        assert len({c.id for c in parser.calls}) == 2
        assert all(c.id.startswith("call_") and len(c.id) == 29 for c in parser.calls)
        n_splits += 1
    assert n_splits > 100


@pytest.mark.parametrize("plan_name", list(CALLING_PLANS))
def test_parser_events_stream_as_they_arrive(plan_name: str) -> None:
    """Fed one character at a time, a call's name is announced as soon as its arguments
    begin, and each argument character is passed on at once."""
    parser = OutputParser(plan_of(**CALLING_PLANS[plan_name]))
    first = f'{OPEN}{{"name":"get_weather","arguments":'
    events: list[CallEvent] = []
    for c in first:
        events += parser.feed(c)[1]
    assert events == [CallEvent(0, name="get_weather")]
    for c in ARGS_0:
        _, new = parser.feed(c)
        assert new == [CallEvent(0, arguments=c)]


@pytest.mark.parametrize(
    "args",
    [
        "{}",
        '{"s":"\\\\"}',  # an escaped backslash just before the closing quote
        '{"s":"\\\\\\"}{"}',
        '{"s":"[[[{{{","t":"]]]}}}"}',
        '{"a":{"b":{"c":[[],[{}],{"d":null}]}},"e":true}',
        '{"u":"\\u00e9\\n\\t","k":-1.5e3}',
        '{"x":"<tool_call>\\n</tool_call>"}',
        '{"é":"日本"}',
    ],
)
def test_parser_arguments_exact(args: str) -> None:
    json.loads(args)  # the case itself is valid JSON
    text = f'{OPEN}{{"name":"f","arguments":{args}}}{CLOSE}'
    for plan_name in ("auto", "required", "legacy-named"):
        plan = plan_of(**CALLING_PLANS[plan_name])
        for chunks in splits(text):
            parser = OutputParser(plan)
            content, events = run(parser, chunks)
            assert content == ""
            assert [(c.name, c.arguments) for c in parser.calls] == [("f", args)], chunks
            assert "".join(e.arguments for e in events) == args


PLAIN_TEXTS = [
    "Hello there",
    "<b>hi</b>",
    "<tool",
    "<tool_call",
    "<tool_call>",
    "<tool_call>x",
    "<tool_cal>\n",
    "<",
    "",
    "\n<tool_call>\n{}",
    " <tool_call>\n",
    "The weather is nice. <tool_call>\n",
    "Ünïcödé ✓ 日本語",
]


@pytest.mark.parametrize("plan_name", AUTO_PLANS)
@pytest.mark.parametrize("text", PLAIN_TEXTS)
def test_parser_plain_text_in_auto_mode(plan_name: str, text: str) -> None:
    plan = plan_of(**CALLING_PLANS[plan_name])
    assert plan.mode == "auto"
    for chunks in splits(text):
        parser = OutputParser(plan)
        so_far, fed = "", ""
        for chunk in chunks:
            out, events = parser.feed(chunk)
            assert events == []
            so_far += out
            fed += chunk
            # Held back only while what came is a prefix of the tag (and may yet be a call).
            assert so_far == ("" if OPEN.startswith(fed) else fed), chunks
        so_far += parser.finish()
        assert so_far == text, chunks
        assert parser.calls == []
        assert parser.kind == "text"


@pytest.mark.parametrize("plan_name", AUTO_PLANS)
def test_parser_auto_mode_decides_calls_on_the_full_tag(plan_name: str) -> None:
    parser = OutputParser(plan_of(**CALLING_PLANS[plan_name]))
    for c in OPEN[:-1]:
        assert parser.feed(c) == ("", [])
        assert parser.kind == "undecided"
    assert parser.feed(OPEN[-1]) == ("", [])
    assert parser.kind == "calls"


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": TOOLS, "tool_choice": "none"},
        {"functions": FUNCTIONS, "function_call": "none"},
    ],
    ids=["tool_choice-none", "function_call-none"],
)
def test_mode_none_never_calls(fields: dict[str, Any]) -> None:
    plan = plan_of(**fields)
    assert plan.mode == "none"
    assert plan.may_call is False
    assert grammar(plan) is None


# --- grammar -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[llguidance.LLTokenizer]:
    from chatd.config import embedded_model_path
    from chatd.engine.model_runner import ModelRunner, RunnerConfig

    runner = ModelRunner(RunnerConfig(embedded_model_path(), n_ctx=512, n_seq_max=2))
    try:
        with warnings.catch_warnings():  # llama_token_get_attr, once per vocabulary entry
            warnings.simplefilter("ignore", DeprecationWarning)
            tok = llguidance.llamacpp.lltokenizer_from_vocab(runner.vocab)
        yield tok
    finally:
        runner.close()


def call(name: str, arguments: Any) -> str:
    body = json.dumps({"name": name, "arguments": arguments}, separators=(",", ":"))
    return f"{OPEN}{body}{CLOSE}"


PARIS = call("get_weather", {"city": "Paris", "unit": "celsius"})
F_CALL = call("f", {})

GRAMMAR_PLANS: dict[str, dict[str, Any]] = {
    **CALLING_PLANS,
    "parallel": {"tools": TOOLS, "parallel_tool_calls": True},
    "named-f": {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}},
    "required-serial": {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False},
}

ACCEPTED = [
    ("auto", "Hello there"),
    ("auto", "<b>x</b>"),
    ("auto", ""),
    ("auto", "<tool_call>"),
    ("auto", "<tool_call"),
    ("auto", "a\n<tool_call>\n"),
    ("auto", PARIS),
    ("auto", F_CALL),
    ("auto", call("get_weather", {"city": 'Pa"ris}', "unit": "fahrenheit"})),
    ("auto", f"{PARIS}\n{F_CALL}"),
    ("auto-explicit", PARIS),
    ("auto-serial", "Hello there"),
    ("auto-serial", PARIS),
    ("parallel", f"{PARIS}\n{F_CALL}"),
    ("parallel", f"{PARIS}\n{F_CALL}\n{PARIS}"),
    ("required", PARIS),
    ("required", f"{F_CALL}\n{PARIS}"),
    ("required-serial", F_CALL),
    ("named", PARIS),
    ("named-f", F_CALL),
    ("legacy-auto", "Hello there"),
    ("legacy-auto", PARIS),
    ("legacy-named", PARIS),
]

REJECTED = [
    ("auto", call("get_wether", {"city": "Paris", "unit": "celsius"})),
    ("auto", call("nope", {})),
    ("auto", call("get_weather", {"city": "Paris", "unit": "kelvin"})),
    ("auto", call("get_weather", {"city": "Paris"})),
    ("auto", call("get_weather", {"unit": "celsius"})),
    ("auto", call("get_weather", {"city": 5, "unit": "celsius"})),
    ("auto", call("get_weather", {"city": "Paris", "unit": "celsius", "x": 1})),
    ("auto", call("f", {"x": 1})),
    # The parser relies on compact JSON with the name first.
    ("auto", f'{OPEN}{{"arguments":{{}},"name":"f"}}{CLOSE}'),
    ("auto", f'{OPEN}{{"name": "f", "arguments": {{}}}}{CLOSE}'),
    ("auto", f"{OPEN}{F_CALL}"),
    ("auto", f"{F_CALL}{F_CALL}"),
    ("auto", f"{F_CALL}\nDone."),
    ("auto", f"{OPEN}Hello{CLOSE}"),
    ("auto-serial", f"{PARIS}\n{F_CALL}"),
    ("required", "Hello there"),
    ("required", "<b>x</b>"),
    ("required", call("nope", {})),
    ("required-serial", f"{PARIS}\n{F_CALL}"),
    ("named", F_CALL),
    ("named", "Hello there"),
    ("named", f"{PARIS}\n{PARIS}"),
    ("named-f", PARIS),
    ("legacy-auto", f"{PARIS}\n{F_CALL}"),
    ("legacy-auto", call("nope", {})),
    ("legacy-named", F_CALL),
    ("legacy-named", "Hello there"),
]


_compiled: dict[str, llguidance.LLMatcher] = {}


def matcher(tok: llguidance.LLTokenizer, plan_name: str) -> llguidance.LLMatcher:
    if plan_name not in _compiled:
        source = grammar(plan_of(**GRAMMAR_PLANS[plan_name]))
        assert source is not None
        m = llguidance.LLMatcher(tok, llguidance.LLMatcher.grammar_from_lark(source), log_level=0)
        assert not m.is_error(), m.get_error()
        _compiled[plan_name] = m
    return _compiled[plan_name].deep_copy()


@pytest.mark.parametrize(("plan_name", "text"), ACCEPTED)
def test_grammar_accepts(tokenizer: llguidance.LLTokenizer, plan_name: str, text: str) -> None:
    m = matcher(tokenizer, plan_name)
    tokens = tokenizer.tokenize_str(text)
    assert tokenizer.decode_str(tokens) == text
    assert m.validate_tokens(tokens) == len(tokens)
    assert m.try_consume_tokens(tokens) == len(tokens)
    assert not m.is_error(), m.get_error()
    assert m.is_accepting()


@pytest.mark.parametrize(("plan_name", "text"), REJECTED)
def test_grammar_rejects(tokenizer: llguidance.LLTokenizer, plan_name: str, text: str) -> None:
    m = matcher(tokenizer, plan_name)
    tokens = tokenizer.tokenize_str(text)
    assert m.validate_tokens(tokens) < len(tokens)


@pytest.mark.parametrize("plan_name", ["required", "required-serial", "named", "legacy-named"])
def test_grammar_forces_a_call(tokenizer: llguidance.LLTokenizer, plan_name: str) -> None:
    m = matcher(tokenizer, plan_name)
    assert not m.is_accepting()  # the empty answer is not one
    assert m.compute_ff_bytes().startswith(b"<tool_call>")


ITEM = {
    "type": "object",
    "properties": {"b": {"type": "string"}},
    "required": ["b"],
    "additionalProperties": False,
}
LOCAL_REFS: dict[str, tuple[dict[str, Any], Any, Any]] = {
    # name: (parameters, valid arguments, invalid arguments)
    "$defs": (
        {
            "type": "object",
            "properties": {"item": {"$ref": "#/$defs/item"}},
            "required": ["item"],
            "additionalProperties": False,
            "$defs": {"item": ITEM},
        },
        {"item": {"b": "x"}},
        {"item": 5},
    ),
    "definitions": (
        {
            "type": "object",
            "properties": {"item": {"$ref": "#/definitions/item"}},
            "required": ["item"],
            "additionalProperties": False,
            "definitions": {"item": ITEM},
        },
        {"item": {"b": "x"}},
        {"item": 5},
    ),
    "root-recursion": (
        {
            "type": "object",
            "properties": {
                "v": {"type": "string"},
                "child": {"anyOf": [{"$ref": "#"}, {"type": "null"}]},
            },
            "required": ["v", "child"],
            "additionalProperties": False,
        },
        {"v": "a", "child": {"v": "b", "child": None}},
        {"v": "a", "child": {"name": "g", "arguments": {"v": "b", "child": None}}},
    ),
}


@pytest.mark.parametrize(
    ("parameters", "valid", "invalid"), list(LOCAL_REFS.values()), ids=list(LOCAL_REFS)
)
def test_grammar_local_refs_resolve_in_the_parameters(
    tokenizer: llguidance.LLTokenizer, parameters: dict[str, Any], valid: Any, invalid: Any
) -> None:
    """A "$ref" in a function's parameters points into those parameters (the strict-mode
    "$defs" pattern), not into the grammar's wrapper around them."""
    plan = plan_of(tools=[tool("g", parameters, strict=True)], tool_choice="required")
    source = grammar(plan)
    assert source is not None
    m = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(source), log_level=0)
    assert not m.is_error(), m.get_error()
    good = tokenizer.tokenize_str(call("g", valid))
    bad = tokenizer.tokenize_str(call("g", invalid))
    assert m.deep_copy().validate_tokens(bad) < len(bad)
    assert m.try_consume_tokens(good) == len(good)
    assert m.is_accepting()


def parse_tokens(tok: llguidance.LLTokenizer, plan: ToolPlan, tokens: list[int]) -> OutputParser:
    """Feed the parser the text of each token in turn, as the engine streams it."""
    parser = OutputParser(plan)
    content, _ = run(parser, [tok.decode_str([t]) for t in tokens])
    assert content == ""
    return parser


@pytest.mark.parametrize(
    "plan_name", ["auto", "parallel", "required", "named", "legacy-auto", "legacy-named"]
)
def test_grammar_output_parses_back(tokenizer: llguidance.LLTokenizer, plan_name: str) -> None:
    """What the grammar accepts, the parser reads back as the same call."""
    m = matcher(tokenizer, plan_name)
    tokens = tokenizer.tokenize_str(PARIS)
    assert m.try_consume_tokens(tokens) == len(tokens)
    assert m.is_accepting()
    parser = parse_tokens(tokenizer, plan_of(**GRAMMAR_PLANS[plan_name]), tokens)
    assert [(c.name, c.arguments) for c in parser.calls] == [
        ("get_weather", '{"city":"Paris","unit":"celsius"}')
    ]


def test_grammar_accepts_the_tricky_sample(tokenizer: llguidance.LLTokenizer) -> None:
    """The parser's sample output (braces and quotes in strings) is one the grammar allows
    when get_weather takes any object, and parses back token by token."""
    plan = plan_of(tools=[tool("get_weather", {"type": "object"}), tool("f")])
    source = grammar(plan)
    assert source is not None
    m = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(source), log_level=0)
    tokens = tokenizer.tokenize_str(TWO_CALLS)
    assert m.try_consume_tokens(tokens) == len(tokens), m.get_error()
    assert m.is_accepting()
    parser = parse_tokens(tokenizer, plan, tokens)
    assert [(c.name, c.arguments) for c in parser.calls] == EXPECTED_CALLS


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

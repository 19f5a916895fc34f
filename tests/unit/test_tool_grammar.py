"""The core of tool calling (src/chatd/service/tool_calls.py): the parser that reads calls
back from the output, and the grammar that makes them valid."""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from typing import Any

import llguidance
import llguidance.llamacpp
import pytest
from tool_fixtures import (
    AUTO_PLANS,
    CALLING_PLANS,
    FUNCTIONS,
    TOOLS,
    plan_of,
    tool,
)

from chatd.service.tool_calls import (
    CLOSE,
    OPEN,
    CallEvent,
    OutputParser,
    ToolPlan,
    grammar,
)

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

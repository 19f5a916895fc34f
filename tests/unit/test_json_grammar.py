"""Constrained JSON is valid by construction (src/chatd/engine/grammar.py, json_keys.py):
whatever tokens the grammar lets through, the finished text parses with a strict parser
(no NaN/Infinity, no repeated key) and validates against the user's schema.

The property test generates schemas (nested objects, arrays, enums, optional keys, open
and closed objects, maps, keys and strings that need escapes and line breaks), compiles
them with the real llguidance and the embedded model's tokenizer, and walks the matcher
with random allowed tokens, biased towards the ones that close strings and containers
so that most walks finish within the token budget."""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_schemas import strict_loads

from chatd.engine.grammar import Grammar, GrammarCompiler
from chatd.engine.json_keys import closed_for_grammar
from chatd.engine.model_runner import ModelRunner
from chatd.service.tool_calls import OPEN, Function, ToolPlan, grammar

BUDGET = 400  # tokens per walk


class Walker:
    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.compiler = GrammarCompiler(runner)
        self.compiler.warm()
        pieces = runner.token_bytes
        self.closing = np.array([p[:1] == b'"' or p in (b"}", b"]", b",") for p in pieces])
        self.short = np.array([len(p) == 1 for p in pieces])

    def walk(self, g: Grammar, rng: random.Random) -> tuple[bool, str]:
        """Random allowed tokens until the grammar finishes (True) or the budget ends."""
        m = g.matcher()
        out = b""
        for _ in range(BUDGET):
            if m.finished:
                break
            allowed = m.allowed()
            pool = allowed
            r = rng.random()
            if r < 0.5 and (allowed & self.closing).any():
                pool = allowed & self.closing
            elif r < 0.8 and (allowed & self.short).any():
                pool = allowed & self.short
            ids = np.flatnonzero(pool)
            assert len(ids), f"no token allowed after {out!r}"
            token = int(ids[rng.randrange(len(ids))])
            m.consume(token)
            out += self.runner.token_bytes[token]
        return m.finished, out.decode("utf-8")


@pytest.fixture(scope="module")
def walker() -> Iterator[Walker]:
    from chatd.config import embedded_model_path
    from chatd.engine.model_runner import RunnerConfig

    runner = ModelRunner(RunnerConfig(embedded_model_path(), n_ctx=512, n_seq_max=2))
    try:
        with warnings.catch_warnings():  # llama_token_get_attr, once per vocabulary entry
            warnings.simplefilter("ignore", DeprecationWarning)
            yield Walker(runner)
    finally:
        runner.close()


# --- schemas ------------------------------------------------------------------------------

TRICKY = ["a", "b", "name", 'quo"te', "back\\slash", "line\nbreak", "tab\there", "ü€😀", ""]
texts = st.sampled_from(TRICKY) | st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), max_codepoint=0x1FFFF), max_size=6
)

leaves = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "string", "maxLength": 8}),
    st.just({"type": "integer", "minimum": -5, "maximum": 1000}),
    st.just({"type": "number"}),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({}),  # anything
    st.lists(texts, min_size=1, max_size=4, unique=True).map(lambda e: {"enum": e}),
    texts.map(lambda c: {"const": c}),
)


def objects(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        props = draw(st.dictionaries(texts, children, max_size=4))
        node: dict[str, Any] = {"type": "object", "properties": props}
        required = [k for k in props if draw(st.booleans())]
        if required:
            node["required"] = required
        extra = draw(st.sampled_from(["absent", True, False, "integers", "strings"]))
        if extra == "integers":
            node["additionalProperties"] = {"type": "integer"}
        elif extra == "strings":
            node["additionalProperties"] = {"type": "string", "maxLength": 4}
        elif extra != "absent":
            node["additionalProperties"] = extra
        return node

    return build()


schemas = st.recursive(
    leaves,
    lambda children: st.one_of(
        objects(children),
        children.map(lambda s: {"type": "array", "items": s, "maxItems": 3}),
        st.just({"type": "object"}),
        st.lists(children, min_size=2, max_size=2).map(lambda xs: {"anyOf": xs}),
    ),
    max_leaves=8,
)
roots = st.one_of(objects(schemas), st.just({"type": "object"}), schemas)


@settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(schema=roots, seed=st.integers(0, 2**16))
def test_constrained_json_parses_strictly_and_validates(
    walker: Walker, schema: dict[str, Any], seed: int
) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    g = walker.compiler.json_schema(schema)
    finished, text = walker.walk(g, random.Random(seed))
    if finished:  # else the budget ran out: finish_reason "length", no promise
        jsonschema.validate(strict_loads(text), schema)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(params=objects(schemas), seed=st.integers(0, 2**16))
def test_tool_call_arguments_parse_strictly_and_validate(
    walker: Walker, params: dict[str, Any], seed: int
) -> None:
    plan = ToolPlan([Function("f", None, params)], "required", parallel=False)
    source = grammar(plan)
    assert source is not None
    g = walker.compiler.lark(source, OPEN)
    finished, text = walker.walk(g, random.Random(seed))
    if finished:
        call = strict_loads(text.removeprefix(OPEN).rsplit("\n", 1)[0])
        assert call["name"] == "f"
        jsonschema.validate(call["arguments"], params)


# --- the key guard, step by step -------------------------------------------------------------


def feed(walker: Walker, g: Grammar, text: str) -> Any:
    m = g.matcher()
    for t in walker.runner.tokenize(text, add_special=False, parse_special=False):
        m.consume(t)
    return m


def closers(walker: Walker, m: Any) -> list[bytes]:
    """The allowed tokens that end the string being written right away."""
    allowed = m.allowed()
    return [p for t, p in enumerate(walker.runner.token_bytes) if allowed[t] and p[:1] == b'"']


def any_object(walker: Walker) -> Grammar:
    return walker.compiler.json_schema({"type": "object"})


@pytest.mark.parametrize("key", ["a", "name", 'quo"te', "line\nbreak", "ü€"])
def test_an_open_object_cannot_repeat_a_key(walker: Walker, key: str) -> None:
    spelled = json.dumps(key, ensure_ascii=False)[:-1]  # without the closing quote
    assert closers(walker, feed(walker, any_object(walker), f"{{{spelled}")) != []
    assert closers(walker, feed(walker, any_object(walker), f'{{{spelled}":1,{spelled}')) == []
    m = feed(walker, any_object(walker), f'{{{spelled}":1,{spelled}x')  # a longer key is new
    assert closers(walker, m) != []


def test_a_key_spelled_otherwise_is_the_same_key(walker: Walker) -> None:
    # (llguidance spells only control characters with \\u, in either case of hex digits)
    assert closers(walker, feed(walker, any_object(walker), '{"\\u001f":1,"\\u001F')) == []


def test_the_same_key_is_fine_in_another_object(walker: Walker) -> None:
    assert closers(walker, feed(walker, any_object(walker), '{"a":{"a":1},"b":[{"a":2},{"a')) != []
    assert closers(walker, feed(walker, any_object(walker), '{"a":{"a')) != []


def test_values_are_not_keys(walker: Walker) -> None:
    assert closers(walker, feed(walker, any_object(walker), '{"a":"a')) != []


def test_free_text_beside_tool_calls_is_not_json(walker: Walker) -> None:
    plan = ToolPlan([Function("f", None, {"type": "object"})], "auto")
    source = grammar(plan)
    assert source is not None
    g = walker.compiler.lark(source, OPEN)
    assert closers(walker, feed(walker, g, 'Say {"a":1,"a')) != []
    assert closers(walker, feed(walker, g, OPEN + '{"name":"f","arguments":{"a":1,"a')) == []


def test_open_objects_with_declared_properties_are_closed_for_the_grammar() -> None:
    dog = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    assert closed_for_grammar(dog) == {**dog, "additionalProperties": False}
    nested = {"type": "array", "items": dog}
    assert closed_for_grammar(nested)["items"]["additionalProperties"] is False
    kept = [
        {"type": "object"},  # nothing declared: closing would leave only {}
        {**dog, "additionalProperties": {"type": "integer"}},  # a typed map stays one
        {**dog, "patternProperties": {"^x": {}}},
        {**dog, "required": ["name", "age"]},  # a required key beyond the declared ones
        {"allOf": [dog, {"properties": {"age": {}}}]},  # closing would empty it
        {"type": "object", "properties": {"properties": {"type": "string"}}, "anyOf": [{}]},
    ]
    for schema in kept:
        assert closed_for_grammar(schema) == schema, schema
    # a property named like a keyword is a property, not a schema to close
    odd = {"type": "object", "properties": {"properties": {"type": "object"}}}
    assert closed_for_grammar(odd)["properties"] == odd["properties"]


def test_most_walks_finish(walker: Walker) -> None:
    """The property tests check finished texts only: most walks must finish for them to
    mean something."""
    schemas = [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]
    for schema in schemas:
        g = walker.compiler.json_schema(schema)
        finished = sum(walker.walk(g, random.Random(seed))[0] for seed in range(20))
        assert finished >= 15, (schema, finished)

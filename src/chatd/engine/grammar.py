"""Constrained decoding with llguidance: a grammar decides, token by token, which tokens
may come next, so structured output is valid by construction.

The llguidance tokenizer is built once per model (~0.4 s), in the background as the engine
starts (``warm``), so the first constrained request does not pay for it. A compiled
``Grammar`` hands each choice its own ``Matcher`` (the parser state of one sequence).
JSON keys are unique by construction too (engine/json_keys.py): objects the schema leaves
open are closed where it declares properties, and a key guard narrows the mask elsewhere.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import llguidance
import numpy as np
from llguidance.llamacpp import lltokenizer_from_vocab

from chatd.engine.json_keys import GRAMMAR_OPTIONS, KeyGuard, closed_for_grammar
from chatd.engine.model_runner import ModelRunner

# llguidance's own bounds on one compilation (its documented defaults, made explicit so
# that they are a decision, not an accident): a grammar past them is an error, not a
# thread that runs on. The lexer fuel (~50k/ms) caps building the regexes at ~20 ms and
# the grammar size caps the Earley tables; measured on SmolLM2's vocabulary, a hostile
# 500 KB schema (100 alternatives of 100 patterned properties) compiles in 0.8 s, and is
# refused by the body limits (max_schema_bytes) before it gets here. The service's
# compile timeout (service/generation.py) is the last guard.
PARSER_LIMITS = dict(
    max_items_in_row=2000,
    initial_lexer_fuel=1_000_000,
    step_lexer_fuel=200_000,
    step_max_items=50_000,
    max_lexer_states=250_000,
    max_grammar_size=500_000,
)


class GrammarError(ValueError):
    """The schema or grammar cannot be compiled; the message says why."""


class Matcher:
    """The parser state of one sequence."""

    def __init__(self, matcher: llguidance.LLMatcher, n_vocab: int, keys: KeyGuard) -> None:
        self._m = matcher
        self._n_vocab = n_vocab
        self._keys = keys
        self._mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def allowed(self) -> np.ndarray:
        """Boolean array over the vocabulary: the tokens the grammar accepts next (and
        that repeat no key of the JSON object being written)."""
        self._m.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        bits = np.unpackbits(self._mask.view(np.uint8), bitorder="little")
        allowed = bits[: self._n_vocab].astype(bool)
        self._keys.restrict(allowed)
        return allowed

    def consume(self, token: int) -> None:
        if not self._m.consume_token(token):
            raise GrammarError(f"token {token} rejected by the grammar: {self._m.get_error()}")
        self._keys.consume(token)

    @property
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more."""
        return self._m.is_stopped()


class Grammar:
    def __init__(
        self, matcher: llguidance.LLMatcher, n_vocab: int, vocab: _Vocab, json_after: str
    ) -> None:
        self._template = matcher
        self._n_vocab = n_vocab
        self._vocab = vocab
        self._json_after = json_after

    def matcher(self) -> Matcher:
        keys = KeyGuard(self._vocab.token_bytes, self._vocab.quoted, self._json_after)
        return Matcher(self._template.deep_copy(), self._n_vocab, keys)


class _Vocab:
    """What the key guard needs of the vocabulary: each token's bytes, and the tokens
    that can end a string (those with a '"')."""

    def __init__(self, token_bytes: list[bytes]) -> None:
        self.token_bytes = token_bytes
        self.quoted = np.array([t for t, b in enumerate(token_bytes) if b'"' in b], dtype=np.int64)


class GrammarCompiler:
    def __init__(self, runner: ModelRunner) -> None:
        self._runner = runner
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._vocab: _Vocab | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """The tokenizer is built: a compilation now costs only itself."""
        return self._tokenizer is not None

    def warm(self) -> None:
        """Build the tokenizer now (call it off the event loop)."""
        self._tok()

    def _tok(self) -> llguidance.LLTokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = lltokenizer_from_vocab(self._runner.vocab)
                self._vocab = _Vocab(self._runner.token_bytes)
            return self._tokenizer

    def json_schema(self, schema: dict[str, Any]) -> Grammar:
        """Compile a JSON schema (compact JSON: no optional whitespace; open objects that
        declare properties closed, engine/json_keys.py). Slow for big schemas (the GIL is
        released): call it off the event loop."""
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(closed_for_grammar(schema)),
                defaults={"whitespace_flexible": False},
                overrides=GRAMMAR_OPTIONS,  # type: ignore[arg-type]
            )
        except ValueError as e:
            raise GrammarError(str(e)) from None
        return self._compile(grammar)

    def lark(self, source: str, json_after: str = "") -> Grammar:
        """Compile a Lark grammar (llguidance's dialect: ``%json {schema}`` embeds a
        JSON schema, which should close its objects and carry ``GRAMMAR_OPTIONS`` in
        ``x-guidance``); the output's JSON, with unique keys, begins after ``json_after``
        (the text before is free, and when the output does not begin so, all of it)."""
        return self._compile(llguidance.LLMatcher.grammar_from_lark(source), json_after)

    def _compile(self, grammar: str, json_after: str = "") -> Grammar:
        limits = llguidance.LLParserLimits(**PARSER_LIMITS)
        matcher = llguidance.LLMatcher(self._tok(), grammar, log_level=0, limits=limits)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        assert self._vocab is not None
        return Grammar(matcher, self._runner.n_vocab, self._vocab, json_after)

"""A scripted stand-in for ``chatd.engine.engine.Engine``: no model, no thread.

The service and API layers use only the engine's public face (``submit`` and the
``Generation`` it returns, ``render_chat``, ``tokenize_text``, ``count_tokens``,
``template.supports_tools``, ``grammars``, ``fingerprint``, ``n_vocab``,
``context_window``, ``stats``, ``start``, ``stop``). This fake implements that face
with a test-chosen script of what the model "writes", so everything above the engine
can be tested in-process in milliseconds, while the engine keeps its own unit tests
(tests/unit/test_scheduler.py) and the real model stays in tests/e2e/.

It honours what the service maps from a request into ``SamplingParams`` (``n``,
``max_new_tokens`` → LENGTH, ``stop`` → STOP_SEQUENCE, a grammar → GRAMMAR_END,
``logprobs``/``top_logprobs``) and records every submission, so tests can assert on
that mapping (``engine.last_params``, ``engine.last_prompt_text``, ``engine.scopes``: the
``CacheScope`` of every submission).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chatd.engine.errors import EngineFailure, QueueFull
from chatd.engine.grammar import GrammarError
from chatd.engine.params import (
    UNSCOPED,
    CacheScope,
    Delta,
    FinishReason,
    SamplingParams,
    TokenLogprob,
    TopLogprob,
)

# SmolLM2's default system prompt and ChatML markers: a rendered prompt has about as
# many tokens as the real model's, so token-based limits behave as they would there.
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
DEFAULT_TEXT = "Hello! How can I help you today?"
_TOKEN = re.compile(r"<\|[^|]+\|>|\s*\S+|\s+")


@dataclass(frozen=True)
class Call:
    """What a script sees for one choice: the prompt (as text), the params, its index."""

    prompt: str
    params: SamplingParams
    index: int


@dataclass(frozen=True)
class Grammar:
    """An opaque compiled grammar: which compiler made it and from what."""

    kind: str  # "lark" or "json_schema"
    source: Any


@dataclass
class FakeGrammars:
    """Accepts any schema or grammar; ``fail`` makes the next compilations raise;
    ``hold`` (an Event) makes them wait until it is set, as a hostile schema would
    keep the real compiler busy (they run in a thread: set it to let them go)."""

    fail: str | None = None
    compiled: list[Grammar] = field(default_factory=list)
    hold: threading.Event | None = None
    ready: bool = True

    def warm(self) -> None:
        self.ready = True

    def _compile(self, kind: str, source: Any) -> Grammar:
        if self.hold is not None:
            self.hold.wait()
        if self.fail is not None:
            raise GrammarError(self.fail)
        grammar = Grammar(kind, source)
        self.compiled.append(grammar)
        return grammar

    def lark(self, source: str, json_after: str = "") -> Grammar:
        return self._compile("lark", source)

    def json_schema(self, schema: dict[str, Any]) -> Grammar:
        return self._compile("json_schema", schema)


@dataclass
class FakeTemplate:
    supports_tools: bool = False


Script = str | Callable[[Call], str]


class FakeEngine:
    """Writes ``script`` (a text, or a function of the prompt, params and choice index)
    one whitespace-led word per token; ``step_delay`` seconds between steps lets
    tests keep requests in flight. ``max_in_flight`` unfinished generations make
    ``submit`` raise ``QueueFull`` (a full queue), and so does ``queue_full``."""

    def __init__(
        self,
        script: Script = DEFAULT_TEXT,
        *,
        n_vocab: int = 49152,
        context_window: int = 8192,
        kv_capacity: int = 32768,
        fingerprint: str = "fp_fakeengine",
        supports_tools: bool = False,
        step_delay: float = 0.0,
        max_in_flight: int | None = None,
    ) -> None:
        self.script: Script = script
        self.n_vocab = n_vocab
        self.context_window = context_window
        self.kv_capacity = kv_capacity
        self.fingerprint = fingerprint
        self.template = FakeTemplate(supports_tools)
        self.grammars = FakeGrammars()
        self.step_delay = step_delay
        self.max_in_flight = max_in_flight
        self.queue_full = False
        self.fim = False  # fim_tokens: the model has fill-in-the-middle tokens
        self.fail_after: int | None = None  # steps after which a generation fails
        self.cached_tokens = 0
        self.submitted: list[tuple[list[int], SamplingParams]] = []
        self.scopes: list[CacheScope] = []  # of every submission, in order
        self.in_flight: set[FakeGeneration] = set()
        self.started = self.stopped = False
        self._ids: dict[str, int] = {}
        self._words: list[str] = []
        self._holds: list[tuple[str, threading.Event]] = []
        # Embeddings: mean-pooled as the embedded chat model's (engine/embedding.py).
        self.embedding_only = False
        self.embedding_pooling = "mean"
        self.embedding_dimensions = 64
        self.embedding_limit = context_window
        self.embedded: list[list[list[int]]] = []  # every job's token lists
        self.embed_gate: threading.Event | None = None
        self.embeds_cancelled = 0

    def hold(self, text: str) -> threading.Event:
        """Generations whose prompt holds ``text`` wait before each step until the event
        is set: requests kept in flight as long as a test needs, whatever the machine's
        speed (a threading.Event: a server in another thread sees it too)."""
        gate = threading.Event()
        self._holds.append((text, gate))
        return gate

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def stats(self) -> dict[str, int]:
        running = [g for g in self.in_flight if not g.done]
        return {
            "running_requests": len(running),
            "running_sequences": sum(g.params.n for g in running),
            "waiting_requests": 0,
            "preemptions": 0,
            "prefix_cache_hit_tokens": 0,
            "prefix_cache_miss_tokens": sum(len(p) for p, _ in self.submitted),
            "prefix_cache_entries": 0,
            "kv_cells_used": 0,
        }

    # --- tokens ---------------------------------------------------------------------------
    def tokenize_text(self, text: str) -> list[int]:
        """One token per whitespace-led word or ChatML marker; ids are stable per engine
        (first seen, first numbered), so ``detokenize`` gives the text back."""
        out = []
        for piece in _TOKEN.findall(text):
            token = self._ids.get(piece)
            if token is None:
                token = self._ids[piece] = len(self._words) % self.n_vocab
                self._words.append(piece)
            out.append(token)
        return out

    def detokenize(self, tokens: list[int]) -> str:
        words = self._words  # an id never seen (a client's own token ids) reads as its number
        return "".join(words[t] if t < len(words) else f"<{t}>" for t in tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize_text(text))

    def encode_prompt(self, text: str, start: bool = True) -> list[int]:
        """A raw prompt: its words (an empty one is the end-of-text marker)."""
        return self.tokenize_text(text) or (self.tokenize_text("<|endoftext|>") if start else [])

    @property
    def fim_tokens(self) -> tuple[int, int, int] | None:
        """Set ``fim`` to give this fake fill-in-the-middle tokens."""
        if not self.fim:
            return None
        pre, suf, mid = self.tokenize_text("<|fim_pre|><|fim_suf|><|fim_mid|>")
        return pre, suf, mid

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """As the real engine's: SmolLM2 adds no BOS, so ``add_special`` adds nothing."""
        return self.tokenize_text(text)

    def token_piece(self, token: int) -> bytes:
        """An id never handed out is a token of no text."""
        return self._words[token].encode() if token < len(self._words) else b""

    def render_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """ChatML, with SmolLM2's default system message when there is none."""
        parts = []
        if not messages or messages[0].get("role") != "system":
            parts.append(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
        if tools:
            parts.append(f"<|im_start|>tools\n{json.dumps(tools)}<|im_end|>\n")
        for m in messages:
            content = m.get("content")
            if not isinstance(content, str):
                content = json.dumps(content)
            parts.append(f"<|im_start|>{m.get('role')}\n{content}<|im_end|>\n")
        parts.append("<|im_start|>assistant\n")
        return self.tokenize_text("".join(parts))

    # --- embeddings ---------------------------------------------------------------------
    def embedding_tokens(self, text: str) -> list[int]:
        return self.tokenize_text(text)

    def embed(self, inputs: list[list[int]]) -> FakeEmbedding:
        """Each input's vector: the mean of a fixed random vector per token id (the same
        ids, the same vectors: inputs sharing words are closer), L2-normalized, as the
        real engine's mean pooling of a chat model. ``embed_gate`` (an Event) holds
        every job until it is set."""
        if any(len(t) > self.embedding_limit for t in inputs):
            raise ValueError("an input exceeds the limit")
        self.embedded.append([list(t) for t in inputs])
        return FakeEmbedding(self, inputs)

    def vector(self, tokens: list[int]) -> np.ndarray:
        rows = [np.random.default_rng(t).standard_normal(self.embedding_dimensions) for t in tokens]
        v = np.mean(rows, axis=0)
        return (v / np.linalg.norm(v)).astype(np.float32)

    # --- generation ---------------------------------------------------------------------
    def submit(
        self, prompt: list[int], params: SamplingParams, scope: CacheScope = UNSCOPED
    ) -> FakeGeneration:
        running = sum(1 for g in self.in_flight if not g.done)
        if self.queue_full or (self.max_in_flight is not None and running >= self.max_in_flight):
            raise QueueFull()
        self.submitted.append((list(prompt), params))
        self.scopes.append(scope)
        prompt_text = self.detokenize(prompt)
        texts = [self._text(Call(prompt_text, params, i)) for i in range(params.n)]
        gates = [gate for text, gate in self._holds if text in prompt_text]
        generation = FakeGeneration(self, params, texts, gates)
        if params.prompt_logprobs:  # -0.5 each, as the answer's; none for the first
            words = [self._words[t] for t in prompt[1:]]
            generation.prompt_logprobs = [None, *(_logprob(w, params.top_logprobs) for w in words)]
        self.in_flight.add(generation)
        return generation

    def _text(self, call: Call) -> str:
        return self.script if isinstance(self.script, str) else self.script(call)

    @property
    def last_params(self) -> SamplingParams:
        return self.submitted[-1][1]

    @property
    def last_prompt_text(self) -> str:
        return self.detokenize(self.submitted[-1][0])


@dataclass
class _Choice:
    """One choice's planned output: its tokens (pieces) and why it ends."""

    pieces: list[str]
    finish: FinishReason
    sent: int = 0
    stop: str | None = None  # the stop sequence that ended it


def _plan(text: str, params: SamplingParams) -> _Choice:
    """Cut the scripted text as the engine would: at the first stop string (not
    included), else at max_new_tokens, else at its end."""
    pieces = _TOKEN.findall(text)
    written = ""
    for i, piece in enumerate(pieces):
        if i >= params.max_new_tokens:
            return _Choice(pieces[:i], FinishReason.LENGTH)
        written += piece
        hits = [(written.find(s), s) for s in params.stop if s and s in written]
        if hits:
            cut, stop = min(hits, key=lambda h: h[0])
            before = "".join(pieces[:i])
            last = written[len(before) : cut]
            kept = [*pieces[:i], last] if last else pieces[:i]
            return _Choice(kept, FinishReason.STOP_SEQUENCE, stop=stop)
    end = FinishReason.GRAMMAR_END if params.grammar is not None else FinishReason.END_OF_GENERATION
    return _Choice(pieces, end)


class FakeGeneration:
    """Emits one token per unfinished choice per step, as the real Generation does."""

    def __init__(
        self,
        engine: FakeEngine,
        params: SamplingParams,
        texts: list[str],
        gates: list[threading.Event] | None = None,
    ) -> None:
        self._engine = engine
        self._gates = gates or []
        self.params = params
        self._choices = [_plan(t, params) for t in texts]
        self._finished: set[int] = set()
        self.cancelled = False
        self.cached_tokens = engine.cached_tokens
        self.prompt_logprobs: list[TokenLogprob | None] | None = None

    @property
    def done(self) -> bool:
        return self.cancelled or len(self._finished) >= len(self._choices)

    def prediction_tokens(self) -> tuple[int, int]:
        """No drafter here: a prediction is counted as wholly rejected."""
        if not self.params.prediction:
            return 0, 0
        return 0, len(self.params.prediction) * len(self._choices)

    def cancel(self) -> None:
        if not self.done:
            self.cancelled = True
        self._engine.in_flight.discard(self)

    def _step(self) -> list[Delta]:
        deltas = []
        for i, c in enumerate(self._choices):
            if i in self._finished:
                continue
            text = ""
            if c.sent < len(c.pieces):
                text = c.pieces[c.sent]
                c.sent += 1
            finish = c.finish if c.sent >= len(c.pieces) else None
            if finish is not None:
                self._finished.add(i)
            lps = (_logprob(text, self.params.top_logprobs),) if self.params.logprobs else ()
            stop = c.stop if finish is not None else None
            deltas.append(Delta(i, text, lps, finish, c.sent, stop))
        return deltas

    async def __aiter__(self) -> AsyncIterator[list[Delta]]:
        steps = 0
        try:
            while not self.done:
                await asyncio.sleep(self._engine.step_delay)
                while not all(g.is_set() for g in self._gates) and not self.cancelled:
                    await asyncio.sleep(0.002)
                if self.cancelled:
                    return
                if self._engine.fail_after is not None and steps >= self._engine.fail_after:
                    raise EngineFailure("llama_decode failed (scripted)")
                steps += 1
                yield self._step()
        finally:
            self.cancel()


class FakeEmbedding:
    """One embedding job: its vectors once ``embed_gate`` (if any) is set."""

    def __init__(self, engine: FakeEngine, inputs: list[list[int]]) -> None:
        self._engine = engine
        self._inputs = inputs
        self.cancelled = False

    async def vectors(self) -> list[np.ndarray]:
        gate = self._engine.embed_gate
        try:
            while gate is not None and not gate.is_set():
                await asyncio.sleep(0.002)
        except asyncio.CancelledError:
            self.cancel()
            raise
        return [self._engine.vector(t) for t in self._inputs]

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._engine.embeds_cancelled += 1


def _logprob(text: str, top: int) -> TokenLogprob:
    raw = list(text.encode())
    alts = tuple(TopLogprob(f"alt{k}", list(f"alt{k}".encode()), -1.0 - k) for k in range(top))
    if top:
        alts = (TopLogprob(text, raw, -0.5), *alts[: top - 1])
    return TokenLogprob(text, raw, -0.5, alts)

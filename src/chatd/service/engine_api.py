"""What the service layer needs of an engine, as Protocols: the real ``Engine`` satisfies
them, and so does the tests' ``FakeEngine``, so everything above the engine can be
tested in-process without a model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from chatd.engine.params import CacheScope, Delta, SamplingParams, TokenLogprob

if TYPE_CHECKING:
    from chatd.engine.grammar import Grammar

__all__ = ["EngineLike", "GenerationLike"]


class GenerationLike(Protocol):
    """One submitted request: every step's deltas until each choice has finished."""

    @property
    def cached_tokens(self) -> int: ...

    def prediction_tokens(self) -> tuple[int, int]: ...

    @property
    def prompt_logprobs(self) -> list[TokenLogprob | None] | None: ...

    def cancel(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[list[Delta]]: ...


class TemplateLike(Protocol):
    supports_tools: bool  # the chat template renders tool declarations and calls itself


class GrammarsLike(Protocol):
    @property
    def ready(self) -> bool: ...  # compiling costs only itself (its setup is done)

    def warm(self) -> None: ...  # do the setup now (blocking)

    def lark(self, source: str, json_after: str = "") -> Grammar: ...

    def json_schema(self, schema: dict[str, Any]) -> Grammar: ...


class EngineLike(Protocol):
    context_window: int
    kv_capacity: int  # KV cells all running sequences share (bounds n x max_tokens)
    fingerprint: str
    n_vocab: int
    template: TemplateLike
    grammars: GrammarsLike

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def render_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]: ...

    def tokenize_text(self, text: str) -> list[int]: ...

    def count_tokens(self, text: str) -> int: ...

    def encode_prompt(self, text: str, start: bool = True) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str: ...

    @property
    def fim_tokens(self) -> tuple[int, int, int] | None: ...
    def tokenize(self, text: str, add_special: bool) -> list[int]: ...  # special text parsed

    def token_piece(self, token: int) -> bytes: ...  # a control token by its name

    def submit(
        self, prompt: list[int], params: SamplingParams, scope: CacheScope = ...
    ) -> GenerationLike: ...

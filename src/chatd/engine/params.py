"""The engine's own request types: no HTTP, no OpenAI field names."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatd.engine.grammar import Grammar


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. The defaults are OpenAI's for a field not given (a chat request's
    parameters pass only the fields given: service/chat/sampling.py), except ``max_new_tokens``,
    which OpenAI leaves to the context window and the chat service always sets."""

    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 16
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    # Extensions (llama.cpp's and vLLM's meanings); each default leaves sampling unchanged.
    top_k: int = 0  # keep the k most likely tokens; 0 or -1: all
    min_p: float = 0.0  # drop tokens below min_p x the most likely one's probability
    repetition_penalty: float = 1.0  # over prompt+output: logit/r if logit > 0 else logit*r
    min_tokens: int = 0  # end-of-generation tokens masked before this many tokens
    grammar: Grammar | None = None  # output constrained to this grammar when set
    prediction: tuple[int, ...] = ()  # tokens the output is expected to largely repeat
    # The prompt's own logprobs (each token given those before it, ``top_logprobs``
    # alternatives): every prompt position computed with its row of logits, none reused
    # from the prefix cache (the Completions API's echo with logprobs).
    prompt_logprobs: bool = False


@dataclass(frozen=True)
class CacheScope:
    """Whose prompt this is, as the engine needs to know it: opaque to the engine.

    ``partition``: requests of one partition may reuse each other's KV cells (the prefix
    cache, running sequences); another partition's cells never lend them more than the
    shared part. The waiting queue is fair over partitions too. The service sets it to the
    caller's owner, so one tenant cannot read another's prompts through cache hits (the
    prompt-caching side channel: docs/security.md, "Prefix cache isolation").

    ``shared``: the leading prompt tokens that are public (an operator-marked shared
    system prompt): any partition may reuse up to this many of them from another whose
    own shared part covers them too. 0: nothing is shared across partitions.
    """

    partition: str = ""
    shared: int = 0


UNSCOPED = CacheScope()  # every request in one partition (the engine used on its own)


class FinishReason(enum.Enum):
    """Why a choice ended, in the engine's words; each protocol names it its own way."""

    END_OF_GENERATION = "end_of_generation"  # the model wrote an end-of-generation token
    STOP_SEQUENCE = "stop_sequence"  # the text reached one of ``SamplingParams.stop``
    GRAMMAR_END = "grammar_end"  # the grammar accepts nothing more
    LENGTH = "length"  # max_new_tokens, or the context window, was reached
    # Never written by the local engine: an upstream's content filter cut an answer that
    # chatd translates into core events (service/chat_events.py). It has an end of
    # its own because each protocol names it honestly (chat "content_filter", Responses
    # "incomplete" for "content_filter"); calling it a natural end would hide the cut.
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True)
class TopLogprob:
    token: str
    bytes: list[int] | None
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    bytes: list[int] | None
    logprob: float
    top: tuple[TopLogprob, ...]


@dataclass(frozen=True)
class Delta:
    """What one choice produced during one engine step."""

    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None  # set once the choice is finished
    completion_tokens: int = 0  # tokens sampled so far by this choice (final when finished)
    # with STOP_SEQUENCE: which of ``SamplingParams.stop`` ended it (the Messages API
    # reports the matched string)
    stop_sequence: str | None = None

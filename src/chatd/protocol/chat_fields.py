"""What chatd does with each field of a chat request: one declared policy per field.

The contract (``protocol/chat_request.py``) says what a client may send; this table says what
happens to it, so that no field of the contract is accepted and then silently ignored by
accident. Every field of :class:`ChatCompletionRequest` has exactly one :class:`FieldPolicy`
(a unit test fails otherwise):

- ``ENGINE``: mapped to a parameter of the engine's ``SamplingParams``, named here, with the
  conversion from the request's value; ``service/chat/sampling.py`` builds the engine's parameters
  from these rows alone, and an absent field is not passed, so ``SamplingParams``'s defaults
  are the one definition of defaults;
- ``SERVER``: acted on by chatd itself (routing, prompt rendering, grammars, streaming,
  storage...); ``why`` says how;
- ``HINT``: accepted, and has no effect on a local model; ``why`` says why that is right;
- ``REFUSED``: the local engine cannot honour it, so it is a 400 ``unsupported_parameter``
  whose reason is ``why`` (``{model}`` is the model id). The refusal is local: a request for a
  model served by upstream channels is relayed (as each channel allows), and the upstream
  decides.

``refuses_values`` marks fields of which the local engine accepts some values only (audio
output in ``modalities``, non-text content parts, out-of-vocabulary ``logit_bias`` token ids).
Those checks need the model and are code, in ``service/chat/capabilities.py``, one per field so
marked (a unit test keeps the two in step).

Order matters twice, so the table's order is deliberate: refusals are judged in table order
(the first refused field is the one named), and when two fields map to one engine parameter
the first one given wins (``max_completion_tokens`` over the deprecated ``max_tokens``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from chatd.protocol.chat_request import ChatCompletionRequest

__all__ = [
    "ACCOUNT_HINTS",
    "CHAT_FIELDS",
    "FieldPolicy",
    "Policy",
    "engine_fields",
    "refused_fields",
    "undeclared",
    "undeclared_fields",
    "with_policy",
]


class Policy(enum.Enum):
    ENGINE = "engine"  # mapped to a SamplingParams parameter
    SERVER = "server"  # handled by chatd itself
    HINT = "hint"  # accepted, no effect
    REFUSED = "refused"  # a 400 on the local engine; relayed to channels that allow it


@dataclass(frozen=True)
class FieldPolicy:
    policy: Policy
    why: str  # how the server handles it, why a hint has no effect, or the refusal's reason
    engine: str | None = None  # the SamplingParams parameter of an ENGINE field
    convert: Callable[[Any], Any] | None = None  # request value -> engine value (else as is)
    refuses_values: str | None = None  # values the local engine refuses (capabilities.py)

    def to_engine(self, value: Any) -> Any:
        """The request's (non-null) value as the engine parameter takes it."""
        return value if self.convert is None else self.convert(value)


def _engine(
    param: str,
    why: str = "",
    convert: Callable[[Any], Any] | None = None,
    refuses_values: str | None = None,
) -> FieldPolicy:
    return FieldPolicy(Policy.ENGINE, why, param, convert, refuses_values)


def _server(why: str, refuses_values: str | None = None) -> FieldPolicy:
    return FieldPolicy(Policy.SERVER, why, refuses_values=refuses_values)


def _hint(why: str) -> FieldPolicy:
    return FieldPolicy(Policy.HINT, why)


def _refused(reason: str) -> FieldPolicy:
    return FieldPolicy(Policy.REFUSED, reason)


def _stop(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _logit_bias(value: dict[str, int]) -> dict[int, float]:
    return {int(token): float(bias) for token, bias in value.items()}


_NOT_SUPPORTED = "is not supported by `{model}`."

# Hints both APIs share (Chat Completions and Responses): ids and cache routing for
# OpenAI's own infrastructure.
ACCOUNT_HINTS: dict[str, FieldPolicy] = {
    "user": _hint("an end-user id for OpenAI's abuse monitoring; chatd keeps no such records"),
    "safety_identifier": _hint(
        "an end-user id for OpenAI's safety checks; chatd keeps no such records"
    ),
    "prompt_cache_key": _hint(
        "routes to OpenAI's prompt caches; chatd's prefix cache matches prompts by content"
    ),
    "prompt_cache_retention": _hint(
        "chatd's prefix cache keeps prefixes as long as its memory allows, whatever is asked"
    ),
}

CHAT_FIELDS: Mapping[str, FieldPolicy] = {
    # -- handled by the server ---------------------------------------------------------------
    "model": _server("picks the local model, or the routes of a configured model"),
    "messages": _server(
        "rendered into the prompt by the model's chat template",
        refuses_values="non-text content parts, and audio of earlier assistant turns",
    ),
    "modalities": _server("the answer is text, as ['text'] asks", refuses_values="'audio' output"),
    "functions": _server("rendered into the prompt; calls are parsed from the output"),
    "tools": _server("rendered into the prompt; calls are parsed from the output"),
    "tool_choice": _server("which tools may be called: the grammar of the output"),
    "function_call": _server("which functions may be called: the grammar of the output"),
    "parallel_tool_calls": _server("whether the grammar allows several calls in one answer"),
    "response_format": _server("compiled into a grammar the output is constrained to"),
    "prediction": _server(
        "tokenized with the model's tokenizer into SamplingParams.prediction (draft tokens"
        " for speculative decoding); never changes the answer"
    ),
    "stream": _server("server-sent events instead of one JSON body"),
    "stream_options": _server("usage chunk and obfuscation padding of a stream"),
    "store": _server("the completion is stored, for /v1/chat/completions/{id}"),
    "metadata": _server("kept with a stored completion, to filter the list of them"),
    "service_tier": _server(
        "echoed: every request runs on this server's one tier ('auto' reads 'default')"
    ),
    "verbosity": _server(
        "'medium' (the default) is how every answer is written",
        refuses_values="'low' and 'high': a reasoning model's option",
    ),
    # -- refused locally, in the order they are judged ----------------------------------------
    "audio": _refused(_NOT_SUPPORTED),
    "web_search_options": _refused(
        "is only supported by search models, which search the web for every answer;"
        " `{model}` runs no web search."
    ),
    "moderation": _refused(_NOT_SUPPORTED),
    # -- mapped to the engine (max_completion_tokens first: it wins over max_tokens) -----------
    "max_completion_tokens": _engine(
        "max_new_tokens", "checked against the context window by service/generation.py"
    ),
    "max_tokens": _engine("max_new_tokens", "deprecated; max_completion_tokens wins"),
    "n": _engine("n"),
    "temperature": _engine("temperature", convert=float),
    "top_p": _engine("top_p", convert=float),
    "presence_penalty": _engine("presence_penalty", convert=float),
    "frequency_penalty": _engine("frequency_penalty", convert=float),
    "logprobs": _engine("logprobs"),
    "top_logprobs": _engine("top_logprobs"),
    "seed": _engine("seed"),
    "stop": _engine("stop", "one string or several", convert=_stop),
    "logit_bias": _engine(
        "logit_bias",
        "token ids as integers, biases added to the logits",
        convert=_logit_bias,
        refuses_values="token ids beyond the model's vocabulary",
    ),
    # -- extensions (llama.cpp's and vLLM's sampling knobs); relayed where channels allow ---
    "top_k": _engine("top_k", "the k most likely tokens only; -1 or 0: off"),
    "min_p": _engine("min_p", "tokens below min_p times the top probability dropped", float),
    "repetition_penalty": _engine(
        "repetition_penalty",
        "multiplicative, over prompt and output tokens: logit/p if positive, else logit*p",
        float,
    ),
    "min_tokens": _engine("min_tokens", "end-of-generation tokens masked until this many"),
    # -- hints with no effect on a local model ------------------------------------------------
    "reasoning_effort": _hint(
        "a model that does not reason has no effort to set: no reasoning is produced, as with"
        " 'none' (relayed to channels, which may reason)"
    ),
    "prompt_cache_options": _hint(
        "chatd's prefix cache is implicit and kept per owner whatever the ttl or mode; caching"
        " changes cost and latency, never the answer"
    ),
    **ACCOUNT_HINTS,
}


def with_policy(table: Mapping[str, FieldPolicy], policy: Policy) -> dict[str, FieldPolicy]:
    """The rows of ``table`` with ``policy``, in table order (for ENGINE rows, the first
    given field wins; for REFUSED rows, the first given is the one named)."""
    return {n: p for n, p in table.items() if p.policy is policy}


def undeclared(model: type[BaseModel], table: Mapping[str, FieldPolicy]) -> set[str]:
    """Fields of a contract with no policy in its table (must be none)."""
    return set(model.model_fields) - set(table)


def engine_fields() -> dict[str, FieldPolicy]:
    """The chat fields mapped to the engine, in table order (the first given one wins)."""
    return with_policy(CHAT_FIELDS, Policy.ENGINE)


def refused_fields() -> dict[str, FieldPolicy]:
    """The chat fields the local engine refuses, in the order they are judged."""
    return with_policy(CHAT_FIELDS, Policy.REFUSED)


def undeclared_fields(model: type[BaseModel] = ChatCompletionRequest) -> set[str]:
    """Fields of the chat contract with no policy in the table (must be none)."""
    return undeclared(model, CHAT_FIELDS)

"""What chatd does with each field of a Responses request: one declared policy per field.

The same table as ``protocol/chat_fields.py`` (whose :class:`FieldPolicy` and :class:`Policy`
it uses), for :class:`CreateResponseRequest`: every field of the contract has exactly one
policy, so that nothing is accepted and then silently ignored (a unit test fails otherwise).
``ENGINE`` rows name the ``SamplingParams`` parameter; ``SERVER`` rows say how chatd acts on
the field; ``HINT`` rows why having no effect is right; ``REFUSED`` rows are a 400
``unsupported_parameter`` on the local engine (``{model}`` is the model id), judged in table
order. ``refuses_values`` marks fields of which some values only are refused (built-in tools,
image and file inputs...): those checks are code in the service adapter, written when the route
is wired.

Semantics are the Responses API's, which differ from chat's here and there: ``store`` defaults
to true, ``text.verbosity`` replaces chat's ``verbosity``, ``max_output_tokens`` is at least 16,
log probabilities are asked through ``include`` with ``top_logprobs`` giving how many.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from chatd.protocol.chat_fields import (
    ACCOUNT_HINTS,
    FieldPolicy,
    Policy,
    undeclared,
    with_policy,
)
from chatd.protocol.responses_request import CreateResponseRequest

__all__ = [
    "RESPONSES_FIELDS",
    "responses_engine_fields",
    "responses_refused_fields",
    "undeclared_responses_fields",
]


def _engine(param: str, why: str = "", convert: type | None = None) -> FieldPolicy:
    return FieldPolicy(Policy.ENGINE, why, param, convert)


def _server(why: str, refuses_values: str | None = None) -> FieldPolicy:
    return FieldPolicy(Policy.SERVER, why, refuses_values=refuses_values)


def _refused(reason: str) -> FieldPolicy:
    return FieldPolicy(Policy.REFUSED, reason)


def _hint(why: str) -> FieldPolicy:
    return FieldPolicy(Policy.HINT, why)


_NOT_SUPPORTED = "is not supported by `{model}`."

RESPONSES_FIELDS: Mapping[str, FieldPolicy] = {
    # -- handled by the server ---------------------------------------------------------------
    "model": _server("picks the local model, or the routes of a configured model"),
    "input": _server(
        "items rendered into the prompt by the model's chat template (a string is one user"
        " message)",
        refuses_values="image and file inputs, and item types other than messages, function"
        " calls, their outputs and item references",
    ),
    "instructions": _server("rendered as the first system message of the prompt"),
    "tools": _server(
        "function and custom tools (a namespace's under 'namespace.name') rendered into the"
        " prompt, their calls held to their schemas and grammars; hosted tools (web_search,"
        " file_search, mcp...) accepted and never called, said so in the"
        " x-chatd-tools-not-run header (docs/acceptance.md)"
    ),
    "tool_choice": _server(
        "which tools may be called: the grammar of the output",
        refuses_values="choices forcing a hosted tool, allowed_tools, and 'required' when only"
        " hosted tools are offered",
    ),
    "parallel_tool_calls": _server("whether the grammar allows several calls in one answer"),
    "text": _server(
        "format compiled into a grammar the output is constrained to",
        refuses_values="a 'verbosity' other than the default: a reasoning-model option",
    ),
    "store": _server("the response is stored (by default, unlike chat) for GET and chaining"),
    "metadata": _server("kept with a stored response"),
    "client_metadata": _server(
        "kept with a stored response, not returned (OpenAI's Response object has no such field)"
    ),
    "previous_response_id": _server(
        "the stored response's input and output are prepended to this input"
    ),
    "stream": _server("server-sent events instead of one JSON body"),
    "stream_options": _server("obfuscation padding of stream events"),
    "include": _server(
        "'message.output_text.logprobs' turns SamplingParams.logprobs on; every other value"
        " includes what a local response never has (reasoning, hosted tool results, input"
        " image URLs)"
    ),
    "truncation": _server(
        "'disabled' (the default) is a 400 when the input exceeds the context window; 'auto'"
        " drops the oldest items until it fits"
    ),
    "service_tier": _server(
        "echoed: every request runs on this server's one tier ('auto' reads 'default')"
    ),
    # -- refused locally, in the order they are judged ----------------------------------------
    "conversation": _refused(_NOT_SUPPORTED),
    "prompt": _refused(_NOT_SUPPORTED),
    "background": _refused(_NOT_SUPPORTED),
    "moderation": _refused(_NOT_SUPPORTED),
    "context_management": _refused(_NOT_SUPPORTED),
    # -- mapped to the engine ------------------------------------------------------------------
    "max_output_tokens": _engine(
        "max_new_tokens", "checked against the context window by service/generation.py"
    ),
    "temperature": _engine("temperature", convert=float),
    "top_p": _engine("top_p", convert=float),
    "top_logprobs": _engine(
        "top_logprobs",
        "how many alternatives; above 0 it asks for logprobs too, as 'include' does (a count"
        " of alternatives without the tokens' own logprobs would mean nothing)",
    ),
    # -- hints with no effect on a local model ------------------------------------------------
    "reasoning": _hint(
        "a model that does not reason has no effort to set and no reasoning to summarize: no"
        " reasoning item is produced (relayed to channels, which may reason)"
    ),
    "max_tool_calls": _hint("caps hosted tool calls, and a local model makes none"),
    "prompt_cache_options": _hint(
        "chatd's prefix cache is implicit and kept per owner whatever the ttl or mode; caching"
        " changes cost and latency, never the answer"
    ),
    **ACCOUNT_HINTS,
}


def responses_engine_fields() -> dict[str, FieldPolicy]:
    """The fields mapped to the engine, in table order (the first given one wins)."""
    return with_policy(RESPONSES_FIELDS, Policy.ENGINE)


def responses_refused_fields() -> dict[str, FieldPolicy]:
    """The fields the local engine refuses, in the order they are judged."""
    return with_policy(RESPONSES_FIELDS, Policy.REFUSED)


def undeclared_responses_fields(
    model: type[BaseModel] = CreateResponseRequest,
) -> set[str]:
    """Fields of the contract with no policy in the table (must be none)."""
    return undeclared(model, RESPONSES_FIELDS)

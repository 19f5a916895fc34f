"""A chat request's engine parameters, built from the fields the client gave and nothing else.

Which field becomes which ``SamplingParams`` parameter, and how its value is converted, is the
``ENGINE`` part of ``protocol/chat_fields.py``; a field that was not given (or given as null) is
not passed, so the defaults are ``SamplingParams``'s own (engine/params.py), the one place they
are defined. What this module adds is what needs the prompt: the completion budget, checked
against the model's context window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatd.engine.params import SamplingParams
from chatd.protocol.chat_fields import engine_fields
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.errors import APIError

if TYPE_CHECKING:
    from chatd.engine.grammar import Grammar

__all__ = ["sampling_params"]

_BUDGET = "max_new_tokens"


def sampling_params(
    req: ChatCompletionRequest, prompt_tokens: int, window: int, grammar: Grammar | None
) -> SamplingParams:
    """The engine's parameters for ``req``, whose prompt is ``prompt_tokens`` long.

    Raises ``context_length_exceeded`` when the prompt fills the ``window``, or when the prompt
    and the completion budget asked for (``max_completion_tokens``, else ``max_tokens``) do not
    fit in it together. Without a budget, the completion may use the rest of the window.
    """
    given: dict[str, Any] = {}
    for name, policy in engine_fields().items():
        value = getattr(req, name)
        # absent, or an earlier field won (an ENGINE policy always names its parameter)
        if value is None or policy.engine is None or policy.engine in given:
            continue
        given[policy.engine] = policy.to_engine(value)
    given[_BUDGET] = _budget(given.get(_BUDGET), prompt_tokens, window)
    if grammar is not None:
        given["grammar"] = grammar
    return SamplingParams(**given)


def _budget(requested: int | None, prompt_tokens: int, window: int) -> int:
    if requested is None:
        if prompt_tokens >= window:
            raise APIError(
                f"This model's maximum context length is {window} tokens. However, your"
                f" messages resulted in {prompt_tokens} tokens. Please reduce the length of"
                " the messages.",
                param="messages",
                code="context_length_exceeded",
            )
        return window - prompt_tokens
    if prompt_tokens + requested > window:
        raise APIError(
            f"This model's maximum context length is {window} tokens. However, you"
            f" requested {prompt_tokens + requested} tokens ({prompt_tokens} in the"
            f" messages, {requested} in the completion). Please reduce the length of the"
            " messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    return requested

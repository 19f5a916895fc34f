"""A chat request's engine parameters, from the fields the client gave and nothing else.

Which field becomes which ``SamplingParams`` parameter, and how its value is converted, is
the ``ENGINE`` part of ``protocol/chat_fields.py``; a field that was not given (or given as
null) is not passed, so the defaults are the model's (service/model_defaults.py, applied
by the core), else ``SamplingParams``'s own (engine/params.py). The core
(service/generation.py) adds what needs the prompt: the completion budget, checked
against the model's context window.
"""

from __future__ import annotations

from typing import Any

from chatd.protocol.chat_fields import engine_fields
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.service import generation

__all__ = ["sampling_fields"]


def sampling_fields(req: ChatCompletionRequest) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments for the fields ``req`` gave."""
    return generation.sampling_fields(req, engine_fields())

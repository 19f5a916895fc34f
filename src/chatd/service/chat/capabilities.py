"""What the local engine can honour. A field it cannot is a 400 naming it, never ignored.

Which fields are refused outright is declared in ``protocol/chat_fields.py``; this module
applies that table, and holds the checks of the fields whose refusal depends on the value and
the model (``refuses_values`` in the table): one function per such field, in
:data:`VALUE_CHECKS`. Fields are judged in table order, so the first fault is always the same.
"""

from __future__ import annotations

from collections.abc import Callable

from chatd.protocol.chat_fields import CHAT_FIELDS, Policy
from chatd.protocol.chat_messages import AssistantMessage
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.errors import InvalidRequest, Unsupported

__all__ = ["VALUE_CHECKS", "check_local_support"]

_NON_TEXT_PARTS = {"image_url": "image", "input_audio": "audio", "file": "file"}

# (request, model id, vocabulary size): raises when the value is beyond the local model.
ValueCheck = Callable[[ChatCompletionRequest, str, int], None]


def check_local_support(req: ChatCompletionRequest, model_id: str, n_vocab: int) -> None:
    """Raise for anything a text-only, non-reasoning local model cannot do."""
    given = req.supplied_fields()
    for name, policy in CHAT_FIELDS.items():
        if policy.policy is Policy.REFUSED and name in given:
            raise Unsupported(name, policy.why.format(model=model_id))
        check = VALUE_CHECKS.get(name)
        if check is not None:
            check(req, model_id, n_vocab)


def _messages(req: ChatCompletionRequest, model_id: str, n_vocab: int) -> None:
    for i, msg in enumerate(req.messages):
        for j, part in enumerate(msg.content_parts()):
            kind = _NON_TEXT_PARTS.get(part.type)
            if kind is not None:
                raise InvalidRequest(
                    f"Invalid content type. {part.type} is only supported by models with {kind}"
                    f" input; `{model_id}` is text-only.",
                    param=f"messages[{i}].content[{j}].type",
                    code="unsupported_content_type",
                )
        if isinstance(msg, AssistantMessage) and msg.audio is not None:
            raise Unsupported(f"messages[{i}].audio", f"is not supported by `{model_id}`.")


def _modalities(req: ChatCompletionRequest, model_id: str, n_vocab: int) -> None:
    if req.modalities and "audio" in req.modalities:
        raise Unsupported("modalities", f"'audio' is not supported by `{model_id}` (text only).")


def _logit_bias(req: ChatCompletionRequest, model_id: str, n_vocab: int) -> None:
    for token in req.logit_bias_map():
        if token >= n_vocab:
            raise InvalidRequest(
                f"Invalid key in 'logit_bias': {token}. Token ids of `{model_id}` are 0 to"
                f" {n_vocab - 1}.",
                param="logit_bias",
                code="invalid_value",
            )


def _verbosity(req: ChatCompletionRequest, model_id: str, n_vocab: int) -> None:
    if req.verbosity not in (None, "medium"):
        raise Unsupported(
            "verbosity",
            f"'{req.verbosity}' is only supported by reasoning models; `{model_id}` is not.",
        )


# One per field whose table entry declares ``refuses_values``.
VALUE_CHECKS: dict[str, ValueCheck] = {
    "messages": _messages,
    "verbosity": _verbosity,
    "modalities": _modalities,
    "logit_bias": _logit_bias,
}

"""What the local engine can honour. A field it cannot is a 400 naming it, never ignored."""

from __future__ import annotations

from chatd.protocol.chat_messages import AssistantMessage
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.errors import InvalidRequest, Unsupported

_NON_TEXT_PARTS = {"image_url": "image", "input_audio": "audio", "file": "file"}


def check_local_support(req: ChatCompletionRequest, model_id: str, n_vocab: int) -> None:
    """Raise for anything a text-only, non-reasoning local model cannot do."""
    given = req.supplied_fields()
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
    if req.modalities and "audio" in req.modalities:
        raise Unsupported("modalities", f"'audio' is not supported by `{model_id}` (text only).")
    for name in ("audio", "web_search_options", "moderation", "prompt_cache_options"):
        if name in given:
            raise Unsupported(name, f"is not supported by `{model_id}`.")
    for name in ("reasoning_effort", "verbosity"):
        if name in given:
            raise Unsupported(name, f"is only supported by reasoning models; `{model_id}` is not.")
    for token in req.logit_bias_map():
        if token >= n_vocab:
            raise InvalidRequest(
                f"Invalid key in 'logit_bias': {token}. Token ids of `{model_id}` are 0 to"
                f" {n_vocab - 1}.",
                param="logit_bias",
                code="invalid_value",
            )

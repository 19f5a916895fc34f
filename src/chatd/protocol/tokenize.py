"""``POST /tokenize`` and ``POST /detokenize``: the bodies vLLM and llama.cpp's server
take, read into one request each (docs/tokenize.md).

The two dialects share a route because they do not conflict where both name a thing:

* the text is vLLM's ``prompt`` or llama.cpp's ``content`` (one of them, or vLLM's chat
  ``messages``);
* the special tokens are vLLM's ``add_special_tokens`` or llama.cpp's ``add_special``;
  absent, each dialect's own default holds: ``prompt`` adds them (vLLM), ``content``
  does not (llama.cpp), ``messages`` does not (vLLM: the chat template writes them);
* llama.cpp's ``with_pieces`` and vLLM's ``return_token_strs`` ask for the tokens' text.

Nothing here is silently dropped: a field this server cannot honour (a chat template of
the client's own, ``add_generation_prompt: false``) is a 400 naming it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatd.protocol.errors import InvalidRequest, Unsupported

__all__ = ["DetokenizeRequest", "TokenizeRequest", "parse_detokenize", "parse_tokenize"]

_TEXTS = ("prompt", "content", "messages")
_FLAGS = (
    "add_special_tokens",
    "add_special",
    "with_pieces",
    "return_token_strs",
    "add_generation_prompt",
    "continue_final_message",
)
_KNOWN = {"model", "tools", "chat_template", "chat_template_kwargs", *_TEXTS, *_FLAGS}
# What each text's dialect does with special tokens when the request does not say.
_ADD_SPECIAL_DEFAULT = {"prompt": True, "content": False, "messages": False}
MAX_TOKENS_PER_REQUEST = 1 << 20  # token ids one /detokenize body may hold


@dataclass(frozen=True)
class TokenizeRequest:
    """One ``/tokenize`` body: ``text`` (``prompt``/``content``) or ``chat`` (a chat
    request's ``model``, ``messages`` and ``tools``, checked by the chat contract)."""

    model: str | None
    text_param: str  # which field holds the text: "prompt", "content" or "messages"
    text: str | None
    chat: dict[str, Any] | None
    add_special: bool
    with_pieces: bool  # llama.cpp: tokens as {"id", "piece"}
    token_strs: bool  # vLLM: "token_strs" beside the ids


@dataclass(frozen=True)
class DetokenizeRequest:
    model: str | None
    tokens: list[int]


def parse_tokenize(data: Any) -> TokenizeRequest:
    body = _object(data)
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0]
        )
    model = _model(body)
    given = [name for name in _TEXTS if name in body]
    if len(given) != 1:
        raise InvalidRequest(
            "Give exactly one of 'prompt' (vLLM), 'content' (llama.cpp) or 'messages'"
            " (vLLM's chat form)." + (f" This body has {', '.join(given)}." if given else ""),
            param=given[1] if len(given) > 1 else "prompt",
        )
    field = given[0]
    flags = {name: _bool(body, name) for name in _FLAGS}
    add_special = _add_special(flags, _ADD_SPECIAL_DEFAULT[field])
    chat = None
    text = None
    if field == "messages":
        _chat_only(flags, add_special, body)
        chat = {"model": model or "", "messages": body["messages"]}
        if "tools" in body:
            chat["tools"] = body["tools"]
    else:
        for name in ("tools", "chat_template", "chat_template_kwargs"):
            if name in body:
                raise InvalidRequest(
                    f"'{name}' goes with 'messages', not with '{field}'.", param=name
                )
        for name in ("add_generation_prompt", "continue_final_message"):
            if flags[name] is not None:
                raise InvalidRequest(
                    f"'{name}' goes with 'messages', not with '{field}'.", param=name
                )
        text = body[field]
        if not isinstance(text, str):
            raise InvalidRequest(f"'{field}' must be a string.", param=field)
    return TokenizeRequest(
        model,
        field,
        text,
        chat,
        add_special,
        bool(flags["with_pieces"]),
        bool(flags["return_token_strs"]),
    )


def parse_detokenize(data: Any) -> DetokenizeRequest:
    body = _object(data)
    unknown = sorted(set(body) - {"model", "tokens"})
    if unknown:
        raise InvalidRequest(
            f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0]
        )
    tokens = body.get("tokens")
    if not isinstance(tokens, list):
        raise InvalidRequest("'tokens' must be a list of token ids.", param="tokens")
    if len(tokens) > MAX_TOKENS_PER_REQUEST:
        raise InvalidRequest(
            f"'tokens' holds more than {MAX_TOKENS_PER_REQUEST} ids.", param="tokens"
        )
    for i, t in enumerate(tokens):
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise InvalidRequest(
                f"'tokens[{i}]' must be a token id (an integer >= 0).", param=f"tokens[{i}]"
            )
    return DetokenizeRequest(_model(body), tokens)


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidRequest("Invalid request: the body is not a JSON object.")
    return data


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest("'model' must be a string.", param="model")
    return model


def _bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean.", param=name)
    return value


def _add_special(flags: dict[str, bool | None], default: bool) -> bool:
    """vLLM's name or llama.cpp's; both given must agree."""
    vllm, llama = flags["add_special_tokens"], flags["add_special"]
    if vllm is not None and llama is not None and vllm != llama:
        raise InvalidRequest(
            "'add_special_tokens' (vLLM) and 'add_special' (llama.cpp) say the same thing:"
            " they must agree when both are given.",
            param="add_special",
        )
    for value in (vllm, llama):
        if value is not None:
            return value
    return default


def _chat_only(flags: dict[str, bool | None], add_special: bool, body: dict[str, Any]) -> None:
    """The chat form counts the prompt exactly as a chat request renders it: the model's
    own template, ending with the assistant's turn. What would change that is refused."""
    if flags["add_generation_prompt"] is False:
        raise Unsupported(
            "add_generation_prompt",
            "= false is not supported: a chat request's prompt ends with the assistant's turn.",
        )
    if flags["continue_final_message"] is True:
        raise Unsupported("continue_final_message", "= true is not supported by this server.")
    if add_special:
        raise Unsupported(
            "add_special_tokens",
            "= true is not supported with 'messages': the chat template writes the special"
            " tokens a chat request's prompt has.",
        )
    for name in ("chat_template", "chat_template_kwargs"):
        if name in body:
            raise Unsupported(name, "is not supported: the model's own chat template is used.")

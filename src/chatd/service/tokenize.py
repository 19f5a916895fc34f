"""``/tokenize`` and ``/detokenize`` (docs/tokenize.md): a text, or a chat request's
messages, in a local model's tokens, and token ids back to text.

Only a local model's tokenizer is ours to run: an id served only by upstream channels is
a 400 naming ``model`` (OpenAI has no such route to relay to; a vLLM or llama.cpp
upstream's would tokenize with a model chatd cannot vouch for). The chat form renders
the messages exactly as ``POST /v1/chat/completions`` would (the same contract, the same
template, tools shown the same way), so its ``count`` is that request's
``usage.prompt_tokens``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatd.protocol.chat_request import validate_chat_request
from chatd.protocol.errors import InvalidRequest, ModelNotFound
from chatd.protocol.tokenize import DetokenizeRequest, TokenizeRequest
from chatd.service.chat import ChatService
from chatd.service.engine_api import EngineLike
from chatd.service.generation import prompt_tokens
from chatd.service.models import LocalModel, ModelRegistry, RoutedModel
from chatd.service.protocol_service import Incoming

__all__ = ["Tokenizer"]


class Tokenizer:
    """Tokenizes with the local model a request names (or the only one its key may use)."""

    def __init__(self, models: ModelRegistry, chat: ChatService, timeout: float = 0.0) -> None:
        self.models = models
        self.chat = chat
        self.timeout = timeout  # how long a model may take to load (the request timeout)

    def local_model(self, model_id: str | None, may_use: Callable[[str], bool]) -> LocalModel:
        """The model whose tokenizer answers: the one named, or, unnamed, the only local
        model this key may use."""
        if model_id is None:
            usable = {m.id: m for m in self.models.local() if may_use(m.id)}
            if len(usable) != 1:
                raise InvalidRequest(
                    "'model' is required: name the model whose tokenizer to use"
                    f" ({len(usable)} local models are served to this key).",
                    param="model",
                )
            return next(iter(usable.values()))
        if not may_use(model_id):
            raise ModelNotFound(model_id)
        model = self.models.get(model_id)
        if isinstance(model, RoutedModel):
            local = [r for r in model.routes if isinstance(r, LocalModel)]
            if not local:
                raise InvalidRequest(
                    f"The model `{model_id}` is served only by upstream channels: this server"
                    " tokenizes with the models it runs itself.",
                    param="model",
                )
            return local[0]
        return model

    async def tokenize(
        self, req: TokenizeRequest, owner: str, may_use: Callable[[str], bool]
    ) -> dict[str, Any]:
        model = self.local_model(req.model, may_use)
        chat = None
        if req.chat is not None:  # checked by the chat contract before the model loads
            chat = validate_chat_request({**req.chat, "model": req.model or model.id})
            build = self.chat.local_job(Incoming(chat, owner), model)
        lease = await model.acquire(self.timeout)
        try:
            engine = lease.engine
            if chat is not None:
                tokens = prompt_tokens(engine, build(engine))
            else:
                assert req.text is not None
                tokens = engine.tokenize(req.text, req.add_special)
            return _tokenized(engine, tokens, req)
        finally:
            lease.release()

    async def detokenize(
        self, req: DetokenizeRequest, may_use: Callable[[str], bool]
    ) -> dict[str, Any]:
        model = self.local_model(req.model, may_use)
        n_vocab = model.n_vocab
        if n_vocab is not None:  # refused before it may load the model
            _check_ids(req.tokens, n_vocab)
        lease = await model.acquire(self.timeout)
        try:
            engine = lease.engine
            _check_ids(req.tokens, engine.n_vocab)
            text = b"".join(engine.token_piece(t) for t in req.tokens).decode("utf-8", "replace")
        finally:
            lease.release()
        return {"prompt": text, "content": text}


def _tokenized(engine: EngineLike, tokens: list[int], req: TokenizeRequest) -> dict[str, Any]:
    """vLLM's answer (``count``, ``max_model_len``, ``tokens``) with llama.cpp's
    ``tokens`` as ``{"id", "piece"}`` when ``with_pieces`` asks."""
    pieces = [engine.token_piece(t) for t in tokens] if req.with_pieces or req.token_strs else []
    listed: list[Any] = list(tokens)
    if req.with_pieces:
        listed = [{"id": t, "piece": _piece(p)} for t, p in zip(tokens, pieces, strict=True)]
    body: dict[str, Any] = {
        "count": len(tokens),
        "max_model_len": engine.context_window,
        "tokens": listed,
    }
    if req.token_strs:
        body["token_strs"] = [p.decode("utf-8", "replace") for p in pieces]
    return body


def _piece(data: bytes) -> str | list[int]:
    """llama.cpp's piece: the text, or its bytes when they are not whole UTF-8 (a token
    that is part of a character)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)


def _check_ids(tokens: list[int], n_vocab: int) -> None:
    for i, t in enumerate(tokens):
        if t >= n_vocab:
            raise InvalidRequest(
                f"'tokens[{i}]' is {t}, not a token id of this model (ids are 0 to {n_vocab - 1}).",
                param=f"tokens[{i}]",
            )

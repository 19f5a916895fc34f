"""``POST /tokenize`` and ``POST /detokenize``, as vLLM and llama.cpp's server serve them
(one route each takes both dialects: protocol/tokenize.py, docs/tokenize.md).

Keys are required as on every route (api/auth.py); each request holds one of its key's
places in flight (it may load the model) but counts in no rate limit: like Anthropic's
``count_tokens``, it generates nothing."""

from __future__ import annotations

from functools import partial

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from chatd.api.answering import held
from chatd.api.auth import Caller
from chatd.api.body import read_body
from chatd.api.deps import Services, services_of
from chatd.protocol.tokenize import parse_detokenize, parse_tokenize
from chatd.protocol.validation import decode_chat_body
from chatd.service.tokenize import Tokenizer

__all__ = ["detokenize", "tokenize"]


async def tokenize(request: Request) -> Response:
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_tokenize, request, services, caller))


async def detokenize(request: Request) -> Response:
    services = services_of(request)
    caller = await services.auth(request)
    return await held(services, caller, partial(_detokenize, request, services, caller))


def _tokenizer(services: Services) -> Tokenizer:
    return Tokenizer(services.models, services.chat, services.limits.request_timeout)


async def _tokenize(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    req = parse_tokenize(decode_chat_body(body))
    answer = await _tokenizer(services).tokenize(req, caller.owner, caller.may_use)
    return JSONResponse(answer)


async def _detokenize(request: Request, services: Services, caller: Caller) -> Response:
    body = await read_body(request, services.limits.max_body_bytes)
    req = parse_detokenize(decode_chat_body(body))
    return JSONResponse(await _tokenizer(services).detokenize(req, caller.may_use))

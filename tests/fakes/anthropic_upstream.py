"""A fake Anthropic upstream: ``POST /v1/messages`` answered whole or streamed (named SSE
events, in Anthropic's order), for the gateway's Anthropic channels (``api =
"anthropic"``). It imports only Starlette, and is served in a thread of the test process
(``tests/service/harness.py`` ``serve_in_thread``).

The requested model id picks the behaviour:

- ``claude-ok``: "Hello" (two text deltas when streamed), ``end_turn``, usage input 7,
  output 2, cache read 3, cache creation 1;
- ``claude-tools``: with tools and no ``tool_result`` in the last user turn, a text
  "Let me look." and a ``tool_use`` of the first tool with input ``{"city": "Paris"}``
  (two ``input_json_delta`` pieces), ``tool_use``; after a ``tool_result``, "Sunny, and
  the result was: <the result's text>", ``end_turn``;
- ``claude-max``: "Hel", ``max_tokens``;
- ``claude-401``, ``claude-403``: Anthropic's authentication / permission errors;
- ``claude-400``: an ``invalid_request_error`` whose message names the upstream's host
  and key (``LEAKY_ANTHROPIC``); ``claude-413``: ``request_too_large``;
- ``claude-429``, ``claude-529``: ``rate_limit_error``, ``overloaded_error``;
- ``claude-midfail``: streamed, ``message_start``, one text delta, then an ``error``
  event (``overloaded_error`` with the leaky message);
- ``claude-cut``: streamed, ``message_start`` and a delta, then the connection drops.

``POST /v1/messages/count_tokens`` answers the length of the messages' JSON as their
count (``claude-401`` and the other error ids refuse alike), recorded as
``count:<model>``.

``app.state.last`` keeps the last body per model id, ``app.state.headers`` its headers,
``app.state.calls`` the calls per model id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

LEAKY_ANTHROPIC = (
    "messages.0: bad at https://api.anthropic.internal.example/v1/messages with key"
    " sk-ant-secret-0123456789"
)
USAGE = {
    "input_tokens": 7,
    "output_tokens": 2,
    "cache_read_input_tokens": 3,
    "cache_creation_input_tokens": 1,
}
ERRORS = {
    "claude-401": (401, "authentication_error", "invalid x-api-key"),
    "claude-403": (403, "permission_error", "Your API key does not have permission"),
    "claude-400": (400, "invalid_request_error", LEAKY_ANTHROPIC),
    "claude-413": (413, "request_too_large", "Request exceeds the maximum allowed size"),
    "claude-429": (429, "rate_limit_error", "Number of request tokens has exceeded your limit"),
    "claude-529": (529, "overloaded_error", "Overloaded"),
}


def _error(status: int, kind: str, message: str) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


def sse(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def _tool_result_text(body: dict[str, Any]) -> str | None:
    """The text of the last user turn's tool result, if it holds one."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return None
    for block in content:
        if block.get("type") == "tool_result":
            inner = block.get("content", "")
            if isinstance(inner, list):
                return "".join(b.get("text", "") for b in inner)
            return str(inner)
    return None


def _blocks(model: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The answer's content blocks and its stop reason."""
    if model == "claude-tools" and body.get("tools"):
        result = _tool_result_text(body)
        if result is None:
            name = body["tools"][0]["name"]
            tool = {"type": "tool_use", "id": "toolu_1", "name": name, "input": {"city": "Paris"}}
            return [{"type": "text", "text": "Let me look."}, tool], "tool_use"
        return [{"type": "text", "text": f"Sunny, and the result was: {result}"}], "end_turn"
    if model == "claude-max":
        return [{"type": "text", "text": "Hel"}], "max_tokens"
    return [{"type": "text", "text": "Hello"}], "end_turn"


def _message(model: str, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
    return {
        "id": "msg_fake01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": dict(USAGE),
    }


async def _events(model: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
    blocks, stop = _blocks(model, body)
    start = _message(model, [], None)
    start["usage"] = {**USAGE, "output_tokens": 1}
    yield sse({"type": "message_start", "message": start})
    yield sse({"type": "ping"})
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            empty = {"type": "text", "text": ""}
            yield sse({"type": "content_block_start", "index": i, "content_block": empty})
            text = block["text"]
            half = len(text) // 2 or len(text)
            for piece in (text[:half], text[half:]):
                if piece:
                    delta = {"type": "text_delta", "text": piece}
                    yield sse({"type": "content_block_delta", "index": i, "delta": delta})
                if model in ("claude-midfail", "claude-cut"):
                    break
            if model == "claude-midfail":
                error = {"type": "overloaded_error", "message": LEAKY_ANTHROPIC}
                yield sse({"type": "error", "error": error})
                return
            if model == "claude-cut":
                raise ConnectionResetError("cut")
        else:
            start_block = {**block, "input": {}}
            yield sse({"type": "content_block_start", "index": i, "content_block": start_block})
            text = json.dumps(block["input"])
            for piece in (text[:5], text[5:]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield sse({"type": "content_block_delta", "index": i, "delta": delta})
        yield sse({"type": "content_block_stop", "index": i})
    delta = {"stop_reason": stop, "stop_sequence": None}
    yield sse({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 2}})
    yield sse({"type": "message_stop"})


async def messages(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model"))
    state = request.app.state
    state.calls[model] = state.calls.get(model, 0) + 1
    state.last[model] = body
    state.headers[model] = dict(request.headers)
    if model in ERRORS:
        return _error(*ERRORS[model])
    if "max_tokens" not in body:  # Anthropic's own answer
        return _error(400, "invalid_request_error", "max_tokens: Field required")
    if body.get("stream") is True:
        return StreamingResponse(_events(model, body), media_type="text/event-stream")
    blocks, stop = _blocks(model, body)
    return JSONResponse(_message(model, blocks, stop))


async def count_tokens(request: Request) -> Response:
    """Counts every character of the messages' JSON as a token (a fake's tokenizer)."""
    body = await request.json()
    model = str(body.get("model"))
    state = request.app.state
    state.last["count:" + model] = body
    state.headers["count:" + model] = dict(request.headers)
    if model in ERRORS:
        return _error(*ERRORS[model])
    return JSONResponse({"input_tokens": len(json.dumps(body.get("messages")))})


def create_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        ]
    )
    app.state.calls = {}
    app.state.last = {}
    app.state.headers = {}
    return app

"""A misbehaving OpenAI-compatible upstream for the gateway tests. The requested model
id picks the behaviour: ok, 500, 429, 400, hang (no first byte for 30 s), cut (two
chunks, then the connection drops: no [DONE]), html (a 200 that is not JSON), nousage,
flaky (500 while switched down with POST /flaky/down, ok after POST /flaky/up), slow
(a stream of 30 s; /calls counts "slow_closed" when its client went away or it ended)."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CALLS: dict[str, int] = {}
LAST: dict[str, dict] = {}  # the last body received, per mode
FLAKY = {"down": True}


def chunk(content: str | None, finish: str | None = None, usage: bool = False) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "upstream-model",
        "system_fingerprint": "fp_fake",
        "choices": []
        if usage
        else [
            {
                "index": 0,
                "delta": {} if content is None else {"content": content},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def completions(request: Request) -> Response:
    body = await request.json()
    mode = body["model"]
    CALLS[mode] = CALLS.get(mode, 0) + 1
    LAST[mode] = body
    if mode == "500" or (mode == "flaky" and FLAKY["down"]):
        return JSONResponse(
            {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}},
            status_code=500,
        )
    if mode == "429":
        return JSONResponse(
            {
                "error": {
                    "message": "slow down",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            status_code=429,
        )
    if mode == "400":
        return JSONResponse(
            {
                "error": {
                    "message": "bad field 'foo'",
                    "type": "invalid_request_error",
                    "param": "foo",
                    "code": None,
                }
            },
            status_code=400,
        )
    if mode == "html":  # a proxy's error page with a 200: not an answer
        return Response("<html>upstream down</html>", media_type="text/html")
    if mode == "hang":
        await asyncio.sleep(30)
    if body.get("stream"):

        async def events():  # type: ignore[no-untyped-def]
            yield chunk("Hel")
            yield chunk("lo")
            if mode == "slow":  # 30 s more of chunks, unless the client goes away
                try:
                    for _ in range(150):
                        await asyncio.sleep(0.2)
                        yield chunk(".")
                finally:
                    CALLS["slow_closed"] = CALLS.get("slow_closed", 0) + 1
            if mode == "cut":
                raise RuntimeError("connection dropped")  # uvicorn closes the socket
            yield chunk(None, "stop")
            if (body.get("stream_options") or {}).get("include_usage") and mode != "nousage":
                yield chunk(None, usage=True)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
    answer = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "upstream-model",
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    if mode == "nousage":
        del answer["usage"]
    return JSONResponse(answer)


async def calls(_: Request) -> Response:
    return JSONResponse(CALLS)


async def last(_: Request) -> Response:
    return JSONResponse(LAST)


async def flaky(request: Request) -> Response:
    FLAKY["down"] = request.path_params["state"] == "down"
    return JSONResponse(FLAKY)


app = Starlette(
    routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/calls", calls),
        Route("/last", last),
        Route("/flaky/{state}", flaky, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")

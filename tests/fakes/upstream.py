"""The one fake OpenAI-compatible upstream: used by the gateway tests (in a thread of
the test process, or as a process for tests/e2e/) and by benchmarks/relay_servers.py (as
its own process, so its CPU stays apart from the load generator's).

Run it as ``python upstream.py PORT [TTFT_MS INTERVAL_MS CHUNKS]``. It imports only
Starlette and uvicorn, so the benchmarks can run it by path.

The requested model id picks the behaviour:

- the benchmark stub (any id not listed below): CHUNKS words ``" word{i}"``, "paced"
  (the first after TTFT_MS, then one every INTERVAL_MS, on a fixed schedule from
  arrival) or "instant" (an id containing "instant", or ``?mode=instant``); with
  ``?hold=1`` a paced stream holds its headers until its first event.
- the gateway tests' misbehaving upstream: ``ok`` ("Hello" in two chunks, usage 7 + 2),
  ``500``, ``429``, ``400``, ``hang`` (no first byte for 30 s), ``cut`` (two chunks,
  then the connection drops: no [DONE]), ``html`` (a 200 that is not JSON),
  ``nousage``, ``flaky`` (500 while switched down with POST /flaky/down, ok after POST
  /flaky/up), ``slow`` (a stream of 30 s; ``calls["slow_closed"]`` counts streams that
  ended or whose client went away), ``keyed`` (``ok`` for ``Authorization: Bearer
  sk-upstream-key`` only, else 401).

``GET /calls`` and ``GET /last`` report the calls per model id and the last body per
model id (also on ``app.state.calls`` / ``app.state.last`` in-process).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MISBEHAVIOURS = {"ok", "500", "429", "400", "hang", "cut", "html", "nousage", "flaky", "slow"}
UPSTREAM_KEY = "sk-upstream-key"  # what the ``keyed`` model requires


def event(obj: dict[str, Any]) -> bytes:
    return ("data: " + json.dumps(obj) + "\n\n").encode()


def stub_chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return event(
        {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_stub",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


def fake_chunk(content: str | None, finish: str | None = None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {
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
    return event(body)


def _error(status: int, message: str, type: str, param: str | None, code: str | None) -> Response:
    error = {"message": message, "type": type, "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)


class _Upstream:
    """One app's state: the benchmark stub's pacing, and the gateway tests' counters."""

    def __init__(self, ttft_ms: float, interval_ms: float, chunks: int) -> None:
        self.ttft, self.interval, self.n = ttft_ms / 1e3, interval_ms / 1e3, chunks
        n = chunks
        self.stub_usage = {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}
        self.calls: dict[str, int] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.flaky_state = {"down": True}

    async def stub(
        self, request: Request, body: dict[str, Any], model: str, mode: str, arrived: float
    ) -> Response:
        """The benchmark's upstream: its timing shape is what relay.py measures."""
        ttft, interval, n = self.ttft, self.interval, self.n
        paced = mode == "paced"
        hold = request.query_params.get("hold") == "1"  # headers go with the first event
        if not body.get("stream"):
            if paced:
                await asyncio.sleep(ttft + (n - 1) * interval)
            text = "".join(f" word{i}" for i in range(n))
            message = {"role": "assistant", "content": text}
            return JSONResponse(
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": "fp_stub",
                    "choices": [
                        {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
                    ],
                    "usage": self.stub_usage,
                }
            )
        if hold and paced:
            await asyncio.sleep(max(0.0, arrived + ttft - time.monotonic()))
        events = self._stub_events(body, model, paced, arrived)
        return StreamingResponse(events, media_type="text/event-stream")

    async def _stub_events(
        self, body: dict[str, Any], model: str, paced: bool, arrived: float
    ) -> AsyncIterator[bytes]:
        for i in range(self.n):
            if paced:  # fixed schedule from arrival: no drift, the same for every path
                due = arrived + self.ttft + i * self.interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            delta = {"content": f" word{i}"}
            yield stub_chunk(model, {"role": "assistant", **delta} if i == 0 else delta)
        yield stub_chunk(model, {}, "stop")
        if (body.get("stream_options") or {}).get("include_usage") is True:
            yield event(
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": "fp_stub",
                    "choices": [],
                    "usage": self.stub_usage,
                }
            )
        yield b"data: [DONE]\n\n"

    async def misbehave(self, request: Request, body: dict[str, Any], mode: str) -> Response:
        """The gateway tests' upstream: each mode one way of failing (or not)."""
        self.calls[mode] = self.calls.get(mode, 0) + 1
        self.last[mode] = body
        if mode == "keyed":
            if request.headers.get("authorization") != f"Bearer {UPSTREAM_KEY}":
                return _error(401, "Incorrect API key provided", "invalid_request_error", None,
                              "invalid_api_key")  # fmt: skip
            mode = "ok"
        if mode == "500" or (mode == "flaky" and self.flaky_state["down"]):
            return _error(500, "boom", "server_error", None, None)
        if mode == "429":
            return _error(429, "slow down", "requests", None, "rate_limit_exceeded")
        if mode == "400":
            return _error(400, "bad field 'foo'", "invalid_request_error", "foo", None)
        if mode == "html":  # a proxy's error page with a 200: not an answer
            return Response("<html>upstream down</html>", media_type="text/html")
        if mode == "hang":
            await asyncio.sleep(30)
        if body.get("stream"):
            events = self._misbehaving_events(body, mode)
            return StreamingResponse(events, media_type="text/event-stream")
        message = {"role": "assistant", "content": "Hello", "refusal": None, "annotations": []}
        answer: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "upstream-model",
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        }
        if mode == "nousage":
            del answer["usage"]
        return JSONResponse(answer)

    async def _misbehaving_events(self, body: dict[str, Any], mode: str) -> AsyncIterator[bytes]:
        yield fake_chunk("Hel")
        yield fake_chunk("lo")
        if mode == "slow":  # 30 s more of chunks, unless the client goes away
            try:
                for _ in range(150):
                    await asyncio.sleep(0.2)
                    yield fake_chunk(".")
            finally:
                self.calls["slow_closed"] = self.calls.get("slow_closed", 0) + 1
        if mode == "cut":
            raise RuntimeError("connection dropped")  # uvicorn closes the socket
        yield fake_chunk(None, "stop")
        if (body.get("stream_options") or {}).get("include_usage") and mode != "nousage":
            yield fake_chunk(None, usage=True)
        yield b"data: [DONE]\n\n"

    async def completions(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = json.loads(await request.body())
        model = body.get("model", "")
        mode = request.query_params.get("mode")
        if mode is None and (model in MISBEHAVIOURS or model == "keyed"):
            return await self.misbehave(request, body, model)
        mode = mode or ("instant" if "instant" in model else "paced")
        return await self.stub(request, body, model, mode, arrived)

    async def get_calls(self, _: Request) -> Response:
        return JSONResponse(self.calls)

    async def get_last(self, _: Request) -> Response:
        return JSONResponse(self.last)

    async def flaky(self, request: Request) -> Response:
        self.flaky_state["down"] = request.path_params["state"] == "down"
        return JSONResponse(self.flaky_state)


async def _health(_: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(ttft_ms: float = 0.0, interval_ms: float = 0.0, chunks: int = 4) -> Starlette:
    """An upstream whose benchmark stub writes ``chunks`` words, paced by ``ttft_ms``
    and ``interval_ms``; its counters live on ``app.state``, one set per app."""
    u = _Upstream(ttft_ms, interval_ms, chunks)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", u.completions, methods=["POST"]),
            Route("/calls", u.get_calls),
            Route("/last", u.get_last),
            Route("/flaky/{state}", u.flaky, methods=["POST"]),
            Route("/health", _health),
        ]
    )
    app.state.calls = u.calls
    app.state.last = u.last
    app.state.flaky = u.flaky_state
    return app


def main(argv: list[str]) -> None:
    port = int(argv[0])
    timing = [float(a) for a in argv[1:4]]
    app = create_app(*timing[:2], int(timing[2])) if len(timing) == 3 else create_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])

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
- the relay's error tests: ``401``, ``403``, ``402``, ``404`` (the model unknown),
  ``404item`` (an item the request named unknown), ``413``, ``422``, ``leak400`` (a 400
  whose message holds everything a client must not see: ``LEAKY``), ``midfail`` (two
  chunks, then an error event with the ``LEAKY`` message), ``garbage`` (two chunks, then
  a line that is not JSON; whole: a 200 that is not JSON).

``POST /v1/responses`` (the Responses API: ``event:`` and ``data:`` lines, no [DONE]; the
stream ends when the connection closes after ``response.completed``) takes the same model
ids: the misbehaving modes (plus ``failed``: a stream or answer ending as
``response.failed``), counted and recorded as ``responses:<mode>``; any other id gets the
benchmark stub's words (paced, or instant for an id containing "instant").

``POST /v1/completions`` (the legacy API): "Hello", or the refusals of the misbehaving
modes (and ``midfail``), recorded as ``completions:<mode>``.

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
# The relay's error tests (both endpoints).
ERRORS = {"401", "403", "402", "404", "404item", "413", "422", "leak400", "midfail", "garbage"}
MISBEHAVIOURS |= ERRORS
# /v1/responses: the same modes, ``keyed`` and ``failed`` (a stream ending in response.failed).
RESPONSES_MODES = MISBEHAVIOURS | {"keyed", "failed"}
UPSTREAM_KEY = "sk-upstream-key"  # what the ``keyed`` model requires
# An upstream's message that names everything a client must not read: the upstream's
# host, URL and address, a key fragment, a bearer token, a file path, an exception.
LEAKY = (
    "Incorrect API key provided: sk-proj-abcd****wxyz (Authorization: Bearer sk-live-0123456789)"
    " at https://api.upstream.example.com/v1/chat/completions from 10.1.2.3:8443 and"
    ' gpu-box.internal:8000 [fd00::1]; File "/srv/vllm/entrypoints/openai/serving_chat.py",'
    " line 12, in create: openai.AuthenticationError: KeyError('x')"
)


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


class FakeResponse:
    """One Responses API answer of the fake: a message whose text comes in deltas, its
    stream events numbered in order (``sequence_number``), shaped as the spec says."""

    def __init__(self, model: str, request: dict[str, Any]) -> None:
        self.model, self.request = model, request
        self.id, self.item_id = "resp_fake", "msg_fake"
        self.created_at = int(time.time())
        self.seq = 0
        self.text = ""

    def response(
        self, status: str, output: list[dict[str, Any]], usage: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": {"code": "server_error", "message": LEAKY} if status == "failed" else None,
            "incomplete_details": None,
            "instructions": self.request.get("instructions"),
            "max_output_tokens": self.request.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": "upstream-model",
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": None,
            "service_tier": "default",
            "store": self.request.get("store", True),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": 1.0,
            "truncation": "disabled",
            "metadata": {},
        }
        if usage is not None:
            body["usage"] = {
                "input_tokens": usage[0],
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": usage[1],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage[0] + usage[1],
            }
        return body

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def _part(self) -> dict[str, Any]:
        return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}

    def _item(self, status: str) -> dict[str, Any]:
        content = [self._part()] if status == "completed" else []
        item = {"id": self.item_id, "type": "message", "status": status, "role": "assistant"}
        return {**item, "content": content}

    def head(self) -> list[dict[str, Any]]:
        """Up to the first delta: the response created and in progress, a message opened."""
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return [
            self._event("response.created", response=self.response("in_progress", [])),
            self._event("response.in_progress", response=self.response("in_progress", [])),
            self._event(
                "response.output_item.added", output_index=0, item=self._item("in_progress")
            ),
            self._event("response.content_part.added", **where, part=self._part()),
        ]

    def delta(self, text: str) -> dict[str, Any]:
        self.text += text
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return self._event("response.output_text.delta", **where, delta=text, logprobs=[])

    def item(self) -> dict[str, Any]:
        """The finished message (the non-streamed answer's output)."""
        return self._item("completed")

    def tail(self, usage: tuple[int, int] | None) -> list[dict[str, Any]]:
        """From the text's end to ``response.completed``."""
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        item = self._item("completed")
        return [
            self._event("response.output_text.done", **where, text=self.text, logprobs=[]),
            self._event("response.content_part.done", **where, part=self._part()),
            self._event("response.output_item.done", output_index=0, item=item),
            self._event("response.completed", response=self.response("completed", [item], usage)),
        ]

    def failed(self) -> dict[str, Any]:
        return self._event("response.failed", response=self.response("failed", []))


def response_event(obj: dict[str, Any]) -> bytes:
    """A Responses stream event: its type on an ``event:`` line, then the data."""
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


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
        refused = await self.refuse(request, mode, body.get("stream") is True)
        if refused is not None:
            return refused
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

    async def refuse(self, request: Request, mode: str, stream: bool = False) -> Response | None:
        """The misbehaving modes' refusals and stalls, alike on both endpoints (None: the
        mode answers; ``keyed`` with the right key answers as ``ok``)."""
        if mode == "keyed" and request.headers.get("authorization") != f"Bearer {UPSTREAM_KEY}":
            return _error(401, "Incorrect API key provided", "invalid_request_error", None,
                          "invalid_api_key")  # fmt: skip
        if mode == "500" or (mode == "flaky" and self.flaky_state["down"]):
            return _error(500, "boom", "server_error", None, None)
        if mode == "429":
            return _error(429, "slow down", "requests", None, "rate_limit_exceeded")
        if mode == "400":
            return _error(400, "bad field 'foo'", "invalid_request_error", "foo", None)
        echoed = " (sent: " + request.headers.get("authorization", "") + ")"  # the key, too
        if mode in ("401", "403", "402"):
            return _error(int(mode), LEAKY + echoed, "invalid_request_error", None,
                          "invalid_api_key")  # fmt: skip
        if mode == "404":
            return _error(404, f"The model `{mode}` does not exist ({LEAKY})",
                          "invalid_request_error", None, "model_not_found")  # fmt: skip
        if mode == "404item":
            return _error(404, "Item with id 'msg_1' not found.", "invalid_request_error",
                          "input", None)  # fmt: skip
        if mode in ("413", "422"):
            return _error(int(mode), "too big: " + LEAKY, "BadRequestError", "messages", 413)
        if mode == "leak400":
            return _error(400, LEAKY + echoed, "invalid_request_error", "messages[0].content",
                          "bad")  # fmt: skip
        if mode == "html" or (mode == "garbage" and not stream):  # a 200 that is no answer
            return Response("<html>upstream down</html>", media_type="text/html")
        if mode == "hang":
            await asyncio.sleep(30)
        return None

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
        if mode == "midfail":
            yield event({"error": {"message": LEAKY, "type": "server_error", "code": None}})
            return
        if mode == "garbage":
            yield b"data: {not json\n\n"
            return
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

    async def responses(self, request: Request) -> Response:
        """POST /v1/responses: the misbehaving modes (calls and last body recorded as
        ``responses:<mode>``) or, for any other id, the benchmark stub's words."""
        arrived = time.monotonic()
        body = json.loads(await request.body())
        mode = request.query_params.get("mode") or body.get("model", "")
        pace: float | None = None  # seconds between words, the first after self.ttft
        if mode in RESPONSES_MODES:
            key = "responses:" + mode
            self.calls[key] = self.calls.get(key, 0) + 1
            self.last[key] = body
            refused = await self.refuse(request, mode, body.get("stream") is True)
            if refused is not None:
                return refused
            words = ["Hel", "lo"]
            usage = None if mode == "nousage" else (7, 2)
        else:
            words = [f" word{i}" for i in range(self.n)]
            usage = (5, self.n)
            pace = None if "instant" in mode else self.interval
        fake = FakeResponse(body.get("model", ""), body)
        if body.get("stream"):
            events = self._response_events(fake, words, mode, usage, pace, arrived)
            return StreamingResponse(events, media_type="text/event-stream")
        if pace is not None:
            await asyncio.sleep(self.ttft + (len(words) - 1) * pace)
        fake.text = "".join(words)
        status = "failed" if mode == "failed" else "completed"
        output = [] if mode == "failed" else [fake.item()]
        return JSONResponse(fake.response(status, output, usage))

    async def _response_events(
        self,
        fake: FakeResponse,
        words: list[str],
        mode: str,
        usage: tuple[int, int] | None,
        pace: float | None,
        arrived: float,
    ) -> AsyncIterator[bytes]:
        for e in fake.head():
            yield response_event(e)
        for i, word in enumerate(words):
            if pace is not None:  # fixed schedule from arrival, as the chat stub's
                await asyncio.sleep(max(0.0, arrived + self.ttft + i * pace - time.monotonic()))
            yield response_event(fake.delta(word))
        if mode == "slow":  # 30 s more of text, unless the client goes away
            try:
                for _ in range(150):
                    await asyncio.sleep(0.2)
                    yield response_event(fake.delta("."))
            finally:
                self.calls["slow_closed"] = self.calls.get("slow_closed", 0) + 1
        if mode == "cut":
            raise RuntimeError("connection dropped")  # no terminal event: uvicorn closes
        if mode == "failed":
            yield response_event(fake.failed())
            return
        if mode == "midfail":
            error = {"type": "error", "code": "KeyError", "message": LEAKY, "param": None}
            yield response_event({**error, "sequence_number": fake.seq})
            return
        if mode == "garbage":
            yield b"event: response.output_text.delta\ndata: {not json\n\n"
            return
        for e in fake.tail(usage):
            yield response_event(e)

    async def text_completions(self, request: Request) -> Response:
        """POST /v1/completions (the legacy API): any mode's refusals (counted and
        recorded as ``completions:<mode>``), else "Hello" (in two chunks when streamed),
        usage 7 + 2 (in a last chunk when asked)."""
        body = json.loads(await request.body())
        mode = body.get("model", "")
        key = "completions:" + mode
        self.calls[key] = self.calls.get(key, 0) + 1
        self.last[key] = body
        refused = await self.refuse(request, mode, body.get("stream") is True)
        if refused is not None:
            return refused
        head = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                "model": "upstream-model", "system_fingerprint": "fp_fake"}  # fmt: skip
        usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}

        def choice(text: str, finish: str | None) -> dict[str, Any]:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

        if not body.get("stream"):
            return JSONResponse({**head, "choices": [choice("Hello", "stop")], "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            yield event({**head, "choices": [choice("Hel", None)]})
            yield event({**head, "choices": [choice("lo", None)]})
            if mode == "midfail":
                yield event({"error": {"message": LEAKY, "type": "server_error", "code": None}})
                return
            yield event({**head, "choices": [choice("", "stop")]})
            if (body.get("stream_options") or {}).get("include_usage"):
                yield event({**head, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

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
            Route("/v1/responses", u.responses, methods=["POST"]),
            Route("/v1/completions", u.text_completions, methods=["POST"]),
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

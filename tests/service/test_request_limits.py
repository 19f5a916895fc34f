"""Bounded cost per request, over the real app and a FakeEngine: each limit of
``Limits`` (docs/limits.md) sent a request past it, on both create routes, and the
OpenAI-shaped error it gets (status, param, code); what is under a limit still works."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes.engine import FakeEngine
from sse import astream, response_events

from chatd.protocol.request_limits import Limits

from .checks import body, check_error, check_ok
from .harness import MODEL, running_chatd

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
SMALL = Limits(
    max_body_bytes=4000,
    max_messages=3,
    max_chars=500,
    max_tools=2,
    max_schema_bytes=600,
)


def tool(name: str, **properties: Any) -> dict[str, Any]:
    params = {"type": "object", "properties": properties}
    return {"type": "function", "function": {"name": name, "parameters": params}}


def response_tool(name: str, **properties: Any) -> dict[str, Any]:
    params = {"type": "object", "properties": properties}
    return {"type": "function", "name": name, "parameters": params}


def schema_format(size: int) -> dict[str, Any]:
    props = {f"p{i}": {"type": "string"} for i in range(size)}
    return {"type": "object", "properties": props}


def say(n: int, text: str = "hi") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text} for _ in range(n)]


# --- body size: 413 ------------------------------------------------------------------


@pytest.mark.parametrize("url", [CHAT, RESPONSES])
async def test_declared_body_over_the_limit_is_413(tmp_path: Path, url: str) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        big = {"model": MODEL, "messages": say(1, "x" * 5000), "input": "x" * 5000}
        resp = await c.http().post(url, json=big)
        check_error(resp, 413, param=None, code="request_too_large", contains=("4000",))
        assert not c.engine.submitted


@pytest.mark.parametrize("url", [CHAT, RESPONSES])
async def test_chunked_body_over_the_limit_is_413(tmp_path: Path, url: str) -> None:
    """No Content-Length: the body is counted as it arrives, and refused past the limit
    without being read to its end."""
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "' + MODEL.encode() + b'", "messages": [], "input": "'
        for _ in range(1000):  # 1 MB if it were all read
            sent.append(1)
            yield b"x" * 1000
        yield b'"}'

    async with running_chatd(tmp_path, limits=SMALL) as c:
        resp = await c.http().post(
            url, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in resp.request.headers
        check_error(resp, 413, param=None, code="request_too_large")
        assert not c.engine.submitted


async def test_body_under_the_limit_is_read(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        check_ok(await c.http().post(CHAT, json=body(messages=say(1, "x" * 300))))
        resp = await c.http().post(RESPONSES, json={"model": MODEL, "input": "x" * 300})
        assert resp.status_code == 200, resp.text


async def test_stored_completion_update_body_over_the_limit_is_413(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        http = c.http()
        created = check_ok(await http.post(CHAT, json=body(store=True)))
        url = f"{CHAT}/{created['id']}"
        check_ok(await http.post(url, json={"metadata": {"a": "1"}}))
        resp = await http.post(url, json={"metadata": {"a": "x" * 5000}})
        check_error(resp, 413, param=None, code="request_too_large")


# --- messages, characters, tools: 400 -----------------------------------------------


async def test_too_many_messages(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        http = c.http()
        check_ok(await http.post(CHAT, json=body(messages=say(3))))
        err = check_error(
            await http.post(CHAT, json=body(messages=say(4))),
            400,
            param="messages",
            code="array_above_max_length",
        )
        assert "maximum length 3" in err["message"] and "length 4" in err["message"]
        check_error(
            await http.post(RESPONSES, json={"model": MODEL, "input": say(4)}),
            400,
            param="input",
            code="array_above_max_length",
        )
        assert len(c.engine.submitted) == 1


async def test_too_many_characters(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        http = c.http()
        parts = [{"type": "text", "text": "x" * 300}, {"type": "text", "text": "y" * 300}]
        check_error(
            await http.post(CHAT, json=body(messages=[{"role": "user", "content": parts}])),
            400,
            param="messages",
            code="string_above_max_length",
            contains=("500 characters",),
        )
        # instructions count with the input
        req = {"model": MODEL, "instructions": "x" * 300, "input": "y" * 300}
        check_error(
            await http.post(RESPONSES, json=req),
            400,
            param="input",
            code="string_above_max_length",
        )
        assert not c.engine.submitted


async def test_too_many_tools(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        http = c.http()
        tools = [tool(f"f{i}") for i in range(3)]
        check_error(
            await http.post(CHAT, json=body(tools=tools)),
            400,
            param="tools",
            code="array_above_max_length",
        )
        rtools = [response_tool(f"f{i}") for i in range(3)]
        check_error(
            await http.post(RESPONSES, json={"model": MODEL, "input": "hi", "tools": rtools}),
            400,
            param="tools",
            code="array_above_max_length",
        )


async def test_tool_schemas_too_big(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        http = c.http()
        props = {f"p{i}": {"type": "string"} for i in range(30)}
        err = check_error(
            await http.post(CHAT, json=body(tools=[tool("f", **props)])),
            400,
            param="tools",
            code="invalid_value",
        )
        assert "at most 600" in err["message"]
        req = {"model": MODEL, "input": "hi", "tools": [response_tool("f", **props)]}
        check_error(await http.post(RESPONSES, json=req), 400, param="tools", code="invalid_value")


async def test_response_format_schema_too_big(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, limits=SMALL) as c:
        http = c.http()
        fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema_format(30)}}
        check_error(
            await http.post(CHAT, json=body(response_format=fmt)),
            400,
            param="response_format",
            code="invalid_value",
        )
        text = {"format": {"type": "json_schema", "name": "s", "schema": schema_format(30)}}
        check_error(
            await http.post(RESPONSES, json={"model": MODEL, "input": "hi", "text": text}),
            400,
            param="text.format",
            code="invalid_value",
        )


# --- grammar compile time: 400 --------------------------------------------------------


async def test_grammar_compile_timeout(tmp_path: Path) -> None:
    """A schema the compiler is still on when the limit passes: 400 naming the field
    (the compile thread is held by the fake until the test lets it go)."""
    engine = FakeEngine('{"a": "b"}')
    engine.grammars.hold = threading.Event()
    limits = Limits(grammar_timeout=0.05)
    try:
        async with running_chatd(tmp_path, engine, limits=limits) as c:
            http = c.http()
            fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema_format(2)}}
            err = check_error(
                await http.post(CHAT, json=body(response_format=fmt)),
                400,
                param="response_format.json_schema.schema",
                code="grammar_too_complex",
            )
            assert "0.05 seconds" in err["message"]
            text = {"format": {"type": "json_schema", "name": "s", "schema": schema_format(2)}}
            check_error(
                await http.post(RESPONSES, json={"model": MODEL, "input": "hi", "text": text}),
                400,
                param="text.format.schema",
                code="grammar_too_complex",
            )
            check_error(
                await http.post(CHAT, json=body(tools=[tool("f")])),
                400,
                param="tools",
                code="grammar_too_complex",
            )
            assert not engine.submitted
    finally:
        engine.grammars.hold.set()


# --- n x max_tokens against the KV cache: 400 before admission ---------------------------


async def test_n_times_max_tokens_over_the_kv_cache(tmp_path: Path) -> None:
    engine = FakeEngine("one two", context_window=200, kv_capacity=300)
    async with running_chatd(tmp_path, engine) as c:
        http = c.http()
        err = check_error(
            await http.post(CHAT, json=body(n=4, max_tokens=100)),
            400,
            param="n",
            code="invalid_value",
        )
        assert "KV cache holds (300)" in err["message"]
        assert not engine.submitted
        check_ok(await http.post(CHAT, json=body(n=2, max_tokens=100)))


async def test_unasked_budget_is_fitted_to_the_kv_cache(tmp_path: Path) -> None:
    """Without max_tokens each choice may write the rest of the window; with n choices
    that would not fit the cache, so the budget shrinks instead of being refused."""
    engine = FakeEngine("one two", context_window=200, kv_capacity=300)
    async with running_chatd(tmp_path, engine) as c:
        req = {"model": MODEL, "messages": say(1), "n": 4}
        check_ok(await c.http().post(CHAT, json=req))
        prompt = len(engine.submitted[-1][0])
        assert engine.last_params.max_new_tokens == (300 - prompt) // 4


# --- wall clock: 504 / an error event, and the slot freed ---------------------------------

LONG = " ".join(["word"] * 3000)  # 60 s at the step delay below


async def test_request_timeout_whole(tmp_path: Path) -> None:
    engine = FakeEngine(LONG, step_delay=0.02)
    async with running_chatd(tmp_path, engine, limits=Limits(request_timeout=0.2)) as c:
        http = c.http()
        err = check_error(
            await http.post(CHAT, json=body(max_tokens=None)),
            504,
            param=None,
            code="request_timeout",
            type="server_error",
        )
        assert "0.2 seconds" in err["message"]
        assert not engine.in_flight  # the generation was cancelled: its slot is free
        check_error(
            await http.post(RESPONSES, json={"model": MODEL, "input": "hi"}),
            504,
            param=None,
            code="request_timeout",
            type="server_error",
        )
        assert not engine.in_flight


class FirstSteps:
    """A gate (``FakeEngine._holds``) open for a generation's first ``n`` steps, then
    shut: the stream has begun before its deadline, and only the deadline ends it."""

    def __init__(self, n: int) -> None:
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left >= 0


async def test_request_timeout_stream(tmp_path: Path) -> None:
    engine = FakeEngine(LONG)  # no step delay: its first words come at once, then it waits
    engine._holds.append(("", FirstSteps(3)))  # type: ignore[arg-type]
    async with running_chatd(tmp_path, engine, limits=Limits(request_timeout=1.0)) as c:
        http = c.http()
        s = await astream(http, body(max_tokens=None))
        assert s.status == 200
        assert not s.done  # never [DONE]
        assert s.chunks[-1]["error"]["code"] == "request_timeout"
        assert len(s.chunks) > 1  # it had started
        assert not engine.in_flight
        engine._holds[-1] = ("", FirstSteps(3))  # type: ignore[assignment]
        req = {"model": MODEL, "input": "hi", "stream": True}
        resp = await http.post(RESPONSES, json=req)
        events = response_events(resp.text)
        assert any(e["type"] == "response.output_text.delta" for e in events)  # started
        assert events[-1]["type"] == "response.failed"
        assert "seconds" in events[-1]["response"]["error"]["message"]
        assert not engine.in_flight

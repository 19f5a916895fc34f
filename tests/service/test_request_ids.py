"""Request ids and the request log (api/request_ids.py, chatd/request_log.py): every
response carries ``x-request-id`` (the openai SDK's ``_request_id``), errors and streams
included; every request ends in one log line with that id, the client's own id, the
key's owner, model, route, status, tokens, TTFT and total time; prompts and outputs only
with ``--log-content``; keys never."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import openai
import pytest
from fakes.engine import FakeEngine

from chatd.log_lines import JsonFormatter

from .checks import HI, URL
from .harness import API_KEY, MODEL, Chatd, fake_upstream, running_chatd

REQUEST_ID = re.compile(r"^req_[0-9a-f]{32}$")
PROMPT = "tell me about the secret walrus"
OUTPUT = "Zebra quantum marmalade"


def request_lines(chatd: Chatd) -> list[logging.LogRecord]:
    return [r for r in chatd.log.records if r.name == "chatd.requests"]


def line_for(chatd: Chatd, request_id: str) -> dict[str, object]:
    """The one request-log line of ``request_id``, as its fields."""
    lines = [r for r in request_lines(chatd) if r.request["request_id"] == request_id]  # type: ignore[attr-defined]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert f"request_id={request_id}" in lines[0].getMessage()
    return lines[0].request  # type: ignore[attr-defined,no-any-return]


async def test_sdk_reads_the_id_of_every_create_route(tmp_path: Path) -> None:
    """``_request_id`` for chat and responses, whole and streamed; each its own id, each
    in its one log line with owner, model, route, status, tokens and TTFT."""
    async with running_chatd(tmp_path, FakeEngine(OUTPUT)) as chatd:
        sdk = chatd.sdk()
        chat = await sdk.chat.completions.create(model=MODEL, messages=HI)  # type: ignore[arg-type]
        resp = await sdk.responses.create(model=MODEL, input="hi")
        ids = [chat._request_id, resp._request_id]
        async with await sdk.chat.completions.create(
            model=MODEL,
            messages=HI,  # type: ignore[arg-type]
            stream=True,
        ) as s:
            ids.append(s.response.headers["x-request-id"])
            _ = [c async for c in s]
        async with await sdk.responses.create(model=MODEL, input="hi", stream=True) as r:
            ids.append(r.response.headers["x-request-id"])
            _ = [e async for e in r]
        assert all(i and REQUEST_ID.match(i) for i in ids) and len(set(ids)) == 4
        for rid in ids:
            line = line_for(chatd, rid)  # type: ignore[arg-type]
            assert line["status"] == 200 and line["model"] == MODEL
            assert line["route"] == "local" and line["owner"].startswith("key_")  # type: ignore[union-attr]
            assert line["prompt_tokens"] > 0 and line["completion_tokens"] == 3  # type: ignore[operator]
            assert "cached_tokens" in line and line["total_ms"] >= 0  # type: ignore[operator]
            assert 0 <= line["ttft_ms"] <= line["total_ms"]  # type: ignore[operator]


async def test_errors_carry_the_id_too(tmp_path: Path) -> None:
    """4xx answers (the SDK's ``APIStatusError.request_id``) carry the header and are
    logged with their status; no key, not even a wrong one, is in any line."""
    async with running_chatd(tmp_path) as chatd:
        with pytest.raises(openai.NotFoundError) as missing:
            await chatd.sdk().chat.completions.create(model="nope", messages=HI)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError) as bad_key:
            await chatd.sdk("sk-wrong-key-1234567890").responses.create(model=MODEL, input="hi")
        r = await chatd.http().post(
            URL, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400
        for rid, status in [
            (missing.value.request_id, 404),
            (bad_key.value.request_id, 401),
            (r.headers["x-request-id"], 400),
        ]:
            assert rid and REQUEST_ID.match(rid)
            line = line_for(chatd, rid)
            assert line["status"] == status and "ttft_ms" not in line  # no token came
        log = chatd.log.text()
        assert API_KEY not in log and "sk-wrong-key-1234567890" not in log


async def test_every_route_answers_with_an_id(tmp_path: Path) -> None:
    """Every route of the app (/openapi.json's paths and itself), its path parameters
    filled with unknown ids; each answer one log line."""
    async with running_chatd(tmp_path) as chatd:
        http = chatd.http()
        seen = 0
        paths = {"/openapi.json": {"get": {}}, **chatd.app.openapi()["paths"]}
        for template, operations in paths.items():
            for method in operations:
                path = re.sub(r"\{[^}]+\}", "unknown_id", template)
                body = {"json": {}} if method == "post" else {}
                r = await http.request(method.upper(), path, **body)  # type: ignore[arg-type]
                rid = r.headers.get("x-request-id", "")
                assert REQUEST_ID.match(rid), (method, path, r.status_code)
                assert line_for(chatd, rid)["status"] == r.status_code
                assert line_for(chatd, rid)["path"] == path
                seen += 1
        assert seen >= 14


async def test_client_request_id_is_logged_beside_ours(tmp_path: Path) -> None:
    async with running_chatd(tmp_path) as chatd:
        r = await chatd.http().post(
            URL,
            json={"model": MODEL, "messages": HI},
            headers={"X-Client-Request-Id": "my-trace 42"},
        )
        line = line_for(chatd, r.headers["x-request-id"])
        assert line["client_request_id"] == "my-trace 42"
        assert 'client_request_id="my-trace 42"' in chatd.log.text()


async def test_no_prompt_output_or_key_without_log_content(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, FakeEngine(OUTPUT)) as chatd:
        http = chatd.http()
        messages = [{"role": "user", "content": PROMPT}]
        await http.post(URL, json={"model": MODEL, "messages": messages})
        await http.post(URL, json={"model": MODEL, "messages": messages, "stream": True})
        await http.post("/v1/responses", json={"model": MODEL, "input": PROMPT})
        log = chatd.log.text()
        assert len(request_lines(chatd)) == 3
        for secret in (PROMPT, "walrus", "Zebra", "marmalade", API_KEY):
            assert secret not in log


async def test_log_content_logs_prompt_and_output(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, FakeEngine(OUTPUT), log_content=True) as chatd:
        http = chatd.http()
        messages = [{"role": "user", "content": PROMPT}]
        r = await http.post(URL, json={"model": MODEL, "messages": messages, "stream": True})
        line = line_for(chatd, r.headers["x-request-id"])
        assert PROMPT in line["request"]  # type: ignore[operator]
        assert "Zebra" in line["response"] and "marmalade" in line["response"]  # type: ignore[operator]
        assert PROMPT in chatd.log.text() and API_KEY not in chatd.log.text()


async def test_json_format_parses(tmp_path: Path) -> None:
    """``--log-format json``: every line one JSON object; a request's fields at its top."""
    async with running_chatd(tmp_path) as chatd:
        r = await chatd.http().post(URL, json={"model": MODEL, "messages": HI, "stream": True})
        formatter = JsonFormatter()
        parsed = [json.loads(formatter.format(rec)) for rec in chatd.log.records]
        mine = [p for p in parsed if p.get("request_id") == r.headers["x-request-id"]]
        assert len(mine) == 1
        line = mine[0]
        assert line["logger"] == "chatd.requests" and line["level"] == "INFO"
        assert line["status"] == 200 and line["model"] == MODEL and line["route"] == "local"
        assert isinstance(line["ttft_ms"], float) and line["completion_tokens"] > 0
        health = await chatd.http().get("/health")
        hid = health.headers["x-request-id"]
        quiet = [r for r in request_lines(chatd) if r.request["request_id"] == hid]  # type: ignore[attr-defined]
        assert [r.levelname for r in quiet] == ["DEBUG"]  # health checks: debug lines


async def test_relayed_requests_name_their_channel(tmp_path: Path) -> None:
    """A channel's answer: route ``channel:<name>``, the upstream's token counts."""
    with fake_upstream() as fake:
        config = (
            f'[[channels]]\nname = "up"\nbase_url = "{fake.url}/v1"\n'
            'models = [{ id = "relayed", upstream = "ok" }]\n'
        )
        async with running_chatd(tmp_path, config=config) as chatd:
            sdk = chatd.sdk()
            chat = await sdk.chat.completions.create(model="relayed", messages=HI)  # type: ignore[arg-type]
            line = line_for(chatd, chat._request_id)  # type: ignore[arg-type]
            assert line["route"] == "channel:up" and line["model"] == "relayed"
            assert (line["prompt_tokens"], line["completion_tokens"]) == (7, 2)
            async with await sdk.chat.completions.create(
                model="relayed",
                messages=HI,  # type: ignore[arg-type]
                stream=True,
            ) as s:
                rid = s.response.headers["x-request-id"]
                _ = [c async for c in s]
            line = line_for(chatd, rid)
            assert line["route"] == "channel:up" and line["ttft_ms"] <= line["total_ms"]  # type: ignore[operator]
            resp = await sdk.responses.create(model="relayed", input="hi")
            line = line_for(chatd, resp._request_id)  # type: ignore[arg-type]
            assert line["route"] == "channel:up" and line["status"] == 200
            assert (line["prompt_tokens"], line["completion_tokens"]) == (7, 2)


async def test_a_drain_refusal_carries_an_id(tmp_path: Path) -> None:
    """The id middleware is outermost: even a request refused while draining has one."""
    async with running_chatd(tmp_path) as chatd:
        chatd.app.state.services.drain.begin()
        r = await chatd.http().post(URL, json={"model": MODEL, "messages": HI})
        assert r.status_code == 503
        assert line_for(chatd, r.headers["x-request-id"])["status"] == 503


async def test_an_unexpected_error_is_a_500_with_an_id(tmp_path: Path) -> None:
    """A bug (here the engine raising what nobody expects) is an OpenAI-shaped 500 that
    carries the id, and the traceback in the log names it."""
    async with running_chatd(tmp_path) as chatd:

        def boom(*_: object) -> None:
            raise RuntimeError("a bug")

        chatd.engine.submit = boom  # type: ignore[assignment,method-assign]
        r = await chatd.http().post(URL, json={"model": MODEL, "messages": HI})
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        rid = r.headers["x-request-id"]
        assert line_for(chatd, rid)["status"] == 500
        assert f"unhandled error (request_id={rid})" in chatd.log.text()

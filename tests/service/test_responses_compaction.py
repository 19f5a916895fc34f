"""Compaction on the local engine (docs/compaction.md), in process over the real app:
``POST /v1/responses/compact`` with the openai SDK's ``client.responses.compact``, the
``compaction_trigger`` input item (Codex's compaction v2) streamed and whole, the sealed
``compaction`` item's round trip, and every refusal: tampered, garbage or another key's
content, a trigger that is not last, an unknown field, an input past the context window."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakes.engine import Call, FakeEngine
from openapi_schemas import assert_valid
from sse import response_events

from chatd.service.responses.compaction import COMPACTION_PROMPT, SUMMARY_HEADER

from .checks import check_error
from .harness import API_KEY, MODEL, Chatd, running_chatd

URL = "/v1/responses"
OTHER_KEY = "sk-test-chatd-other-owner-987654"
SUMMARY = "The user wants a landing page for a dog cafe; the HTML is written."
HISTORY = [
    {"role": "user", "content": "Create a landing page for a dog petting cafe."},
    {
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Here it is: <html>...</html>"}],
    },
]
TRIGGER = {"type": "compaction_trigger"}


def script(call: Call) -> str:
    """Writes the summary when asked to compact; says whether it was shown one."""
    if COMPACTION_PROMPT in call.prompt:
        return SUMMARY
    if SUMMARY_HEADER.strip() in call.prompt and SUMMARY in call.prompt:
        return "I was shown the summary."
    return "No summary here."


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    engine = FakeEngine(script)
    tmp = tmp_path_factory.mktemp("compaction")
    async with running_chatd(tmp, engine, [API_KEY, OTHER_KEY]) as c:
        yield c


def text_of(body: dict[str, Any]) -> str:
    return "".join(
        p["text"] for i in body["output"] if i["type"] == "message" for p in i["content"]
    )


async def compaction_item(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.post(URL, json={"model": MODEL, "input": [*HISTORY, TRIGGER]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert_valid("Response", body)
    (item,) = body["output"]
    return item


async def test_compact_endpoint_with_the_sdk(chatd: Chatd) -> None:
    sdk = chatd.sdk()
    compacted = await sdk.responses.compact(model=MODEL, input=HISTORY)  # type: ignore[arg-type]
    assert compacted.object == "response.compaction"
    assert compacted.id.startswith("resp_")
    assert compacted.usage.output_tokens > 0
    out = [i.to_dict() for i in compacted.output]  # as sent (the SDK types it loosely)
    # the user's messages are kept, then the one compaction item
    assert [i["type"] for i in out] == ["message", "compaction"]
    assert out[0]["role"] == "user"
    assert out[0]["content"][0]["text"] == HISTORY[0]["content"]
    sealed = out[1]["encrypted_content"]
    assert sealed.startswith("cmp1.") and SUMMARY not in sealed
    assert out[1]["id"].startswith("cmp_")
    # the compacted output is the next turn's input: the model is shown the summary
    nxt = await sdk.responses.create(
        model=MODEL, input=[*out, {"role": "user", "content": "Go on."}], store=False
    )
    assert nxt.output_text == "I was shown the summary."


async def test_compact_endpoint_raw_body(chatd: Chatd) -> None:
    http = chatd.http()
    resp = await http.post(URL + "/compact", json={"model": MODEL, "input": "Hello there"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"id", "object", "created_at", "output", "usage"}
    assert [i["type"] for i in body["output"]] == ["message", "compaction"]
    assert body["usage"]["total_tokens"] == (
        body["usage"]["input_tokens"] + body["usage"]["output_tokens"]
    )


async def test_trigger_whole_answer_is_one_compaction_item(chatd: Chatd) -> None:
    item = await compaction_item(chatd.http())
    assert item["type"] == "compaction"
    assert set(item) == {"id", "type", "encrypted_content"}


async def test_trigger_streamed(chatd: Chatd) -> None:
    http = chatd.http()
    body = {"model": MODEL, "input": [*HISTORY, TRIGGER], "stream": True}
    async with http.stream("POST", URL, json=body) as r:
        assert r.status_code == 200
        events = response_events((await r.aread()).decode())
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    done = events[3]["item"]
    assert done["type"] == "compaction" and done["encrypted_content"].startswith("cmp1.")
    assert events[-1]["response"]["output"] == [done]


async def test_sealed_item_round_trip_and_rendering(chatd: Chatd) -> None:
    http = chatd.http()
    item = await compaction_item(http)
    nxt = {"model": MODEL, "input": [item, {"role": "user", "content": "Go on."}]}
    resp = await http.post(URL, json=nxt)
    assert resp.status_code == 200, resp.text
    assert text_of(resp.json()) == "I was shown the summary."


async def test_chain_after_a_stored_compaction(chatd: Chatd) -> None:
    """A stored trigger response's compaction item, brought back by
    previous_response_id, stands for everything before it."""
    http = chatd.http()
    first = await http.post(URL, json={"model": MODEL, "input": [*HISTORY, TRIGGER]})
    assert first.status_code == 200, first.text
    nxt = {"model": MODEL, "previous_response_id": first.json()["id"], "input": "Go on."}
    resp = await http.post(URL, json=nxt)
    assert resp.status_code == 200, resp.text
    assert text_of(resp.json()) == "I was shown the summary."


def _flip(sealed: str) -> str:
    body = sealed.removeprefix("cmp1.")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[20] ^= 1
    return "cmp1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("kind", ["tampered", "garbage", "not_base64", "empty"])
async def test_bad_encrypted_content_is_refused(chatd: Chatd, kind: str) -> None:
    http = chatd.http()
    sealed = (await compaction_item(http))["encrypted_content"]
    content = {
        "tampered": _flip(sealed),
        "garbage": "gAAAAABpM0Yj-not-ours=",
        "not_base64": "cmp1.!!!",
        "empty": "",
    }[kind]
    item = {"type": "compaction", "encrypted_content": content}
    resp = await http.post(
        URL, json={"model": MODEL, "input": [{"role": "user", "content": "hi"}, item]}
    )
    check_error(resp, 400, param="input[1].encrypted_content", code="invalid_encrypted_content")


async def test_another_owners_item_does_not_open(chatd: Chatd) -> None:
    item = await compaction_item(chatd.http())
    resp = await chatd.http(OTHER_KEY).post(URL, json={"model": MODEL, "input": [item]})
    check_error(resp, 400, param="input[0].encrypted_content", code="invalid_encrypted_content")
    # nor through /compact, where it is input too
    resp = await chatd.http(OTHER_KEY).post(
        URL + "/compact", json={"model": MODEL, "input": [item]}
    )
    check_error(resp, 400, param="input[0].encrypted_content", code="invalid_encrypted_content")


async def test_compaction_item_without_content(chatd: Chatd) -> None:
    resp = await chatd.http().post(
        URL, json={"model": MODEL, "input": [{"type": "compaction", "id": "cmp_1"}]}
    )
    check_error(resp, 400, param="input[0].encrypted_content", code="missing_required_parameter")


async def test_trigger_must_be_last(chatd: Chatd) -> None:
    resp = await chatd.http().post(
        URL, json={"model": MODEL, "input": [TRIGGER, {"role": "user", "content": "hi"}]}
    )
    check_error(resp, 400, param="input[0]", code="invalid_value")


async def test_compact_refuses_unknown_fields(chatd: Chatd) -> None:
    resp = await chatd.http().post(
        URL + "/compact", json={"model": MODEL, "input": "hi", "stream": True}
    )
    check_error(resp, 400, param="stream", code=None)
    resp = await chatd.http().post(URL + "/compact", json={"input": "hi"})
    assert resp.status_code == 400
    resp = await chatd.http().post(URL + "/compact", json=[1])
    assert resp.status_code == 400


async def test_input_past_the_context_window(chatd: Chatd) -> None:
    window = chatd.engine.context_window
    chatd.engine.context_window = 16
    try:
        long = "word " * 200
        resp = await chatd.http().post(URL, json={"model": MODEL, "input": long})
        check_error(resp, 400, param="input", code="context_length_exceeded")
        message = resp.json()["error"]["message"]
        assert message.startswith("Your input exceeds the context window of this model.")
        assert "16 tokens" in message
    finally:
        chatd.engine.context_window = window


async def test_405_names_only_the_compact_route_methods(chatd: Chatd) -> None:
    """/v1/responses/compact is its own route: the stored-response routes whose
    ``{response_id}`` it would fill add no methods to its ``Allow``."""
    resp = await chatd.http().put(URL + "/compact", json={})
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"

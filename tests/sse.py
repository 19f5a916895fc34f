"""Raw SSE reading for tests that need the exact bytes of a stream (e2e and in-process)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Stream:
    status: int
    content_type: str
    chunks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    raw_events: list[str] = field(default_factory=list)

    def content(self, index: int = 0) -> str:
        return "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in self.chunks
            if c.get("choices") and c["choices"][0]["index"] == index
        )

    def finish_reasons(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for c in self.chunks:
            for ch in c.get("choices", []):
                if ch.get("finish_reason") is not None:
                    out.setdefault(ch["index"], []).append(ch["finish_reason"])
        return out

    def logprobs(self, index: int = 0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for c in self.chunks:
            for ch in c.get("choices", []):
                if ch["index"] == index and ch.get("logprobs"):
                    out.extend(ch["logprobs"]["content"])
        return out


def parse_events(text: str) -> list[str]:
    events = []
    for block in text.split("\n\n"):
        block = block.strip("\n")
        if not block:
            continue
        assert block.startswith("data: "), f"unexpected SSE line: {block!r}"
        events.append(block[len("data: ") :])
    return events


def stream(http: httpx.Client, body: dict[str, Any]) -> Stream:
    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        text = r.read().decode()
        return _parse(Stream(r.status_code, r.headers.get("content-type", "")), text)


async def astream(http: httpx.AsyncClient, body: dict[str, Any]) -> Stream:
    """``stream`` for an async client (the in-process tests)."""
    async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        text = (await r.aread()).decode()
        return _parse(Stream(r.status_code, r.headers.get("content-type", "")), text)


def _parse(result: Stream, text: str) -> Stream:
    if result.status != 200:
        result.chunks = [json.loads(text)]
        return result
    for event in parse_events(text):
        result.raw_events.append(event)
        if event == "[DONE]":
            result.done = True
            continue
        assert not result.done, "data after [DONE]"
        result.chunks.append(json.loads(event))
    return result


def response_events(text: str) -> list[dict[str, Any]]:
    """A Responses stream's events, each checked: ``event:`` names its ``data``'s type,
    the data is a valid ``ResponseStreamEvent``, sequence numbers count from 0 without a
    gap, and there is no ``[DONE]``."""
    from openapi_schemas import assert_valid  # the spec loads only for tests that use it

    assert "[DONE]" not in text
    events = []
    for block in text.strip().split("\n\n"):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        assert_valid("ResponseStreamEvent", event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events

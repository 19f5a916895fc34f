"""``chatd models`` without a chatd: the fallback to ``/v1/models`` for a server that has
no ``/chatd/models`` (an older chatd, another OpenAI-compatible server), its errors, and
the table every route state makes (httpx's MockTransport plays the server)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from chatd.remote import ModelList, Remote, RemoteError
from chatd.status import format_models

NOT_FOUND = {"error": {"message": "Invalid URL", "type": "invalid_request_error"}}


def remote(routes: dict[str, tuple[int, Any]], url: str = "http://server/") -> Remote:
    def answer(request: httpx.Request) -> httpx.Response:
        status, body = routes.get(request.url.path, (404, NOT_FOUND))
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return Remote(url, "sk-x", transport=httpx.MockTransport(answer))


def test_falls_back_to_v1_models_on_404() -> None:
    body = {"object": "list", "data": [{"id": "gpt-x", "object": "model"}, {"id": "b"}]}
    listed = remote({"/v1/models": (200, body)}).models()
    assert listed.source == "/v1/models" and listed.body == body
    assert listed.ids() == ["gpt-x", "b"] and listed.first_available() == "gpt-x"
    table = format_models(listed)
    assert "gpt-x" in table and "route states unknown" in table


@pytest.mark.parametrize("url", ["http://server/v1", "http://server/v1/", "http://server"])
def test_an_sdk_base_url_is_accepted(url: str) -> None:
    body = {"object": "list", "data": [{"id": "a", "available": True, "routes": []}]}
    r = remote({"/chatd/models": (200, body)}, url)
    assert r.url == "http://server" and r.models().ids() == ["a"]


def test_chatd_models_is_preferred() -> None:
    rows = [
        {"id": "a", "available": False, "reason": "r", "routes": []},
        {"id": "b", "available": True, "reason": None, "routes": []},
    ]
    listed = remote(
        {"/chatd/models": (200, {"object": "list", "data": rows}), "/v1/models": (500, "no")}
    ).models()
    assert listed.source == "/chatd/models" and listed.first_available() == "b"


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"/chatd/models": (401, {"error": {"message": "Bad key sk-...x"}})}, "401: Bad key"),
        ({}, "http://server/v1/models answered 404: Invalid URL"),  # neither exists
        ({"/chatd/models": (502, "<html>bad gateway</html>")}, "502: <html>bad gateway"),
        ({"/chatd/models": (200, "not json")}, "did not answer JSON"),
        ({"/chatd/models": (200, [1, 2])}, "did not answer a JSON object"),
    ],
)
def test_errors_carry_the_servers_words(routes: dict[str, tuple[int, Any]], message: str) -> None:
    with pytest.raises(RemoteError, match=message.replace("[", "\\[")):
        remote(routes).models()


def test_the_table_shows_every_route_state_and_the_reason() -> None:
    rows = [
        {
            "object": "chatd.model_state",
            "id": "m-local",
            "available": True,
            "reason": None,
            "routes": [{"name": "local:m-local", "kind": "local", "state": "loaded"}],
        },
        {
            "object": "chatd.model_state",
            "id": "gpt-4o",
            "available": False,
            "reason": "no channel is available: openai cooling down after 3 failures",
            "routes": [
                {
                    "name": "openai",
                    "kind": "channel",
                    "state": "cooling_down",
                    "cooling_seconds_left": 12.4,
                },
                {"name": "local:big", "kind": "local", "state": "unloaded"},
            ],
        },
        {
            "id": "mixed",
            "available": True,
            "reason": None,
            "routes": [
                {"name": "azure", "kind": "channel", "state": "available"},
                {"name": "local:mid", "kind": "local", "state": "loading"},
            ],
        },
    ]
    body = {"object": "list", "data": rows}
    lines = format_models(ModelList("/chatd/models", body, rows)).splitlines()
    assert lines[0].split() == ["model", "available", "routes"]
    assert lines[1].split() == ["m-local", "yes", "local:m-local", "(loaded)"]
    assert lines[2].split()[:2] == ["gpt-4o", "NO"]
    assert "openai (cooling_down 12s), local:big (unloaded)" in lines[2]
    assert lines[3].strip() == rows[1]["reason"]
    assert "azure (available), local:mid (loading)" in lines[4]
    assert len(lines) == 5
    empty = format_models(ModelList("/chatd/models", {"data": []}, []))
    assert "(no models for this key)" in empty

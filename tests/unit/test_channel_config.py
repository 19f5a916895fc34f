"""A channel's ``api`` key: what it speaks (Chat Completions by default, or the Responses
API itself), checked at start-up with a message naming the key; and how a Responses
stream reads (``ResponsesWire``: terminal events, relayed failures, a stray [DONE])."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatd.config import ConfigError, load_config
from chatd.upstream.channels import Channel
from chatd.upstream.wires import ResponsesWire


def channels(tmp_path: Path, extra: str) -> list[Channel]:
    path = tmp_path / "chatd.toml"
    path.write_text(
        f'[[channels]]\nname = "c"\nbase_url = "http://up:8000/v1/"\nmodels = ["m"]\n{extra}\n'
    )
    return load_config(path).channels


def test_api_defaults_to_chat(tmp_path: Path) -> None:
    (c,) = channels(tmp_path, "")
    assert c.api == "chat"
    assert c.chat_url == "http://up:8000/v1/chat/completions"


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
def test_api_chat_responses_or_anthropic(tmp_path: Path, api: str) -> None:
    (c,) = channels(tmp_path, f'api = "{api}"')
    assert c.api == api
    assert c.responses_url == "http://up:8000/v1/responses"
    assert c.messages_url == "http://up:8000/v1/messages"


def test_an_anthropic_channel_gets_its_key_as_x_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UP_KEY", "sk-ant-test")
    (c,) = channels(tmp_path, 'api = "anthropic"\napi_key_env = "UP_KEY"')
    assert c.headers["x-api-key"] == "sk-ant-test"
    assert c.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in c.headers


@pytest.mark.parametrize("value", ['"Anthropic"', '"Responses"', "1", '["chat"]'])
def test_other_api_values_are_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"channels\[0\]\.api: .*\"chat\".*\"anthropic\""):
        channels(tmp_path, f"api = {value}")


def _read(wire: ResponsesWire, event: dict[str, object] | str) -> object:
    return wire.read(event if isinstance(event, str) else json.dumps(event))


@pytest.mark.parametrize(
    "terminal",
    ["response.completed", "response.incomplete", "response.failed", "error"],
)
def test_a_terminal_event_is_relayed_and_ends_the_stream(terminal: str) -> None:
    wire = ResponsesWire("pub", {})
    delta = {"type": "response.output_text.delta", "delta": "x", "sequence_number": 3}
    assert _read(wire, delta) == delta and not wire.ended
    usage = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    if terminal == "error":
        last: dict[str, object] = {"type": "error", "code": "server_error", "message": "boom",
                                   "param": None, "sequence_number": 4}  # fmt: skip
    else:
        last = {"type": terminal, "response": {"model": "up", "usage": usage}, "sequence_number": 4}
    assert _read(wire, last) == last  # untouched: ids and model are the service's
    assert wire.ended
    assert wire.usage == (None if terminal == "error" else usage)


def test_a_stray_done_is_dropped_and_does_not_end_the_stream() -> None:
    wire = ResponsesWire("pub", {})
    assert _read(wire, "[DONE]") is None and not wire.ended


def test_responses_body_gets_the_channel_model_only() -> None:
    body = {"model": "pub", "input": "Hi", "stream": True}
    c = Channel("c", "http://up/v1", {"pub": "up-model"}, api="responses")
    url, data = ResponsesWire("pub", body).prepare(c)
    assert url == "http://up/v1/responses"
    # and store: false (the API's default would store it; chatd keeps the state)
    assert json.loads(data) == {"model": "up-model", "input": "Hi", "stream": True, "store": False}
    assert body["model"] == "pub"  # the caller's body is not changed

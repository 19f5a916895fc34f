"""``upstream_errors.judge``: each upstream error status as the channel's failure (a
``ModelUnavailable``: 502 ``upstream_error`` or 503) or the client's error (passed back,
redacted). Over HTTP: tests/service/test_upstream_errors.py."""

from __future__ import annotations

from typing import Any

import pytest

from chatd.protocol.errors import ModelUnavailable
from chatd.upstream.channels import Channel
from chatd.upstream.upstream_errors import ChannelFailed, judge

CHANNEL = Channel("gpu", "http://gpu-box:8000/v1", {"pub": "Org/Secret-Model"}, "sk-chan-key")


def error(message: str = "m", **kw: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", **kw}}


@pytest.mark.parametrize(
    ("status", "data", "code"),
    [
        (401, error(), "channel_auth_failed"),
        (403, error(), "channel_auth_failed"),
        (404, error(code="model_not_found"), "channel_model_not_found"),
        (404, error(param="model"), "channel_model_not_found"),
        (404, error("The model `Org/Secret-Model` does not exist"), "channel_model_not_found"),
        (404, None, "channel_model_not_found"),  # no error object: a wrong base URL
        (402, error(), "channel_refused"),
        (405, "<html>", "channel_refused"),
        (415, error(), "channel_refused"),
    ],
)
def test_the_channels_own_failures_are_502s(status: int, data: Any, code: str) -> None:
    e = judge(status, data, CHANNEL, "pub")
    assert isinstance(e, ChannelFailed) and e.status == 502 and e.code == code
    assert e.type == "upstream_error" and "`gpu`" in e.message
    assert "Secret-Model" not in e.message and e.message != "m"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_unavailable_upstreams_are_503s(status: int) -> None:
    e = judge(status, error(), CHANNEL, "pub")
    assert isinstance(e, ModelUnavailable) and not isinstance(e, ChannelFailed)
    assert (
        e.status == 503 and e.message == f"No channel could answer for `pub` (gpu: HTTP {status})."
    )


@pytest.mark.parametrize(
    ("status", "kept"), [(400, 400), (409, 400), (413, 413), (422, 400), (404, 404)]
)
def test_the_clients_faults_are_passed_back_redacted(status: int, kept: int) -> None:
    message = "Item 'x' not found at http://gpu-box:8000/v1 with sk-chan-key"
    if status != 404:  # a 404 naming the channel's model is about the model
        message += " for Org/Secret-Model"
    data = error(message, param="input", code=422)
    e = judge(status, data, CHANNEL, "pub")
    assert e is not None and not isinstance(e, ModelUnavailable)
    assert e.status == kept and e.param == "input" and e.code is None  # 422 is no code word
    for secret in ("gpu-box", "sk-chan", "Secret-Model", "http"):
        assert secret not in e.message
    assert e.message.startswith("Item 'x' not found at")


def test_an_exception_name_as_type_is_replaced() -> None:
    e = judge(400, {"error": {"message": "no", "type": "BadRequestError"}}, CHANNEL, "pub")
    assert e is not None and e.type == "invalid_request_error"
    assert judge(200, {}, CHANNEL, "pub") is None
    bare = judge(400, {"message": "vLLM's bare error", "type": "x"}, CHANNEL, "pub")
    assert bare is not None and bare.message == "vLLM's bare error"


def anthropic(kind: str, message: str = "m") -> dict[str, Any]:
    """Anthropic's error shape."""
    return {"type": "error", "error": {"type": kind, "message": message}}


ANTHROPIC = Channel("claude", "https://api.anthropic.example/v1", {"pub": "claude-x"}, "sk-ant-k")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, "authentication_error"),
        (403, "permission_error"),
        (400, "authentication_error"),  # the type says whose it is, whatever the status
    ],
)
def test_anthropic_auth_failures_are_the_channels(status: int, kind: str) -> None:
    e = judge(status, anthropic(kind), ANTHROPIC, "pub")
    assert isinstance(e, ChannelFailed) and e.status == 502 and e.code == "channel_auth_failed"
    assert "`claude`" in e.message


def test_an_anthropic_404_for_the_model_is_the_channels() -> None:
    e = judge(404, anthropic("not_found_error", "model: claude-x"), ANTHROPIC, "pub")
    assert isinstance(e, ChannelFailed) and e.code == "channel_model_not_found"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error"),
     (400, "overloaded_error")],
)  # fmt: skip
def test_anthropic_overload_fails_over(status: int, kind: str) -> None:
    e = judge(status, anthropic(kind), ANTHROPIC, "pub")
    assert isinstance(e, ModelUnavailable) and not isinstance(e, ChannelFailed)
    assert e.status == 503


@pytest.mark.parametrize(
    ("status", "kind", "kept"),
    [(400, "invalid_request_error", 400), (413, "request_too_large", 413)],
)
def test_anthropic_client_errors_are_passed_back_redacted(
    status: int, kind: str, kept: int
) -> None:
    message = "messages.0: bad at https://api.anthropic.example/v1 with sk-ant-k"
    e = judge(status, anthropic(kind, message), ANTHROPIC, "pub")
    assert e is not None and not isinstance(e, ModelUnavailable)
    assert (e.status, e.type) == (kept, kind)
    assert "sk-ant-k" not in e.message and "anthropic.example" not in e.message
    assert e.message.startswith("messages.0: bad at")

"""What every refusal and every answer of the in-process error tests must look like:
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with the right status,
valid as the spec's ``ErrorResponse``, never a framework default (``{"detail": ...}``)."""

from __future__ import annotations

from typing import Any

import httpx
from openapi_schemas import assert_valid

from .harness import MODEL

URL = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]
VOCAB = 49152  # SmolLM2's vocabulary (the FakeEngine's too): token ids 0..49151


def body(**fields: Any) -> dict[str, Any]:
    """A minimal valid request, with ``fields`` added or replaced (tiny completion)."""
    return {"model": MODEL, "messages": HI, "max_tokens": 1, **fields}


def user(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "hi"}, *parts]}]


def _has_detail(value: Any) -> bool:
    if isinstance(value, dict):
        return "detail" in value or any(_has_detail(v) for v in value.values())
    return False


def check_error(
    resp: httpx.Response,
    status: int,
    *,
    param: str | None,
    code: str | None,
    message: str | None = None,
    contains: tuple[str, ...] = (),
    type: str = "invalid_request_error",
) -> dict[str, Any]:
    """Assert an OpenAI-shaped error; ``message`` is exact, ``contains`` are substrings."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    data = resp.json()
    assert set(data) == {"error"}, data
    assert not _has_detail(data), data
    assert_valid("ErrorResponse", data)
    err = data["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert err["type"] == type, err
    assert err["param"] == param, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and len(err["message"]) > 10, err
    if message is not None:
        assert err["message"] == message, err
    for fragment in contains:
        assert fragment in err["message"], err
    return err


def check_ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["object"] == "chat.completion", data
    assert data["model"] == MODEL
    assert isinstance(data["choices"][0]["message"]["content"], str)
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    assert_valid("CreateChatCompletionResponse", data)
    return data

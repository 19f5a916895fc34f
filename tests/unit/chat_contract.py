"""Helpers of the request contract's unit tests (test_chat_request.py, test_chat_messages.py):
request bodies, and the assertion that a body is refused the way OpenAI refuses it."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chatd.protocol.chat_request import ChatCompletionRequest, parse_chat_request
from chatd.protocol.errors import InvalidRequest

SPEC = Path("/work/shared/reference/openai-openapi.yml")

USER = {"role": "user", "content": "Hello!"}
BASE: dict[str, Any] = {"model": "smollm2", "messages": [USER]}
TOOL_F = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}

INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please contact "
    "us through our help center at help.openai.com.)"
)


def make(**fields: Any) -> dict[str, Any]:
    """BASE with fields replaced; a value of ``...`` deletes the field."""
    body = copy.deepcopy(BASE)
    for key, value in fields.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def parse(body: dict[str, Any]) -> ChatCompletionRequest:
    return parse_chat_request(encode(body))


def reject(raw: bytes | dict[str, Any]) -> InvalidRequest:
    data = raw if isinstance(raw, bytes) else encode(raw)
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(data)
    error = caught.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    body = error.body()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert isinstance(body["message"], str) and body["message"]
    return error


def user(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def with_messages(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return make(messages=list(messages), **fields)


def spec_schemas() -> ModuleType:
    """tests/openapi_schemas.py, or a skip when it or the spec is not available."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        schemas = pytest.importorskip("openapi_schemas")
    finally:
        sys.path.pop(0)
    if not SPEC.exists():
        pytest.skip("OpenAPI spec not available")
    return schemas

"""Every way of getting a request wrong, sent over HTTP to a live chatd.

Each refusal must be OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with the
right status, validate as the spec's ``ErrorResponse``, and never leak a framework default
(``{"detail": ...}``). Raw httpx checks the bytes; the openai SDK checks that clients map each
status to the right exception class.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import httpx
import openai
import pytest
from conftest import API_KEY, MODEL, Server
from openapi_schemas import assert_valid

URL = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]
VOCAB = 49152  # SmolLM2's vocabulary: token ids 0..49151


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


# --------------------------------------------------------------------------------------------
# Bodies that are not a request at all
# --------------------------------------------------------------------------------------------

INVALID_JSON = "We could not parse the JSON body of your request."


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"model": "x", "messages": [', id="truncated"),
        pytest.param(b"{'model': 'x'}", id="single-quotes"),
        pytest.param(b'{"model": NaN}', id="nan"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b'"hello"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
        pytest.param(
            b'{"model": "x", "messages": [{"role": "user", "content": "\\ud800"}]}',
            id="lone-surrogate",
        ),
    ],
)
def test_not_a_json_object(http: httpx.Client, raw: bytes) -> None:
    resp = http.post(URL, content=raw, headers={"Content-Type": "application/json"})
    err = check_error(resp, 400, param=None, code=None)
    assert err["message"].startswith(INVALID_JSON), err


# --------------------------------------------------------------------------------------------
# Request contract: shape, types and ranges (400, exact OpenAI wording)
# --------------------------------------------------------------------------------------------

CONTRACT_CASES: list[Any] = [
    # (request body, param, code, message or substrings)
    pytest.param(
        body(foo=1), None, None, "Unrecognized request argument supplied: foo", id="unknown-field"
    ),
    pytest.param(
        body(foo=1, bar=2),
        None,
        None,
        "Unrecognized request arguments supplied: foo, bar",
        id="unknown-fields",
    ),
    pytest.param(
        {"messages": HI}, None, None, "you must provide a model parameter", id="missing-model"
    ),
    pytest.param(
        {"model": "", "messages": HI},
        None,
        None,
        "you must provide a model parameter",
        id="empty-model",
    ),
    pytest.param(
        {"model": MODEL},
        "messages",
        "missing_required_parameter",
        "Missing required parameter: 'messages'.",
        id="missing-messages",
    ),
    pytest.param(
        body(messages=[]),
        "messages",
        "empty_array",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
        "empty array instead.",
        id="empty-messages",
    ),
    pytest.param(
        body(messages="hi"),
        "messages",
        "invalid_type",
        "Invalid type for 'messages': expected an array of objects, but got a string instead.",
        id="messages-not-list",
    ),
    pytest.param(
        body(messages=["hi"]),
        "messages[0]",
        "invalid_type",
        ("'messages[0]'", "expected an object", "but got a string"),
        id="message-not-object",
    ),
    pytest.param(
        body(temperature="hot"),
        "temperature",
        "invalid_type",
        "Invalid type for 'temperature': expected a decimal, but got a string instead.",
        id="temperature-string",
    ),
    pytest.param(
        body(n=1.5),
        "n",
        "invalid_type",
        "Invalid type for 'n': expected an integer, but got a decimal number instead.",
        id="n-decimal",
    ),
    pytest.param(
        body(stream="yes"),
        "stream",
        "invalid_type",
        "Invalid type for 'stream': expected a boolean, but got a string instead.",
        id="stream-string",
    ),
    pytest.param(
        body(max_tokens="1"),
        "max_tokens",
        "invalid_type",
        "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        id="max-tokens-string",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": 42}]),
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
        "but got an integer instead.",
        id="content-number",
    ),
    pytest.param(
        body(messages=[{"role": "user"}]),
        "messages[0].content",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].content'.",
        id="content-missing",
    ),
    pytest.param(
        body(model=5),
        "model",
        "invalid_type",
        "Invalid type for 'model': expected a string, but got an integer instead.",
        id="model-number",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
        "invalid_type",
        "Invalid type for 'messages[0].content': expected one of a string or array of objects, "
        "but got null instead.",
        id="content-null",
    ),
    pytest.param(
        body(metadata={"a": 1}),
        "metadata.a",
        "invalid_type",
        "Invalid type for 'metadata.a': expected a string, but got an integer instead.",
        id="metadata-value-number",
    ),
    pytest.param(
        body(stream=True, stream_options={"include_usage": "x"}),
        "stream_options.include_usage",
        "invalid_type",
        "Invalid type for 'stream_options.include_usage': expected a boolean, but got a string "
        "instead.",
        id="include-usage-string",
    ),
    pytest.param(
        body(temperature=2.5),
        "temperature",
        "decimal_above_max_value",
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 "
        "instead.",
        id="temperature-2.5",
    ),
    pytest.param(
        body(temperature=-0.1),
        "temperature",
        "decimal_below_min_value",
        "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -0.1 "
        "instead.",
        id="temperature-negative",
    ),
    pytest.param(
        body(top_p=1.5),
        "top_p",
        "decimal_above_max_value",
        "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but got 1.5 instead.",
        id="top-p-1.5",
    ),
    pytest.param(
        body(n=0),
        "n",
        "integer_below_min_value",
        "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        id="n-0",
    ),
    pytest.param(
        body(n=129),
        "n",
        "integer_above_max_value",
        "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead.",
        id="n-129",
    ),
    pytest.param(
        body(presence_penalty=3),
        "presence_penalty",
        "decimal_above_max_value",
        "Invalid 'presence_penalty': decimal above maximum value. Expected a value <= 2, but got "
        "3 instead.",
        id="presence-penalty-3",
    ),
    pytest.param(
        body(frequency_penalty=3),
        "frequency_penalty",
        "decimal_above_max_value",
        "Invalid 'frequency_penalty': decimal above maximum value. Expected a value <= 2, but "
        "got 3 instead.",
        id="frequency-penalty-3",
    ),
    pytest.param(
        body(frequency_penalty=-2.5),
        "frequency_penalty",
        "decimal_below_min_value",
        ("Expected a value >= -2, but got -2.5 instead.",),
        id="frequency-penalty-negative",
    ),
    pytest.param(
        body(logprobs=True, top_logprobs=21),
        "top_logprobs",
        "integer_above_max_value",
        "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21 "
        "instead.",
        id="top-logprobs-21",
    ),
    pytest.param(
        body(max_tokens=0),
        "max_tokens",
        "integer_below_min_value",
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 "
        "instead.",
        id="max-tokens-0",
    ),
    pytest.param(
        {"model": MODEL, "messages": HI, "max_completion_tokens": 0},
        "max_completion_tokens",
        "integer_below_min_value",
        "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1, "
        "but got 0 instead.",
        id="max-completion-tokens-0",
    ),
    pytest.param(
        body(stop=["a", "b", "c", "d", "e"]),
        "stop",
        "array_above_max_length",
        "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
        "array with length 5 instead.",
        id="stop-5",
    ),
    pytest.param(
        body(top_logprobs=2),
        "top_logprobs",
        None,
        "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
        id="top-logprobs-without-logprobs",
    ),
    pytest.param(
        body(metadata={f"k{i}": "v" for i in range(17)}),
        "metadata",
        "object_above_max_properties",
        "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
        "but got an object with 17 properties instead.",
        id="metadata-17-keys",
    ),
    pytest.param(
        body(metadata={"k" * 65: "v"}),
        "metadata." + "k" * 65,
        "property_name_above_max_length",
        "Invalid property name in 'metadata': 'kkk...kkk' is too long. Expected a string with "
        "maximum length 64, but got a string with length 65 instead.",
        id="metadata-key-65",
    ),
    pytest.param(
        body(metadata={"k": "v" * 513}),
        "metadata.k",
        "string_above_max_length",
        "Invalid 'metadata.k': string too long. Expected a string with maximum length 512, but "
        "got a string with length 513 instead.",
        id="metadata-value-513",
    ),
    pytest.param(
        body(stream_options={"include_usage": True}),
        "stream_options",
        None,
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        id="stream-options-without-stream",
    ),
    pytest.param(
        body(logit_bias={"50": 101}),
        "logit_bias.50",
        "integer_above_max_value",
        "Invalid 'logit_bias.50': integer above maximum value. Expected a value <= 100, but got "
        "101 instead.",
        id="logit-bias-101",
    ),
    pytest.param(
        body(logit_bias={"abc": 1}),
        "logit_bias",
        "invalid_value",
        "Invalid key in 'logit_bias': abc. You should only be submitting non-negative integers.",
        id="logit-bias-key-abc",
    ),
    pytest.param(
        body(logit_bias={"-1": 1}),
        "logit_bias",
        "invalid_value",
        "Invalid key in 'logit_bias': -1. You should only be submitting non-negative integers.",
        id="logit-bias-key-negative",
    ),
    pytest.param(
        body(logit_bias={str(VOCAB): 5}),
        "logit_bias",
        "invalid_value",
        f"Invalid key in 'logit_bias': {VOCAB}. Token ids of `{MODEL}` are 0 to {VOCAB - 1}.",
        id="logit-bias-beyond-vocab",
    ),
    pytest.param(
        body(messages=[{"role": "robot", "content": "hi"}]),
        "messages[0].role",
        "invalid_value",
        "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'.",
        id="bad-role",
    ),
    pytest.param(
        body(messages=[{"content": "hi"}]),
        "messages[0].role",
        "missing_required_parameter",
        "Missing required parameter: 'messages[0].role'.",
        id="missing-role",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": "hi", "foo": 1}]),
        "messages[0].foo",
        "unknown_parameter",
        "Unknown parameter: 'messages[0].foo'.",
        id="unknown-message-field",
    ),
    pytest.param(
        body(messages=user({"type": "video", "video": "x"})),
        "messages[0].content[1].type",
        "invalid_value",
        "Invalid value: 'video'. Supported values are: 'text', 'image_url', 'input_audio', and "
        "'file'.",
        id="bad-part-type",
    ),
    pytest.param(
        body(tool_choice="auto"),
        "tool_choice",
        None,
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
        id="tool-choice-without-tools",
    ),
    pytest.param(
        body(service_tier="turbo"),
        "service_tier",
        "invalid_value",
        ("Invalid value: 'turbo'.", "'auto'", "'flex'"),
        id="bad-service-tier",
    ),
]


@pytest.mark.parametrize(("payload", "param", "code", "expected"), CONTRACT_CASES)
def test_contract_violation(
    http: httpx.Client,
    payload: dict[str, Any],
    param: str | None,
    code: str | None,
    expected: str | tuple[str, ...],
) -> None:
    resp = http.post(URL, json=payload)
    if isinstance(expected, str):
        check_error(resp, 400, param=param, code=code, message=expected)
    else:
        check_error(resp, 400, param=param, code=code, contains=expected)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(body(temperature=2.5), id="temperature"),
        pytest.param(body(extra_body={"foo": 1}), id="unknown-field"),
        pytest.param(body(messages=[]), id="empty-messages"),
    ],
)
def test_contract_violation_via_sdk(client: openai.OpenAI, payload: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**payload)
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict) and "message" in info.value.body
    assert info.value.body["type"] == "invalid_request_error"


# --------------------------------------------------------------------------------------------
# Capabilities: well formed, but not something this text-only local model does
# --------------------------------------------------------------------------------------------

TEXT_ONLY = f"`{MODEL}` is text-only."
NOT_YET = "is not supported yet by this server."

CAPABILITY_CASES: list[Any] = [
    pytest.param(
        body(messages=user({"type": "image_url", "image_url": {"url": "https://x/y.png"}})),
        "messages[0].content[1].type",
        "unsupported_content_type",
        ("image_url", TEXT_ONLY),
        id="image-part",
    ),
    pytest.param(
        body(
            messages=user(
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
            )
        ),
        "messages[0].content[1].type",
        "unsupported_content_type",
        ("input_audio", TEXT_ONLY),
        id="audio-part",
    ),
    pytest.param(
        body(messages=user({"type": "file", "file": {"file_id": "file-abc123"}})),
        "messages[0].content[1].type",
        "unsupported_content_type",
        ("file", TEXT_ONLY),
        id="file-part",
    ),
    pytest.param(
        body(modalities=["text", "audio"]),
        "modalities",
        "unsupported_parameter",
        ("Unsupported parameter: 'modalities'", "audio"),
        id="audio-modality",
    ),
    pytest.param(
        body(audio={"voice": "alloy", "format": "wav"}),
        "audio",
        "unsupported_parameter",
        ("Unsupported parameter: 'audio'", MODEL),
        id="audio-output",
    ),
    pytest.param(
        body(web_search_options={}),
        "web_search_options",
        "unsupported_parameter",
        ("Unsupported parameter: 'web_search_options'", MODEL),
        id="web-search",
    ),
    pytest.param(
        body(reasoning_effort="low"),
        "reasoning_effort",
        "unsupported_parameter",
        ("Unsupported parameter: 'reasoning_effort'", "reasoning models"),
        id="reasoning-effort",
    ),
    pytest.param(
        body(verbosity="low"),
        "verbosity",
        "unsupported_parameter",
        ("Unsupported parameter: 'verbosity'", "reasoning models"),
        id="verbosity",
    ),
]


@pytest.mark.parametrize(("payload", "param", "code", "fragments"), CAPABILITY_CASES)
def test_capability_refused(
    http: httpx.Client,
    payload: dict[str, Any],
    param: str | tuple[str, ...],
    code: str,
    fragments: tuple[str, ...],
) -> None:
    resp = http.post(URL, json=payload)
    if isinstance(param, tuple):
        actual = resp.json().get("error", {}).get("param")
        assert actual in param, resp.text
        param = actual
    err = check_error(resp, 400, param=param, code=code, contains=fragments)
    assert str(param) in err["message"] or code == "unsupported_content_type", err


def test_capability_refused_streaming_is_json(http: httpx.Client) -> None:
    """A refused streamed request is refused before any SSE byte."""
    resp = http.post(URL, json=body(stream=True, reasoning_effort="low"))
    check_error(resp, 400, param="reasoning_effort", code="unsupported_parameter")
    assert b"data:" not in resp.content


def test_capability_refused_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                }
            ],
            max_tokens=1,
        )
    assert info.value.param == "messages[0].content[0].type"
    assert info.value.code == "unsupported_content_type"


@pytest.mark.parametrize(
    ("fields", "tier"),
    [
        pytest.param({"store": False}, None, id="store-false"),
        pytest.param({"response_format": {"type": "text"}}, None, id="response-format-text"),
        pytest.param(
            {"metadata": {**{f"k{i}": "v" for i in range(15)}, "k" * 64: "v" * 512}},
            None,
            id="metadata-at-limits",
        ),
        pytest.param({"user": "user-1234"}, None, id="user"),
        pytest.param({"service_tier": "auto"}, "default", id="service-tier-auto"),
        pytest.param({"service_tier": "default"}, "default", id="service-tier-default"),
        pytest.param({"service_tier": "flex"}, "flex", id="service-tier-flex"),
        pytest.param({"logit_bias": {str(VOCAB - 1): -100}}, None, id="logit-bias-last-token"),
        pytest.param({"stop": ["a", "b", "c", "d"]}, None, id="stop-4"),
        pytest.param({"tool_choice": None, "tools": None}, None, id="null-tools"),
    ],
)
def test_accepted(http: httpx.Client, fields: dict[str, Any], tier: str | None) -> None:
    data = check_ok(http.post(URL, json=body(**fields)))
    if tier is not None:
        assert data["service_tier"] == tier, data
    else:
        assert data.get("service_tier") in (None, "default"), data


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def not_found_message(model: str) -> str:
    return f"The model `{model}` does not exist or you do not have access to it."


@pytest.mark.parametrize("model", ["gpt-4o", "smollm2-135m-instruct-x", "a/b:c"])
def test_unknown_model(http: httpx.Client, model: str) -> None:
    resp = http.post(URL, json=body(model=model))
    check_error(resp, 404, param=None, code="model_not_found", message=not_found_message(model))


def test_unknown_model_streaming_is_json(http: httpx.Client) -> None:
    resp = http.post(URL, json=body(model="gpt-4o", stream=True))
    check_error(resp, 404, param=None, code="model_not_found")
    assert b"data:" not in resp.content


def test_unknown_model_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_retrieve_unknown_model(http: httpx.Client) -> None:
    resp = http.get("/v1/models/unknown")
    check_error(resp, 404, param=None, code="model_not_found", message=not_found_message("unknown"))


def test_list_and_retrieve_models(http: httpx.Client, client: openai.OpenAI) -> None:
    resp = http.get("/v1/models")
    assert resp.status_code == 200, resp.text
    listing = resp.json()
    assert_valid("ListModelsResponse", listing)
    assert MODEL in [m["id"] for m in listing["data"]]
    resp = http.get(f"/v1/models/{MODEL}")
    assert resp.status_code == 200, resp.text
    card = resp.json()
    assert_valid("Model", card)
    assert card["id"] == MODEL and card["object"] == "model"
    assert client.models.retrieve(MODEL).id == MODEL


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------

AUTH_ROUTES = [("POST", URL), ("GET", "/v1/models"), ("GET", f"/v1/models/{MODEL}")]


@pytest.mark.parametrize(("method", "path"), AUTH_ROUTES)
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, None, id="no-header"),
        pytest.param({"Authorization": ""}, None, id="empty-header"),
        pytest.param({"Authorization": "Bearer"}, None, id="bearer-no-key"),
        pytest.param({"Authorization": f"Basic {API_KEY}"}, None, id="basic-scheme"),
        pytest.param(
            {"Authorization": "Bearer sk-wrong-key-000000"}, "invalid_api_key", id="wrong"
        ),
        pytest.param({"Authorization": f"Bearer {API_KEY}x"}, "invalid_api_key", id="key-plus-x"),
    ],
)
def test_auth_refused(
    base_url: str, method: str, path: str, headers: dict[str, str], code: str | None
) -> None:
    resp = httpx.request(
        method, base_url + path, json=body() if method == "POST" else None, headers=headers
    )
    err = check_error(resp, 401, param=None, code=code)
    if code is None:
        assert "You didn't provide an API key" in err["message"], err
    else:
        assert err["message"].startswith("Incorrect API key provided: "), err
        assert API_KEY not in err["message"] and "wrong-key" not in err["message"], err


def test_auth_checked_before_body(base_url: str) -> None:
    """A client without a key learns nothing about its request."""
    resp = httpx.post(base_url + URL, content=b"{nope", headers={"Authorization": "Bearer x"})
    check_error(resp, 401, param=None, code="invalid_api_key")


def test_auth_via_sdk(base_url: str) -> None:
    bad = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_health_needs_no_key(base_url: str) -> None:
    resp = httpx.get(base_url + "/health")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nope"), ("POST", "/v1/completions"), ("GET", "/"), ("POST", "/v2/chat")],
)
def test_unknown_route(http: httpx.Client, method: str, path: str) -> None:
    resp = http.request(method, path)
    check_error(resp, 404, param=None, code=None, contains=(path,))


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", URL), ("PATCH", URL), ("DELETE", "/v1/models"), ("POST", "/v1/models")],
)
def test_wrong_method(http: httpx.Client, method: str, path: str) -> None:
    resp = http.request(method, path)
    check_error(resp, 405, param=None, code=None, contains=(method, path))


# --------------------------------------------------------------------------------------------
# Context window (8192 tokens per request)
# --------------------------------------------------------------------------------------------

LONG = [{"role": "user", "content": "hello " * 9000}]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"messages": LONG}, id="long-prompt"),
        pytest.param({"messages": LONG, "max_tokens": None}, id="long-prompt-no-max"),
        pytest.param({"max_tokens": 9000}, id="max-tokens-9000"),
        pytest.param({"max_tokens": None, "max_completion_tokens": 8192}, id="mct-8192"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_context_length_exceeded(http: httpx.Client, fields: dict[str, Any], stream: bool) -> None:
    payload = {k: v for k, v in body(**fields).items() if v is not None}
    if stream:
        payload["stream"] = True
    resp = http.post(URL, json=payload)
    assert "text/event-stream" not in resp.headers.get("content-type", "")
    assert b"data:" not in resp.content
    check_error(
        resp,
        400,
        param="messages",
        code="context_length_exceeded",
        contains=("maximum context length is 8192 tokens",),
    )


def test_context_length_exceeded_via_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=LONG, max_tokens=1, stream=True)  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"


# --------------------------------------------------------------------------------------------
# Extra servers: overload and no key
# --------------------------------------------------------------------------------------------


def test_overloaded() -> None:
    srv = Server("--api-key", API_KEY, "--max-waiting", "1", "--max-sequences", "1")
    try:
        payload = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count from one to fifty."}],
            # Long enough to keep the only sequence busy while the burst arrives, short
            # enough for 2 CPU cores (the running and the waiting request are both served).
            "max_tokens": 32,
            "temperature": 0,
        }
        headers = {"Authorization": f"Bearer {API_KEY}"}
        start = threading.Barrier(6)

        def send(_: int) -> httpx.Response:
            with httpx.Client(timeout=120) as c:
                start.wait()
                return c.post(srv.base_url + URL, json=payload, headers=headers)

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(send, range(6)))
        statuses = [r.status_code for r in responses]
        assert 503 in statuses, statuses
        assert 200 in statuses, statuses
        for resp in responses:
            if resp.status_code == 503:
                assert int(resp.headers["Retry-After"]) >= 1, resp.headers
                check_error(resp, 503, param=None, code="server_overloaded", type="server_error")
            else:
                data = check_ok(resp)
                assert data["choices"][0]["message"]["content"], data
                assert data["usage"]["completion_tokens"] >= 1, data
        # The queue drains: a new request after the burst is served.
        check_ok(httpx.post(srv.base_url + URL, json=body(), headers=headers, timeout=120))
    finally:
        srv.stop()


def test_open_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATD_API_KEYS", raising=False)
    srv = Server()
    try:
        check_ok(httpx.post(srv.base_url + URL, json=body(), timeout=120))
        resp = httpx.get(srv.base_url + "/v1/models", headers={"Authorization": "Bearer any"})
        assert resp.status_code == 200, resp.text
        assert "open" in srv.log().lower(), srv.log()
    finally:
        srv.stop()

"""Well-formed requests this text-only local model cannot honour (400 naming the
field), requests it accepts, and model lookup, in-process over the real app."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openapi_schemas import assert_valid

from .checks import HI, URL, VOCAB, body, check_error, check_ok, user
from .harness import MODEL

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
        body(verbosity="low"),
        "verbosity",
        "unsupported_parameter",
        ("Unsupported parameter: 'verbosity'", "reasoning models"),
        id="verbosity",
    ),
]


@pytest.mark.parametrize(("payload", "param", "code", "fragments"), CAPABILITY_CASES)
async def test_capability_refused(
    http: httpx.AsyncClient,
    payload: dict[str, Any],
    param: str | tuple[str, ...],
    code: str,
    fragments: tuple[str, ...],
) -> None:
    resp = await http.post(URL, json=payload)
    if isinstance(param, tuple):
        actual = resp.json().get("error", {}).get("param")
        assert actual in param, resp.text
        param = actual
    err = check_error(resp, 400, param=param, code=code, contains=fragments)
    assert str(param) in err["message"] or code == "unsupported_content_type", err


async def test_capability_refused_streaming_is_json(http: httpx.AsyncClient) -> None:
    """A refused streamed request is refused before any SSE byte."""
    resp = await http.post(URL, json=body(stream=True, verbosity="high"))
    check_error(resp, 400, param="verbosity", code="unsupported_parameter")
    assert b"data:" not in resp.content


async def test_capability_refused_via_sdk(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
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
        # docs/acceptance.md: what real clients send and the live API accepts
        pytest.param({"reasoning_effort": "high"}, None, id="reasoning-effort"),
        pytest.param({"reasoning_effort": "none"}, None, id="reasoning-effort-none"),
        pytest.param({"verbosity": "medium"}, None, id="verbosity-default"),
        pytest.param({"prompt_cache_key": "thread-1"}, None, id="prompt-cache-key"),
        pytest.param({"prompt_cache_retention": "24h"}, None, id="prompt-cache-retention"),
        pytest.param(
            {"prompt_cache_options": {"ttl": "30m", "mode": "explicit"}}, None, id="cache-options"
        ),
        pytest.param({"safety_identifier": "user-hash"}, None, id="safety-identifier"),
        pytest.param({"metadata": {"k": "v"}}, None, id="metadata-without-store"),
        pytest.param({"modalities": ["text"]}, None, id="modalities-text"),
        pytest.param({"store": True, "metadata": {"k": "v"}}, None, id="store-metadata"),
    ],
)
async def test_accepted(http: httpx.AsyncClient, fields: dict[str, Any], tier: str | None) -> None:
    data = check_ok(await http.post(URL, json=body(**fields)))
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert "reasoning_content" not in data["choices"][0]["message"]
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
async def test_unknown_model(http: httpx.AsyncClient, model: str) -> None:
    resp = await http.post(URL, json=body(model=model))
    check_error(resp, 404, param=None, code="model_not_found", message=not_found_message(model))


async def test_unknown_model_streaming_is_json(http: httpx.AsyncClient) -> None:
    resp = await http.post(URL, json=body(model="gpt-4o", stream=True))
    check_error(resp, 404, param=None, code="model_not_found")
    assert b"data:" not in resp.content


async def test_unknown_model_via_sdk(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-4o")


async def test_retrieve_unknown_model(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/models/unknown")
    check_error(resp, 404, param=None, code="model_not_found", message=not_found_message("unknown"))


async def test_list_and_retrieve_models(
    http: httpx.AsyncClient, client: openai.AsyncOpenAI
) -> None:
    resp = await http.get("/v1/models")
    assert resp.status_code == 200, resp.text
    listing = resp.json()
    assert_valid("ListModelsResponse", listing)
    assert MODEL in [m["id"] for m in listing["data"]]
    resp = await http.get(f"/v1/models/{MODEL}")
    assert resp.status_code == 200, resp.text
    card = resp.json()
    assert_valid("Model", card)
    assert card["id"] == MODEL and card["object"] == "model"
    assert (await client.models.retrieve(MODEL)).id == MODEL

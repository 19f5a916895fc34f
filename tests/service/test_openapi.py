"""chatd's ``/openapi.json`` describes the real routes and bodies (the fuzzer of
test_fuzz.py holds chatd to it), and the fixes the fuzzer asked for, one request each."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .checks import URL, check_error
from .harness import MODEL


async def openapi(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.get("/openapi.json")
    assert resp.status_code == 200
    return resp.json()


async def test_every_route_is_documented_with_its_errors(http: httpx.AsyncClient) -> None:
    doc = await openapi(http)
    paths = doc["paths"]
    assert set(paths) == {
        "/health",
        "/metrics",
        "/v1/models",
        "/v1/models/{model}",
        "/v1/channels",
        "/chatd/models",
        "/v1/chat/completions",
        "/v1/chat/completions/{completion_id}",
        "/v1/chat/completions/{completion_id}/messages",
        "/v1/responses",
        "/v1/responses/compact",
        "/v1/responses/{response_id}",
        "/v1/responses/{response_id}/cancel",
        "/v1/responses/{response_id}/input_items",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/completions",
        "/v1/embeddings",
        "/tokenize",
        "/detokenize",
    }
    creates = ("/v1/chat/completions", "/v1/responses", "/v1/completions")
    for create in (paths[p]["post"] for p in creates):
        assert set(create["responses"]) == {
            "200",
            "400",
            "401",
            "403",
            "404",
            "413",
            "415",
            "429",
            "500",
            "502",
            "503",
            "504",
        }
        assert set(create["responses"]["200"]["content"]) == {
            "application/json",
            "text/event-stream",
        }
        error = create["responses"]["429"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}
    for path, operations in paths.items():
        for method, op in operations.items():
            assert "422" not in op["responses"], (method, path)  # chatd's 400s, never 422
            # any route: a Host or web origin refused (api/origins.py), a drain or the
            # connection cap, a server error
            assert {"400", "403", "500", "503"} <= set(op["responses"]), (method, path)
            body = op.get("requestBody", {}).get("content", {})
            assert ("415" in op["responses"]) == ("application/json" in body), (method, path)
    messages = paths["/v1/messages"]["post"]
    assert {"200", "400", "401", "404", "413", "415", "429", "503", "529"} <= set(
        messages["responses"]
    )
    for status, answer in messages["responses"].items():
        if status != "200":  # every error on the Messages API's paths is Anthropic's
            error = answer["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/AnthropicError"}, status


async def test_create_bodies_are_the_contract_models(http: httpx.AsyncClient) -> None:
    schemas = (await openapi(http))["components"]["schemas"]
    chat = schemas["ChatRequest"]
    assert chat["required"] == ["model", "messages"]
    assert chat["additionalProperties"] is False
    assert {"messages", "tools", "response_format", "logit_bias"} <= set(chat["properties"])
    responses = schemas["ResponsesRequest"]
    assert {"input", "instructions", "previous_response_id"} <= set(responses["properties"])
    assert not [name for name in schemas if "_Bad" in name]  # error-wording branches dropped


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", URL, "GET, POST"),
        ("OPTIONS", URL, "GET, POST"),
        ("PUT", f"{URL}/chatcmpl-x", "DELETE, GET, POST"),
        ("PATCH", "/v1/responses/resp_x", "DELETE, GET"),
        ("GET", "/v1/responses", "POST"),
        ("DELETE", f"/v1/models/{MODEL}", "GET"),
    ],
)
async def test_405_names_every_allowed_method(
    http: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    resp = await http.request(method, path)
    check_error(resp, 405, param=None, code=None, contains=(method, path))
    assert resp.headers["allow"] == allow


async def test_a_logit_bias_key_with_a_newline_is_no_token_id(http: httpx.AsyncClient) -> None:
    resp = await http.post(
        URL,
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "logit_bias": {"12\n": 1},
        },
    )
    check_error(resp, 400, param="logit_bias", code="invalid_value", contains=("logit_bias",))


@pytest.mark.parametrize("key", ["metadata[]", "metadata[][a]", "metadata[a[b]"])
async def test_a_metadata_filter_must_name_its_key(http: httpx.AsyncClient, key: str) -> None:
    resp = await http.get(URL, params={key: "true"})
    check_error(resp, 400, param=key, code=None, contains=(key,))


async def test_a_list_query_parameter_given_twice_is_refused(http: httpx.AsyncClient) -> None:
    resp = await http.get(URL, params=[("metadata[k]", "a"), ("metadata[k]", "b")])
    check_error(resp, 400, param="metadata[k]", code=None, contains=("Duplicate",))

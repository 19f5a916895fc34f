"""Tests of tests/openapi_schemas.py: the OpenAI OpenAPI spec turned into jsonschema validators."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import openapi_schemas  # noqa: E402
from openapi_schemas import assert_valid, validator  # noqa: E402

SEEDS = Path("/work/shared/reference/seeds/response-formats.txt")

RESPONSE = "CreateChatCompletionResponse"
CHUNK = "CreateChatCompletionStreamResponse"

TARGETS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ChatCompletionList",
    "ChatCompletionMessageList",
    "ChatCompletionDeleted",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    "CreateChatCompletionRequest",
]


# --- seeds -------------------------------------------------------------------------------------


def _seed_text() -> str:
    if not SEEDS.exists():
        pytest.skip(f"{SEEDS} not available")
    return SEEDS.read_text()


def _seed_responses() -> dict[str, dict[str, Any]]:
    """The non-streamed bodies (a `{` alone on its line), keyed by finish_reason."""
    text, decoder, found = _seed_text(), json.JSONDecoder(), {}
    for match in re.finditer(r"^\{$", text, re.M):
        body, _ = decoder.raw_decode(text, match.start())
        found[body["choices"][0]["finish_reason"]] = body
    return found


def _seed_chunks() -> list[dict[str, Any]]:
    """Every streamed `data:` line that is valid JSON (a few seed lines have misplaced braces)."""
    chunks = []
    for line in _seed_text().splitlines():
        if line.startswith("data: {"):
            try:
                chunks.append(json.loads(line.removeprefix("data: ")))
            except ValueError:
                continue
    return chunks


def _spec_conformant(body: dict[str, Any]) -> dict[str, Any]:
    """The seeds send `"system_fingerprint": null`, which the spec does not allow (type string,
    not nullable): a conformant server omits the key (or sends a string)."""
    body = copy.deepcopy(body)
    if body.get("system_fingerprint", "") is None:
        del body["system_fingerprint"]
    return body


@pytest.fixture
def completion() -> dict[str, Any]:
    return _spec_conformant(_seed_responses()["stop"])


@pytest.fixture
def chunk() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1762947559,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }


def _fails(schema_name: str, instance: object, *fragments: str) -> str:
    """Assert that validation fails and that the report mentions every fragment."""
    with pytest.raises(AssertionError) as info:
        assert_valid(schema_name, instance)
    report = str(info.value)
    for fragment in fragments:
        assert fragment in report, report
    return report


# --- the API -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TARGETS)
def test_validators_build_and_are_cached(name: str) -> None:
    v = validator(name)
    assert validator(name) is v
    v.check_schema(v.schema)


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match="NoSuchSchema"):
        validator("NoSuchSchema")


def test_converted_schemas_are_valid_draft_2020_12() -> None:
    """Every schema reachable from the targets passes the 2020-12 metaschema."""
    from jsonschema import Draft202012Validator

    pending, seen = list(TARGETS), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        converted = openapi_schemas.schema(name)
        Draft202012Validator.check_schema(converted)
        pending += re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(converted))
    assert len(seen) > 50


def test_report_lists_every_error_with_its_json_path(completion: dict[str, Any]) -> None:
    del completion["object"]
    del completion["choices"][0]["message"]["refusal"]
    completion["usage"]["total_tokens"] = "42"
    report = _fails(
        RESPONSE,
        completion,
        "3 error(s)",
        "$: 'object' is a required property",
        "$.choices[0].message: 'refusal' is a required property",
        "$.usage.total_tokens: '42' is not of type 'integer'",
    )
    assert report.count("\n  - ") == 3


# --- chat.completion ---------------------------------------------------------------------------


@pytest.mark.parametrize("finish_reason", ["stop", "function_call"])
def test_seed_responses_validate(finish_reason: str) -> None:
    assert_valid(RESPONSE, _spec_conformant(_seed_responses()[finish_reason]))


def test_system_fingerprint_null_is_not_allowed_by_the_spec(completion: dict[str, Any]) -> None:
    completion["system_fingerprint"] = None
    _fails(RESPONSE, completion, "$.system_fingerprint: None is not of type 'string'")
    completion["system_fingerprint"] = "fp_123"
    assert_valid(RESPONSE, completion)


def test_tool_calls_response_validates(completion: dict[str, Any]) -> None:
    completion["choices"][0]["finish_reason"] = "tool_calls"
    message = completion["choices"][0]["message"]
    message["content"] = None
    message["tool_calls"] = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "call_2", "type": "custom", "custom": {"name": "g", "input": "x"}},
    ]
    assert_valid(RESPONSE, completion)
    message["tool_calls"][0]["type"] = "fn"
    _fails(RESPONSE, completion, "$.choices[0].message.tool_calls[0]")


def test_logprobs_response_validates(completion: dict[str, Any]) -> None:
    token = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    completion["choices"][0]["logprobs"] = {"content": [token], "refusal": None}
    assert_valid(RESPONSE, completion)


def test_minimal_response_validates() -> None:
    assert_valid(
        RESPONSE,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "length",
                }
            ],
        },
    )


def _pop(path: str):
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]

    return mutate


def _set(path: str, value: object):
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return mutate


RESPONSE_DEFECTS = {
    "missing refusal": _pop("choices.0.message.refusal"),
    "missing content": _pop("choices.0.message.content"),
    "missing role": _pop("choices.0.message.role"),
    "role user": _set("choices.0.message.role", "user"),
    "refusal not a string": _set("choices.0.message.refusal", 0),
    "missing object": _pop("object"),
    "wrong object": _set("object", "chat.completion.chunk"),
    "missing id": _pop("id"),
    "missing created": _pop("created"),
    "created as string": _set("created", "1762947788"),
    "created as float": _set("created", 1762947788.5),
    "missing model": _pop("model"),
    "missing choices": _pop("choices"),
    "missing logprobs": _pop("choices.0.logprobs"),
    "missing index": _pop("choices.0.index"),
    "index as bool": _set("choices.0.index", True),
    "null finish_reason": _set("choices.0.finish_reason", None),
    "unknown finish_reason": _set("choices.0.finish_reason", "eos"),
    "missing usage.total_tokens": _pop("usage.total_tokens"),
    "prompt_tokens as float": _set("usage.prompt_tokens", 29.5),
    "cached_tokens as string": _set("usage.prompt_tokens_details.cached_tokens", "0"),
    "unknown service_tier": _set("service_tier", "standard"),
    "metadata value not a string": _set("metadata", {"k": 1}),
    "function_call without arguments": _set("choices.0.message.function_call", {"name": "f"}),
}


@pytest.mark.parametrize("mutate", RESPONSE_DEFECTS.values(), ids=RESPONSE_DEFECTS.keys())
def test_defective_responses_fail(completion: dict[str, Any], mutate) -> None:
    mutate(completion)
    _fails(RESPONSE, completion)


@pytest.mark.parametrize(
    "tier", ["auto", "default", "flex", "scale", "priority", "fast", None], ids=str
)
def test_service_tier_values(completion: dict[str, Any], tier: str | None) -> None:
    completion["service_tier"] = tier
    assert_valid(RESPONSE, completion)


def test_no_additional_properties_restriction_on_responses(completion: dict[str, Any]) -> None:
    # The spec does not set additionalProperties on the response objects: extra keys pass.
    completion["x_extra"] = 1
    completion["choices"][0]["message"]["reasoning_content"] = "..."
    assert_valid(RESPONSE, completion)


# --- chat.completion.chunk ---------------------------------------------------------------------


def test_seed_chunks_validate() -> None:
    chunks = _seed_chunks()
    assert len(chunks) >= 9
    for body in chunks:
        assert_valid(CHUNK, _spec_conformant(body))


def test_chunk_with_null_usage_validates(chunk: dict[str, Any]) -> None:
    chunk["usage"] = None
    assert_valid(CHUNK, chunk)


def test_usage_chunk_with_empty_choices_validates(chunk: dict[str, Any]) -> None:
    chunk["choices"] = []
    chunk["usage"] = {"prompt_tokens": 29, "completion_tokens": 17, "total_tokens": 46}
    assert_valid(CHUNK, chunk)


def test_chunk_obfuscation_and_service_tier(chunk: dict[str, Any]) -> None:
    chunk.update(obfuscation="uDkAp8P7", service_tier="default", system_fingerprint="fp_1")
    assert_valid(CHUNK, chunk)
    chunk["obfuscation"] = None
    _fails(CHUNK, chunk, "$.obfuscation")


def test_chunk_final_delta_validates(chunk: dict[str, Any]) -> None:
    chunk["choices"][0].update(delta={}, finish_reason="stop")
    assert_valid(CHUNK, chunk)
    del chunk["choices"][0]["logprobs"]  # not required in chunks
    assert_valid(CHUNK, chunk)


def test_chunk_tool_call_delta_validates(chunk: dict[str, Any]) -> None:
    chunk["choices"][0]["delta"] = {
        "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}]
    }
    assert_valid(CHUNK, chunk)
    chunk["choices"][0]["delta"] = {"tool_calls": [{"function": {"arguments": "{}"}}]}
    _fails(CHUNK, chunk, "$.choices[0].delta.tool_calls[0]: 'index' is a required property")


CHUNK_DEFECTS = {
    "role 123": _set("choices.0.delta.role", 123),
    "role robot": _set("choices.0.delta.role", "robot"),
    "content 1": _set("choices.0.delta.content", 1),
    "missing delta": _pop("choices.0.delta"),
    "missing finish_reason": _pop("choices.0.finish_reason"),
    "missing index": _pop("choices.0.index"),
    "unknown finish_reason": _set("choices.0.finish_reason", "done"),
    "logprobs without refusal": _set("choices.0.logprobs", {"content": []}),
    "missing object": _pop("object"),
    "wrong object": _set("object", "chat.completion"),
    "missing id": _pop("id"),
    "missing created": _pop("created"),
    "missing model": _pop("model"),
    "choices not a list": _set("choices", {}),
    "usage without total_tokens": _set("usage", {"prompt_tokens": 1, "completion_tokens": 1}),
    "usage as string": _set("usage", ""),
}


@pytest.mark.parametrize("mutate", CHUNK_DEFECTS.values(), ids=CHUNK_DEFECTS.keys())
def test_defective_chunks_fail(chunk: dict[str, Any], mutate) -> None:
    mutate(chunk)
    _fails(CHUNK, chunk)


def test_chunk_role_123_reports_its_path(chunk: dict[str, Any]) -> None:
    chunk["choices"][0]["delta"]["role"] = 123
    _fails(CHUNK, chunk, "$.choices[0].delta.role: 123 is not of type 'string'")


# --- ChatCompletionTokenLogprob ----------------------------------------------------------------


def test_token_logprob() -> None:
    name = "ChatCompletionTokenLogprob"
    top = {"token": "a", "logprob": -1.5, "bytes": None}
    assert_valid(name, {"token": "a", "logprob": -1.5, "bytes": None, "top_logprobs": [top]})
    assert_valid(name, {"token": "a", "logprob": -9999.0, "bytes": [97], "top_logprobs": []})
    for key in ("token", "logprob", "bytes", "top_logprobs"):
        body = {"token": "a", "logprob": -1.5, "bytes": [97], "top_logprobs": []}
        del body[key]
        _fails(name, body, f"'{key}' is a required property")
    _fails(
        name,
        {"token": "a", "logprob": -1.5, "bytes": [97], "top_logprobs": [{"token": "a"}]},
        "$.top_logprobs[0]: 'logprob' is a required property",
    )


# --- other response objects --------------------------------------------------------------------


def test_error_response() -> None:
    body = {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}
    assert_valid("ErrorResponse", body)
    body["error"].update(param="temperature", code="decimal_above_max_value")
    assert_valid("ErrorResponse", body)
    for key in ("message", "type", "param", "code"):
        broken = copy.deepcopy(body)
        del broken["error"][key]
        _fails("ErrorResponse", broken, f"$.error: '{key}' is a required property")
    _fails("ErrorResponse", {"error": {**body["error"], "code": 404}}, "$.error.code")
    _fails("ErrorResponse", {"detail": "Not Found"}, "'error' is a required property")


def test_models() -> None:
    model = {"id": "smollm2", "object": "model", "created": 1686935002, "owned_by": "chatd"}
    assert_valid("Model", model)
    assert_valid("ListModelsResponse", {"object": "list", "data": [model]})
    assert_valid("ListModelsResponse", {"object": "list", "data": []})
    _fails("Model", {**model, "object": "models"}, "$.object")
    _fails("Model", {k: v for k, v in model.items() if k != "owned_by"}, "'owned_by'")
    _fails("ListModelsResponse", {"data": [model]}, "'object' is a required property")
    _fails("ListModelsResponse", {"object": "list", "data": [{"id": "x"}]}, "$.data[0]")


def test_chat_completion_list(completion: dict[str, Any]) -> None:
    body = {
        "object": "list",
        "data": [completion],
        "first_id": completion["id"],
        "last_id": completion["id"],
        "has_more": False,
    }
    assert_valid("ChatCompletionList", body)
    del body["data"][0]["choices"][0]["message"]["refusal"]
    _fails("ChatCompletionList", body, "$.data[0].choices[0].message")


def test_chat_completion_message_list() -> None:
    message = {
        "id": "chatcmpl-1-0",
        "role": "assistant",
        "content": "hi",
        "refusal": None,
        "content_parts": None,
    }
    body = {"object": "list", "data": [message], "first_id": "a", "last_id": "a", "has_more": False}
    assert_valid("ChatCompletionMessageList", body)
    message["content_parts"] = [{"type": "text", "text": "hi"}]
    assert_valid("ChatCompletionMessageList", body)
    del message["id"]
    _fails("ChatCompletionMessageList", body, "$.data[0]: 'id' is a required property")


def test_chat_completion_deleted() -> None:
    body = {"object": "chat.completion.deleted", "id": "chatcmpl-1", "deleted": True}
    assert_valid("ChatCompletionDeleted", body)
    _fails("ChatCompletionDeleted", {**body, "deleted": "true"}, "$.deleted")


# --- request -----------------------------------------------------------------------------------


def test_request() -> None:
    request = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "d"},
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        "temperature": 0.5,
        "top_p": None,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["a", "b"],
        "max_completion_tokens": 10,
        "logprobs": True,
        "top_logprobs": 2,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "seed": 1,
        "metadata": {"k": "v"},
    }
    assert_valid("CreateChatCompletionRequest", request)
    _fails("CreateChatCompletionRequest", {"model": "m"}, "'messages' is a required property")
    _fails("CreateChatCompletionRequest", {**request, "temperature": 2.5}, "$.temperature")
    _fails("CreateChatCompletionRequest", {**request, "stop": list("abcde")}, "$.stop")
    _fails("CreateChatCompletionRequest", {**request, "messages": []}, "$.messages")
    bad_role = {**request, "messages": [{"role": "robot", "content": "x"}]}
    _fails("CreateChatCompletionRequest", bad_role, "$.messages[0]")


# --- the OpenAPI -> JSON Schema rewrites -------------------------------------------------------


def _check(schema: dict[str, Any], instance: object) -> bool:
    from jsonschema import Draft202012Validator

    converted = openapi_schemas._convert(schema, "T")
    openapi_schemas._fix_one_of(converted, {}, [])
    return Draft202012Validator(converted).is_valid(instance)


def test_nullable_rewrite() -> None:
    enum = {"type": "string", "enum": ["a"], "nullable": True}
    assert _check(enum, None)
    assert _check(enum, "a")
    assert not _check(enum, "b")
    assert not _check({"type": "string", "enum": ["a"]}, None)
    ref_like = {"allOf": [{"type": "integer"}], "nullable": True}
    assert _check(ref_like, None)
    assert _check(ref_like, 1)
    assert not _check(ref_like, "1")
    assert not _check({"type": "integer", "nullable": False}, None)


def test_exclusive_minimum_rewrite() -> None:
    schema = {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert not _check(schema, 0)
    assert _check(schema, 0.1)


def test_one_of_rewrite() -> None:
    disjoint = {
        "oneOf": [
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["a"]}}},
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["b"]}}},
        ],
        "discriminator": {"propertyName": "type"},
    }
    converted = openapi_schemas._convert(disjoint, "T")
    openapi_schemas._fix_one_of(converted, {}, [])
    assert "oneOf" in converted
    assert "discriminator" not in converted
    overlapping = {"oneOf": [{"type": "object"}, {"type": "object", "required": ["x"]}]}
    assert _check(overlapping, {"x": 1})  # matches both branches: anyOf semantics
    assert not _check(overlapping, [])

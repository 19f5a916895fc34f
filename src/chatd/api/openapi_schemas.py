"""The component schemas of chatd's ``/openapi.json``: the request bodies generated from
the contract models (``ChatCompletionRequest``, ``CreateResponseRequest``), and the
response bodies chatd writes (answers, stored objects, lists, OpenAI's error).

Why generated and cleaned rather than copied from OpenAI's spec: the document must say
what *this* server accepts, so it comes from the models that decide it. The models carry
"never valid" branches (``_Bad*``) that exist only to word errors like OpenAI's; they are
dropped here, so that what the document calls valid is what chatd accepts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.completions_request import CompletionRequest
from chatd.protocol.messages_request import CountTokensRequest, MessagesRequest
from chatd.protocol.responses_request import CreateResponseRequest
from chatd.protocol.shapes import METADATA_MAX_KEY
from chatd.protocol.validation import MAX_DEPTH
from chatd.service.responses.compaction import compact_fields

__all__ = ["component_schemas"]

Json = dict[str, Any]

_REF = "#/components/schemas/"


def _nullable(schema: Json) -> Json:
    return {"anyOf": [schema, {"type": "null"}]}


_STR: Json = {"type": "string"}
_INT: Json = {"type": "integer"}
_BOOL: Json = {"type": "boolean"}
_OPT_STR = _nullable(_STR)
_OBJ: Json = {"type": "object"}


def _obj(required: dict[str, Json], optional: dict[str, Json] | None = None) -> Json:
    """An object with these required properties; others allowed (OpenAI adds fields)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


def _ref(name: str) -> Json:
    return {"$ref": _REF + name}


def _json_text(schema: Json) -> Json:
    """A string holding JSON that ``schema`` describes (an event's ``data``)."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def _list_of(item: Json, cursors: bool = True) -> Json:
    fields: dict[str, Json] = {
        "object": {"const": "list"},
        "data": {"type": "array", "items": item},
    }
    if cursors:
        fields.update(first_id=_OPT_STR, last_id=_OPT_STR, has_more=_BOOL)
    return _obj(fields)


def _response_schemas() -> dict[str, Json]:
    usage = _obj({"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT})
    message = _obj({"role": {"const": "assistant"}, "content": _OPT_STR})
    choice = _obj(
        {"index": _INT, "message": message, "finish_reason": _OPT_STR},
        {"logprobs": _nullable(_OBJ)},
    )
    return {
        "Error": _obj(
            {"error": _obj({"message": _STR, "type": _STR, "param": _OPT_STR, "code": _OPT_STR})}
        ),
        "ChatCompletion": _obj(
            {
                "id": _STR,
                "object": {"const": "chat.completion"},
                "created": _INT,
                "model": _STR,
                "choices": {"type": "array", "items": choice},
            },
            {"usage": _nullable(usage), "metadata": _nullable(_OBJ)},
        ),
        "ChatCompletionList": _list_of(_ref("ChatCompletion")),
        "ChatCompletionDeleted": _obj(
            {"object": {"const": "chat.completion.deleted"}, "id": _STR, "deleted": _BOOL}
        ),
        "ChatCompletionMessageList": _list_of(
            _obj({"id": _STR, "role": _STR}, {"content": _OPT_STR})
        ),
        "Response": _obj(
            {
                "id": _STR,
                "object": {"const": "response"},
                "created_at": {"type": "number"},
                "status": _STR,
                "model": _STR,
                "output": {"type": "array", "items": _obj({"type": _STR})},
            }
        ),
        "ResponseCompaction": _obj(
            {
                "id": _STR,
                "object": {"const": "response.compaction"},
                "created_at": _INT,
                "output": {"type": "array", "items": _obj({"type": _STR})},
                "usage": _OBJ,
            }
        ),
        "ResponseDeleted": _obj({"object": {"const": "response"}, "id": _STR, "deleted": _BOOL}),
        "ChatCompletionChunk": _obj(
            {
                "id": _STR,
                "object": {"const": "chat.completion.chunk"},
                "created": _INT,
                "model": _STR,
                "choices": {
                    "type": "array",
                    "items": _obj({"index": _INT, "delta": _OBJ, "finish_reason": _OPT_STR}),
                },
            }
        ),
        # one server-sent event (OpenAPI 3.1: a stream's ``schema`` describes each event)
        "ChatCompletionEvent": _obj(
            {
                "data": {
                    "anyOf": [
                        {"const": "[DONE]"},
                        _json_text({"anyOf": [_ref("ChatCompletionChunk"), _ref("Error")]}),
                    ]
                }
            }
        ),
        "ResponseEvent": _obj(
            {
                "event": _STR,
                "data": _json_text(_obj({"type": _STR, "sequence_number": _INT})),
            }
        ),
        "ResponseItemList": _list_of(_obj({"type": _STR})),
        "Model": _obj(
            {"id": _STR, "object": {"const": "model"}, "created": _INT, "owned_by": _STR},
            # chatd's local models (llama.cpp router mode's shape): loaded on demand
            {"status": _obj({"value": {"enum": ["loaded", "loading", "unloaded"]}})},
        ),
        "ModelList": _list_of(_ref("Model"), cursors=False),
        "ChannelList": _obj(
            {
                "object": {"const": "list"},
                "data": {"type": "array", "items": _OBJ},
                "models": {"type": "array", "items": _obj({"id": _STR, "available": _BOOL})},
            }
        ),
        "ModelStateList": _obj(
            {
                "object": {"const": "list"},
                "data": {"type": "array", "items": _ref("ModelState")},
            }
        ),
        "ModelState": _obj(
            {
                "object": {"const": "chatd.model_state"},
                "id": _STR,
                "available": _BOOL,
                "reason": {"type": ["string", "null"]},
                "routes": {"type": "array", "items": _ref("RouteState")},
            }
        ),
        "RouteState": _obj(
            {
                "name": _STR,
                "kind": {"enum": ["local", "channel"]},
                "state": {"enum": ["loaded", "loading", "unloaded", "available", "cooling_down"]},
            }
        ),
        # Without a valid key (where keys are required) only ``status``; a key sees the
        # local models it may use, the operator every one and, draining, ``in_flight``.
        "Health": _obj(
            {"status": {"enum": ["ok", "draining"]}},
            {
                "in_flight": _INT,
                "models": {
                    "type": "object",
                    "additionalProperties": _obj(
                        {"loaded": _BOOL, "state": {"enum": ["loaded", "loading", "unloaded"]}}
                    ),
                },
            },
        ),
    }


def _without_bad_branches(node: Any) -> Any:
    """A copy of ``node`` with every ``_Bad*`` branch of a union dropped (a union left
    with one branch becomes that branch)."""
    if isinstance(node, list):
        return [_without_bad_branches(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: Json = {}
    for key, value in node.items():
        if key in ("oneOf", "anyOf"):
            value = [b for b in value if not str(b.get("$ref", "")).startswith(_REF + "_Bad")]
        elif key == "discriminator":
            mapping = {k: v for k, v in value.get("mapping", {}).items() if "/_Bad" not in v}
            value = {**value, "mapping": mapping}
        out[key] = _without_bad_branches(value)
    for key in ("oneOf", "anyOf"):
        if key in out and len(out[key]) == 1 and "discriminator" not in out:
            (only,) = out.pop(key)
            out.update(only)
    return out


def _request_schemas(model: type[BaseModel], name: str) -> dict[str, Json]:
    """``model``'s JSON schema and its definitions, cleaned, with ``_Bad*`` dropped.
    Definitions are prefixed with ``name`` (both contracts have a ``StreamOptions``...)."""
    schema = model.model_json_schema(ref_template=_REF + name + "{model}")
    defs = schema.pop("$defs", {})
    prefixed = _REF + name + "_Bad"
    out = {
        name + key: _without_bad_branches(_rebase(value, prefixed))
        for key, value in defs.items()
        if not key.startswith("_Bad")
    }
    out[name + "Request"] = _without_bad_branches(_rebase(schema, prefixed))
    return out


def _rebase(node: Any, bad_prefix: str) -> Any:
    """``$ref``s to a prefixed ``_Bad*`` are written as the plain ``_Bad*`` the cleaner
    recognises."""
    if isinstance(node, list):
        return [_rebase(n, bad_prefix) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rebase(v, bad_prefix) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(bad_prefix):
        out["$ref"] = _REF + "_Bad" + ref[len(bad_prefix) :]
    if "mapping" in out and isinstance(out["mapping"], dict):
        out["mapping"] = {
            k: (_REF + "_Bad" + v[len(bad_prefix) :] if v.startswith(bad_prefix) else v)
            for k, v in out["mapping"].items()
        }
    return out


def _given(field: str, schema: Json | None = None) -> Json:
    """The condition "``field`` is given" (null means not given), or is ``schema``."""
    return {
        "properties": {field: schema or {"not": {"type": "null"}}},
        "required": [field],
    }


def _absent(field: str) -> Json:
    return {"not": _given(field)}


def _one_of_given(*fields: str) -> Json:
    return {"anyOf": [_given(f) for f in fields]}


_TOOLS_GIVEN = _given("tools", {"type": "array", "minItems": 1})
_NAMES = (
    "A named tool_choice (or function_call) names a tool (function) of the request; tool"
    " names are unique. Integers are written without a fraction (16, not 16.0)."
    f" Objects and arrays nest at most {MAX_DEPTH} levels deep, the body being level 1"
    " (a 400 naming the field that nests deeper)."
)
_REFERENCES = (
    " previous_response_id and item references name stored objects of the caller: one that"
    " does not exist is a 400 (previous_response_not_found), as OpenAI's."
)


def _key_names(request: Json, field: str, names: Json) -> None:
    """The object ``field`` of ``request`` (or null) has keys like ``names``."""
    for branch in request["properties"][field]["anyOf"]:
        if branch.get("type") == "object":
            branch["propertyNames"] = names


def _cross_field_rules(schemas: dict[str, Json]) -> None:
    """The checks the models make across fields, in JSON Schema, so that the document
    calls valid only what chatd accepts. Names that must refer to each other cannot be
    said in JSON Schema: the description says them."""
    chat = schemas["ChatRequest"]
    chat["properties"]["model"]["minLength"] = 1
    _key_names(chat, "logit_bias", {"pattern": "^[0-9]+$"})
    _key_names(chat, "metadata", {"maxLength": METADATA_MAX_KEY})
    chat["description"] = _NAMES
    chat["allOf"] = [
        {"if": _given("stream_options"), "then": _given("stream", {"const": True})},
        {"if": _given("top_logprobs"), "then": _given("logprobs", {"const": True})},
        {"if": _given("functions"), "then": {"not": _TOOLS_GIVEN}},
        {"if": _given("tool_choice"), "then": _TOOLS_GIVEN},
        {"if": _given("parallel_tool_calls"), "then": _TOOLS_GIVEN},
        {"if": _given("function_call"), "then": _given("functions")},
    ]
    schemas["ChatFileData"]["anyOf"] = [_one_of_given("file_data", "file_id")]
    schemas["ChatAssistantMessage"]["allOf"] = [
        _one_of_given("content", "tool_calls", "function_call", "refusal", "audio")
    ]
    responses = schemas["ResponsesRequest"]
    _key_names(responses, "metadata", {"maxLength": METADATA_MAX_KEY})
    responses["description"] = _NAMES + _REFERENCES
    responses["allOf"] = [
        {"if": _given("stream_options"), "then": _given("stream", {"const": True})},
        {"if": _given("conversation"), "then": _absent("previous_response_id")},
        {"if": _given("tool_choice", {"const": "required"}), "then": _TOOLS_GIVEN},
    ]


def _messages_schemas() -> dict[str, Json]:
    """Anthropic's Messages API's answers and its error (every error on its paths)."""
    count = {"type": "integer", "minimum": 0}
    usage = _obj(
        {"input_tokens": count, "output_tokens": count},
        {"cache_read_input_tokens": count, "cache_creation_input_tokens": count},
    )
    block = {
        "oneOf": [
            _obj({"type": {"const": "text"}, "text": _STR}),
            _obj({"type": {"const": "tool_use"}, "id": _STR, "name": _STR, "input": _OBJ}),
        ]
    }
    reasons = {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]}
    return {
        "AnthropicError": _obj(
            {
                "type": {"const": "error"},
                "error": _obj({"type": _STR, "message": _STR}),
            },
            {"request_id": _STR},
        ),
        "Message": _obj(
            {
                "id": _STR,
                "type": {"const": "message"},
                "role": {"const": "assistant"},
                "model": _STR,
                "content": {"type": "array", "items": block},
                "stop_reason": reasons,
                "stop_sequence": _OPT_STR,
                "usage": usage,
            }
        ),
        # each event's data: ``event: <type>`` names it (message_start, ping,
        # content_block_start/delta/stop, message_delta, message_stop, error)
        "MessageEvent": _json_text(_obj({"type": _STR})),
        "MessageTokensCount": _obj({"input_tokens": count}),
    }


def _completions_schemas(schemas: dict[str, Json]) -> None:
    """The legacy Completions API: its prompt's four shapes (the model checks them by
    hand, in OpenAI's words), its rules across fields, and its answers."""
    request = schemas["CompletionsRequest"]
    ids = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
    request["properties"]["prompt"] = {
        "anyOf": [
            _STR,
            {"type": "array", "minItems": 1, "items": _STR},
            ids,
            {"type": "array", "minItems": 1, "items": ids},
            {"type": "null"},
        ]
    }
    request["properties"]["model"]["minLength"] = 1
    request["required"] = ["model", "prompt"]
    _key_names(request, "logit_bias", {"pattern": "^[0-9]+$"})
    request["description"] = (
        "best_of is at least n (a 400 naming best_of); min_tokens at most max_tokens"
        " (default 16). Token ids are the served model's (ids beyond its vocabulary: a 400"
        " naming prompt)."
    )
    request["allOf"] = [
        {"if": _given("stream_options"), "then": _given("stream", {"const": True})},
        {
            "if": _given("stream", {"const": True}),
            "then": {"properties": {"best_of": {"anyOf": [{"const": 1}, {"type": "null"}]}}},
        },
    ]
    top = {"type": "object", "additionalProperties": {"type": "number"}}
    logprobs = _obj(
        {
            "tokens": {"type": "array", "items": _STR},
            "token_logprobs": {"type": "array", "items": {"type": ["number", "null"]}},
            "top_logprobs": {"type": "array", "items": _nullable(top)},
            "text_offset": {"type": "array", "items": _INT},
        }
    )
    reason = {"anyOf": [{"enum": ["stop", "length", "content_filter"]}, {"type": "null"}]}
    choice = _obj(
        {"text": _STR, "index": _INT, "logprobs": _nullable(logprobs), "finish_reason": reason}
    )
    usage = _obj({"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT})
    schemas["TextCompletion"] = _obj(
        {
            "id": _STR,
            "object": {"const": "text_completion"},
            "created": _INT,
            "model": _STR,
            "choices": {"type": "array", "items": choice},
        },
        {"usage": _nullable(usage), "system_fingerprint": _OPT_STR},
    )
    schemas["TextCompletionEvent"] = _obj(
        {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    _json_text({"anyOf": [_ref("TextCompletion"), _ref("Error")]}),
                ]
            }
        }
    )


def component_schemas() -> dict[str, Json]:
    """Every schema ``/openapi.json`` names under ``components.schemas``."""
    schemas = {
        **_request_schemas(ChatCompletionRequest, "Chat"),
        **_request_schemas(CreateResponseRequest, "Responses"),
        **_request_schemas(MessagesRequest, "Messages"),
        **_request_schemas(CountTokensRequest, "CountTokens"),
        **_request_schemas(CompletionRequest, "Completions"),
        **_response_schemas(),
        **_messages_schemas(),
    }
    schemas["ResponsesCompactRequest"] = _compact_request(schemas["ResponsesRequest"])
    _cross_field_rules(schemas)
    _completions_schemas(schemas)
    return schemas


def _compact_request(create: Json) -> Json:
    """``POST /v1/responses/compact``'s body: the create request's fields it takes
    (service/responses/compaction.py), none other."""
    names = compact_fields()
    return {
        **{k: v for k, v in create.items() if k not in ("properties", "required", "title")},
        "title": "ResponsesCompactRequest",
        "properties": {k: v for k, v in create["properties"].items() if k in names},
        "required": ["model"],
        "additionalProperties": False,
        "description": "The conversation to compact: ends with no compaction_trigger item"
        " (the endpoint adds it). Item references and previous_response_id name stored"
        " objects of the caller; compaction items are this server's, for this caller.",
    }

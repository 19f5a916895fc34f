"""chatd's ``/openapi.json``: every route, its parameters, request body and every
status it can answer, built from the contract models (openapi_schemas.py).

Why by hand rather than FastAPI's generator: the create routes are plain Starlette
routes (FastAPI does not see them), the stored routes read their query parameters and
bodies themselves (the contract's parsers word the errors), and FastAPI would document
a 422 chatd never sends. The document is what property-based fuzzing
(tests/service/test_fuzz.py) holds chatd to."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import FastAPI

from chatd.api.openapi_embeddings import embeddings_schemas
from chatd.api.openapi_schemas import component_schemas
from chatd.api.tokenize_openapi import tokenize_paths, tokenize_schemas
from chatd.protocol.responses_request import IncludeValue
from chatd.protocol.shapes import METADATA_MAX_KEY, METADATA_MAX_VALUE
from chatd.protocol.stored import MAX_FILTERS, MAX_ID, MAX_MODEL

__all__ = ["install_openapi", "openapi_document"]

Json = dict[str, Any]

_REASONS = {
    200: "OK",
    400: "Invalid request, or a Host name this server does not answer to (OpenAI error)",
    401: "Missing or invalid API key (OpenAI error)",
    403: "A web page of an origin not allowed (--cors-origin) (OpenAI error)",
    404: "No such object or model (OpenAI error)",
    413: "Request body too large (OpenAI error)",
    415: "The body is not declared as application/json (OpenAI error)",
    429: "Rate limited (OpenAI error)",
    500: "Server error (OpenAI error)",
    502: "An upstream channel refused chatd itself: its key, its model (OpenAI error)",
    503: "Overloaded, unavailable, shutting down or at its connection limit: retry later"
    " (OpenAI error)",
    504: "The generation ran past the server's request timeout (OpenAI error)",
    529: "The engine's queue is full: retry shortly (Anthropic error)",
}
_JSON = "application/json"
# What any request may get, whatever its route (api/origins.py, api/drain.py,
# api/connections.py): a Host not allowed, a web page's Origin not allowed, a drain or
# the connection cap, and a server error.
_ANY_ROUTE = (400, 403, 503, 500)


def _ref(name: str) -> Json:
    return {"$ref": "#/components/schemas/" + name}


def _error(status: int, schema: str = "Error") -> Json:
    reason = _REASONS[status]
    if schema != "Error":  # the Messages API's paths answer Anthropic's error
        reason = reason.replace("(OpenAI error)", "(Anthropic error)")
    return {"description": reason, "content": {_JSON: {"schema": _ref(schema)}}}


def _ok(schema: str | None, event: str | None = None) -> Json:
    """200 with ``schema`` as JSON, or as server-sent events (each one ``event``)."""
    content: Json = {_JSON: {"schema": _ref(schema)}} if schema else {}
    if event:
        content["text/event-stream"] = {"schema": _ref(event)}
    return {"description": _REASONS[200], "content": content}


def _links(param: str, *operations: str) -> Json:
    """What an answer's ``id`` opens, once stored (``store``: a chat completion is not
    stored by default, a response is): OpenAPI links."""
    return {
        op[0].upper() + op[1:]: {"operationId": op, "parameters": {param: "$response.body#/id"}}
        for op in operations
    }


def _param(name: str, where: str, schema: Json, **extra: Any) -> Json:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, **extra}


def _operation(
    op_id: str,
    summary: str,
    ok: Json,
    errors: tuple[int, ...],
    params: list[Json] | None = None,
    body: str | None = None,
    public: bool = False,
    error: str = "Error",
) -> Json:
    statuses = sorted({*errors, *_ANY_ROUTE})
    op: Json = {
        "operationId": op_id,
        "summary": summary,
        "responses": {"200": ok, **{str(s): _error(s, error) for s in statuses}},
    }
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": _ref(body)}}}
    op["security"] = [] if public else [{"bearer": []}]
    if error == "AnthropicError":  # Anthropic's clients send x-api-key
        op["security"].append({"apiKey": []})
    return op


_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100})
_AFTER = _param("after", "query", {"type": "string", "maxLength": MAX_ID})
_ORDER = _param("order", "query", {"enum": ["asc", "desc"]})
_INCLUDE = _param(
    "include",
    "query",
    {"type": "array", "items": {"enum": list(get_args(IncludeValue))}},
    style="form",
    explode=True,
)
_CREATE = (400, 401, 404, 413, 415, 429, 502, 503, 504)
_STORED = (401, 404)


def _cid() -> Json:
    return _param("completion_id", "path", {"type": "string"})


def _rid() -> Json:
    return _param("response_id", "path", {"type": "string"})


def _chat_paths() -> dict[str, Json]:
    base = "/v1/chat/completions"
    metadata = _param(
        "metadata",
        "query",
        # metadata[key]=value: a key without brackets, a value no object (any is a string);
        # as many filters as a metadata object has pairs, within a pair's bounds
        {
            "type": "object",
            "maxProperties": MAX_FILTERS,
            "propertyNames": {"pattern": r"^[^\[\]]+$", "maxLength": METADATA_MAX_KEY},
            "additionalProperties": {
                "not": {"type": ["object", "array"]},
                "maxLength": METADATA_MAX_VALUE,
            },
        },
        style="deepObject",
        explode=True,
    )
    return {
        base: {
            "post": _operation(
                "createChatCompletion",
                "Create a chat completion (a JSON body, or server-sent events with stream)",
                {
                    **_ok("ChatCompletion", "ChatCompletionEvent"),
                    "links": _links(
                        "completion_id",
                        "getChatCompletion",
                        "updateChatCompletion",
                        "deleteChatCompletion",
                        "getChatCompletionMessages",
                    ),
                },
                _CREATE,
                body="ChatRequest",
            ),
            "get": _operation(
                "listChatCompletions",
                "List stored chat completions",
                _ok("ChatCompletionList"),
                (400, 401, 404),  # 404: an ``after`` that is no stored completion
                [
                    _AFTER,
                    _LIMIT,
                    _ORDER,
                    _param("model", "query", {"type": "string", "maxLength": MAX_MODEL}),
                    metadata,
                ],
            ),
        },
        base + "/{completion_id}": {
            "get": _operation(
                "getChatCompletion",
                "Get a stored chat completion",
                _ok("ChatCompletion"),
                _STORED,
                [_cid()],
            ),
            "post": _operation(
                "updateChatCompletion",
                "Update a stored chat completion's metadata",
                _ok("ChatCompletion"),
                (400, 401, 404, 413, 415),
                [_cid()],
                body="ChatCompletionUpdate",
            ),
            "delete": _operation(
                "deleteChatCompletion",
                "Delete a stored chat completion",
                _ok("ChatCompletionDeleted"),
                _STORED,
                [_cid()],
            ),
        },
        base + "/{completion_id}/messages": {
            "get": _operation(
                "getChatCompletionMessages",
                "List a stored chat completion's messages",
                _ok("ChatCompletionMessageList"),
                (400, 401, 404),
                [_cid(), _AFTER, _LIMIT, _ORDER],
            ),
        },
    }


def _responses_paths() -> dict[str, Json]:
    base = "/v1/responses"
    retrieve = [
        _rid(),
        _INCLUDE,
        _param("stream", "query", {"const": False}),
        _param("starting_after", "query", {"type": "integer"}),
        _param("include_obfuscation", "query", {"type": "boolean"}),
    ]
    return {
        base: {
            "post": _operation(
                "createResponse",
                "Create a model response (a JSON body, or server-sent events with stream)",
                {
                    **_ok("Response", "ResponseEvent"),
                    "links": _links(
                        "response_id",
                        "getResponse",
                        "deleteResponse",
                        "cancelResponse",
                        "listInputItems",
                    ),
                },
                _CREATE,
                body="ResponsesRequest",
            )
        },
        base + "/compact": {
            "post": _operation(
                "compactResponse",
                "Compact a conversation: its user messages and one sealed compaction item"
                " (docs/compaction.md)",
                _ok("ResponseCompaction"),
                _CREATE,
                body="ResponsesCompactRequest",
            )
        },
        base + "/{response_id}": {
            "get": _operation(
                "getResponse", "Get a stored response", _ok("Response"), _STORED + (400,), retrieve
            ),
            "delete": _operation(
                "deleteResponse",
                "Delete a stored response",
                _ok("ResponseDeleted"),
                _STORED,
                [_rid()],
            ),
        },
        base + "/{response_id}/cancel": {
            "post": _operation(
                "cancelResponse",
                "Cancel a background response (chatd runs none: a 400 for a stored one)",
                _ok("Response"),
                (400, 401, 404),
                [_rid()],
            )
        },
        base + "/{response_id}/input_items": {
            "get": _operation(
                "listInputItems",
                "List a stored response's input items",
                _ok("ResponseItemList"),
                (400, 401, 404),
                [_rid(), _AFTER, _LIMIT, _ORDER, _INCLUDE],
            )
        },
    }


def _messages_paths() -> dict[str, Json]:
    """Anthropic's Messages API: its errors are Anthropic's; a full queue is its 529."""
    return {
        "/v1/messages": {
            "post": _operation(
                "createMessage",
                "Create a message, Anthropic's Messages API (a JSON body, or server-sent"
                " events with stream)",
                _ok("Message", "MessageEvent"),
                (*_CREATE, 529),
                body="MessagesRequest",
                error="AnthropicError",
            )
        },
        "/v1/messages/count_tokens": {
            "post": _operation(
                "countMessageTokens",
                "Count a message request's prompt tokens (Anthropic's Messages API)",
                _ok("MessageTokensCount"),
                (400, 401, 404, 413, 415, 429, 502, 503),
                body="CountTokensRequest",
                error="AnthropicError",
            )
        },
    }


def _completions_paths() -> dict[str, Json]:
    return {
        "/v1/completions": {
            "post": _operation(
                "createCompletion",
                "Create a completion of a raw prompt, the legacy Completions API (a JSON"
                " body, or server-sent events with stream)",
                _ok("TextCompletion", "TextCompletionEvent"),
                _CREATE,
                body="CompletionsRequest",
            )
        },
    }


def _embeddings_paths() -> dict[str, Json]:
    return {
        "/v1/embeddings": {
            "post": _operation(
                "createEmbedding",
                "Embed text or token lists as vectors",
                _ok("EmbeddingList"),
                _CREATE,
                body="EmbeddingsRequest",
            )
        }
    }


def _server_paths() -> dict[str, Json]:
    operator = (401, 404)  # other keys see these as absent
    metrics_ok = {
        "description": "Prometheus exposition",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    return {
        "/health": {
            "get": _operation(
                "health",
                "Liveness; with a key, the states of the local models it may use",
                _ok("Health"),
                (),
                public=True,
            )
        },
        "/v1/models": {
            "get": _operation("listModels", "List the models", _ok("ModelList"), (401,))
        },
        "/v1/models/{model}": {
            "get": _operation(
                "retrieveModel",
                "Get a model",
                _ok("Model"),
                (401, 404),
                [_param("model", "path", {"type": "string"})],
            )
        },
        "/chatd/models": {
            "get": _operation(
                "listModelStates",
                "Every model id with its routes' states",
                _ok("ModelStateList"),
                (401,),
            )
        },
        "/v1/channels": {
            "get": _operation(
                "listChannels", "Upstream channels (operator)", _ok("ChannelList"), operator
            )
        },
        "/metrics": {
            "get": _operation("metrics", "Prometheus metrics (operator)", metrics_ok, operator)
        },
    }


def openapi_document(app: FastAPI) -> Json:
    schemas = {**component_schemas(), **embeddings_schemas()}
    served = [card["id"] for card in app.state.services.models.cards()]
    requests = ("ChatRequest", "ResponsesRequest", "MessagesRequest", "CountTokensRequest")
    for request in (*requests, "CompletionsRequest", "EmbeddingsRequest"):
        # the served ids, as examples: a client (or a fuzzer) reaches a real answer
        schemas[request]["properties"]["model"]["examples"] = served
    local = app.state.services.models.local()
    vocabs = [m.n_vocab for m in local if m.n_vocab is not None]
    schemas.update(
        tokenize_schemas(schemas["ChatRequest"], min(vocabs, default=None), [m.id for m in local])
    )
    schemas["ChatCompletionUpdate"] = {
        "type": "object",
        "properties": {"metadata": schemas["ChatRequest"]["properties"]["metadata"]},
        "required": ["metadata"],
        "additionalProperties": False,
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": app.title, "version": app.version},
        "paths": {
            **_server_paths(),
            **_chat_paths(),
            **_responses_paths(),
            **_messages_paths(),
            **_completions_paths(),
            **_embeddings_paths(),
            **tokenize_paths(_operation, _ok),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }


def install_openapi(app: FastAPI) -> None:
    """``app.openapi()`` (served at ``/openapi.json``) returns this document, built once."""

    def openapi() -> Json:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

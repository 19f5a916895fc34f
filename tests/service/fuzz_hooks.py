"""Schemathesis hooks for test_fuzz.py (loaded by the ``st`` subprocess through
``SCHEMATHESIS_HOOKS``).

The one rule of chatd's request contracts JSON Schema cannot state is a reference by
name: a forced tool (``tool_choice``, ``function_call``) names a tool of the same
request, and tool names are unique. ``/openapi.json`` says so in the request's
description; schema-valid bodies that break it are not generated as positive data (as
negative data they stay, and must be rejected)."""

from __future__ import annotations

from typing import Any

import schemathesis


def _names(tools: Any, kinds: tuple[str, ...]) -> list[tuple[str, Any]] | None:
    """(type, name) of each tool of these kinds; None when ``tools`` is no list."""
    if not isinstance(tools, list):
        return None
    names = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") not in kinds:
            continue
        inner = tool.get(tool["type"], tool)  # chat nests {"function": {...}}
        names.append((tool["type"], inner.get("name") if isinstance(inner, dict) else None))
    return names


def _chat_names_agree(body: dict[str, Any]) -> bool:
    names = _names(body.get("tools"), ("function", "custom")) or []
    if len(set(names)) != len(names):
        return False
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        inner = choice.get(choice["type"])
        if not isinstance(inner, dict) or (choice["type"], inner.get("name")) not in names:
            return False
    call = body.get("function_call")
    functions = body.get("functions")
    if isinstance(call, dict) and isinstance(functions, list):
        return call.get("name") in {f.get("name") for f in functions if isinstance(f, dict)}
    return True


def _is_reference(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("type") in (None, "item_reference")
        and (set(item) <= {"type", "id"})
    )


def _responses_names_agree(body: dict[str, Any]) -> bool:
    if body.get("previous_response_id") is not None:
        return False  # a drawn id names no stored response: a 400, as OpenAI's
    items = body.get("input")
    if isinstance(items, list) and any(_is_reference(i) for i in items):
        return False  # likewise a drawn item reference
    names = _names(body.get("tools"), ("function",)) or []
    if len(set(names)) != len(names):
        return False
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        return ("function", choice.get("name")) in names
    return True


def _completions_fields_agree(body: dict[str, Any]) -> bool:
    """best_of at least n, min_tokens at most max_tokens: rules between two numbers,
    which JSON Schema cannot state (the request's description says them)."""
    n, best_of = body.get("n") or 1, body.get("best_of")
    if isinstance(best_of, int) and isinstance(n, int) and best_of < n:
        return False
    budget = body.get("max_tokens")
    budget = 16 if budget is None else budget
    low = body.get("min_tokens")
    return not (isinstance(low, int) and isinstance(budget, int) and low > budget)


_RULES = {
    "/v1/chat/completions": _chat_names_agree,
    "/v1/responses": _responses_names_agree,
    "/v1/completions": _completions_fields_agree,
    "/v1/responses/compact": _responses_names_agree,
    "/tokenize": _chat_names_agree,  # its chat form takes the chat request's tools
}


# The Messages API's refusals of schema-valid requests, by the start of their message
# (Anthropic's errors have no code): what the served model cannot do (images, thinking,
# server tools, MCP: "... not supported by `model`"), a prompt longer than its context,
# a tool schema the grammar cannot take, and the rules between fields and messages JSON
# Schema cannot state (a forced tool names a tool of the request; tool_use and
# tool_result pair across messages; the conversation ends with a user message).
_MESSAGES_REFUSALS = (
    "not supported by `",
    "prompt is too long",
    "Invalid schema for function",
    "Invalid or unsupported",
    "Unsupported parameter",
    "tool_choice: ",
    "`tool_use` ids were found",
    "unexpected `tool_use_id`",
    "does not support assistant message prefill",
    "messages: at least one message is required",
    "The request body is nested too deeply",
)


def _messages_refusal(response: Any) -> bool:
    try:
        message = response.json()["error"]["message"]
    except Exception:
        return False
    return any(fragment in message for fragment in _MESSAGES_REFUSALS)


# Refusals that depend on the served model, not on the request's shape.
_MODEL_LIMITS = {"unsupported_parameter", "unsupported_content_type", "context_length_exceeded"}


def _error_code(response: Any) -> tuple[Any, Any]:
    """(code, param) of an OpenAI error body."""
    try:
        error = response.json()["error"]
        return error["code"], error["param"]
    except Exception:
        return None, None


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Schema-valid requests chatd refuses for a reason its document states: what the
    served model cannot do (a field or content it cannot honour, 400
    ``unsupported_parameter`` or ``unsupported_content_type``; more tokens than its
    context, ``context_length_exceeded``; a logit_bias token beyond its vocabulary: the
    schema says what is well formed, not what each model can do), a tool message
    answering no tool call of the message before it (a reference), JSON mode without the
    word JSON, and the cancel of a response that was not a background one (chatd runs
    none; OpenAI's 400)."""
    if type(failure).__name__ != "RejectedPositiveData" or response.status_code != 400:
        return True
    if case.path.startswith("/v1/messages"):
        return not _messages_refusal(response)
    code, param = _error_code(response)
    if code in _MODEL_LIMITS:
        return False
    if param is not None and param.endswith(".tool_call_id"):
        return False  # answers no tool call of the message before it: a reference
    beyond_vocabulary = ("Token ids of", "vocabulary has", "in the model's vocabulary")
    if any(s in response.text for s in beyond_vocabulary):
        return False  # a token (logit_bias, a prompt's id, an embedding input) past the vocabulary
    if code == "invalid_encrypted_content":
        return False  # a drawn compaction item: only this server's sealed ones open
    if "the word 'json'" in response.text:
        return False  # JSON mode: the conversation must mention JSON (OpenAI's rule)
    return not case.path.endswith("/cancel")


def _integral_floats_as_ints(value: Any) -> Any:
    """682.0 is an integer to JSON Schema, and a decimal number to chatd and OpenAI
    ("expected an integer, but got a decimal number"): positive data writes it 682."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    return value


def _positive(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Positive bodies get integers written as such; in stateful scenarios a chat
    completion is stored, since the links of ``/openapi.json`` from its ``id`` (get,
    update, delete, messages) hold for stored completions only (``store`` defaults to
    false, as OpenAI's)."""
    if _positive(case) and isinstance(case.body, dict):
        case.body = _integral_floats_as_ints(case.body)
        stateful = str(case.meta.phase.name) == "stateful"
        if stateful and case.path == "/v1/chat/completions" and case.method.upper() == "POST":
            case.body["store"] = True
    return case


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    rule = _RULES.get(case.path)
    if rule is None or case.method.upper() != "POST" or not isinstance(case.body, dict):
        return True
    # as map_case will write it (682.0 as 682), which may run after this filter
    return not _positive(case) or rule(_integral_floats_as_ints(case.body))

"""A Responses request as the Chat Completions request an upstream channel understands.

A channel that speaks only Chat Completions can still serve ``POST /v1/responses``: chatd
translates the request (this module) and the answer back (``service/
chat_events.py``). The translation is pure: the caller has already resolved the conversation
(``previous_response_id`` and ``item_reference`` expanded into plain items) and keeps what
chatd itself handles (``store``, ``metadata``, ``include``, ``truncation``, stream
obfuscation), so none of those are forwarded. ``conversation`` is refused, as it is locally.

Nothing is dropped silently: a field or value with no Chat Completions equivalent (built-in
tools, ``max_tool_calls``, an image given only by ``file_id``...) is a 400 naming it, before
anything is sent upstream. What *has* an equivalent is mapped even when chatd's local engine
could not honour it (images, files, ``reasoning.effort``): the upstream decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatd.protocol.errors import Unsupported
from chatd.protocol.responses_request import (
    CreateResponseRequest,
    TextFormatJSONObject,
    TextFormatJSONSchema,
)
from chatd.protocol.responses_tools import FunctionToolParam, HostedTool, ToolChoiceFunction

__all__ = ["chat_body"]

Json = dict[str, Any]
Namer = Callable[[int], str]

_NO_EQUIVALENT = "has no Chat Completions equivalent, and the upstream of `{model}` speaks only"
_TEXT_PARTS = ("input_text", "output_text")
# Request fields with no Chat Completions equivalent: refused, in this order, when given.
_REFUSED = ("conversation", "prompt", "background", "max_tool_calls", "context_management")
# Request fields that chat has under the same name and meaning (a value chat's spec lacks,
# such as service_tier 'ultrafast', is the upstream's to judge).
_SAME = (
    "temperature",
    "top_p",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
)
# Fields of a function tool that chat's function definition cannot carry.
_TOOL_EXTRAS = ("output_schema", "defer_loading", "allowed_callers")


def _refuse(param: str, what: str, model: str) -> Unsupported:
    """The 400 for something the translation cannot carry; ``what`` says what it is."""
    reason = f"({what}) " if what else ""
    return Unsupported(param, reason + _NO_EQUIVALENT.format(model=model) + " Chat Completions.")


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------


def chat_body(req: CreateResponseRequest, items: list[Json], upstream_model: str) -> Json:
    """The Chat Completions body for ``req``, whose whole conversation is ``items``
    (Responses input items as plain dicts, history first). Raises ``Unsupported`` for
    anything that cannot be translated."""
    model = req.model
    for name in _REFUSED:
        if getattr(req, name) is not None:
            raise _refuse(name, "", model)
    body: Json = {
        "model": upstream_model,
        "messages": _messages(req.instructions, items, _namer(req, items), model),
    }
    if req.max_output_tokens is not None:
        body["max_completion_tokens"] = req.max_output_tokens
    body.update({name: getattr(req, name) for name in _SAME if getattr(req, name) is not None})
    if req.wants_logprobs():
        body["logprobs"] = True
        if req.top_logprobs is not None:
            body["top_logprobs"] = req.top_logprobs
    body.update(_tools(req))
    body.update(_text(req))
    body.update(_reasoning(req))
    for name in ("prompt_cache_options", "moderation"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value.model_dump(exclude_none=True)
    if req.is_streaming():
        # Usage arrives in a last chunk only when asked for; a response always reports it.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _tools(req: CreateResponseRequest) -> Json:
    """Chat refuses ``parallel_tool_calls`` and ``tool_choice`` without ``tools``, where the
    Responses API accepts them: with no tools, ``parallel_tool_calls``, ``auto`` and ``none``
    change nothing and are left out; any other choice is the upstream's to refuse."""
    out: Json = {}
    if req.tools:
        out["tools"] = [_tool(i, tool, req.model) for i, tool in enumerate(req.tools)]
        if req.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = req.parallel_tool_calls
    if req.tool_choice is not None and (req.tools or req.tool_choice not in ("auto", "none")):
        out["tool_choice"] = _tool_choice(req.tool_choice, req.model)
    return out


def _text(req: CreateResponseRequest) -> Json:
    """``text.format`` is chat's ``response_format``, ``text.verbosity`` its ``verbosity``."""
    out: Json = {}
    if req.text is not None and req.text.format is not None:
        out["response_format"] = _response_format(req.text.format)
    if req.text is not None and req.text.verbosity is not None:
        out["verbosity"] = req.text.verbosity
    return out


def _namer(req: CreateResponseRequest, items: list[Json]) -> Namer:
    """How to name item ``i`` in an error: ``input[k]`` for the request's own items (the
    last ones: a reference expands to one item), plain ``input`` for expanded history."""
    history = len(items) - len(req.input_items())

    def name(i: int) -> str:
        return f"input[{i - history}]" if history >= 0 and i >= history else "input"

    return name


def _tool(index: int, tool: Any, model: str) -> Json:
    """A flat function tool in chat's ``{type, function: {...}}`` wrapper."""
    if not isinstance(tool, FunctionToolParam):
        kind = "a hosted tool" if isinstance(tool, HostedTool) else "a tool"
        raise _refuse(f"tools[{index}]", f"{kind} of type '{tool.type}'", model)
    for extra in _TOOL_EXTRAS:
        if getattr(tool, extra) is not None:
            raise _refuse(f"tools[{index}].{extra}", "", model)
    function: Json = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = tool.parameters
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, model: str) -> str | Json:
    """``none``/``auto``/``required`` are the same words; a named function gets chat's
    wrapper; ``allowed_tools`` over function tools has a chat twin; nothing else does."""
    if isinstance(choice, str):
        return choice
    if isinstance(choice, ToolChoiceFunction):
        return {"type": "function", "function": {"name": choice.name}}
    data = choice.model_dump()
    if data.get("type") == "allowed_tools":
        tools = data.get("tools")
        mode = data.get("mode")
        if isinstance(tools, list) and mode in ("auto", "required"):
            named = [t for t in tools if isinstance(t, dict) and t.get("type") == "function"]
            if len(named) == len(tools) and all(isinstance(t.get("name"), str) for t in named):
                return {
                    "type": "allowed_tools",
                    "allowed_tools": {
                        "mode": mode,
                        "tools": [
                            {"type": "function", "function": {"name": t["name"]}} for t in named
                        ],
                    },
                }
        raise _refuse("tool_choice", "allowed_tools naming tools other than functions", model)
    raise _refuse("tool_choice", f"a tool choice of type '{data.get('type')}'", model)


def _response_format(fmt: Any) -> Json:
    """Responses' flat ``text.format`` in chat's ``response_format`` shape."""
    if isinstance(fmt, TextFormatJSONSchema):
        schema: Json = {"name": fmt.name, "schema": fmt.schema_}
        if fmt.description is not None:
            schema["description"] = fmt.description
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": schema}
    assert isinstance(fmt, TextFormatJSONObject) or fmt.type == "text"
    return {"type": fmt.type}


def _reasoning(req: CreateResponseRequest) -> Json:
    """Only the effort has a chat twin (``reasoning_effort``); summaries do not: chat never
    returns reasoning."""
    reasoning = req.reasoning
    if reasoning is None:
        return {}
    for name in ("summary", "generate_summary", "mode", "context"):
        if getattr(reasoning, name) is not None:
            raise _refuse(f"reasoning.{name}", "", req.model)
    return {"reasoning_effort": reasoning.effort} if reasoning.effort is not None else {}


# --------------------------------------------------------------------------------------------
# The conversation
# --------------------------------------------------------------------------------------------


def _messages(instructions: str | None, items: list[Json], name: Namer, model: str) -> list[Json]:
    """The conversation as chat messages: ``instructions`` first, as a system message;
    consecutive ``function_call`` items join the assistant message before them (or a new one)
    as its ``tool_calls``, which is how chat writes text followed by calls."""
    messages: list[Json] = []
    if instructions is not None:
        messages.append({"role": "system", "content": instructions})
    for i, item in enumerate(items):
        kind = item.get("type")
        if kind == "message" or (kind is None and "role" in item):
            messages.append(_message(item, name(i), model))
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if item.get("namespace") is not None:
                raise _refuse(f"{name(i)}.namespace", "", model)
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": None}
                messages.append(last)
            last.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            content = _content(item["output"], "tool", f"{name(i)}.output", model)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        else:
            raise _refuse(name(i), f"an item of type '{kind}'", model)
    return messages


def _message(item: Json, where: str, model: str) -> Json:
    role = item["role"]
    return {"role": role, "content": _content(item["content"], role, f"{where}.content", model)}


def _content(content: str | list[Json], role: str, where: str, model: str) -> str | list[Json]:
    """A string stays one; parts become chat parts. Parts that are all plain text and just
    one stay a string: some chat upstreams take nothing else for assistant or tool content."""
    if isinstance(content, str):
        return content
    parts = [_part(part, role, f"{where}[{j}]", model) for j, part in enumerate(content)]
    if len(parts) == 1 and set(parts[0]) == {"type", "text"}:
        return parts[0]["text"]
    return parts


def _part(part: Json, role: str, where: str, model: str) -> Json:
    """One content part in chat's words. Chat allows images and files only from the user,
    and refusals only from the assistant."""
    kind = part.get("type")
    out: Json
    if kind in _TEXT_PARTS:
        out = {"type": "text", "text": part["text"]}
    elif kind == "refusal" and role == "assistant":
        return {"type": "refusal", "refusal": part["refusal"]}
    elif kind == "input_image" and role == "user":
        out = _image(part, where, model)
    elif kind == "input_file" and role == "user":
        out = _file(part, where, model)
    else:
        owner = "a tool output" if role == "tool" else f"a {role} message"
        raise _refuse(where, f"a '{kind}' part in {owner}", model)
    if part.get("prompt_cache_breakpoint") is not None:
        out["prompt_cache_breakpoint"] = part["prompt_cache_breakpoint"]
    return out


def _image(part: Json, where: str, model: str) -> Json:
    url = part.get("image_url")
    if url is None:
        raise _refuse(f"{where}.file_id", "an image given only by file id", model)
    image: Json = {"url": url}
    detail = part.get("detail")
    if detail == "original":
        raise _refuse(f"{where}.detail", "detail 'original'", model)
    if detail is not None:
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _file(part: Json, where: str, model: str) -> Json:
    for name in ("file_url", "detail"):
        if part.get(name) is not None:
            raise _refuse(f"{where}.{name}", "", model)
    file = {k: part[k] for k in ("filename", "file_data", "file_id") if part.get(k) is not None}
    return {"type": "file", "file": file}

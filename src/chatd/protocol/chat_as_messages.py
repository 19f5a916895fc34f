"""A Chat Completions request as the Messages request an Anthropic channel understands
(``api = "anthropic"``; docs/gateway.md "Anthropic channels").

Chat Completions and Responses requests for a model on such a channel reach it through
the chat wire (``upstream/wires.py``): the Responses service has already made its request
a chat body (``responses_chat.py``), and the relay policy has already kept only the
fields the channel allows and written the operator's identity values in. This module
turns that body into Anthropic's, and ``messages_as_chat.py`` turns the answer back.

The body a relayed chat request carries is only lightly checked (``relayed_request.py``):
the translation reads it defensively and refuses, with a 400 naming the field, what it
cannot carry with its meaning (``n`` above 1, ``logprobs``, audio, ``logit_bias``, a file
given only by id, ``response_format: json_object``, legacy ``functions``...). What is only
a hint to the model or the server (``seed``, penalties, ``reasoning_effort``,
``verbosity``, ``prediction``, prompt-cache keys, ``service_tier``) has no Anthropic twin
and is dropped: the answer keeps its meaning without it. The operator's ``store``,
``metadata``, ``user`` and ``safety_identifier`` are not read here: the wire sends the
operator's pseudonym as ``metadata.user_id`` (``relay_policy.anthropic_metadata``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from chatd.protocol.errors import InvalidRequest, Unsupported

__all__ = ["DEFAULT_MAX_TOKENS", "messages_from_chat"]

Json = dict[str, Any]

# Anthropic requires ``max_tokens``; chat makes it optional. A chat body without one gets
# the channel's ``max_tokens`` setting, or this (what every current Claude model can
# produce in one answer, and enough for a chat turn).
DEFAULT_MAX_TOKENS = 4096
# Anthropic's temperature runs from 0 to 1 where OpenAI's runs to 2: above 1 is sent as 1,
# the most varied Anthropic allows.
_MAX_TEMPERATURE = 1.0
_NO_EQUIVALENT = (
    "has no equivalent in Anthropic's Messages API, which the channel of this model speaks."
)
# Anthropic's tool-use ids are ``[A-Za-z0-9_-]+``; other servers' call ids may hold more
# (``functions.get_weather:0``): the rest is written as ``_``, alike in a call and its
# result, so they still pair.
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")
# Data URLs: ``data:<media type>;base64,<data>``.
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+);base64,(.*)$", re.DOTALL)


def _refuse(param: str, what: str = "") -> Unsupported:
    reason = f"({what}) " if what else ""
    return Unsupported(param, reason + _NO_EQUIVALENT)


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def messages_from_chat(chat: Json, max_tokens: int = DEFAULT_MAX_TOKENS) -> Json:
    """The Messages body for a chat body (``model`` kept as given; the wire maps it).
    ``max_tokens`` is used when the chat body names no limit. Raises ``Unsupported`` /
    ``InvalidRequest`` (400, naming the field) for what cannot be carried."""
    _refuse_untranslatable(chat)
    system, messages = _conversation(chat.get("messages"))
    body: Json = {"model": chat.get("model"), "messages": messages}
    if system:
        body["system"] = system
    body["max_tokens"] = _limit(chat, max_tokens)
    temperature = chat.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        body["temperature"] = min(float(temperature), _MAX_TEMPERATURE)
    if chat.get("top_p") is not None and chat["top_p"] != 1:  # 1: no nucleus cut at all
        body["top_p"] = chat["top_p"]  # (and recent Claude models refuse it with temperature)
    if chat.get("top_k") is not None:
        body["top_k"] = chat["top_k"]
    stop = chat.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    body.update(_tools(chat))
    fmt = _output_format(chat.get("response_format"))
    if fmt is not None:
        body["output_config"] = {"format": fmt}
    if chat.get("stream") is True:
        body["stream"] = True
    return body


def _limit(chat: Json, default: int) -> int:
    """``max_completion_tokens``, else the older ``max_tokens``, else the default."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = chat.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _bad(name, f"`{name}` must be a positive integer.")
        return value
    return default


def _refuse_untranslatable(chat: Json) -> None:
    """The fields whose promise an Anthropic channel cannot keep."""
    n = chat.get("n")
    if n is not None and n != 1:
        raise _refuse("n", "one answer per request only")
    if chat.get("logprobs") is True:
        raise _refuse("logprobs", "no token probabilities")
    if chat.get("audio") is not None:
        raise _refuse("audio", "no audio")
    modalities = chat.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        raise _refuse("modalities", "no audio")
    if chat.get("logit_bias"):
        raise _refuse("logit_bias", "OpenAI token ids")
    if chat.get("web_search_options") is not None:
        raise _refuse("web_search_options")
    for legacy in ("functions", "function_call"):
        if chat.get(legacy) is not None:
            raise _refuse(legacy, "the legacy function calling; use `tools`")


# --------------------------------------------------------------------------------------------
# The conversation
# --------------------------------------------------------------------------------------------


def _conversation(messages: Any) -> tuple[list[Json], list[Json]]:
    """System and developer messages become ``system`` (text blocks, in order, wherever
    they stood: Anthropic has no system turn inside the conversation); the others become
    turns of blocks, consecutive turns of one role merged (tool results then the user's
    text make one user turn, as Anthropic wants tool results first in the turn after the
    calls)."""
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "`messages` must be a non-empty list.")
    system: list[Json] = []
    turns: list[Json] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(where, f"`{where}` must be an object.")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content"))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{where}.content")
            turn_role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
            turn_role = "assistant"
        elif role == "tool":
            blocks = [_tool_result(message, where)]
            turn_role = "user"
        elif role == "function":
            raise _refuse(f"{where}.role", "the legacy function role; use `tool`")
        else:
            raise _bad(f"{where}.role", f"`{where}.role` {role!r} is not a chat role.")
        if not blocks:
            continue  # an assistant turn with nothing in it: Anthropic refuses empty turns
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    if not turns:
        raise _bad("messages", "`messages` holds no user or assistant message to answer.")
    return system, turns


def _text_blocks(content: Any, where: str) -> list[Json]:
    """Text only (system, developer, tool and assistant content): a string or text parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(where, f"`{where}` must be a string or a list of parts.")
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            if part["refusal"]:
                blocks.append({"type": "text", "text": part["refusal"]})
        else:
            raise _bad(f"{where}[{j}]", f"`{where}[{j}]` must be a text part here.")
    return blocks


def _user_blocks(content: Any, where: str) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(where, f"`{where}` must be a string or a list of parts.")
    blocks = []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{here}.image_url"))
        elif kind == "file":
            blocks.append(_document(part.get("file"), f"{here}.file"))
        elif kind == "input_audio":
            raise _refuse(here, "no audio input")
        else:
            raise _bad(f"{here}.type", f"`{here}.type` {kind!r} is not a user content part.")
    return blocks


def _image(image: Any, where: str) -> Json:
    """A data URL becomes a base64 source, an http(s) URL a url source (the upstream
    fetches it); ``detail`` has no Anthropic twin (images are read at their size)."""
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise _bad(f"{where}.url", f"`{where}.url` must be a string.")
    match = _DATA_URL.match(url)
    if match:
        media, data = match.groups()
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{where}.url", f"`{where}.url` must be a base64 data URL or an http(s) URL.")


def _document(file: Any, where: str) -> Json:
    """A file given inline (``file_data``, a PDF or text data URL) becomes a document
    block; a ``file_id`` names a file in the operator's OpenAI account, which an Anthropic
    channel has never seen."""
    if not isinstance(file, dict):
        raise _bad(where, f"`{where}` must be an object.")
    if file.get("file_id") is not None:
        raise _refuse(f"{where}.file_id", "a file known by id only")
    data = file.get("file_data")
    match = _DATA_URL.match(data) if isinstance(data, str) else None
    if match is None:
        raise _bad(f"{where}.file_data", f"`{where}.file_data` must be a base64 data URL.")
    media, payload = match.groups()
    block: Json = {
        "type": "document",
        "source": {"type": "base64", "media_type": media, "data": payload},
    }
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: Json, where: str) -> list[Json]:
    blocks = _text_blocks(message.get("content"), f"{where}.content")
    if isinstance(message.get("refusal"), str) and message["refusal"] and not blocks:
        blocks.append({"type": "text", "text": message["refusal"]})
    if message.get("function_call") is not None:
        raise _refuse(f"{where}.function_call", "the legacy function calling; use `tool_calls`")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(f"{where}.tool_calls", f"`{where}.tool_calls` must be a list.")
    for j, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, where: str) -> Json:
    """A tool call: Anthropic's ``input`` is an object where chat's ``arguments`` is its
    JSON text, so the text must parse to an object."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _bad(f"{where}.function", f"`{where}.function` must name the function called.")
    if call.get("type", "function") != "function":
        raise _refuse(f"{where}.type", f"a {call.get('type')!r} tool call")
    arguments = fn.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad(
            f"{where}.function.arguments",
            f"`{where}.function.arguments` must be a JSON object (Anthropic takes a tool"
            " call's input as an object).",
        )
    call_id = _tool_id(call.get("id"))
    return {"type": "tool_use", "id": call_id, "name": fn["name"], "input": parsed}


def _tool_id(value: Any) -> str:
    return _NOT_ID.sub("_", str(value or ""))


def _tool_result(message: Json, where: str) -> Json:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_call_id", f"`{where}.tool_call_id` is required.")
    result: Json = {"type": "tool_result", "tool_use_id": _tool_id(call_id)}
    blocks = _text_blocks(message.get("content"), f"{where}.content")
    if blocks:  # Anthropic refuses empty text blocks; an empty result has no content
        result["content"] = blocks
    return result


# --------------------------------------------------------------------------------------------
# Tools and formats
# --------------------------------------------------------------------------------------------


def _tools(chat: Json) -> Json:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls``. Without tools, a choice
    means nothing (chat's ``auto`` and ``none``) and is not sent."""
    tools = chat.get("tools")
    if not tools:
        return {}
    if not isinstance(tools, list):
        raise _bad("tools", "`tools` must be a list.")
    out = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice, allowed = _tool_choice(chat.get("tool_choice"))
    if allowed is not None:
        out = [t for t in out if t["name"] in allowed]
    body: Json = {"tools": out}
    if chat.get("parallel_tool_calls") is False and choice.get("type") != "none":
        choice = {**choice, "disable_parallel_tool_use": True}
    if choice != {"type": "auto"}:
        body["tool_choice"] = choice
    return body


def _tool(tool: Any, where: str) -> Json:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise _refuse(f"{where}.type", f"a {kind!r} tool")
    fn = tool.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _bad(f"{where}.function.name", f"`{where}.function.name` is required.")
    schema = fn.get("parameters")
    if not isinstance(schema, dict):  # chat's default: a function without parameters
        schema = {"type": "object", "properties": {}}
    out: Json = {"name": fn["name"], "input_schema": schema}
    if isinstance(fn.get("description"), str):
        out["description"] = fn["description"]
    if fn.get("strict") is True:  # Anthropic's strict tool use: inputs match the schema
        out["strict"] = True
    return out


def _tool_choice(choice: Any) -> tuple[Json, set[str] | None]:
    """Anthropic's tool choice, and the names an ``allowed_tools`` choice keeps."""
    if choice is None or choice == "auto":
        return {"type": "auto"}, None
    if choice == "required":
        return {"type": "any"}, None
    if choice == "none":
        return {"type": "none"}, None
    kind = _obj(choice).get("type")
    if kind == "function":
        name = _obj(choice.get("function")).get("name")
        if isinstance(name, str):
            return {"type": "tool", "name": name}, None
    if kind == "allowed_tools":
        spec = _obj(choice.get("allowed_tools"))
        listed = spec.get("tools")
        names = [_obj(_obj(t).get("function")).get("name") for t in _list(listed)]
        mode = spec.get("mode", "auto")
        readable = isinstance(listed, list) and all(isinstance(n, str) for n in names)
        if mode in ("auto", "required") and readable:
            return {"type": "any" if mode == "required" else "auto"}, set(names)
        raise _bad("tool_choice.allowed_tools", "`allowed_tools` must name function tools.")
    if kind == "custom":
        raise _refuse("tool_choice", "a custom tool")
    raise _bad("tool_choice", "`tool_choice` is not a tool choice chat defines.")


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _output_format(fmt: Any) -> Json | None:
    """``json_schema`` becomes Anthropic's structured output; ``json_object`` (any JSON
    object, no schema) has no twin, and is refused rather than left unkept."""
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema", "a JSON schema is required.")
        return {"type": "json_schema", "schema": schema}
    what = f"{fmt.get('type')!r}: Anthropic answers JSON only to a schema"
    raise _refuse("response_format", what)

"""A Messages request served by a channel that speaks Chat Completions: the request as
a chat body (the other direction of ``chat_as_messages.py``). The chat answer comes back
as the core's events (``service/chat_events.py``) and is made into a message as a local
answer is (``service/messages/answer.py``).

Pure, and for the Messages service to use with ``ChatWire`` (which then relays the chat
body as any chat request: allow-list, the operator's identity values, usage asked for).
The request reaching it has been validated by the Messages contract; the translation
still reads defensively and refuses with a 400 naming the field what a chat channel
cannot carry with its meaning:

- ``thinking: {"type": "enabled"}`` (chat returns no reasoning to show as thinking
  blocks); ``adaptive`` and ``disabled`` allow no thinking at all, and are kept;
- ``mcp_servers`` (a chat channel reaches no MCP server);
- a server tool (``web_search_...``, ``bash_...``...) that ``tool_choice`` forces; one
  not forced is left out (the model may answer without it, as Anthropic's may);
- an image or a document inside a ``tool_result`` (chat's tool message is text).

Dropped as hints or as chatd's own: ``metadata`` (the channel's ``user`` goes instead),
``cache_control`` marks, ``context_management`` (nothing to clear: no thinking),
``output_config.effort``, ``service_tier``, ``container``, ``top_k`` reaches the channel
only if it allows it. ``is_error`` on a tool result has no chat twin: its text goes as
the tool's answer.
"""

from __future__ import annotations

from typing import Any

from chatd.protocol.errors import InvalidRequest, Unsupported
from chatd.protocol.messages_as_chat import text_and_calls
from chatd.protocol.messages_blocks import is_billing_header

__all__ = ["chat_from_messages"]

Json = dict[str, Any]

_NO_EQUIVALENT = "cannot be carried to the Chat Completions channel that serves this model."


def _refuse(param: str, what: str = "") -> Unsupported:
    reason = f"({what}) " if what else ""
    return Unsupported(param, reason + _NO_EQUIVALENT)


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --------------------------------------------------------------------------------------------
# The request
# --------------------------------------------------------------------------------------------


def chat_from_messages(body: Json) -> Json:
    """The chat body for a Messages body (``model`` kept as given; the wire maps it)."""
    thinking = _obj(body.get("thinking"))
    if thinking.get("type") == "enabled":
        raise _refuse("thinking", "the channel returns no reasoning")
    if body.get("mcp_servers"):
        raise _refuse("mcp_servers")
    chat: Json = {"model": body.get("model"), "messages": _messages(body)}
    if body.get("max_tokens") is not None:
        chat["max_completion_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        chat["stop"] = stops
    chat.update(_tools(body))
    fmt = _obj(_obj(body.get("output_config")).get("format")) or _obj(body.get("output_format"))
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
        }
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _system(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(
            b["text"]
            for b in system
            if isinstance(b, dict)
            and isinstance(b.get("text"), str)
            and not is_billing_header(b["text"])
        )
    return ""


def _messages(body: Json) -> list[Json]:
    out: list[Json] = []
    system = _system(body.get("system"))
    if system:
        out.append({"role": "system", "content": system})
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad("messages", "`messages` must be a list.")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        message = _obj(message)
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise _bad(f"{where}.content", f"`{where}.content` must be a string or blocks.")
        if message.get("role") == "assistant":
            out.append(_assistant(blocks, where))
        elif message.get("role") == "user":
            out.extend(_user(blocks, where))
        elif message.get("role") == "system":  # Chat Completions takes one anywhere
            out.append({"role": "system", "content": _system(blocks)})
        else:
            raise _bad(f"{where}.role", f"`{where}.role` must be user, assistant or system.")
    return out


def _assistant(blocks: list[Any], where: str) -> Json:
    text, calls = text_and_calls(blocks)
    out: Json = {"role": "assistant", "content": text or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _user(blocks: list[Any], where: str) -> list[Json]:
    """Tool results become tool messages, before the turn's other content (chat wants
    them right after the assistant's calls)."""
    tools: list[Json] = []
    parts: list[Json] = []
    for j, block in enumerate(blocks):
        here = f"{where}.content[{j}]"
        block = _obj(block)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image(_obj(block.get("source")), f"{here}.source"))
        elif kind == "document":
            parts.append(_document(block, here))
        elif kind == "tool_result":
            tools.append(_tool_result(block, here))
        else:
            raise _bad(f"{here}.type", f"`{here}.type` {kind!r} is not a user content block.")
    out = list(tools)
    if parts:
        simple = all(p["type"] == "text" for p in parts)
        content: Any = "".join(p["text"] for p in parts) if simple and len(parts) == 1 else parts
        out.append({"role": "user", "content": content})
    return out


def _data_url(source: Json, where: str) -> str:
    media, data = source.get("media_type"), source.get("data")
    if not isinstance(media, str) or not isinstance(data, str):
        raise _bad(where, f"`{where}` needs a `media_type` and base64 `data`.")
    return f"data:{media};base64,{data}"


def _image(source: Json, where: str) -> Json:
    if source.get("type") == "base64":
        url = _data_url(source, where)
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _refuse(where, f"an image source of type {source.get('type')!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: Json, where: str) -> Json:
    source = _obj(block.get("source"))
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if source.get("type") == "base64":
        file: Json = {"file_data": _data_url(source, f"{where}.source")}
        file["filename"] = block["title"] if isinstance(block.get("title"), str) else "document"
        return {"type": "file", "file": file}
    raise _refuse(f"{where}.source", f"a document source of type {source.get('type')!r}")


def _tool_result(block: Json, where: str) -> Json:
    content = block.get("content")
    if isinstance(content, list):
        texts = []
        for k, inner in enumerate(content):
            inner = _obj(inner)
            if inner.get("type") != "text" or not isinstance(inner.get("text"), str):
                raise _refuse(f"{where}.content[{k}]", "a tool result's chat answer is text")
            texts.append(inner["text"])
        content = "".join(texts)
    return {
        "role": "tool",
        "tool_call_id": str(block.get("tool_use_id") or ""),
        "content": content if isinstance(content, str) else "",
    }


def _tools(body: Json) -> Json:
    choice = _obj(body.get("tool_choice"))
    forced = choice.get("name") if choice.get("type") == "tool" else None
    tools = []
    for i, tool in enumerate(_list(body.get("tools"))):
        tool = _obj(tool)
        if tool.get("type") not in (None, "custom"):  # a server tool: Anthropic runs those
            if forced is not None and tool.get("name") == forced:
                raise _refuse(f"tools[{i}]", f"the server tool {tool.get('type')!r}")
            continue
        function: Json = {
            "name": tool.get("name"),
            "parameters": _obj(tool.get("input_schema")) or {"type": "object"},
        }
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if tool.get("strict") is True:
            function["strict"] = True
        tools.append({"type": "function", "function": function})
    if not tools:
        return {}
    out: Json = {"tools": tools}
    kind = choice.get("type")
    if kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(forced, str):
        out["tool_choice"] = {"type": "function", "function": {"name": forced}}
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out

"""A Responses conversation: the request's input items in the shape they are stored and
listed (``input_items``), the earlier turns ``previous_response_id`` brings, and all of it
as the core's turns.

Items are kept as the API shows them (plain dicts, each with an ``id`` and a ``status``), so
a stored response's input and output items are the history of the next one as they are,
and a chain of any length is rebuilt by concatenation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.ids import (
    custom_tool_call_item_id,
    function_call_item_id,
    function_call_output_item_id,
    message_item_id,
)
from chatd.protocol.responses_items import (
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    ItemReference,
    MessageItem,
    OutputText,
    Refusal,
)
from chatd.service.turns import Answered, Call, Called, Said, Turn

__all__ = ["conversation_turns", "item_text", "stored_input_items"]

Json = dict[str, Any]


def stored_input_items(items: list[Any], referenced: Mapping[str, Json]) -> list[Json]:
    """The request's input items as stored: ids given to those without, earlier text in
    the output shape, ``item_reference`` replaced by the stored item it names.

    ``referenced`` holds the caller's stored items by id; a reference to anything else
    is a 400. Item types chatd does not act on are kept as sent, for a channel that may
    (the local engine refuses them by name)."""
    out: list[Json] = []
    for i, item in enumerate(items):
        if isinstance(item, ItemReference):
            found = referenced.get(item.id)
            if found is None:
                raise InvalidRequest(
                    f"Item with id '{item.id}' not found.", param=f"input[{i}]", code=None
                )
            out.append(dict(found))
        elif isinstance(item, MessageItem):
            out.append(_message(item))
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.id or function_call_item_id(),
                "type": "function_call",
                "status": item.status or "completed",
                "arguments": item.arguments,
                "call_id": item.call_id,
                "name": item.name,
            }
            out.append(call if item.namespace is None else {**call, "namespace": item.namespace})
        elif isinstance(item, CustomToolCallItem):
            call = {
                "id": item.id or custom_tool_call_item_id(),
                "type": "custom_tool_call",
                "status": item.status or "completed",
                "call_id": item.call_id,
                "name": item.name,
                "input": item.input,
            }
            out.append(call if item.namespace is None else {**call, "namespace": item.namespace})
        elif isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            output = item.output
            out.append(
                {
                    "id": item.id or function_call_output_item_id(),
                    "type": item.type,
                    "status": item.status or "completed",
                    "call_id": item.call_id,
                    "output": output
                    if isinstance(output, str)
                    else [p.model_dump(exclude_none=True) for p in output],
                }
            )
        else:  # an item chatd does not act on: kept for an upstream (the local engine refuses it)
            out.append(item.model_dump(mode="json", exclude_none=True))
    return out


def _message(item: MessageItem) -> Json:
    """An assistant's earlier text is listed as the ``output_text`` it was; other roles'
    parts as the ``input_*`` parts they are."""
    if item.role == "assistant":
        content = [_output_part(p) for p in item.parts()]
    else:
        content = [p.model_dump(exclude_none=True) for p in item.parts()]
    return {
        "id": item.id or message_item_id(),
        "type": "message",
        "status": item.status or "completed",
        "role": item.role,
        "content": content,
    }


def _output_part(part: Any) -> Json:
    if isinstance(part, Refusal):
        return {"type": "refusal", "refusal": part.refusal}
    logprobs = part.logprobs if isinstance(part, OutputText) else None
    return {
        "type": "output_text",
        "text": part.text,
        "annotations": list(part.annotations or []) if isinstance(part, OutputText) else [],
        "logprobs": list(logprobs or []),
    }


def item_text(content: str | list[Json]) -> str:
    """The text of a message's (or a call output's) content."""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            pieces.append(part.get("text", ""))
        elif kind == "refusal":
            pieces.append(part.get("refusal", ""))
    return "".join(pieces)


def _qualified(call: Json) -> str:
    """A call's name as the model wrote it: a namespace's member's is qualified by it
    (service/responses/tools.py)."""
    namespace = call.get("namespace")
    return f"{namespace}.{call['name']}" if namespace else call["name"]


def conversation_turns(
    instructions: str | None, history: list[Json], items: list[Json]
) -> list[Turn]:
    """The whole conversation as turns: ``instructions`` first (a system turn; those of
    earlier responses are not carried over, as OpenAI documents), then the history that
    ``previous_response_id`` brings, then this request's items.

    Every call output must answer a call made before it, and every call must have been
    answered by the time the model speaks again: both are 400s naming the call, as
    OpenAI's are."""
    turns: list[Turn] = [Said("system", instructions)] if instructions else []
    open_calls: dict[str, None] = {}  # call ids awaiting their output, in order
    for item in [*history, *items]:
        kind = item.get("type")
        if kind == "message":
            turns.append(Said(item["role"], item_text(item["content"])))
        elif kind in ("function_call", "custom_tool_call"):
            custom = kind == "custom_tool_call"
            call = Call(
                item["call_id"],
                _qualified(item),
                item["input"] if custom else item["arguments"],
                custom=custom,
            )
            open_calls[call.id] = None
            last = turns[-1] if turns else None
            if isinstance(last, Called):
                turns[-1] = Called(last.text, (*last.calls, call))
            elif isinstance(last, Said) and last.role == "assistant":
                turns[-1] = Called(last.text, (call,))
            else:
                turns.append(Called("", (call,)))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            cid = item["call_id"]
            if cid not in open_calls:
                raise InvalidRequest(
                    f"No tool call found for function call output with call_id {cid}.",
                    param="input",
                )
            del open_calls[cid]
            turns.append(Answered(item_text(item["output"]), call_id=cid))
    if open_calls:
        raise InvalidRequest(
            f"No tool output found for function call {next(iter(open_calls))}.", param="input"
        )
    return turns

"""An Anthropic channel's answer as Chat Completions: a whole message as a
``chat.completion``, and a Messages stream as chat chunks (the request went the other way
in ``chat_as_messages.py``; docs/gateway.md "Anthropic channels").

Both are pure: the wire (``upstream/wires.py`` ``ChatWire``) writes the public model id
and chatd's own id in, as it does for a chat channel's objects.

What a chat client cannot be shown is left out: ``thinking`` and ``redacted_thinking``
blocks (chat returns no reasoning), and server tools' blocks (``server_tool_use``,
``web_search_tool_result``..., which a translated request never asks for). Citations on
text are dropped with their text kept.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = [
    "MessagesStreamToChat",
    "chat_usage",
    "completion_from_message",
    "finish_reason",
    "text_and_calls",
]

Json = dict[str, Any]

# Anthropic's stop reasons as chat's finish reasons. ``pause_turn`` (a server tool's long
# turn paused) ends the answer as it stands: ``stop``.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def chat_usage(usage: Any) -> Json | None:
    """Anthropic's usage as chat's: its ``input_tokens`` count only what was neither read
    from nor written to the prompt cache, so the prompt is all three; the cached tokens
    are those read."""
    if not isinstance(usage, dict):
        return None
    fresh = _count(usage.get("input_tokens"))
    read = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    output = _count(usage.get("output_tokens"))
    prompt = fresh + read + written
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _completion_id(message_id: Any) -> str:
    """``msg_...`` as a chat id (the wire writes chatd's own id for a stored answer)."""
    text = message_id if isinstance(message_id, str) and message_id else "upstream"
    return "chatcmpl-" + text.removeprefix("msg_")


def _arguments(value: Any) -> str:
    return json.dumps(value if isinstance(value, dict) else {}, ensure_ascii=False)


def text_and_calls(content: Any) -> tuple[str, list[Json]]:
    """An assistant's Anthropic content blocks in chat's words: the text blocks joined,
    the ``tool_use`` blocks as tool calls (the input as JSON text). Other blocks
    (thinking, server tools') have nothing chat can carry."""
    texts: list[str] = []
    calls: list[Json] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": str(block.get("id") or ""),
                    "type": "function",
                    "function": {
                        "name": str(block.get("name") or ""),
                        "arguments": _arguments(block.get("input")),
                    },
                }
            )
    return "".join(texts), calls


def completion_from_message(message: Json) -> Json:
    """A whole Messages answer (``type: "message"``) as a ``chat.completion``: its text
    blocks joined as the content, its ``tool_use`` blocks as tool calls (the input as
    JSON text), its stop reason as the finish reason."""
    text, calls = text_and_calls(message.get("content"))
    out: Json = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        out["tool_calls"] = calls
    completion: Json = {
        "id": _completion_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": out,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
    }
    usage = chat_usage(message.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


class MessagesStreamToChat:
    """One Messages stream read as chat chunks, event by event: each event gives at most
    one chunk (``read``), so the wire passes on one object per upstream event.

    - ``message_start``: the role chunk (usage noted: input and cache counts);
    - ``content_block_start``: a ``tool_use`` block opens a tool call (its index among
      the calls, its id and name, arguments empty); a text block with text gives it;
    - ``content_block_delta``: ``text_delta`` a content chunk, ``input_json_delta`` the
      next piece of the call's arguments;
    - ``message_delta``: the finish chunk (usage noted: the output count, and any input
      counts it repeats);
    - ``message_stop``: the usage chunk (``choices`` empty), and the stream has ended.

    ``content_block_stop`` of a tool call whose arguments never came gives ``{}`` (or the
    input the block started with); ``ping``, thinking and citations deltas give nothing. An
    ``error`` event is the wire's to raise; unknown events are skipped (Anthropic says
    new event types may appear).
    """

    def __init__(self) -> None:
        self.id = "chatcmpl-upstream"
        self.model: Any = None
        self.created = int(time.time())
        self.usage: Json = {}  # Anthropic's usage fields, as last told
        self.ended = False
        self._calls: dict[int, int] = {}  # content block index -> tool call index
        # the input a tool_use block started with, until a delta of its arguments is seen
        self._unsent: dict[int, Any] = {}

    def chat_usage(self) -> Json | None:
        return chat_usage(self.usage) if self.usage else None

    def read(self, event: Json) -> Json | None:
        kind = event.get("type")
        if kind == "message_start":
            message = _obj(event.get("message"))
            self.id = _completion_id(message.get("id"))
            self.model = message.get("model")
            self._note(message.get("usage"))
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_stop":
            return self._block_stop(event)
        if kind == "message_delta":
            self._note(event.get("usage"))
            reason = finish_reason(_obj(event.get("delta")).get("stop_reason"))
            return self._chunk({}, reason)
        if kind == "message_stop":
            self.ended = True
            usage = self.chat_usage()
            return None if usage is None else {**self._chunk({}), "choices": [], "usage": usage}
        return None

    def _block_start(self, event: Json) -> Json | None:
        block = _obj(event.get("content_block"))
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return self._chunk({"content": block["text"]})
        if block.get("type") != "tool_use":
            return None
        index = len(self._calls)
        self._calls[_index(event)] = index
        self._unsent[_index(event)] = block.get("input")
        call = {
            "index": index,
            "id": str(block.get("id") or ""),
            "type": "function",
            "function": {"name": str(block.get("name") or ""), "arguments": ""},
        }
        return self._chunk({"tool_calls": [call]})

    def _delta(self, event: Json) -> Json | None:
        delta = _obj(event.get("delta"))
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            return self._chunk({"content": delta["text"]}) if delta["text"] else None
        piece = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and isinstance(piece, str) and piece:
            index = self._calls.get(_index(event))
            if index is None:  # the arguments of a block that was not a tool call
                return None
            self._unsent.pop(_index(event), None)
            call = {"index": index, "function": {"arguments": piece}}
            return self._chunk({"tool_calls": [call]})
        return None

    def _block_stop(self, event: Json) -> Json | None:
        """A tool call whose arguments never came as deltas (a tool without parameters,
        or a server that sent the input whole at the block's start) gets them here: chat
        clients parse the arguments, and an empty string is not JSON."""
        block = _index(event)
        if block not in self._unsent:
            return None
        arguments = _arguments(self._unsent.pop(block))
        call = {"index": self._calls[block], "function": {"arguments": arguments}}
        return self._chunk({"tool_calls": [call]})

    def _note(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if isinstance(v, int)})

    def _chunk(self, delta: Json, finish: str | None = None) -> Json:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }


def _obj(value: Any) -> Json:
    """An upstream's object where one is due (anything else reads as empty)."""
    return value if isinstance(value, dict) else {}


def _index(event: Json) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else -1

"""The wire protocols a relayed request can speak to a channel: Chat Completions (also
spoken to an Anthropic channel, translated to its Messages API and back), the Responses
API, or Anthropic's Messages API itself (``messages_wire.py``). A wire knows the URL and
body to send, how a non-streamed answer is passed on, and how a stream reads and ends;
the failover loop (``relay.UpstreamCall``) is the same for every wire, so failing over
works alike whatever a channel speaks.

A wire object serves one request (it keeps that request's usage and whether its stream
ended), possibly on several channels in turn: only one channel's stream is ever read.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from chatd.protocol.chat_as_messages import messages_from_chat
from chatd.protocol.errors import ServerError
from chatd.protocol.messages_as_chat import MessagesStreamToChat, completion_from_message
from chatd.redact import safe_word
from chatd.upstream.channels import Channel
from chatd.upstream.upstream_errors import stream_error

__all__ = ["RESPONSES_TERMINAL", "ChatWire", "ResponsesWire", "Wire"]

# The Responses stream events after which an upstream sends nothing more (``error`` too).
RESPONSES_TERMINAL = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "error"}
)


class Wire(Protocol):
    """What the failover loop needs of a wire protocol."""

    ended: bool  # the stream's end was seen (``[DONE]``, a terminal event)
    failed: bool  # that end was the upstream's failure (an ``error`` event...)
    end_name: str  # what a complete stream ends with, for the error naming its absence
    usage: dict[str, Any] | None  # the upstream's usage, once seen (the wire's own shape)
    extra_headers: dict[str, str]  # sent with the channel's own headers (its key...)

    def prepare(self, channel: Channel) -> tuple[str, bytes]:
        """The URL to POST to on this channel and the encoded body."""
        ...

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed answer (a JSON object with a 2xx status), as passed on."""
        ...

    def read(self, payload: str) -> dict[str, Any] | None:
        """One ``data:`` payload of the stream: the object to pass on, or None to drop it.
        Sets ``ended`` at the stream's end; raises ``ValueError`` for a payload that is not
        JSON (the loop reports it as a broken stream)."""
        ...


class ChatWire:
    """Chat Completions, relayed as chatd always has: the public model id and (for a
    stored answer) chatd's own id written into every object, usage always asked for when
    streaming (for accounting) and its chunk dropped when the client did not ask, the
    stream complete at ``data: [DONE]``.

    To an Anthropic channel (``api = "anthropic"``) the same request goes as a Messages
    request to its ``/messages`` (``protocol/chat_as_messages.py``; ``max_tokens`` the
    channel's setting when the client named none), and what comes back is read as chat
    objects (``protocol/messages_as_chat.py``): the whole message as a
    ``chat.completion``, the stream event by event as chat chunks, complete at
    ``message_stop``; an ``error`` event is raised like an error chunk. ``usage`` is then
    chat's shape too, so that whoever reads the objects and the usage (the chat relay,
    the Responses service) cannot tell the channel's API.
    """

    end_name = "[DONE]"
    extra_headers: dict[str, str] = {}

    def __init__(
        self,
        public_id: str,
        body: dict[str, Any],
        completion_id: str | None = None,
        owner: str = "anonymous",
    ) -> None:
        self.public_id = public_id
        self.body = body
        self.completion_id = completion_id  # set: the answer's id is chatd's own
        self.owner = owner  # the caller's key owner (a channel may send its pseudonym)
        self.channel: Channel | None = None  # the channel last prepared for
        self.failed = False  # chat has no failure event: an error chunk is raised
        self.streaming = body.get("stream") is True
        opts = body.get("stream_options") or {}
        self.client_wants_usage = self.streaming and opts.get("include_usage") is True
        self.usage: dict[str, Any] | None = None
        self.ended = False
        self.messages: MessagesStreamToChat | None = None  # set: the channel is Anthropic's

    def prepare(self, channel: Channel) -> tuple[str, bytes]:
        """Only the fields the channel allows, its own store/metadata/user values."""
        self.channel = channel
        body = channel.relay.chat_body(self.body, self.owner, channel.key)
        body["model"] = channel.models[self.public_id]
        if channel.api == "anthropic":
            return self._prepare_messages(channel, body)
        self.messages, self.end_name = None, "[DONE]"
        body.pop("stream_options", None)
        if self.streaming:  # always ask for usage, for accounting; dropped if not wanted
            body["stream_options"] = _stream_options(self.body)
        return channel.chat_url, json.dumps(body).encode()

    def _prepare_messages(self, channel: Channel, body: dict[str, Any]) -> tuple[str, bytes]:
        """The chat body as Anthropic's (refused with a 400 naming the field where it
        cannot be), the caller's pseudonym as ``metadata.user_id``."""
        policy = channel.relay
        messages = messages_from_chat(body, policy.max_tokens)
        metadata = policy.anthropic_metadata(self.owner, channel.key)
        if metadata is not None:
            messages["metadata"] = metadata
        self.messages, self.end_name = MessagesStreamToChat(), "message_stop"
        return channel.messages_url, json.dumps(messages).encode()

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.messages is not None:
            data = completion_from_message(data)
        data["model"] = self.public_id
        if self.completion_id is not None:
            data["id"] = self.completion_id
        self.usage = data.get("usage")
        return data

    def read(self, payload: str) -> dict[str, Any] | None:
        if payload == "[DONE]":
            self.ended = self.ended or self.messages is None
            return None
        chunk = json.loads(payload)
        if not isinstance(chunk, dict):
            raise ValueError("not a JSON object")
        if "error" in chunk:
            message = stream_error(chunk["error"], self.channel)
            raise ServerError(f"The upstream failed mid-stream: {message}", code="upstream_error")
        if self.messages is not None:
            translated = self.messages.read(chunk)
            self.ended = self.messages.ended
            self.usage = self.messages.chat_usage()
            if translated is None:
                return None
            chunk = translated
        chunk["model"] = self.public_id
        if self.completion_id is not None:
            chunk["id"] = self.completion_id
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if not chunk.get("choices") and chunk.get("usage") and not self.client_wants_usage:
            return None  # the usage chunk we asked for ourselves
        if not self.client_wants_usage:
            chunk.pop("usage", None)
        return chunk


class ResponsesWire:
    """The Responses API spoken by the channel itself (``api = "responses"``): the body
    goes to ``/responses`` with ``model`` mapped and only the fields the channel allows
    (``store`` false unless it says otherwise), and what comes back is passed on as it
    came but for the upstream's error messages, redacted (ids and model are the
    service's to rewrite: it knows whether the answer is stored, and under which id).

    A stream has no ``[DONE]``: it is complete once a terminal event has been read
    (``response.completed``, ``response.incomplete``, ``response.failed``, or an
    ``error`` event); the upstream then closes the connection. A stream that stops
    before one is broken (the loop raises ``ServerError``). ``response.failed`` and
    ``error`` are relayed as events, not raised: they are how a Responses stream reports
    a failure, and the service decides how its client sees them (a Chat Completions
    upstream's ``error`` chunk is raised instead, since chat has no such event).

    ``usage`` is the Responses usage object (``input_tokens``, ``output_tokens``...) of
    the final response, when the upstream gave one.
    """

    end_name = "a terminal event"
    extra_headers: dict[str, str] = {}

    def __init__(self, public_id: str, body: dict[str, Any], owner: str = "anonymous") -> None:
        self.public_id = public_id
        self.body = body
        self.owner = owner
        self.channel: Channel | None = None
        self.usage: dict[str, Any] | None = None
        self.ended = False
        self.failed = False

    def prepare(self, channel: Channel) -> tuple[str, bytes]:
        """Only the fields the channel allows; ``store`` false unless it says otherwise."""
        self.channel = channel
        body = channel.relay.responses_body(self.body, self.owner, channel.key)
        body["model"] = channel.models[self.public_id]
        return channel.responses_url, json.dumps(body).encode()

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        self.usage = data.get("usage")
        self._redact_error(data)
        return data

    def read(self, payload: str) -> dict[str, Any] | None:
        event = json.loads(payload) if payload != "[DONE]" else None
        if not isinstance(event, dict):  # a stray [DONE] (some servers send one) or scalar
            return None
        if event.get("type") in RESPONSES_TERMINAL:
            self.ended = True
            response = event.get("response")
            if isinstance(response, dict) and response.get("usage"):
                self.usage = response["usage"]
            self.failed = event.get("type") in ("error", "response.failed")
            if event.get("type") == "error":
                event["message"] = stream_error(event.get("message"), self.channel)
                event["code"] = safe_word(event.get("code"))
                event["param"] = safe_word(event.get("param"))
            elif isinstance(response, dict):
                self._redact_error(response)
        return event

    def _redact_error(self, response: dict[str, Any]) -> None:
        """A failed response's error message, made fit for the client to read."""
        error = response.get("error")
        if isinstance(error, dict) and "message" in error:
            error["message"] = stream_error(error.get("message"), self.channel)


def _stream_options(body: dict[str, Any]) -> dict[str, Any]:
    """Usage always asked for (accounting); of the client's options only those the API
    defines."""
    opts = body.get("stream_options")
    out: dict[str, Any] = {"include_usage": True}
    if isinstance(opts, dict) and isinstance(opts.get("include_obfuscation"), bool):
        out["include_obfuscation"] = opts["include_obfuscation"]
    return out

"""The legacy Completions API spoken to a channel (``POST <base_url>/completions``): the
client's body of the fields the channel allows (``completions_fields``, relay_policy.py),
the model mapped, usage always asked for when streaming (for accounting; its chunk
dropped when the client did not ask), the stream complete at ``data: [DONE]``; the
public model id written back into every object."""

from __future__ import annotations

import json
from typing import Any

from chatd.protocol.errors import ServerError
from chatd.upstream.channels import Channel
from chatd.upstream.upstream_errors import stream_error

__all__ = ["CompletionsWire"]


class CompletionsWire:
    """A wire (upstream/wires.py's ``Wire``) for ``/v1/completions``."""

    end_name = "[DONE]"
    extra_headers: dict[str, str] = {}

    def __init__(self, public_id: str, body: dict[str, Any], owner: str = "anonymous") -> None:
        self.public_id = public_id
        self.body = body
        self.owner = owner
        self.channel: Channel | None = None
        self.failed = False
        self.streaming = body.get("stream") is True
        opts = body.get("stream_options") or {}
        self.client_wants_usage = self.streaming and opts.get("include_usage") is True
        self.usage: dict[str, Any] | None = None
        self.ended = False

    def prepare(self, channel: Channel) -> tuple[str, bytes]:
        self.channel = channel
        body = channel.relay.completions_body(self.body, self.owner, channel.key)
        body["model"] = channel.models[self.public_id]
        body.pop("stream_options", None)
        if self.streaming:
            body["stream_options"] = {"include_usage": True}
        return channel.completions_url, json.dumps(body).encode()

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        data["model"] = self.public_id
        self.usage = data.get("usage")
        return data

    def read(self, payload: str) -> dict[str, Any] | None:
        if payload == "[DONE]":
            self.ended = True
            return None
        chunk = json.loads(payload)
        if not isinstance(chunk, dict):
            raise ValueError("not a JSON object")
        if "error" in chunk:
            message = stream_error(chunk["error"], self.channel)
            raise ServerError(f"The upstream failed mid-stream: {message}", code="upstream_error")
        chunk["model"] = self.public_id
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if not chunk.get("choices") and chunk.get("usage") and not self.client_wants_usage:
            return None  # the usage chunk asked for by chatd
        if not self.client_wants_usage:
            chunk.pop("usage", None)
        return chunk

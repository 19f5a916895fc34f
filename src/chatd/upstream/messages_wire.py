"""Anthropic's Messages API spoken to a channel that serves it (``api = "anthropic"``): a
Messages request relayed as it came (docs/gateway.md "Anthropic channels").

A Chat Completions or Responses request for such a channel goes through ``ChatWire``
instead, translated (``wires.py``); a Messages request for a channel that speaks an
OpenAI API is the Messages service's to translate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from chatd.protocol.errors import ServerError
from chatd.redact import safe_word
from chatd.upstream.channels import Channel
from chatd.upstream.upstream_errors import stream_error

__all__ = ["USAGE_KEYS", "CountTokensWire", "MessagesWire"]

# A beta's name (``context-management-2025-06-27``); anything else a client put in the
# header is not passed on.
_BETA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# The usage counts a Messages answer carries, and ``MessagesWire.usage`` keeps.
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class MessagesWire:
    """One Messages request (``POST /v1/messages``) relayed to Anthropic channels, for
    ``UpstreamCall(public_id, order, {}, session, wire_for=...)``:
    ``wire_for=lambda c: messages_wire`` for the channels with ``api == "anthropic"``.

    - ``MessagesWire(public_id, body, owner, betas)``: ``body`` the client's request as
      parsed JSON (a dict; ``stream`` true for a stream), ``owner`` the caller's key
      owner (the channel may send its pseudonym as ``metadata.user_id``), ``betas`` the
      client's ``anthropic-beta`` values (the header split at commas; what is not a
      beta's name is left out), passed on as the channel allows (``anthropic_betas``).
    - ``prepare``: POSTs to the channel's ``/messages`` only the fields it allows
      (``messages_fields``; ``model``, ``messages``, ``max_tokens`` and ``stream``
      always), ``model`` mapped to the channel's upstream id, ``metadata`` the
      channel's (``{"user_id": ...}`` from its ``user`` setting, or none: never the
      client's), the ``anthropic-version`` and ``x-api-key`` of the channel.
    - ``answer`` (whole): the upstream's message as it came, ``model`` the public id.
    - ``read`` (stream): each event's data as a dict whose ``type`` is the event's name
      (Anthropic's ``event:`` line always repeats it: the caller writes
      ``event: {type}`` back), ``message_start``'s ``message.model`` the public id,
      ``ping`` included. ``ended`` at ``message_stop`` (passed on too); an ``error``
      event ends the stream too, with ``failed`` set, passed on with its message
      redacted (no upstream host, URL or key) and a plain ``error.type``.
    - ``usage``: Anthropic's own counts (``USAGE_KEYS``, ints) as last told: the whole
      answer's, or ``message_start``'s updated by ``message_delta``'s (whose
      ``output_tokens`` is the final count); None until one is seen.

    Ids (``msg_...``) are passed on as the upstream made them: the service may write
    its own. A stream that stops before ``message_stop`` (or an ``error``) is broken:
    ``UpstreamCall`` raises ``ServerError`` and the channel counts a failure.
    """

    end_name = "message_stop"

    def __init__(
        self,
        public_id: str,
        body: dict[str, Any],
        owner: str = "anonymous",
        betas: Sequence[str] = (),
    ) -> None:
        self.public_id = public_id
        self.body = body
        self.owner = owner
        self.betas = [b.strip() for b in betas if _BETA.match(b.strip())]
        self.streaming = body.get("stream") is True
        self.channel: Channel | None = None
        self.extra_headers: dict[str, str] = {}
        self.usage: dict[str, int] | None = None
        self.ended = False
        self.failed = False

    def prepare(self, channel: Channel) -> tuple[str, bytes]:
        if channel.api != "anthropic":  # the service picks wires by the channel's api
            raise ServerError(f"The channel `{channel.name}` does not speak Messages.")
        self.channel = channel
        self.usage, self.ended, self.failed = None, False, False
        body = channel.relay.messages_body(self.body, self.owner, channel.key)
        body["model"] = channel.models[self.public_id]
        betas = channel.relay.betas(self.betas)
        self.extra_headers = {"anthropic-beta": ",".join(betas)} if betas else {}
        return channel.messages_url, json.dumps(body).encode()

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        data["model"] = self.public_id
        self._note(data.get("usage"))
        return data

    def read(self, payload: str) -> dict[str, Any] | None:
        event = json.loads(payload)
        if not isinstance(event, dict):
            raise ValueError("not a JSON object")
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            event["message"]["model"] = self.public_id
            self._note(event["message"].get("usage"))
        elif kind == "message_delta":
            self._note(event.get("usage"))
        elif kind == "message_stop":
            self.ended = True
        elif kind == "error":
            self.ended = self.failed = True
            event["error"] = self._error(event.get("error"))
        return event

    def _note(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        counts = {
            k: v
            for k, v in usage.items()
            if k in USAGE_KEYS and isinstance(v, int) and not isinstance(v, bool)
        }
        self.usage = {**(self.usage or {}), **counts}

    def _error(self, error: Any) -> dict[str, str]:
        """An upstream's error event, fit for the client: Anthropic's error types are
        plain words ending in ``_error``; anything else is an ``api_error``."""
        kind = safe_word(error.get("type")) if isinstance(error, dict) else None
        return {
            "type": kind if kind is not None and kind.endswith("_error") else "api_error",
            "message": stream_error(error, self.channel),
        }


# What ``count_tokens`` takes of a Messages request (what makes the prompt); the rest
# (the limit, sampling, stream, metadata) is not part of its request.
_COUNTED = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "context_management",
     "mcp_servers", "output_config", "output_format"}
)  # fmt: skip


class CountTokensWire:
    """``POST /v1/messages/count_tokens`` for a model on an Anthropic channel: the
    request's prompt fields (as the channel allows them, ``messages_fields``) sent to
    the channel's ``/messages/count_tokens``, its answer (``{"input_tokens": N}``)
    passed back as it came. Only ``UpstreamCall.result`` uses it (no stream); counting
    is free, so ``usage`` stays None. Same constructor as ``MessagesWire``."""

    end_name = "an answer"
    ended = False
    failed = False
    usage: dict[str, int] | None = None

    def __init__(
        self,
        public_id: str,
        body: dict[str, Any],
        owner: str = "anonymous",
        betas: Sequence[str] = (),
    ) -> None:
        self.messages = MessagesWire(public_id, body, owner, betas)

    @property
    def extra_headers(self) -> dict[str, str]:
        return self.messages.extra_headers

    def prepare(self, channel: Channel) -> tuple[str, bytes]:
        url, data = self.messages.prepare(channel)
        body = {k: v for k, v in json.loads(data).items() if k in _COUNTED}
        return url + "/count_tokens", json.dumps(body).encode()

    def answer(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    def read(self, payload: str) -> dict[str, Any] | None:
        raise ServerError("Counting tokens is never streamed.")

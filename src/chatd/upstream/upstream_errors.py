"""What an upstream's error status means, and what chatd's client sees of it (docs/gateway.md
"Upstream errors").

An upstream answers chatd, under the operator's key; its errors are not the client's:

- **the channel's** (``ChannelFailed``, 502 ``upstream_error``): 401/403 (the operator's
  key or account: ``channel_auth_failed``), 404 about the model (the channel's model
  map names a model the upstream does not know: ``channel_model_not_found``), and any
  other 4xx a client cannot cause (402, 405, 406, 410, 415...: ``channel_refused``).
  Counted as failures of the channel (cooldown), and the next route is tried. The
  client is told which channel, never the upstream's message (it may hold the
  upstream's host or a fragment of the key).
- **unavailable** (``ModelUnavailable``, 503): 408, 429 (the operator's quota, not the
  client's), 5xx, a connection or timeout, an answer that is not JSON. Counted as
  failures; the next route is tried.
- **the client's** (passed back): 400, 409, 413, 422, and a 404 about something the
  request named (an item, a file). Not a failure of the channel; the upstream's error
  is passed back with its message through ``redact`` (no host, URL, path, address or
  key fragment), its ``type``, ``code`` and ``param`` only when they are plain words,
  and a status among chatd's own (413 and 404 kept, others 400).

Anthropic channels (``api = "anthropic"``) answer errors in Anthropic's shape,
``{"type": "error", "error": {"type": ..., "message": ...}}``, read here as OpenAI's
(the inner object). Their statuses mean the same (401 ``authentication_error``, 403
``permission_error``, 404 ``not_found_error`` with "model: ..." for an unknown model,
413 ``request_too_large``, 429 ``rate_limit_error``, 500 ``api_error``, 529
``overloaded_error``); the error's type decides where the status alone would be wrong:
an ``authentication_error`` or ``permission_error`` is the channel's whatever its
status, and an ``overloaded_error``, ``rate_limit_error`` or ``api_error`` is the
upstream's state, never the client's fault.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from chatd.protocol.errors import APIError, ModelUnavailable
from chatd.redact import redact, safe_word
from chatd.upstream.channels import Channel

__all__ = ["ChannelFailed", "channel_failure", "judge", "stream_error"]

_CLIENT_FAULTS = {400, 409, 413, 422}
_RETRIED = {408, 429}
_MODEL_WORD = re.compile(r"(?i)(?:^|\s)model\b")  # "The model `x` does not exist"
# Anthropic's error types that say whose the failure is, whatever the status.
_CHANNEL_TYPES = {"authentication_error", "permission_error"}
_UNAVAILABLE_TYPES = {"overloaded_error", "rate_limit_error", "api_error"}
# Anthropic's one error type without the ``_error`` ending.
_PLAIN_TYPES = {"request_too_large"}


class ChannelFailed(ModelUnavailable):
    """502: a channel refused chatd itself (its key, its model map), the operator's to
    fix. A ``ModelUnavailable``: the routes after it are tried first."""

    status = 502
    type = "upstream_error"


def judge(status: int, data: Any, channel: Channel, public_id: str) -> APIError | None:
    """An upstream's error status (>= 400) as the error it is: a ``ModelUnavailable``
    (``ChannelFailed`` among them) when the channel failed, the client's error
    otherwise; None for a status that is no error."""
    if status < 400:
        return None
    err = _error_object(data)
    kind = err.get("type")
    if status in (401, 403) or kind in _CHANNEL_TYPES:
        return ChannelFailed(
            f"The upstream channel `{channel.name}` refused chatd's credentials (HTTP"
            f" {status}); the server's operator must fix the channel's key.",
            code="channel_auth_failed",
        )
    if status == 404 and _about_the_model(err, channel, public_id):
        return ChannelFailed(
            f"The upstream channel `{channel.name}` does not know the model it is"
            f" configured to serve `{public_id}` with (HTTP 404).",
            code="channel_model_not_found",
        )
    if status in _RETRIED or status >= 500 or kind in _UNAVAILABLE_TYPES:
        return channel_failure(channel, public_id, f"HTTP {status}")
    if status in _CLIENT_FAULTS or status == 404:
        return _passed_back(status, err, channel)
    return ChannelFailed(
        f"The upstream channel `{channel.name}` refused the request (HTTP {status}).",
        code="channel_refused",
    )


def channel_failure(channel: Channel, public_id: str, what: str) -> ModelUnavailable:
    """The 503 of a channel that could not answer (``what``: chatd's own words)."""
    return ModelUnavailable(f"No channel could answer for `{public_id}` ({channel.name}: {what}).")


def stream_error(error: Any, channel: Channel | None) -> str:
    """An upstream's error event, as chatd's client may read it."""
    err = error if isinstance(error, dict) else {"message": error}
    return _message(err, channel)


def _error_object(data: Any) -> dict[str, Any]:
    """OpenAI's ``{"error": {...}}``, Anthropic's ``{"type": "error", "error": {...}}``
    (or a server's bare ``{"message": ...}``)."""
    if not isinstance(data, dict):
        return {}
    err = data.get("error", data)
    if isinstance(err, dict):
        return err
    return {"message": err} if isinstance(err, str) else {}


def _about_the_model(err: dict[str, Any], channel: Channel, public_id: str) -> bool:
    """A 404 about the model (or with no error object at all: a wrong base URL is the
    channel's fault too), rather than about an item or file the request named."""
    if not err:
        return True
    message = err.get("message")
    message = message if isinstance(message, str) else ""
    return (
        err.get("code") == "model_not_found"
        or err.get("param") == "model"
        or _MODEL_WORD.search(message) is not None
        or channel.models.get(public_id, public_id) in message
    )


def _message(err: dict[str, Any], channel: Channel | None) -> str:
    message = err.get("message")
    if not isinstance(message, str) or not message.strip():
        return "The upstream gave no reason."
    secrets: list[str | None] = []
    if channel is not None:  # its key, where it is, and the ids its model map hides
        secrets = [channel.api_key, channel.base_url, urlsplit(channel.base_url).hostname]
        secrets += [u for public, u in channel.models.items() if u != public]
    return redact(message, secrets)


def _passed_back(status: int, err: dict[str, Any], channel: Channel) -> APIError:
    kept = status if status in (404, 413) else 400
    message = _message(err, channel) if err else f"The upstream refused the request ({status})."
    kind = safe_word(err.get("type"))
    return APIError(
        message,
        status=kept,
        type=kind
        if kind is not None and (kind.endswith("_error") or kind in _PLAIN_TYPES)
        else "invalid_request_error",
        param=safe_word(err.get("param")),
        code=safe_word(err.get("code")),
    )

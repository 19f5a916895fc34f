"""Which request fields may travel to an upstream channel, per API: the contract half of
the relay's allow-list (``upstream/relay_policy.py`` is the policy that applies it, per
channel; docs/gateway.md "Relay hygiene").

A relayed request travels under the operator's upstream key, so only what the API
defines and the channel allows is sent, never the client's body as it came:

- *always sent* (``*_ALWAYS``): what the relay itself needs (the model, the conversation,
  ``stream`` and its options, which chatd writes);
- *mapped* (``MAPPED``): ``store``, ``metadata``, ``user``, ``safety_identifier``: the
  client's values are never sent; a channel may send values of the operator's instead
  (a fixed ``metadata``, a ``user`` derived from the caller's key owner, ``store``
  forced);
- *default* (``CHAT_DEFAULT``, ``RESPONSES_DEFAULT``, ``MESSAGES_DEFAULT``): the rest of
  what the API defines, except what spends or reads the operator's upstream account
  beyond the answer itself (``service_tier``; for Responses also ``previous_response_id``,
  ``conversation``, ``prompt``, ``background``, state chatd keeps itself; for Anthropic's
  Messages also ``container``, ``mcp_servers`` and ``inference_geo``);
- *never* (``NEVER_RELAYED``): routers' fields that pick another model or provider
  under the operator's key (OpenRouter's ``models``, ``route``, ``provider``...): a
  channel cannot allow them.

Anything else a client sends (a field newer than this list, junk) is dropped, not
refused: real clients send fields the spec lacks. A Responses request's
``client_metadata`` (Codex's installation, thread and turn ids) is the client's own and
stays here (``_CLIENT_ONLY``), as its ``metadata`` does.
"""

from __future__ import annotations

from chatd.protocol.chat_request import EXTENSION_FIELDS, ChatCompletionRequest
from chatd.protocol.completions_request import COMPLETIONS_EXTENSIONS, CompletionRequest
from chatd.protocol.responses_request import CreateResponseRequest

__all__ = [
    "CHAT_ALWAYS",
    "CHAT_DEFAULT",
    "CHAT_FIELDS",
    "COMPLETIONS_ALWAYS",
    "COMPLETIONS_DEFAULT",
    "MAPPED",
    "MESSAGES_ALWAYS",
    "MESSAGES_DEFAULT",
    "MESSAGES_FIELDS",
    "NEVER_RELAYED",
    "RESPONSES_ALWAYS",
    "RESPONSES_DEFAULT",
    "RESPONSES_FIELDS",
]

# The fields a channel's own settings decide (docs/gateway.md), never the client's values.
MAPPED = frozenset({"store", "metadata", "user", "safety_identifier"})
# Fields that pick a model, a provider or a route at a router, under the operator's key.
NEVER_RELAYED = frozenset(
    {"models", "route", "provider", "transforms", "plugins", "fallbacks", "preset"}
)
# Spends the operator's money at another rate (priority tiers): a channel may allow it.
_COSTLY = frozenset({"service_tier"})

# OpenAI's Chat Completions fields (chatd's contract without its sampling extensions).
CHAT_FIELDS = frozenset(ChatCompletionRequest.model_fields) - EXTENSION_FIELDS
CHAT_ALWAYS = frozenset({"model", "messages", "stream", "stream_options"})
CHAT_DEFAULT = CHAT_FIELDS - MAPPED - _COSTLY - CHAT_ALWAYS

# The legacy Completions API's fields (chatd's contract without its sampling extensions).
COMPLETIONS_FIELDS = frozenset(CompletionRequest.model_fields) - COMPLETIONS_EXTENSIONS
COMPLETIONS_ALWAYS = frozenset({"model", "prompt", "stream", "stream_options"})
COMPLETIONS_DEFAULT = COMPLETIONS_FIELDS - MAPPED - COMPLETIONS_ALWAYS

# The Responses API's fields (chatd's contract is OpenAI's).
RESPONSES_FIELDS = frozenset(CreateResponseRequest.model_fields)
RESPONSES_ALWAYS = frozenset({"model", "input", "stream", "stream_options"})
# State chatd keeps itself (the conversation is sent whole) or the operator's account
# holds (stored prompts, conversations, background jobs).
_ACCOUNT_STATE = frozenset({"previous_response_id", "conversation", "prompt", "background"})
# The client's own tags, kept with a stored response and sent to no upstream.
_CLIENT_ONLY = frozenset({"client_metadata"})
RESPONSES_DEFAULT = (
    RESPONSES_FIELDS - MAPPED - _COSTLY - _ACCOUNT_STATE - _CLIENT_ONLY - RESPONSES_ALWAYS
)

# Anthropic's Messages API, for a Messages request to an ``api = "anthropic"`` channel (as
# the client sent it; a Chat Completions or Responses request is translated instead,
# protocol/chat_as_messages.py). Its ``metadata`` holds only ``user_id``: mapped like the
# OpenAI APIs' ``user`` (the channel's pseudonym of the caller, never the client's value).
MESSAGES_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "stream", "system", "metadata", "temperature",
        "top_p", "top_k", "stop_sequences", "tools", "tool_choice", "thinking",
        "output_config", "output_format", "context_management", "container", "mcp_servers",
        "service_tier", "inference_geo",
    }
)  # fmt: skip
MESSAGES_ALWAYS = frozenset({"model", "messages", "max_tokens", "stream"})
# A code-execution container lives in the operator's account; MCP servers are reached by
# Anthropic under the operator's key; a region pinned for inference is priced higher.
_MESSAGES_ACCOUNT = frozenset({"container", "mcp_servers", "inference_geo"})
MESSAGES_DEFAULT = MESSAGES_FIELDS - MAPPED - _COSTLY - _MESSAGES_ACCOUNT - MESSAGES_ALWAYS

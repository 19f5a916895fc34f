"""What the local engine can honour of a Messages request: a 400 naming the field where
a promise cannot be kept, never a field silently ignored.

Refused on a local (text-only, non-thinking) model: ``image`` and ``document`` blocks,
extended thinking with a budget (``thinking: {"type": "enabled"}``), a ``tool_choice``
forcing a server tool, server-tool blocks in the history (nothing here ran them), and
MCP servers (the model would have to call tools chatd cannot reach). Accepted with
their honest no-op meaning (docs/messages.md): ``thinking`` ``disabled`` / ``adaptive``
(no thinking is produced), ``context_management`` (clearing thinking clears nothing),
``cache_control`` (the prefix cache reuses what it can anyway), ``output_config.effort``
(a hint), ``service_tier``, ``container``, ``metadata``.
"""

from __future__ import annotations

from chatd.protocol.errors import InvalidRequest
from chatd.protocol.messages_blocks import (
    DocumentBlock,
    ImageBlock,
    ServerToolBlock,
    ToolResultBlock,
)
from chatd.protocol.messages_request import MessagesRequest, ServerTool, ThinkingEnabled

__all__ = ["check_local_support"]


def check_local_support(req: MessagesRequest, model_id: str) -> None:
    """Raise InvalidRequest for the first thing ``model_id`` cannot do, in field order."""
    _messages(req, model_id)
    _tool_choice(req, model_id)
    if isinstance(req.thinking, ThinkingEnabled):
        raise InvalidRequest(
            f"thinking: extended thinking (type 'enabled' with budget_tokens) is not supported"
            f" by `{model_id}`: the model cannot think. Leave 'thinking' out, or send"
            " {'type': 'disabled'} or {'type': 'adaptive'} (no thinking is produced).",
            param="thinking",
        )
    if req.mcp_servers:
        raise InvalidRequest(
            f"mcp_servers: MCP servers are not supported by `{model_id}`: this server cannot"
            " connect to them, so their tools could not run.",
            param="mcp_servers",
        )


def _messages(req: MessagesRequest, model_id: str) -> None:
    for i, message in enumerate(req.messages):
        for j, block in enumerate(message.blocks()):
            path = f"messages.{i}.content.{j}"
            _media(block, path, model_id)
            if isinstance(block, ToolResultBlock) and isinstance(block.content, list):
                for k, part in enumerate(block.content):
                    _media(part, f"{path}.content.{k}", model_id)
            if isinstance(block, ServerToolBlock):
                raise InvalidRequest(
                    f"{path}: '{block.type}' blocks are not supported by `{model_id}`: it runs"
                    " no server tools, so it cannot continue from one's call or result.",
                    param=path,
                )


def _media(block: object, path: str, model_id: str) -> None:
    if isinstance(block, ImageBlock | DocumentBlock):
        kind = "image" if isinstance(block, ImageBlock) else "document"
        raise InvalidRequest(
            f"{path}: '{kind}' blocks are not supported by `{model_id}`: it is a text-only model.",
            param=path,
        )


def _tool_choice(req: MessagesRequest, model_id: str) -> None:
    choice = req.tool_choice
    if choice is None or choice.type not in ("tool", "any"):
        return
    servers = {t.name for t in req.tools or () if isinstance(t, ServerTool)}
    if choice.type == "tool" and choice.name in servers:
        raise InvalidRequest(
            f"tool_choice: forcing the server tool '{choice.name}' is not supported by"
            f" `{model_id}`: it cannot run server tools (they are offered in 'auto' mode"
            " and never called).",
            param="tool_choice",
        )
    if choice.type == "any" and servers and not req.custom_tools():
        raise InvalidRequest(
            f"tool_choice: 'any' with only server tools is not supported by `{model_id}`:"
            " it cannot run server tools.",
            param="tool_choice",
        )

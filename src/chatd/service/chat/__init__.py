"""The Chat Completions adapter over the protocol-neutral core (its skeleton:
service/protocol_service.py): requests in, ``chat.completion`` objects and chunks out,
relayed as sent, stored completions."""

from chatd.service.chat.service import ChatRequest, ChatService

__all__ = ["ChatRequest", "ChatService"]

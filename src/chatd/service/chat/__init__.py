"""The Chat Completions adapter over the protocol-neutral core (service/generation.py,
routing.py, accounting.py): requests in, ``chat.completion`` objects and chunks out."""

from chatd.service.chat.service import ChatRequest, ChatService

__all__ = ["ChatRequest", "ChatService"]

"""``GET /v1/models`` as Anthropic's Models API answers it, for a request that carries
``anthropic-version`` (Anthropic's SDKs and Claude Code send it on every request): the
same models, each ``{"type": "model", "id", "display_name", "created_at"}`` (RFC 3339),
in one page (``has_more`` false, ``first_id``/``last_id``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["anthropic_model", "anthropic_model_list"]


def anthropic_model(card: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI model card (``id``, ``created`` in Unix seconds) in Anthropic's shape."""
    created = datetime.fromtimestamp(card.get("created", 0), UTC)
    return {
        "type": "model",
        "id": card["id"],
        "display_name": card["id"],
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


def anthropic_model_list(cards: list[dict[str, Any]]) -> dict[str, Any]:
    data = [anthropic_model(c) for c in cards]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }

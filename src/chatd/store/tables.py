"""The database schema (SQLAlchemy Core). Migrations in ``migrations/`` must match it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata_obj = MetaData()


def _completion_key() -> Column:  # type: ignore[type-arg]
    """The completion a row belongs to (part of the row's key); deleted with it."""
    return Column(
        "completion_id",
        String(64),
        ForeignKey("stored_completions.id", ondelete="CASCADE"),
        primary_key=True,
    )


completions = Table(
    "stored_completions",
    metadata_obj,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    Column("created_ns", BigInteger, nullable=False),  # ordering: time, then id
    Column("body", JSON, nullable=False),  # the chat.completion as returned
    Column("request", JSON, nullable=False),  # the request's parameters (no messages)
    Column("metadata", JSON, nullable=False),
    Index("ix_completions_owner_order", "owner", "created_ns", "id"),
)

completion_tags = Table(
    "stored_completion_metadata",
    metadata_obj,
    _completion_key(),
    Column("key", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_metadata_key_value", "key", "value"),
)

messages = Table(
    "stored_messages",
    metadata_obj,
    _completion_key(),
    Column("position", Integer, primary_key=True),
    Column("message", JSON, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata_obj,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),  # sha256 hex of the key
    Column("models", JSON, nullable=True),  # None: every model
    Column("created_at", BigInteger, nullable=False),  # unix seconds
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("rpm", BigInteger, nullable=True),  # requests per minute (None: unlimited)
    Column("tpm", BigInteger, nullable=True),  # tokens per minute
    # per public model id, on top of rpm/tpm: {"model": {"rpm": int|None, "tpm": int|None}}
    Column("model_limits", JSON, nullable=True),
)

usage = Table(
    "usage",
    metadata_obj,
    Column("owner", String(64), primary_key=True),
    Column("model", String(256), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    # requests counted with chatd's tokenizer because their upstream sent no usage
    Column("estimated_requests", BigInteger, nullable=False, server_default="0"),
)

"""The database schema (SQLAlchemy Core). Migrations in ``migrations/`` must match it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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
    # bytes of its JSON, messages included: what counts against the owner's storage quota
    Column("size", BigInteger, nullable=False, server_default="0"),
    Index("ix_completions_owner_order", "owner", "created_ns", "id"),
    Index("ix_completions_owner_size", "owner", "created_ns", "size"),  # quota sums
    Index("ix_completions_created", "created_ns"),  # retention purges
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
    # requests in flight at once, and bytes of stored records (None: the server's default;
    # 0: unlimited)
    Column("max_in_flight", BigInteger, nullable=True),
    Column("max_stored_bytes", BigInteger, nullable=True),
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

# Responses API (``store: true``). A response names the one it continues by
# ``previous_response_id``, deliberately not a foreign key: the earlier response may be
# deleted later, which breaks the chain for new requests but not this stored response.
responses = Table(
    "stored_responses",
    metadata_obj,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    Column("created_ns", BigInteger, nullable=False),  # ordering: time, then id
    Column("previous_response_id", String(64), nullable=True),
    Column("body", JSON, nullable=False),  # the response object as returned
    # bytes of its JSON, items included: what counts against the owner's storage quota
    Column("size", BigInteger, nullable=False, server_default="0"),
    Index("ix_responses_owner_size", "owner", "created_ns", "size"),  # quota sums
    Index("ix_responses_created", "created_ns"),  # retention purges
)

# The input items of a response's request (output false) and its output items (output
# true), in the order given. ``owner`` repeats the response's owner so that an item is
# found by (owner, item id) with one index, for ``item_reference`` inputs. Item ids are
# not unique: a client sends earlier output items back as input, ids unchanged.
response_items = Table(
    "stored_response_items",
    metadata_obj,
    Column(
        "response_id",
        String(64),
        ForeignKey("stored_responses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("output", Boolean, primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("owner", String(64), nullable=False),
    # client-chosen for input items (no length cap in the request contract), hence wider
    Column("item_id", String(256), nullable=False),
    Column("item", JSON, nullable=False),
    Index("ix_response_items_owner_item", "owner", "item_id"),
)

# Random secrets made once per database at start (store/owners.py), shared by every
# replica of it: "owner_ids" keys the HMAC that gives static API keys their owner ids.
server_secrets = Table(
    "server_secrets",
    metadata_obj,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),  # hex
)

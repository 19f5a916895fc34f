"""Per-key in-flight and storage quotas; stored records' sizes; indexes for retention.

Each stored completion and response gets its size in bytes (what counts against its
owner's storage quota, docs/storage.md), computed here for the records stored before;
keys get their own in-flight limit and storage quota (None: the server's default).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_in_flight", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("max_stored_bytes", sa.BigInteger, nullable=True))
    for table in ("stored_completions", "stored_responses"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("size", sa.BigInteger, nullable=False, server_default="0"))
    _backfill_sizes()
    op.create_index(
        "ix_completions_owner_size", "stored_completions", ["owner", "created_ns", "size"]
    )
    op.create_index("ix_completions_created", "stored_completions", ["created_ns"])
    op.create_index("ix_responses_owner_size", "stored_responses", ["owner", "created_ns", "size"])
    op.create_index("ix_responses_created", "stored_responses", ["created_ns"])


def _backfill_sizes() -> None:
    """The bytes of each record's JSON as the database holds it: what chatd counts when
    it stores one (store/retention.py ``json_size``)."""
    if op.get_bind().dialect.name == "postgresql":
        n = "octet_length({}::text)"
    else:
        n = "length(CAST({} AS BLOB))"
    op.execute(
        f"UPDATE stored_completions SET size = {n.format('body')} + {n.format('request')}"
        f" + COALESCE((SELECT SUM({n.format('message')}) FROM stored_messages"
        " WHERE stored_messages.completion_id = stored_completions.id), 0)"
    )
    op.execute(
        f"UPDATE stored_responses SET size = {n.format('body')}"
        f" + COALESCE((SELECT SUM({n.format('item')}) FROM stored_response_items"
        " WHERE stored_response_items.response_id = stored_responses.id), 0)"
    )


def downgrade() -> None:
    op.drop_index("ix_responses_created", "stored_responses")
    op.drop_index("ix_responses_owner_size", "stored_responses")
    op.drop_index("ix_completions_created", "stored_completions")
    op.drop_index("ix_completions_owner_size", "stored_completions")
    for table in ("stored_responses", "stored_completions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("size")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("max_stored_bytes")
        batch.drop_column("max_in_flight")

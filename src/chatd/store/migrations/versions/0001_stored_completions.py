"""Stored completions, their metadata and input messages.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_completions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
    )
    op.create_index(
        "ix_completions_owner_order", "stored_completions", ["owner", "created_ns", "id"]
    )
    op.create_table(
        "stored_completion_metadata",
        sa.Column(
            "completion_id",
            sa.String(64),
            sa.ForeignKey("stored_completions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(512), nullable=False),
    )
    op.create_index("ix_metadata_key_value", "stored_completion_metadata", ["key", "value"])
    op.create_table(
        "stored_messages",
        sa.Column(
            "completion_id",
            sa.String(64),
            sa.ForeignKey("stored_completions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("message", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stored_messages")
    op.drop_table("stored_completion_metadata")
    op.drop_table("stored_completions")

"""Stored Responses API responses and their input and output items.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("body", sa.JSON, nullable=False),
    )
    op.create_table(
        "stored_response_items",
        sa.Column(
            "response_id",
            sa.String(64),
            sa.ForeignKey("stored_responses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("output", sa.Boolean, primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("item", sa.JSON, nullable=False),
    )
    op.create_index("ix_response_items_owner_item", "stored_response_items", ["owner", "item_id"])


def downgrade() -> None:
    op.drop_table("stored_response_items")
    op.drop_table("stored_responses")

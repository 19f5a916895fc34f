"""Server secrets, and stored responses indexed by owner.

The "owner_ids" secret keys the HMAC that gives static API keys their owner ids.
The secret itself is made at start (store/owners.py), not here: a migration is code,
the same for every database. The index lets a static key's records be moved to its new
owner id at start without reading the whole table.

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
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )
    op.create_index("ix_responses_owner", "stored_responses", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_responses_owner", "stored_responses")
    op.drop_table("server_secrets")
